// `larder executor` as a real process: grpcs:// with a certificate, bodies that stream rather than
// buffer (peak memory while a 256 MiB blob goes in and out), and start-up errors.
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/edge-process.ts';
import { peakRssMiB, writtenBytes } from '../helpers/proc.ts';
import { REPO_ROOT, requireTool } from '../helpers/tools.ts';
import { clientsFor, codeOf, startExecutorProcess, writeRequests } from './helpers.ts';
import { makeCertificate, opensslPath } from './tls.ts';
import { createHash } from 'node:crypto';

const MiB = 1024 * 1024;
const haveOpenssl = requireTool('openssl', opensslPath(), 'apt-get install openssl');

describe('larder executor process', () => {
  const dir = tempDir('larder-executor-proc-');
  afterAll(() => dir.remove());

  it.runIf(haveOpenssl)(
    'serves grpcs:// with --tls-cert/--tls-key, and refuses plaintext clients',
    async () => {
      const certificate = makeCertificate(dir.path);
      const executor = await startExecutorProcess([
        '--store',
        'memory',
        '--tls-cert',
        certificate.certPath,
        '--tls-key',
        certificate.keyPath,
      ]);
      expect(executor.url).toBe(`grpcs://127.0.0.1:${executor.port}`);
      const secure = clientsFor(`127.0.0.1:${executor.port}`, grpc.credentials.createSsl(certificate.cert));
      const plain = clientsFor(`127.0.0.1:${executor.port}`);
      try {
        const caps = await secure.capabilities.getCapabilities({});
        expect(caps.cacheCapabilities?.digestFunctions).toHaveLength(1);
        expect((await codeOf(plain.capabilities.getCapabilities({}, { timeoutMs: 3000 }))).code).not.toBe(
          grpc.status.OK,
        );
      } finally {
        secure.close();
        plain.close();
        await executor.stop();
      }
    },
    60_000,
  );

  it('streams a 256 MiB blob in and out without holding it in memory', async () => {
    const size = 256 * MiB;
    const executor = await startExecutorProcess(['--store', `disk:${join(dir.path, 'big')}`]);
    const clients = clientsFor(`127.0.0.1:${executor.port}`);
    try {
      // Pseudo-random chunks (so nothing compresses away), hashed as they are generated.
      const chunk = Buffer.alloc(MiB);
      const hash = createHash('sha256');
      const chunks: Buffer[] = [];
      for (let i = 0; i < size / MiB; i++) {
        const c = Buffer.from(chunk.map((_, j) => (i * 31 + j * 7 + (j >> 8)) & 0xff));
        hash.update(c);
        chunks.push(c);
      }
      const hex = hash.digest('hex');
      function* requests() {
        for (let i = 0; i < chunks.length; i++) {
          yield {
            resourceName: i === 0 ? `uploads/big/blobs/${hex}/${size}` : '',
            writeOffset: BigInt(i * MiB),
            data: chunks[i]!,
            finishWrite: i === chunks.length - 1,
          };
        }
      }
      expect((await clients.bytestream.write(requests())).committedSize).toBe(BigInt(size));

      const readHash = createHash('sha256');
      let read = 0;
      for await (const part of clients.bytestream.read({ resourceName: `blobs/${hex}/${size}` })) {
        readHash.update(part.data);
        read += part.data.byteLength;
      }
      expect(read).toBe(size);
      expect(readHash.digest('hex')).toBe(hex);
      const peak = peakRssMiB(executor.pid);
      if (process.env.SHOW_PEAK) console.log(`executor peak RSS ${peak.toFixed(0)} MiB`);
      expect(peak, `peak RSS ${peak.toFixed(0)} MiB`).toBeLessThan(200);
    } finally {
      clients.close();
      await executor.stop();
    }
  }, 120_000);

  it('writes an uploaded blob to disk once (not to the partial-upload area and then again to the store)', async () => {
    const size = 32 * MiB;
    const executor = await startExecutorProcess(['--store', `disk:${join(dir.path, 'once')}`]);
    const clients = clientsFor(`127.0.0.1:${executor.port}`);
    try {
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
      const hex = createHash('sha256').update(data).digest('hex');
      const before = writtenBytes(executor.pid);
      const name = `uploads/once/blobs/${hex}/${size}`;
      expect((await clients.bytestream.write(writeRequests(name, data))).committedSize).toBe(BigInt(size));
      const written = writtenBytes(executor.pid) - before;
      console.log(`ByteStream upload of ${size / MiB} MiB: the executor wrote ${(written / MiB).toFixed(1)} MiB`);
      expect(written).toBeGreaterThanOrEqual(size);
      expect(written).toBeLessThan(size * 1.25);
      // And it is stored, whole.
      const readHash = createHash('sha256');
      for await (const part of clients.bytestream.read({ resourceName: `blobs/${hex}/${size}` }))
        readHash.update(part.data);
      expect(readHash.digest('hex')).toBe(hex);
    } finally {
      clients.close();
      await executor.stop();
    }
  }, 120_000);

  it('exits 2 with a message on bad configuration', () => {
    const run = (args: string[]) =>
      spawnSync(process.execPath, [join(REPO_ROOT, 'bin/larder.js'), 'executor', ...args], {
        encoding: 'utf8',
        timeout: 30_000,
      });
    const half = run(['--tls-cert', 'x.pem']);
    expect(half.status).toBe(2);
    expect(half.stderr).toMatch(/--tls-cert and --tls-key go together/);
    const missing = run([
      '--store',
      'memory',
      '--listen',
      '127.0.0.1:0',
      '--tls-cert',
      '/nonexistent.pem',
      '--tls-key',
      '/nonexistent.key',
    ]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/cannot read the TLS certificate/);
    expect(run(['--bogus']).status).toBe(2);
  });
});
