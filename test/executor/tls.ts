/** A throwaway self-signed certificate for 127.0.0.1 and localhost, made with openssl for TLS tests. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findTool } from '../helpers/tools.ts';

export interface TestCertificate {
  certPath: string;
  keyPath: string;
  cert: Buffer;
}

export function opensslPath(): string | undefined {
  return findTool('openssl');
}

export function makeCertificate(dir: string): TestCertificate {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync(
    opensslPath()!,
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'pipe', timeout: 30_000 },
  );
  return { certPath, keyPath, cert: readFileSync(certPath) };
}
