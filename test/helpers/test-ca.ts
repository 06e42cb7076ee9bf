/**
 * A throwaway certificate authority and a server certificate it signed (for 127.0.0.1 and localhost), made with
 * openssl, for TLS tests that must trust a private CA rather than pin one self-signed certificate.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findTool } from './tools.ts';

export interface TestCa {
  caPath: string;
  certPath: string;
  keyPath: string;
}

export const OPENSSL = findTool('openssl');

export function makeCa(dir: string): TestCa {
  const caPath = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const certPath = join(dir, 'server.pem');
  const keyPath = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const extensions = join(dir, 'server.ext');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const openssl = (args: string[]) => execFileSync(OPENSSL!, args, { stdio: 'pipe', timeout: 30_000 });
  openssl([
    'req',
    '-x509',
    ...ec,
    '-days',
    '1',
    '-keyout',
    caKey,
    '-out',
    caPath,
    '-subj',
    '/CN=larder test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  openssl(['req', ...ec, '-keyout', keyPath, '-out', csr, '-subj', '/CN=localhost']);
  writeFileSync(
    extensions,
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n',
  );
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    caPath,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    extensions,
    '-out',
    certPath,
  ]);
  return { caPath, certPath, keyPath };
}
