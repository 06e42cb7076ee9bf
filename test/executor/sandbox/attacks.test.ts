// Issue 17's table, tried as an attacker would against a real `larder executor` process (as root in CI, so
// actions run as uids of their own): each test is one row, and each failed before the sandbox existed.
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { fromBinary } from '@bufbuild/protobuf';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { TreeSchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { WORKSPACE_TEMPLATE } from '../../bazel/bazel.ts';
import { markedProcesses, newMark } from '../../helpers/marked-processes.ts';
import { startRedis, type TestRedis } from '../../helpers/redis.ts';
import { ActionFixture } from '../execution/fixture.ts';
import {
  actionLeftovers,
  type Clients,
  clientsFor,
  codeOf,
  type ExecutorProcess,
  startExecutorProcess,
} from '../helpers.ts';

const SH = '/bin/sh';
const NODE = '/usr/bin/node';
const isRoot = process.getuid?.() === 0;
/** A store of each executor's own, so no result of an earlier run can answer for this one. */
const FRESH_STORE = ['--store', 'memory:256MiB'];

/** A node one-liner that tries a TCP connection and prints `connected` or the error code. */
function connectScript(port: number): string[] {
  return [
    NODE,
    '-e',
    `require('net').connect(${port}, '127.0.0.1').on('connect', () => { console.log('connected'); process.exit(0) })` +
      `.on('error', (e) => { console.log(e.code); process.exit(0) })`,
  ];
}

/**
 * Row 1's race: a victim writes out.txt, waits, then copies it to its output; meanwhile an attacker runs
 * `attack` and then tries every way to its folder (/proc/N/cwd, a search of the whole file system). Checks the
 * victim's output is its own; returns the attacker's stdout and the victim's response.
 */
async function raceTamperer(fx: ActionFixture, attack: string, victimTail = '') {
  const victim = fx.execute(
    await fx.action({
      command: {
        arguments: [SH, '-c', `echo original > out.txt; sleep 1.5; cp out.txt result.txt${victimTail}`],
        outputPaths: ['result.txt'],
      },
    }),
  );
  const attacker = await fx.execute(
    await fx.action({
      command: {
        arguments: [
          SH,
          '-c',
          `${attack}; sleep 0.5; for d in /proc/[0-9]*/cwd; do echo tampered > "$d/out.txt" 2>/dev/null; done; ` +
            'find / -xdev -name out.txt 2>/dev/null | while read f; do echo tampered > "$f" 2>/dev/null; done; ' +
            'ls /proc | grep -c "^[0-9]"',
        ],
      },
    }),
  );
  const { response } = await victim;
  expect(response.result!.exitCode).toBe(0);
  const file = response.result!.outputFiles.find((f) => f.path === 'result.txt')!;
  expect((await fx.read(file.digest)).toString()).toBe('original\n');
  return { attackOut: (await fx.read(attacker.response.result!.stdoutDigest)).toString(), victim: response };
}

/** A real executor for the describe block that calls this: started before its tests, stopped after them. */
function executorFor(start: () => Promise<ExecutorProcess>): {
  executor: ExecutorProcess;
  clients: Clients;
  fx: ActionFixture;
} {
  const running = {} as { executor: ExecutorProcess; clients: Clients; fx: ActionFixture };
  beforeAll(async () => {
    running.executor = await start();
    running.clients = clientsFor(`127.0.0.1:${running.executor.port}`);
    running.fx = new ActionFixture(running.clients);
  });
  afterAll(async () => {
    running.clients?.close();
    await running.executor?.stop();
  });
  return running;
}

describe('a sandboxed executor under attack', () => {
  const storeDir = mkdtempSync(join(tmpdir(), 'larder-attack-store-'));
  afterAll(() => rmSync(storeDir, { recursive: true, force: true }));
  const server = executorFor(() => startExecutorProcess(['--store', `disk:${storeDir}`, '--concurrency', '4']));

  it('row 1: an action cannot reach a concurrent action through /proc/*/cwd, and its cached output is its own', async () => {
    const { fx } = server;
    const { attackOut } = await raceTamperer(fx, ':');
    // A PID namespace of its own: bwrap's init, the shell and its children, nothing of anyone else.
    expect(Number(attackOut.trim().split('\n').at(-1))).toBeLessThan(8);
  });

  it('rows 2 and 3: kill -9 -1 in one action harms no other action; nothing it starts outlives it', async () => {
    const { fx } = server;
    const mark = newMark('outlive');
    const victim = fx.execute(
      await fx.action({ command: { arguments: [SH, '-c', 'sleep 1.5; echo survived'] }, salt: mark }),
    );
    const attack = await fx.execute(
      await fx.action({
        command: {
          arguments: [
            SH,
            '-c',
            `sleep 0.3; setsid ${SH} -c 'sleep 60; :' ${mark} > /dev/null 2>&1 & sleep 0.2; kill -9 -1; echo after`,
          ],
        },
      }),
    );
    // kill -1 reached only the attacker's own namespace (itself included): the victim runs on.
    expect(attack.response.status?.code ?? 0).toBe(Code.OK);
    const { response } = await victim;
    expect(response.result!.exitCode).toBe(0);
    expect((await fx.read(response.result!.stdoutDigest)).toString()).toBe('survived\n');
    expect(markedProcesses(mark)).toEqual([]);
  });

  it('row 5: an action sees neither the store nor any folder of the host outside its own', async () => {
    const { fx } = server;
    const [blob] = await fx.upload(Buffer.from('secret blob of another instance'));
    const { response } = await fx.execute(
      await fx.action({
        command: {
          arguments: [
            SH,
            '-c',
            `ls ${storeDir} 2>&1; find ${storeDir} -type f 2>/dev/null | head -1; ls /root /home 2>&1 | head -3; ` +
              'cat /etc/shadow 2>&1 | head -1; echo done',
          ],
        },
      }),
    );
    const out = (await fx.read(response.result!.stdoutDigest)).toString();
    expect(out).toContain('No such file or directory');
    expect(out).not.toContain(blob!.hash);
    expect(out).not.toMatch(/^root:/m);
    expect(out.trim()).toMatch(/done$/);
  });

  it('an action writes only its own folder: system folders are read-only, /tmp and /dev/shm its own and empty', async () => {
    const { fx } = server;
    const mark = newMark('tmp');
    const first = await fx.execute(
      await fx.action({
        command: {
          arguments: [
            SH,
            '-c',
            `echo ${mark} > /tmp/left-behind && echo ${mark} > /dev/shm/left-behind && echo wrote; ` +
              'for d in /usr /etc /bin /usr/local/bin; do touch "$d/larder-probe" 2>/dev/null && echo "WROTE $d"; done; true',
          ],
        },
      }),
    );
    expect((await fx.read(first.response.result!.stdoutDigest)).toString()).toBe('wrote\n');
    const second = await fx.execute(
      await fx.action({ command: { arguments: [SH, '-c', 'ls -A /tmp /dev/shm; cat /tmp/left-behind 2>&1; true'] } }),
    );
    const listing = (await fx.read(second.response.result!.stdoutDigest)).toString();
    expect(listing).not.toContain(mark);
    expect(listing).toContain('No such file or directory');
  });

  it("row 6: an action reaches neither the executor's port nor any other service on the host's loopback", async () => {
    const { fx, executor } = server;
    const redis: TestRedis = await startRedis();
    try {
      for (const port of [executor.port, redis.port]) {
        const { response } = await fx.execute(await fx.action({ command: { arguments: connectScript(port) } }));
        expect((await fx.read(response.result!.stdoutDigest)).toString().trim()).toBe('ECONNREFUSED');
      }
    } finally {
      await redis.stop();
    }
  });

  it('row 6: network=on is refused unless the server allows it', async () => {
    const { fx, executor } = server;
    const { response } = await fx.execute(
      await fx.action({ command: { arguments: connectScript(executor.port) }, platform: { network: 'on' } }),
    );
    expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(response.status?.message).toContain('--allow-network');
  });

  it('row 7: a 1 MiB argument is INVALID_ARGUMENT for its action alone; a neighbour runs on', async () => {
    const { fx } = server;
    const neighbour = fx.execute(await fx.action({ command: { arguments: [SH, '-c', 'sleep 1; echo fine'] } }));
    const { response } = await fx.execute(
      await fx.action({ command: { arguments: ['/bin/echo', 'x'.repeat(1024 * 1024)] } }),
    );
    expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(response.status?.message).toContain('E2BIG');
    const other = (await neighbour).response;
    expect(other.result!.exitCode).toBe(0);
    expect((await fx.read(other.result!.stdoutDigest)).toString()).toBe('fine\n');
  });

  it('a missing program is still "cannot start" (127), from inside the sandbox', async () => {
    const { fx } = server;
    const { response } = await fx.execute(await fx.action({ command: { arguments: ['./no-such-tool'] } }));
    expect(response.result!.exitCode).toBe(127);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toContain('no such file or program');
  });
});

describe('a sandboxed executor that allows the network', () => {
  let listener: Server;
  let port = 0;
  beforeAll(async () => {
    listener = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    port = (listener.address() as { port: number }).port;
  });
  afterAll(() => listener?.close());
  const server = executorFor(() => startExecutorProcess([...FRESH_STORE, '--allow-network']));

  it('gives the host network to an action that asks (network=on), and none to one that does not', async () => {
    const { fx } = server;
    const asked = await fx.execute(
      await fx.action({ command: { arguments: connectScript(port) }, platform: { network: 'on' } }),
    );
    expect((await fx.read(asked.response.result!.stdoutDigest)).toString().trim()).toBe('connected');
    const plain = await fx.execute(await fx.action({ command: { arguments: connectScript(port) } }));
    expect((await fx.read(plain.response.result!.stdoutDigest)).toString().trim()).toBe('ECONNREFUSED');
  });
});

describe.runIf(isRoot || process.env.CI === 'true')('cgroup limits of an action', () => {
  const server = executorFor(async () => {
    if (!isRoot) throw new Error('the cgroup suite needs root (CI runs as root)');
    return startExecutorProcess([...FRESH_STORE, '--action-memory', '64MiB', '--action-pids', '24']);
  });

  it('an action past --action-memory is OOM-killed, reported as 137, and not cached', async () => {
    const { fx, clients } = server;
    const actionDigest = await fx.action({
      command: { arguments: [NODE, '-e', 'const a = []; for (;;) a.push(Buffer.alloc(8e6, 1));'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.exitCode).toBe(137);
    expect(response.message).toContain('ran out of memory');
    expect((await codeOf(clients.ac.getActionResult({ actionDigest }))).code).toBe(Code.NOT_FOUND);
  });

  it('an action cannot have more processes than --action-pids', async () => {
    const { fx } = server;
    const mark = newMark('pids');
    const { response } = await fx.execute(
      await fx.action({
        command: {
          arguments: [
            SH,
            '-c',
            `i=0; while [ $i -lt 60 ]; do ${SH} -c 'sleep 5; :' ${mark} 2>/dev/null & i=$((i+1)); done 2>/dev/null; ` +
              'ls /proc | grep -c "^[0-9]"',
          ],
        },
      }),
    );
    expect(Number((await fx.read(response.result!.stdoutDigest)).toString().trim())).toBeLessThanOrEqual(24);
    expect(markedProcesses(mark)).toEqual([]);
  });
});

describe.runIf(isRoot || process.env.CI === 'true')('action cgroups, reused from one action to the next', () => {
  // Without the sandbox an action sees its cgroup's path (no cgroup namespace); one slot, so each action gets
  // the group the one before it left.
  const server = executorFor(async () => {
    if (!isRoot) throw new Error('the cgroup suite needs root (CI runs as root)');
    return startExecutorProcess([...FRESH_STORE, '--sandbox', 'off', '--concurrency', '1', '--action-memory', '64MiB']);
  });
  const memoryCgroup = async (fx: ActionFixture, salt: string) => {
    const { response } = await fx.execute(
      await fx.action({ command: { arguments: [SH, '-c', `grep memory /proc/self/cgroup # ${salt}`] } }),
    );
    expect(response.result!.exitCode).toBe(0);
    return (await fx.read(response.result!.stdoutDigest)).toString().trim();
  };

  it('runs the next action in the group the last one left, with nothing of the last one in it', async () => {
    const { fx } = server;
    const mark = newMark('cgroup-reuse');
    const first = await fx.execute(
      await fx.action({ command: { arguments: [SH, '-c', `setsid ${SH} -c 'sleep 30; :' ${mark} & echo started`] } }),
    );
    expect(first.response.result!.exitCode).toBe(0);
    // setsid left the process group: only the cgroup could catch it, and it did before the result came back.
    expect(markedProcesses(mark)).toEqual([]);
    const a = await memoryCgroup(fx, 'a');
    const b = await memoryCgroup(fx, 'b');
    expect(a).toMatch(/action-/);
    expect(b).toBe(a);
  });

  it('an OOM kill is reported for its own action only, not for the next one in the same group', async () => {
    const { fx } = server;
    const oom = await fx.execute(
      await fx.action({
        command: { arguments: [NODE, '-e', 'const a = []; for (;;) a.push(Buffer.alloc(8e6, 1));'] },
      }),
    );
    expect(oom.response.result!.exitCode).toBe(137);
    const { response } = await fx.execute(await fx.action({ command: { arguments: [SH, '-c', 'echo fine'] } }));
    expect(response.result!.exitCode).toBe(0);
    expect(response.message).toBe('');
  });
});

describe.runIf(isRoot || process.env.CI === 'true')('a full work disk', () => {
  let mountPoint: string | undefined;
  beforeAll(() => {
    if (!isRoot) throw new Error('mounting the small tmpfs needs root (CI runs as root)');
    mountPoint = mkdtempSync(join(tmpdir(), 'larder-full-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0755', 'tmpfs', mountPoint]);
    mkdirSync(join(mountPoint, 'work'));
  });
  // After hooks run last first: the executor stops before its work folder is unmounted.
  afterAll(() => {
    if (mountPoint === undefined) return;
    execFileSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });
  const server = executorFor(() => startExecutorProcess([...FRESH_STORE, '--work-dir', join(mountPoint!, 'work')]));

  it('row 9: stdout that does not fit is RESOURCE_EXHAUSTED, never an empty cached result', async () => {
    const { fx, clients } = server;
    const actionDigest = await fx.action({
      command: { arguments: [SH, '-c', 'head -c 50000000 /dev/zero; echo exit-zero >&2'] },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect((await codeOf(clients.ac.getActionResult({ actionDigest }))).code).toBe(Code.NOT_FOUND);
    // The work folder is left as it was: nothing of the action's stays behind.
    expect(actionLeftovers(join(mountPoint!, 'work'))).toEqual([]);
  });
});

describe('the input root as the file system root (BuildStream, buildbox clients)', () => {
  const server = executorFor(() => startExecutorProcess(FRESH_STORE));

  it("runs BuildStream 2's action for a trivial element in a busybox sysroot and returns hello.txt", async () => {
    const { fx } = server;
    const busybox = new Uint8Array(execFileSync('cat', ['/bin/busybox'], { maxBuffer: 64 * 1024 * 1024 }));
    const inputRoot = await fx.tree({
      bin: { busybox: { content: busybox, executable: true }, sh: { symlink: 'busybox' } },
      buildstream: { project: { element: {} } },
    });
    const { response } = await fx.execute(
      await fx.action({
        inputRoot,
        platform: { ISA: 'x86-64', OSFamily: 'linux', 'filesystem-root': 'input' },
        command: {
          arguments: ['sh', '-c', '-e', 'mkdir -p /buildstream-install\necho hello > /buildstream-install/hello.txt\n'],
          workingDirectory: 'buildstream/project/element',
          environmentVariables: [{ name: 'PATH', value: '/bin' }],
          outputDirectories: ['.', '../../../buildstream-install', '../../..'],
        },
      }),
    );
    expect(response.status?.code ?? 0, response.status?.message).toBe(Code.OK);
    expect(response.result!.exitCode, (await fx.read(response.result!.stderrDigest)).toString()).toBe(0);
    const install = response.result!.outputDirectories.find((d) => d.path === '../../../buildstream-install');
    expect(install, JSON.stringify(response.result!.outputDirectories.map((d) => d.path))).toBeDefined();
    const tree = fromBinary(TreeSchema, await fx.read(install!.treeDigest));
    const hello = tree.root!.files.find((f) => f.name === 'hello.txt');
    expect((await fx.read(hello!.digest)).toString()).toBe('hello\n');
    // The whole root as an output holds the input and what the action made: none of the sandbox's mount points.
    const whole = response.result!.outputDirectories.find((d) => d.path === '../../..');
    const root = fromBinary(TreeSchema, await fx.read(whole!.treeDigest)).root!;
    expect(root.directories.map((d) => d.name).sort()).toEqual(['bin', 'buildstream', 'buildstream-install']);
  });
});

describe.runIf(isRoot || process.env.CI === 'true')('an executor that is not root: user namespaces alone', () => {
  const NOBODY = { uid: 65534, gid: 65534 };
  const storeDir = mkdtempSync(join(tmpdir(), 'larder-unprivileged-store-'));
  afterAll(() => rmSync(storeDir, { recursive: true, force: true }));
  const server = executorFor(async () => {
    if (!isRoot) throw new Error('starting the executor as nobody needs root (CI runs as root)');
    chownSync(storeDir, NOBODY.uid, NOBODY.gid);
    return startExecutorProcess(['--store', `disk:${storeDir}`, '--concurrency', '2'], { HOME: storeDir }, NOBODY);
  });

  it('keeps concurrent actions apart and kills what they leave behind, all as one uid', async () => {
    const { fx } = server;
    const mark = newMark('unprivileged');
    const { victim } = await raceTamperer(
      fx,
      `setsid ${SH} -c 'sleep 60; :' ${mark} > /dev/null 2>&1 & ls ${storeDir} 2>/dev/null; (sleep 1; kill -9 -1) &`,
      '; id -u',
    );
    expect((await fx.read(victim.result!.stdoutDigest)).toString().trim()).toBe('65534');
    expect(markedProcesses(mark)).toEqual([]);
  });
});

describe('an executor whose host cannot sandbox', () => {
  it('refuses to start, saying why and what --sandbox off would lose', async () => {
    const failure = await startExecutorProcess([], { PATH: '/nonexistent' }).then(
      async (executor) => {
        await executor.stop();
        return '';
      },
      (err: Error) => err.message,
    );
    expect(failure).toContain('bubblewrap');
    expect(failure).toContain('--sandbox off');
  });

  it('starts with --sandbox off and says loudly what is lost', async () => {
    const executor = await startExecutorProcess(['--sandbox', 'off'], { PATH: '/nonexistent' });
    try {
      expect(executor.output()).toContain('THE ACTION SANDBOX IS OFF');
    } finally {
      await executor.stop();
    }
  });
});

describe('persistent workers of another silo', () => {
  const server = executorFor(() =>
    startExecutorProcess([...FRESH_STORE, '--persistent-workers', 'local', '--concurrency', '2']),
  );

  it('row 4: a plain action of silo A can neither find, read nor signal silo B’s warm worker', async () => {
    const { fx } = server;
    const run = newMark('silos'); // a salt: this run's actions are never answered from an earlier run's cache
    const worker = readFileSync(join(WORKSPACE_TEMPLATE, 'tools/upper_worker.js'));
    /** An action of silo B through its persistent worker; returns the id of the worker process that answered. */
    const siloB = async (name: string) => {
      const inputRoot = await fx.tree({
        tools: { 'worker.js': { content: worker, executable: true } },
        in: { [`${name}.txt`]: `secret source of silo b ${name}\n` },
        [`${name}.args`]: `in/${name}.txt\nout/${name}.TXT\n`,
      });
      const { response } = await fx.execute(
        await fx.action({
          inputRoot,
          salt: run,
          platform: { persistentWorkerKey: 'upper', persistentWorkerProtocol: 'json', 'cache-silo-key': 'silo-b' },
          command: { arguments: [NODE, 'tools/worker.js', `@${name}.args`], outputFiles: [`out/${name}.TXT`] },
        }),
      );
      expect(response.result!.exitCode).toBe(0);
      return /in process (\S+)/.exec((await fx.read(response.result!.stderrDigest)).toString())![1];
    };
    const before = await siloB('one');
    const attack = await fx.execute(
      await fx.action({
        salt: run,
        platform: { 'cache-silo-key': 'silo-a' },
        command: {
          arguments: [
            SH,
            '-c',
            'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " " | grep -c "worker[.]js"; ' +
              // Where the host keeps work folders (the system folders are read-only and hold none of it).
              'find /tmp /var /root /home /work -name "*.args" 2>/dev/null | wc -l; ' +
              'grep -rl "secret source" /tmp /var /root /home /work 2>/dev/null | wc -l; ' +
              'kill -9 -1',
          ],
        },
      }),
    );
    const [seen, argsFiles, sources] = (await fx.read(attack.response.result!.stdoutDigest))
      .toString()
      .trim()
      .split('\n')
      .map(Number);
    expect({ seen, argsFiles, sources }).toEqual({ seen: 0, argsFiles: 0, sources: 0 });
    // The same warm worker process answers silo B's next action: nothing reached it.
    expect(await siloB('two')).toBe(before);
  });
});

describe('an executor whose parent left a descriptor open', () => {
  // bash opens fd 100 without close-on-exec and becomes the executor: what a service manager or a CI runner
  // may hand over. Node itself marks only its first descriptors close-on-exec, so without larder closing it, every
  // command it starts would inherit it.
  const server = executorFor(() =>
    startExecutorProcess([...FRESH_STORE, '--persistent-workers', 'local', '--concurrency', '2'], {}, undefined, [
      '/bin/bash',
      '-c',
      'exec 100</dev/null; exec "$@"',
      'bash',
    ]),
  );

  it('hands an action no descriptor beyond stdin, stdout and stderr', async () => {
    const { fx } = server;
    const { response } = await fx.execute(
      await fx.action({
        salt: newMark('descriptors'),
        command: { arguments: [SH, '-c', 'cd /proc/self/fd && echo *'] },
      }),
    );
    expect(response.result!.exitCode).toBe(0);
    // 3: the shell's handle on the folder it lists
    expect((await fx.read(response.result!.stdoutDigest)).toString()).toBe('0 1 2 3\n');
  });

  it('hands a persistent worker none of them either', async () => {
    const { fx } = server;
    const inputRoot = await fx.tree({
      tools: {
        'worker.js': { content: readFileSync(join(WORKSPACE_TEMPLATE, 'tools/upper_worker.js')), executable: true },
      },
      'ask.args': 'descriptors\n',
    });
    const { response } = await fx.execute(
      await fx.action({
        inputRoot,
        salt: newMark('descriptors'),
        platform: { persistentWorkerKey: 'descriptors', persistentWorkerProtocol: 'json' },
        command: { arguments: [NODE, 'tools/worker.js', '@ask.args'] },
      }),
    );
    expect(response.result!.exitCode).toBe(0);
    const stderr = (await fx.read(response.result!.stderrDigest)).toString();
    const descriptors = /descriptors: ([\d ]+)/.exec(stderr)![1]!.split(' ');
    expect(descriptors).toContain('0'); // what it lists is the worker's own table
    expect(descriptors).not.toContain('100');
  });
});
