// `--queue redis+sentinel://…`: what a Sentinel-managed Redis's address becomes (the Sentinels, the primary's
// name, database and credentials for ioredis), and the clear refusals of what it would misread. The failover
// itself runs in test/executor/fleet/fleet-failover.test.ts.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseExecutorConfig } from '../../../executor/config/executor-options.ts';
import { parseWorkerConfig } from '../../../executor/config/worker-options.ts';
import { connectionOptions, redactUrl } from '../../../executor/scheduler/redis/connection.ts';

describe('a Sentinel-managed queue', () => {
  it('names the Sentinels (26379 by default), the primary by name, the database and the credentials', async () => {
    const options = await connectionOptions({
      url: 'redis+sentinel://larder:s%40cret@10.0.0.1:26380,[::1],sentinel.internal/larder-main/2',
    });
    expect(options).toMatchObject({
      sentinels: [
        { host: '10.0.0.1', port: 26380 },
        { host: '::1', port: 26379 },
        { host: 'sentinel.internal', port: 26379 },
      ],
      name: 'larder-main',
      db: 2,
      username: 'larder',
      password: 's@cret',
    });
    // A demoted primary's READONLY answer reconnects (2: and sends the command again), other errors do not.
    expect(options.reconnectOnError!(new Error("READONLY You can't write against a read only replica."))).toBe(2);
    expect(options.reconnectOnError!(new Error('ERR unknown command'))).toBe(false);
    // ioredis's own connector asks the Sentinels first; a connector of ours would bypass them.
    expect(options.Connector).toBeUndefined();
  });

  it('takes the password from --queue-password-file, once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'larder-sentinel-url-'));
    const passwordFile = join(dir, 'password');
    writeFileSync(passwordFile, 'from-file\n');
    expect(await connectionOptions({ url: 'redis+sentinel://h:1/m', passwordFile })).toMatchObject({
      password: 'from-file',
      db: 0,
    });
    await expect(connectionOptions({ url: 'redis+sentinel://:p@h:1/m', passwordFile })).rejects.toThrow(
      'give the password once',
    );
  });

  it('refuses what it would misread, without repeating the password', async () => {
    const refusal = (url: string, caPath?: string) =>
      connectionOptions({ url, ...(caPath === undefined ? {} : { caPath }) }).then(
        () => '',
        (err: Error) => err.message,
      );
    expect(await refusal('redis+sentinel://h:1')).toContain('/MASTER');
    expect(await refusal('redis+sentinel://h:1/m/x')).toContain('/MASTER/DB');
    expect(await refusal('redis+sentinel://h:1,/m')).toContain('is not HOST[:PORT]');
    expect(await refusal('redis+sentinel://h:99999/m')).toContain('is not HOST[:PORT]');
    const withOptions = await refusal('redis+sentinel://u:hunter2@h:1/m?x=1');
    expect(withOptions).toContain('not read');
    expect(withOptions).not.toContain('hunter2');
    expect(await refusal('redis+sentinel://h:1/m', '/etc/ca.pem')).toContain('without TLS');
    expect(redactUrl('redis+sentinel://u:hunter2@h:1,g:2/m')).toBe('redis+sentinel://u:***@h:1,g:2/m');
  });

  it('is a --queue the executor and the worker accept', () => {
    const config = parseExecutorConfig(['--workers', '0', '--queue', 'redis+sentinel://h:1,g:2/m'], {});
    expect(config.execution.queue).toBe('redis+sentinel://h:1,g:2/m');
    const worker = parseWorkerConfig(['--queue', 'redis+sentinel://h:1/m', '--frontend', 'grpc://127.0.0.1:1'], {});
    expect(worker.queue).toBe('redis+sentinel://h:1/m');
  });
});
