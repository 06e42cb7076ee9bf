// A fleet on a locked Redis, all real processes: redis-server serving only TLS (a certificate from a private CA)
// with an ACL user and the default user off; a frontend and workers that reach it with rediss://, --queue-ca and
// the password from --queue-password-file. And the attack of issue 17 (row 11): a password put in --queue on the
// command line is read by anyone from /proc/PID/cmdline. Here larder warns about it and /proc shows it no more.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { makeCa, OPENSSL, type TestCa } from '../../helpers/test-ca.ts';
import { requireTool } from '../../helpers/tools.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { type Clients, clientsFor, type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { startFrontend, startWorker, type WorkerProcess } from './fleet.ts';

/** The ACL the README recommends for larder's user: its own keys and channels, nothing that could stop Redis. */
const README_ACL = ['~larder:*', '&larder:*', '+@all', '-@dangerous', '+info'];
const PASSWORD = 'Fleet-Secret-7f3a9c';
const runs = haveRedis() && requireTool('openssl', OPENSSL, 'apt-get install openssl');

/** What every process on the host sees of a process's command line. */
const commandLine = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0+/g, ' ').trim();

describe.runIf(runs)('a fleet on a Redis with TLS and an ACL user, no password on any command line', () => {
  const dir = reachableTempDir('larder-fleet-secrets-');
  const passwordFile = join(dir, 'queue-password');
  let ca: TestCa;
  let redis: TestRedis;
  let user: string; // rediss://larder@127.0.0.1:PORT
  let frontend: ExecutorProcess;
  let exposedFrontend: ExecutorProcess;
  const workers: WorkerProcess[] = [];
  let clients: Clients;

  beforeAll(async () => {
    ca = makeCa(dir);
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    redis = await startRedis({ aclUser: { name: 'larder', password: PASSWORD, rules: README_ACL }, tls: ca });
    user = redis.url.replace('rediss://', 'rediss://larder@');
    const secrets = ['--queue-password-file', passwordFile, '--queue-ca', ca.caPath];
    frontend = await startFrontend({ redis: user, store: join(dir, 'store'), args: secrets });
    clients = clientsFor(`127.0.0.1:${frontend.port}`);
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all([frontend, exposedFrontend].filter(Boolean).map((f) => f.stop()));
    await redis?.close();
  }, 60_000);

  it('a worker with the password in a file runs actions; nothing on its command line to find', async () => {
    const worker = await startWorker({
      redis: user,
      frontend: frontend.url,
      args: ['--queue-password-file', passwordFile, '--queue-ca', ca.caPath],
    });
    workers.push(worker);
    const fixture = new ActionFixture(clients);
    const action = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', 'echo through-tls'] },
      salt: `tls-${Date.now()}`,
    });
    const { response } = await fixture.execute(action, { skipCacheLookup: true });
    expect(response.status?.code ?? 0, response.status?.message).toBe(0);
    expect(response.result?.exitCode).toBe(0);
    expect((await fixture.read(response.result!.stdoutDigest)).toString()).toBe('through-tls\n');
    expect(response.result?.executionMetadata?.worker).toBe(worker.name);
    expect(commandLine(worker.pid)).not.toContain(PASSWORD);
    expect(worker.output()).not.toContain('PASSWORD IS ON THE COMMAND LINE');
    expect(worker.output()).not.toContain('is readable by');
  }, 60_000);

  it('a worker whose password file actions could read says so, naming the chmod', async () => {
    const readable = join(dir, 'queue-password-644');
    writeFileSync(readable, `${PASSWORD}\n`);
    chmodSync(readable, 0o644);
    const worker = await startWorker({
      redis: user,
      frontend: frontend.url,
      args: ['--queue-password-file', readable, '--queue-ca', ca.caPath],
    });
    workers.push(worker);
    expect(worker.output()).toMatch(
      /queue-password-644 is readable by --run-as-uids [0-9-]+ \(uid \d+, gid \d+\), who runs actions: run `chmod 600 /,
    );
  }, 60_000);

  it('a worker given the password in --queue warns loudly and hides it from /proc/PID/cmdline', async () => {
    const exposed = `rediss://larder:${PASSWORD}@127.0.0.1:${redis.port}`;
    const worker = await startWorker({ redis: exposed, frontend: frontend.url, args: ['--queue-ca', ca.caPath] });
    workers.push(worker);
    const shown = commandLine(worker.pid);
    expect(shown).not.toContain(PASSWORD);
    expect(shown).toContain(`larder worker --queue rediss://larder:***@127.0.0.1:${redis.port}`);
    expect(worker.output()).toContain('A PASSWORD IS ON THE COMMAND LINE (--queue)');
    expect(worker.output()).not.toContain(PASSWORD);
  }, 60_000);

  it('so does a frontend (`larder executor`), with --queue=URL spelled in one argument', async () => {
    exposedFrontend = await startFrontend({
      redis: user,
      store: join(dir, 'store'),
      args: [`--queue=rediss://larder:${PASSWORD}@127.0.0.1:${redis.port}`, '--queue-ca', ca.caPath],
    });
    const shown = commandLine(exposedFrontend.pid);
    expect(shown).not.toContain(PASSWORD);
    expect(shown).toMatch(/^larder executor /);
    expect(shown).toContain(`--queue=rediss://larder:***@127.0.0.1:${redis.port}`);
    expect(exposedFrontend.output()).toContain('A PASSWORD IS ON THE COMMAND LINE (--queue)');
    expect(exposedFrontend.output()).not.toContain(PASSWORD);
  }, 60_000);
});
