// Docker actions under attack (issue 17, item 9), against a real private engine and a real in-process executor:
// an action cannot take over a warm container's init to tamper with the next action of its silo; SysV IPC objects
// and POSIX message queues do not survive into the next action; an OOM kill inside a warm container is reported
// (exit 137) and never cached, even when the command itself exits 0; odd image names are INVALID_ARGUMENT at
// Execute, and a redirect from the engine is an error that carries its status.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { EngineError } from '../../../executor/runner/docker/index.ts';
import { codeOf, drain, startTestServer, type TestServer } from '../helpers.ts';
import { ActionFixture } from '../execution/fixture.ts';
import { dockerAvailable, startTestEngine, type TestEngine } from './engine.ts';

const haveDocker = dockerAvailable();

/**
 * x86-64 machine code, position-independent, written for this test: execve("/bin/sh", ["/bin/sh", "-c", SCRIPT],
 * NULL), and exit(0) should that fail. The strings follow it: "/bin/sh\0-c\0" then the script and a NUL.
 */
const EXECVE_SH = Buffer.concat([
  Buffer.from(
    '488d3d28000000' + // lea rdi, [rip+0x28]  -> "/bin/sh"
      '488d3529000000' + // lea rsi, [rip+0x29]  -> "-c"
      '488d1525000000' + // lea rdx, [rip+0x25]  -> the script
      '6a00525657' + // push 0; push rdx; push rsi; push rdi  (argv on the stack)
      '4889e6' + // mov rsi, rsp
      '31d2' + // xor edx, edx  (envp = NULL)
      'b83b0000000f05' + // mov eax, 59 (execve); syscall
      'b83c00000031ff0f05', // mov eax, 60 (exit); xor edi, edi; syscall
    'hex',
  ),
  Buffer.from('/bin/sh\0-c\0'),
]);

/**
 * What the hijacked process runs: a marker, then a loop of shell builtins only (no new process, so the container's
 * process list stays the same) that overwrites any out.txt in another process's working directory. Bounded.
 */
const TAMPER =
  'echo x > /dev/shm/hijacked; i=0; while [ $i -lt 200000 ]; do ' +
  'for c in /proc/[0-9]*/cwd; do [ -f $c/out.txt ] && echo tampered > $c/out.txt; done; i=$((i+1)); done';

/**
 * The attacker: find the warm container's `sleep infinity`, read where it waits in the kernel, write the payload
 * over its code through /proc/PID/mem (the `syscall` instruction is the 2 bytes before the saved pc: a stop and
 * continue restarts the sleep there), then wait (bounded) for the marker. It always exits 0, so that the container
 * would be kept warm whatever happened.
 */
const ATTACK = `
pid=$(pidof sleep)
kill -0 $pid 2>/dev/null && echo can-signal || echo cannot-signal
set -- $(cat /proc/$pid/syscall 2>/dev/null)
if [ $# -eq 9 ] && dd if=payload of=/proc/$pid/mem bs=1 seek=$(($9 - 2)) conv=notrunc 2>/dev/null &&
   kill -STOP $pid && kill -CONT $pid; then
  i=0; while [ $i -lt 100 ] && [ ! -e /dev/shm/hijacked ]; do sleep 0.05; i=$((i+1)); done
  [ -e /dev/shm/hijacked ] && echo taken-over || echo injected
else
  echo refused
fi
exit 0`;

