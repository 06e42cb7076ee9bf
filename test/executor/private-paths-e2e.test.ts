// Issue 17, row 5, beneath the sandbox: the store and the server's secrets are out of reach of the users actions
// run as by their modes alone. Real `larder executor` processes (as root, so actions run as other users): an
// action of a --sandbox off executor cannot read another instance's blob of a store an older larder left open;
// an executor whose store belongs to the actions' user refuses to start, naming the fix; readable htpasswd and
// config files are warned about.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobKey } from '../../shared/digest.ts';
import { DiskStore } from '../../shared/storage/disk.ts';
import { failUnlessRoot, needsRoot, REPO_ROOT } from '../helpers/tools.ts';
import { ActionFixture } from './execution/fixture.ts';
import { clientsFor, reachableTempDir, startExecutorProcess } from './helpers.ts';

const RUNS_AS_OTHERS = 'actions must run as another user';

/** Runs `larder executor` to its end (it is expected to refuse to start): exit code and output. */
function executorExit(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO_ROOT, 'bin/larder.js'), 'executor', '--listen', '127.0.0.1:0', '--log-format', 'text', ...args],
      { cwd: REPO_ROOT, timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? null), output: stdout + stderr }),
    );
  });
}

describe.runIf(needsRoot(RUNS_AS_OTHERS))('the store and the secrets, out of reach of actions by their modes', () => {
  beforeAll(() => failUnlessRoot(RUNS_AS_OTHERS));
  const dirs: string[] = [];
  const fresh = (prefix: string) => {
    const dir = reachableTempDir(prefix);
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("with the sandbox off, an action cannot read another instance's blob of a store an older larder left open", async () => {
    const dir = fresh('larder-open-store-');
    const storePath = join(dir, 'store');
    const secret = randomBytes(64);
    const hash = createHash('sha256').update(secret).digest('hex');
    const old = await DiskStore.open({ path: storePath, maxBytes: 1 << 20 });
    await old.put(blobKey('other-tenant', 'cas', hash), secret, secret.length);
    await old.close();
    const blob = join(storePath, 'blobs', 'i-other-tenant', 'cas', hash.slice(0, 2), hash);
    // As an older larder left it: every folder 0755, every file 0644.
    const open = (path: string) => {
      chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
      if (statSync(path).isDirectory()) for (const name of readdirSync(path)) open(join(path, name));
    };
    open(storePath);

    const executor = await startExecutorProcess(['--store', `disk:${storePath}`, '--sandbox', 'off']);
    const clients = clientsFor(`127.0.0.1:${executor.port}`);
    try {
      const fixture = new ActionFixture(clients);
      const action = await fixture.action({
        command: { arguments: ['/bin/sh', '-c', `id -u; od -An -tx1 ${blob} | head -1`] },
        salt: `row5-${Date.now()}`,
      });
      const { response } = await fixture.execute(action, { skipCacheLookup: true });
      const stdout = (await fixture.read(response.result!.stdoutDigest)).toString();
      const stderr = (await fixture.read(response.result!.stderrDigest)).toString();
      expect(Number(stdout.split('\n')[0])).not.toBe(0); // an action user, not root
      expect(stderr).toContain('Permission denied');
      const firstBytes = [...secret.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
      expect(stdout).not.toContain(firstBytes);
      expect((statSync(storePath).mode & 0o777).toString(8)).toBe('700');
    } finally {
      clients.close();
      await executor.stop();
    }
  }, 60_000);

  it('refuses to start when the store belongs to the user actions run as, naming the fix', async () => {
    const dir = fresh('larder-their-store-');
    const storePath = join(dir, 'store');
    await (await DiskStore.open({ path: storePath, maxBytes: 1 << 20 })).close();
    chownSync(storePath, 65534, 65534);
    const { code, output } = await executorExit([
      '--store',
      `disk:${storePath}`,
      '--run-as',
      'nobody',
      '--work-dir',
      join(dir, 'work'),
    ]);
    expect(code, output).toBe(2);
    expect(output).toContain(
      `larder: ${storePath} holds every client's blobs and --run-as nobody (uid 65534, gid 65534), who runs actions, can read it: ` +
        `it belongs to that user; run \`chown -R 0:0 ${storePath} && chmod 700 ${storePath}\`, then start again`,
    );
    expect(output).not.toContain('listening on');
  }, 60_000);

  it('refuses a store the per-slot uids may enter, and starts once it is fixed', async () => {
    const dir = fresh('larder-slot-store-');
    const storePath = join(dir, 'store');
    await (await DiskStore.open({ path: storePath, maxBytes: 1 << 20 })).close();
    // Handed to the first uid of the default range by a careless chown.
    chownSync(storePath, 1_900_000_000, 1_900_000_000);
    const refused = await executorExit(['--store', `disk:${storePath}`, '--work-dir', join(dir, 'work')]);
    expect(refused.code, refused.output).toBe(2);
    expect(refused.output).toContain(`--run-as-uids 1900000000-1900001023 (uid 1900000000, gid 1900000000)`);
    chownSync(storePath, 0, 0);
    const executor = await startExecutorProcess(['--store', `disk:${storePath}`]);
    await executor.stop();
  }, 60_000);

  it('warns when the htpasswd and config files are readable by actions, and still starts', async () => {
    const dir = fresh('larder-secrets-');
    const htpasswd = join(dir, 'htpasswd');
    const config = join(dir, 'config.json');
    const password = createHash('sha1').update('secret').digest('base64');
    writeFileSync(htpasswd, `ci:{SHA}${password}\n`, { mode: 0o644 });
    writeFileSync(config, '{}\n', { mode: 0o644 });
    chmodSync(htpasswd, 0o644);
    chmodSync(config, 0o644);
    const executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir, 'store')}`,
      '--htpasswd',
      htpasswd,
      '--config',
      config,
    ]);
    await executor.stop();
    for (const file of [htpasswd, config])
      expect(executor.output()).toMatch(
        new RegExp(
          `${file} is readable by --run-as-uids [0-9-]+ \\(uid \\d+, gid \\d+\\), who runs actions: run \`chmod 600 ${file}\``,
        ),
      );
  }, 60_000);
});
