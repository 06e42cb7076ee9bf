// The spawner captures what a command writes into its stdout and stderr files, and makes no file for a stream that
// carried nothing (the worker reads a missing file as empty output). Every suite runs on both of the spawner's
// runtimes: Bun (where npm installed it, the default) and Node (the fallback).
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, watch, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installedBun, type SpawnRequest, Spawner } from '../../../executor/runner/spawner/spawner.ts';
import { bunPath, requireTool } from '../../helpers/tools.ts';

const dir = mkdtempSync(join(tmpdir(), 'larder-spawner-test-'));
const bun = bunPath();
/** Every spawner the suite makes, each closed after it. */
const spawners: Spawner[] = [];
const spawnerOn = (runtime: string | null) => {
  const spawner = new Spawner(runtime);
  spawners.push(spawner);
  return spawner;
};
const runtimes: Array<[string, Spawner]> = [['Node', spawnerOn(null)]];
if (requireTool('Bun', bun, 'npm ci installs it from @oven/bun-linux-x64')) runtimes.unshift(['Bun', spawnerOn(bun!)]);

afterAll(async () => {
  for (const spawner of spawners) {
    // The spawner may still be writing into a stand-in cgroup file here (keepMovesCheap): it goes first.
    const child = (spawner as unknown as { child: ChildProcess | null }).child;
    spawner.close();
    if (child !== null && child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
  rmSync(dir, { recursive: true, force: true });
});

/** What the suite asks the spawner for: `script` under /bin/sh, its output kept (1 KiB at most) in `{name}.out`/`.err`. */
function request(name: string, script: string, cgroup: SpawnRequest['cgroup'] = null): SpawnRequest {
  return {
    argv: ['/bin/sh', '-c', script],
    cwd: dir,
    env: { PATH: '/usr/bin:/bin' },
    user: null,
    maxOutputBytes: 1024,
    cgroup,
    stdoutPath: join(dir, `${name}.out`),
    stderrPath: join(dir, `${name}.err`),
  };
}

describe('the spawner by default', () => {
  it('runs on the Bun npm installed', () => {
    if (bun === undefined) return; // requireTool above already failed the run in CI
    expect(installedBun()).toBe(realpathSync(bun));
    expect(new Spawner().runtime).toBe('bun');
  });

  it('stays on Bun when closed before its spawner ever answered', async () => {
    if (bun === undefined) return; // requireTool above already failed the run in CI
    const spawner = spawnerOn(bun);
    const command = spawner.run(request('closed-at-once', 'exit 0'));
    const child = (spawner as unknown as { child: ChildProcess }).child;
    spawner.close();
    await once(child, 'exit');
    await command.output;
    expect(spawner.runtime).toBe('bun');
  });

  it('runs on Node from then on when Bun exits before it ever answers', async () => {
    // /bin/false stands in for a Bun that cannot run here: it exits 1 at once, whatever it is given.
    const spawner = spawnerOn('/bin/false');
    const first = spawner.run(request('no-bun', 'exit 0'));
    expect(await first.started).toMatchObject({ error: { code: 'ESPAWNER' } });
    expect(spawner.runtime).toBe('node');
    const next = spawner.run(request('no-bun-next', 'exit 0'));
    expect('pid' in (await next.started)).toBe(true);
    expect((await next.exited).code).toBe(0);
  });
});

describe.each(runtimes)('the spawner on %s', (runtime, spawner) => {
  let names = 0;
  /** A request whose files no other runtime's run of the same test shares. */
  const requestOf = (name: string, script: string, cgroup: SpawnRequest['cgroup'] = null) =>
    request(`${runtime}-${name}-${names++}`, script, cgroup);

  async function run(name: string, script: string) {
    const asked = requestOf(name, script);
    const paths = { stdoutPath: asked.stdoutPath, stderrPath: asked.stderrPath };
    const command = spawner.run(asked);
    expect('pid' in (await command.started)).toBe(true);
    expect((await command.exited).code).toBe(0);
    const output = await command.output;
    expect(output).toMatchObject({ truncated: false, writeError: null });
    return { ...paths, output };
  }

  describe('Spawner output capture', () => {
    it('makes no file for a stream the command wrote nothing to', async () => {
      const { stdoutPath, stderrPath } = await run('quiet', 'exit 0');
      expect(existsSync(stdoutPath)).toBe(false);
      expect(existsSync(stderrPath)).toBe(false);
    });

    it('writes each stream that carried bytes, and only that one', async () => {
      const { stdoutPath, stderrPath } = await run('stdout-only', 'echo out');
      expect(readFileSync(stdoutPath, 'utf8')).toBe('out\n');
      expect(existsSync(stderrPath)).toBe(false);
      const both = await run('both', 'echo out; echo err >&2');
      expect(readFileSync(both.stdoutPath, 'utf8')).toBe('out\n');
      expect(readFileSync(both.stderrPath, 'utf8')).toBe('err\n');
    });

    it('reports how many bytes it wrote into each file', async () => {
      expect((await run('quiet-count', 'exit 0')).output).toMatchObject({ stdoutBytes: 0, stderrBytes: 0 });
      expect((await run('counted', 'echo out; echo error >&2')).output).toMatchObject({
        stdoutBytes: 4,
        stderrBytes: 6,
      });
    });

    it('tells the exit and the output in one message when the pipes closed first', async () => {
      const messages: Array<{ type: string; id: number; output?: unknown }> = [];
      const started = spawner.run(requestOf('closed-first', 'exec >&- 2>&-; sleep 0.5'));
      const child = (spawner as unknown as { child: import('node:child_process').ChildProcess }).child;
      const listen = (message: { type: string; id: number; output?: unknown }) => messages.push(message);
      child.on('message', listen);
      expect((await started.exited).code).toBe(0);
      expect(await started.output).toMatchObject({ stdoutBytes: 0, stderrBytes: 0 });
      child.off('message', listen);
      expect(messages.map((m) => m.type)).toEqual(['started', 'exit']);
      expect(messages[1]!.output).toMatchObject({ truncated: false, stdoutBytes: 0 });
    });

    it('cuts the two streams together at the bound', async () => {
      const asked = requestOf('big', 'head -c 4000 /dev/zero');
      const stdoutPath = asked.stdoutPath;
      const command = spawner.run(asked);
      expect(await command.output).toEqual({ truncated: true, writeError: null, stdoutBytes: 1024, stderrBytes: 0 });
      expect(readFileSync(stdoutPath).byteLength).toBe(1024);
    });
  });

  describe('Spawner cgroup moves', () => {
    // Regular files stand in for the cgroup files here (the runner's suite uses real cgroups): what the spawner
    // writes into them is what it would have asked the kernel.
    it('keeps writing itself into its home cgroup after starting a command there, so the next move is cheap', async () => {
      const enter = join(dir, `${runtime}-enter-tasks`);
      const home = join(dir, `${runtime}-home-tasks`);
      writeFileSync(enter, '');
      writeFileSync(home, '');
      const command = spawner.run(requestOf('moves', 'exit 0', { enter: [enter], leave: [home] }));
      const started = await command.started;
      expect('pid' in started).toBe(true);
      await command.exited;
      await command.output;
      const spawnerPid = readFileSync(enter, 'utf8');
      expect(spawnerPid).toMatch(/^\d+$/);
      // Emptied now that the command has ended and nothing else is asked: the spawner writes its pid there again
      // (each write truncates the file first, so a read may catch it empty: the watch waits for the pid).
      writeFileSync(home, '');
      await new Promise<void>((resolve) => {
        const check = () => {
          if (readFileSync(home, 'utf8') !== spawnerPid) return;
          watcher.close();
          resolve();
        };
        const watcher = watch(home, check);
        check();
      });
    });
  });

  describe('the spawner process', () => {
    it('dies without taking the executor with it, and the next command gets a new one', async () => {
      await run('before-death', 'exit 0');
      const first = (spawner as unknown as { child: ChildProcess }).child;
      first.kill('SIGKILL');
      // Dead (a zombie) before this turn of the event loop ends, so the executor has not heard of it yet: the next
      // command is sent down a channel nobody reads any more (EPIPE).
      const deadline = Date.now() + 5_000;
      while (!/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${first.pid}/stat`, 'utf8')))
        if (Date.now() > deadline) throw new Error('the spawner did not die within 5 s');
      const orphaned = spawner.run(requestOf('at-death', 'exit 0'));
      const started = await orphaned.started;
      if ('error' in started) expect(started.error.code).toBe('ESPAWNER');
      await orphaned.output;
      await run('after-death', 'exit 0');
      expect((spawner as unknown as { child: ChildProcess }).child).not.toBe(first);
    });

    it('runs on its runtime (on Node without V8 background threads, so that a fork copies and faults in less)', async () => {
      // The command's parent is the spawner itself.
      const { stdoutPath } = await run('parent', 'readlink /proc/$PPID/exe; tr "\\0" " " < /proc/$PPID/cmdline');
      const [exe, commandLine] = readFileSync(stdoutPath, 'utf8').split('\n');
      if (runtime === 'Bun') expect(exe).toBe(realpathSync(bun!));
      else {
        expect(exe).toBe(realpathSync(process.execPath));
        expect(commandLine!.split(' ')).toContain('--single-threaded');
      }
    });
  });
});