describe.runIf(haveDocker)('docker actions under attack', () => {
  let engine: TestEngine;
  let server: TestServer;
  let fx: ActionFixture;
  let image: string;
  let salt = 0;

  beforeAll(async () => {
    engine = await startTestEngine(['busybox']);
    image = `docker://${engine.images.busybox}`;
    server = await startTestServer({
      args: ['--allow-docker', '--docker-host', engine.host, '--docker-memory', '64MiB', '--concurrency', '2'],
    });
    fx = new ActionFixture(server.clients);
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await engine?.stop();
  }, 60_000);

  /** Runs `script` with dockerReuse in one silo; returns the response, stdout after the hostname, and the hostname. */
  async function run(
    script: string,
    options: { inputs?: Record<string, string | { content: Uint8Array }>; outputs?: string[]; cache?: boolean } = {},
  ) {
    const actionDigest = await fx.action({
      salt: String(++salt),
      doNotCache: !options.cache,
      inputRoot: options.inputs === undefined ? undefined : await fx.tree(options.inputs),
      platform: { 'container-image': image, dockerReuse: 'True', 'cache-silo-key': 'attacked' },
      command: { arguments: ['/bin/sh', '-c', `hostname; ${script}`], outputFiles: options.outputs ?? [] },
    });
    const { response } = await fx.execute(actionDigest);
    if (response.result === undefined) throw new Error(`no result: ${response.status?.message}`);
    const [hostname = '', ...rest] = (await fx.read(response.result?.stdoutDigest)).toString().split('\n');
    return { actionDigest, response, hostname, stdout: rest.join('\n') };
  }

  // The payload is x86-64 code; on another architecture the attack is refused before it matters (same assertions).
  it("an action cannot take over the warm container's sleep, and the next action's output is its own", async () => {
    const payload = Buffer.concat([EXECVE_SH, Buffer.from(`${TAMPER}\0`)]);
    const attacker = await run(ATTACK, { inputs: { payload: { content: payload } } });
    expect(attacker.response.result?.exitCode).toBe(0);
    // The next action of the silo, in the same warm container, writes its output and keeps it a while (up to
    // about 2 s, ending early if it changes): long enough for a hijacked loop, which scans /proc in microseconds.
    const victim = await run(
      'echo mine > out.txt; i=0; while [ $i -lt 40 ] && [ "$(cat out.txt)" = mine ]; do sleep 0.05; i=$((i+1)); done',
      { outputs: ['out.txt'] },
    );
    expect(victim.hostname).toBe(attacker.hostname); // the same container: the attack had its chance
    const out = victim.response.result?.outputFiles.find((f) => f.path === 'out.txt');
    expect((await fx.read(out?.digest)).toString()).toBe('mine\n');
    expect(attacker.stdout).toBe('cannot-signal\nrefused\n');
  }, 30_000);

  it('SysV shared memory, message queues and semaphores, and POSIX message queues do not reach the next action', async () => {
    const maker = await run('ipcmk -M 4096 && ipcmk -Q && ipcmk -S 1 && touch /dev/mqueue/left && ls /dev/mqueue', {});
    expect(maker.response.result?.exitCode, maker.stdout).toBe(0);
    expect(maker.stdout).toMatch(/left\n$/);
    const next = await run(
      'tail -n +2 /proc/sysvipc/shm; tail -n +2 /proc/sysvipc/msg; tail -n +2 /proc/sysvipc/sem; ls -A /dev/mqueue',
    );
    expect(next.hostname).toBe(maker.hostname);
    expect(next.stdout).toBe('');
  });

  it('an OOM kill inside a warm container whose command exits 0 is exit 137, noted, not cached, and the container goes', async () => {
    const oom = await run('dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived; exit 0', { cache: true });
    expect(oom.stdout).toBe('survived\n'); // the command itself went on and exited 0
    expect(oom.response.result?.exitCode).toBe(137);
    expect((await fx.read(oom.response.result?.stderrDigest)).toString()).toMatch(/out of memory/);
    const cached = await codeOf(server.clients.ac.getActionResult({ actionDigest: oom.actionDigest }));
    expect(cached.code).toBe(Code.NOT_FOUND);
    expect((await engine.larderContainers()).map((id) => id.slice(0, 12))).not.toContain(oom.hostname);
  });

  it('image names outside Docker’s reference grammar are INVALID_ARGUMENT at Execute', async () => {
    const names = [
      '../../containers/json',
      'busybox/../../x',
      'Busybox',
      'busy box',
      'busybox:',
      'busybox:bad/tag',
      'busybox?x=1',
      'busybox#x',
      'busybox@sha256:abc',
      `${'a'.repeat(300)}:1`,
      '/busybox',
    ];
    for (const name of names) {
      const actionDigest = await fx.action({
        salt: String(++salt),
        platform: { 'container-image': `docker://${name}` },
        command: { arguments: ['/bin/true'] },
      });
      const refused = await codeOf(drain(server.clients.execution.execute({ actionDigest })));
      expect(refused.code, name).toBe(Code.INVALID_ARGUMENT);
      expect(refused.details, name).toContain('container-image');
    }
  });

  it('a redirect from the engine is an error that carries its status', async () => {
    // The engine cleans `..` out of the path and answers 301 with an empty body.
    const failure = await engine.api.call('GET', '/images/..%2F..%2Fcontainers%2Fjson/json').then(
      () => null,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(EngineError);
    expect((failure as EngineError).status).toBe(301);
    expect((failure as EngineError).message).toMatch(/301/);
  });
});
