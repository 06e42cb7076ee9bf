// Execute, WaitExecution and Operations against a real in-process executor with its embedded worker and the
// local runner: commands really run, as the unprivileged user when the suite runs as root.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecutionStage_Value } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import { actionLeftovers, codeOf, startTestServer, type TestServer } from '../helpers.ts';
import { ancestry, markedProcesses, newMark } from '../../helpers/marked-processes.ts';
import { ActionFixture, finalResponse, metadataOf } from './fixture.ts';
import { failUnlessRoot, needsRoot } from '../../helpers/tools.ts';

const SH = '/bin/sh';

/** Resolves once `condition` holds, checking on every turn of the event loop (bounded by the test's timeout). */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}
const PER_SLOT_UIDS = 'actions run as a uid of their own per slot only when the server is root';

describe('Execute on the embedded worker', () => {
  let server: TestServer;
  let fx: ActionFixture;
  /** A folder any user may write, for commands that report their process ids. */
  let shared: string;

  beforeAll(async () => {
    server = await startTestServer({ args: ['--concurrency', '4'], keepaliveMs: 100 });
    fx = new ActionFixture(server.clients);
    shared = mkdtempSync(join(tmpdir(), 'larder-exec-shared-'));
    chmodSync(shared, 0o777);
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(shared, { recursive: true, force: true });
  });

  const executed = () => server.executor.workers.reduce((sum, w) => sum + w.executed, 0);

  it('advertises execution in GetCapabilities', async () => {
    const caps = await server.clients.capabilities.getCapabilities({});
    expect(caps.executionCapabilities?.execEnabled).toBe(true);
    expect(caps.executionCapabilities?.digestFunctions).toContain(1); // SHA256
    expect(caps.executionCapabilities?.executionPriorityCapabilities?.priorities.length).toBe(1);
  });

  it('runs a command: stages inputs, streams QUEUED/EXECUTING/COMPLETED, uploads outputs, writes the action cache', async () => {
    const inputRoot = await fx.tree({
      src: { 'in.txt': 'hello input\n', 'tool.sh': { content: '#!/bin/sh\necho tool ran\n', executable: true } },
    });
    const actionDigest = await fx.action({
      inputRoot,
      command: {
        arguments: [
          SH,
          '-c',
          'src/tool.sh; cat src/in.txt >&2; mkdir -p out/dir/sub; tr a-z A-Z < src/in.txt > out/upper.txt; echo nested > out/dir/sub/n.txt; printf "#!/bin/sh\\n" > out/dir/x.sh; chmod +x out/dir/x.sh; ln -s ../upper.txt out/dir/link',
        ],
        outputFiles: ['out/upper.txt'],
        outputDirectories: ['out/dir'],
      },
    });
    const { operations, response } = await fx.execute(actionDigest);
    expect(response.status?.code ?? 0).toBe(Code.OK);
    expect(response.cachedResult).toBe(false);
    const stages = operations.map((op) => metadataOf(op).stage);
    expect(stages.at(-1)).toBe(ExecutionStage_Value.COMPLETED);
    const midway = [ExecutionStage_Value.QUEUED, ExecutionStage_Value.EXECUTING];
    expect(stages.slice(0, -1).filter((s) => !midway.includes(s))).toEqual([]);
    const result = response.result!;
    expect(result.exitCode).toBe(0);
    expect((await fx.read(result.stdoutDigest)).toString()).toBe('tool ran\n');
    expect((await fx.read(result.stderrDigest)).toString()).toBe('hello input\n');
    expect(result.outputFiles.map((f) => f.path)).toEqual(['out/upper.txt']);
    expect((await fx.read(result.outputFiles[0]!.digest)).toString()).toBe('HELLO INPUT\n');
    expect(result.outputDirectories.map((d) => d.path)).toEqual(['out/dir']);
    const metadata = result.executionMetadata!;
    expect(metadata.worker).toMatch(/\/0\/0$/);
    const order = [
      metadata.queuedTimestamp,
      metadata.workerStartTimestamp,
      metadata.inputFetchStartTimestamp,
      metadata.inputFetchCompletedTimestamp,
      metadata.executionStartTimestamp,
      metadata.executionCompletedTimestamp,
      metadata.outputUploadStartTimestamp,
      metadata.outputUploadCompletedTimestamp,
      metadata.workerCompletedTimestamp,
    ].map((t) => Number(t!.seconds) * 1e9 + t!.nanos);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    // The worker's instants are finer than milliseconds: a trivial action's phases last one or two.
    const workerInstants = [
      metadata.workerStartTimestamp,
      metadata.inputFetchStartTimestamp,
      metadata.executionStartTimestamp,
      metadata.executionCompletedTimestamp,
      metadata.workerCompletedTimestamp,
    ];
    expect(workerInstants.filter((t) => t!.nanos % 1e6 !== 0).length).toBeGreaterThan(0);
    // Written to the action cache: GetActionResult hits, and a second Execute is answered from it.
    const cached = await server.clients.ac.getActionResult({ actionDigest });
    expect(cached.exitCode).toBe(0);
    const before = executed();
    const again = await fx.execute(actionDigest);
    expect(again.response.cachedResult).toBe(true);
    expect(again.operations).toHaveLength(1);
    expect(executed()).toBe(before);
    // skip_cache_lookup runs it again.
    const fresh = await fx.execute(actionDigest, { skipCacheLookup: true });
    expect(fresh.response.cachedResult).toBe(false);
    expect(executed()).toBe(before + 1);
  });

  it('gives the command exactly its environment, nothing of the server', async () => {
    const actionDigest = await fx.action({
      command: {
        arguments: ['/usr/bin/env'],
        environmentVariables: [
          { name: 'A', value: '1' },
          { name: 'B', value: 'two words' },
        ],
      },
    });
    const { response } = await fx.execute(actionDigest);
    // The sandbox (bubblewrap) sets PWD to the working directory, as a shell would; nothing else is added.
    const lines = (await fx.read(response.result!.stdoutDigest)).toString().trim().split('\n');
    expect(lines.filter((line) => !line.startsWith('PWD=/'))).toEqual(['A=1', 'B=two words']);
    expect(lines.filter((line) => line.startsWith('PWD=')).length).toBeLessThanOrEqual(1);
  });

  it.runIf(needsRoot(PER_SLOT_UIDS))('runs commands as a uid of its own per slot when the server is root', async () => {
    failUnlessRoot(PER_SLOT_UIDS);
    const actionDigest = await fx.action({
      command: { arguments: [SH, '-c', 'sleep 0.3; /usr/bin/id -u'] },
    });
    const others = await Promise.all(
      [1, 2, 3].map(async (n) =>
        fx.action({ salt: `uid ${n}`, command: { arguments: [SH, '-c', 'sleep 0.3; /usr/bin/id -u'] } }),
      ),
    );
    const uids = await Promise.all(
      [actionDigest, ...others].map(async (digest) => {
        const { response } = await fx.execute(digest);
        return Number((await fx.read(response.result!.stdoutDigest)).toString().trim());
      }),
    );
    // Four at once on four slots: four different uids, all from the default --run-as-uids range.
    expect(new Set(uids).size).toBe(4);
    for (const uid of uids) expect(uid).toBeGreaterThanOrEqual(1_900_000_000);
  });

  it('a failing command is an ordinary result: exit code and stderr, status OK, never cached', async () => {
    const actionDigest = await fx.action({ command: { arguments: [SH, '-c', 'echo broken >&2; exit 3'] } });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code ?? 0).toBe(Code.OK);
    expect(response.result!.exitCode).toBe(3);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toBe('broken\n');
    expect((await codeOf(server.clients.ac.getActionResult({ actionDigest }))).code).toBe(Code.NOT_FOUND);
  });

  it('20 concurrent Executes of one action run it once, and all get the result', async () => {
    const actionDigest = await fx.action({ command: { arguments: [SH, '-c', 'sleep 0.3; echo once'] } });
    const stats = await server.executor.scheduler!.stats();
    const before = executed();
    const runs = await Promise.all(Array.from({ length: 20 }, () => fx.execute(actionDigest)));
    for (const run of runs) expect((await fx.read(run.response.result!.stdoutDigest)).toString()).toBe('once\n');
    const after = await server.executor.scheduler!.stats();
    expect(after.submitted - stats.submitted).toBe(1);
    expect(after.merged - stats.merged).toBe(19);
    expect(executed() - before).toBe(1);
  });

  it('do_not_cache actions are neither merged nor cached', async () => {
    const actionDigest = await fx.action({
      doNotCache: true,
      command: { arguments: [SH, '-c', 'sleep 0.2; echo $$'] },
    });
    const before = executed();
    const [a, b] = await Promise.all([fx.execute(actionDigest), fx.execute(actionDigest)]);
    expect(executed() - before).toBe(2);
    expect(a.response.result!.exitCode).toBe(0);
    expect(b.response.result!.exitCode).toBe(0);
    expect((await codeOf(server.clients.ac.getActionResult({ actionDigest }))).code).toBe(Code.NOT_FOUND);
  });

  it('a timed-out action is killed with everything it started and reported as DEADLINE_EXCEEDED', async () => {
    const mark = newMark('timeout');
    const actionDigest = await fx.action({
      timeoutSeconds: 1,
      command: {
        arguments: [SH, '-c', `${SH} -c 'sleep 60; :' ${mark}-a & ${SH} -c 'sleep 60; :' ${mark}-b & wait`],
      },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    // Both background shells are gone by the time the response is sent.
    expect(markedProcesses(mark)).toEqual([]);
    expect((await codeOf(server.clients.ac.getActionResult({ actionDigest }))).code).toBe(Code.NOT_FOUND);
  });

  it('background processes a command leaves behind are killed when it exits, setsid or not', async () => {
    const mark = newMark('leftover');
    const actionDigest = await fx.action({
      command: {
        arguments: [
          SH,
          '-c',
          `${SH} -c 'sleep 60; :' ${mark}-plain > /dev/null 2>&1 & ` +
            `setsid ${SH} -c 'sleep 60; :' ${mark}-setsid > /dev/null 2>&1 & ` +
            `( ( ${SH} -c 'sleep 60; :' ${mark}-double > /dev/null 2>&1 & ) & ); echo started`,
        ],
      },
    });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.exitCode).toBe(0);
    expect((await fx.read(response.result!.stdoutDigest)).toString()).toBe('started\n');
    expect(markedProcesses(mark)).toEqual([]);
  });

  it('a client that disconnects can collect the result with WaitExecution; the run is not cancelled', async () => {
    const actionDigest = await fx.action({ command: { arguments: [SH, '-c', 'sleep 0.5; echo survived'] } });
    let name = '';
    for await (const operation of server.clients.execution.execute({ actionDigest })) {
      name = operation.name;
      break; // leaving the loop cancels the call
    }
    expect(name).toMatch(/^operations\//);
    const operations = [];
    for await (const operation of server.clients.execution.waitExecution({ name })) operations.push(operation);
    const response = finalResponse(operations);
    expect((await fx.read(response.result!.stdoutDigest)).toString()).toBe('survived\n');
    expect((await server.clients.ac.getActionResult({ actionDigest })).exitCode).toBe(0);
    // GetOperation knows it too, done.
    expect((await server.clients.operations.getOperation({ name })).done).toBe(true);
  });

  it('keeps the stream of a long action alive with periodic updates', async () => {
    const { operations } = await fx.execute(await fx.action({ command: { arguments: [SH, '-c', 'sleep 1'] } }));
    // One update at queueing, one when it starts, then one every 100 ms while it runs, then the result.
    expect(operations.length).toBeGreaterThanOrEqual(6);
    expect(operations.slice(0, -1).map((op) => op.done)).not.toContain(true);
  });

  it('inlines stdout and stderr when the Execute request asks', async () => {
    const actionDigest = await fx.action({ command: { arguments: [SH, '-c', 'echo out; echo err >&2'] } });
    const plain = await fx.execute(actionDigest);
    expect(plain.response.result!.stdoutRaw.byteLength).toBe(0);
    const inlined = await fx.execute(actionDigest, { skipCacheLookup: true, inlineStdout: true, inlineStderr: true });
    expect(Buffer.from(inlined.response.result!.stdoutRaw).toString()).toBe('out\n');
    expect(Buffer.from(inlined.response.result!.stderrRaw).toString()).toBe('err\n');
    const cached = await fx.execute(actionDigest, { inlineStdout: true });
    expect(cached.response.cachedResult).toBe(true);
    expect(Buffer.from(cached.response.result!.stdoutRaw).toString()).toBe('out\n');
  });

  it('starts commands from the small spawner process, not from the executor itself', async () => {
    /** The spawner a running, marked action descends from (its sandbox in between), by walking up from it. */
    const spawnerOf = async (mark: string) => {
      await waitFor(() => markedProcesses(mark).length > 0);
      const chain = ancestry(markedProcesses(mark)[0]!);
      const spawner = chain.find((p) => p.cmdline.includes('spawner-process.mjs'));
      expect(spawner, JSON.stringify(chain)).toBeDefined();
      // The executor (this test's process) is the spawner's parent, never the action's.
      expect(chain.findIndex((p) => p.pid === process.pid)).toBeGreaterThan(chain.indexOf(spawner!));
      return spawner!.pid;
    };
    const mark = newMark('spawner');
    const running = fx.execute(await fx.action({ command: { arguments: [SH, '-c', 'sleep 5; :', mark] } }));
    const parent = await spawnerOf(mark);
    expect(parent).not.toBe(process.pid);
    // A spawner that dies fails the actions it was running, and the next action gets a new one.
    process.kill(parent, 'SIGKILL');
    // The kill may land before or after the spawner reported the command started: 137 (killed with it) or
    // 127 ("cannot start": the spawner died first). Either way the action fails, and nothing hangs.
    const killed = (await running).response;
    expect([127, 137]).toContain(killed.result!.exitCode);
    await waitFor(() => markedProcesses(mark).length === 0);
    const next = newMark('spawner-after');
    const after = fx.execute(
      await fx.action({ salt: 'after the spawner died', command: { arguments: [SH, '-c', 'sleep 0.5; :', next] } }),
    );
    expect(await spawnerOf(next)).not.toBe(parent);
    expect((await after).response.result!.exitCode).toBe(0);
  });

  it('removes every action directory when its action is done: what is left are empty spares', () => {
    expect(actionLeftovers(join(server.dir, 'work'))).toEqual([]);
    expect(readdirSync(join(server.dir, 'work', 'actions')).length).toBeLessThanOrEqual(4);
  });

  it('WaitExecution and GetOperation of an unknown name are NOT_FOUND', async () => {
    const stream = server.clients.execution.waitExecution({ name: 'operations/nope' });
    expect(
      (
        await codeOf(
          (async () => {
            for await (const _ of stream);
          })(),
        )
      ).code,
    ).toBe(Code.NOT_FOUND);
    expect((await codeOf(server.clients.operations.getOperation({ name: 'operations/nope' }))).code).toBe(
      Code.NOT_FOUND,
    );
  });

  it('CancelOperation stops a running action', async () => {
    const actionDigest = await fx.action({ command: { arguments: [SH, '-c', 'sleep 60'] } });
    const stream = server.clients.execution.execute({ actionDigest })[Symbol.asyncIterator]();
    const first = (await stream.next()).value!;
    await server.clients.operations.cancelOperation({ name: first.name });
    const rest = [first];
    for (let next = await stream.next(); !next.done; next = await stream.next()) rest.push(next.value);
    expect(finalResponse(rest).status?.code).toBe(Code.CANCELLED);
  });
});

describe('the work folder', () => {
  it("moves an action's folder out before answering and deletes it before the slot takes the next action", async () => {
    const server = await startTestServer({ args: ['--concurrency', '1'] });
    try {
      const fx = new ActionFixture(server.clients);
      const workDir = join(server.dir, 'work');
      const inputRoot = await fx.tree(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`in-${i}`, `${i}`])));
      for (let i = 0; i < 5; i++) {
        const { response } = await fx.execute(
          await fx.action({ inputRoot, salt: `removed-${i}`, command: { arguments: ['/bin/sh', '-c', 'echo out'] } }),
        );
        expect(response.result!.exitCode).toBe(0);
        // Nothing of the action is left among its folders: only spares made ahead, empty.
        expect(actionLeftovers(workDir)).toEqual([]);
        // One slot: this action's folder may still be waiting here, but none of the actions before it.
        expect(readdirSync(join(workDir, 'removed')).length).toBeLessThanOrEqual(1);
      }
    } finally {
      await server.stop();
    }
  });

  it('keeps a few action folders made ahead: empty, only root may write in them (0711, exec root 0700)', async () => {
    const server = await startTestServer({ args: ['--concurrency', '1'] });
    try {
      const fx = new ActionFixture(server.clients);
      const actions = join(server.dir, 'work', 'actions');
      const { response } = await fx.execute(await fx.action({ command: { arguments: ['/bin/true'] } }));
      expect(response.result!.exitCode).toBe(0);
      // Spares are made on the file-system thread while actions run: wait for the first whole one.
      const whole = () => readdirSync(actions).filter((d) => existsSync(join(actions, d, 'root')));
      await waitFor(() => whole().length > 0);
      expect(readdirSync(actions).length).toBeLessThanOrEqual(4);
      for (const spare of whole()) {
        const folder = statSync(join(actions, spare));
        const root = statSync(join(actions, spare, 'root'));
        expect([folder.mode & 0o777, root.mode & 0o777]).toEqual([0o711, 0o700]);
        expect([folder.uid, root.uid]).toEqual([process.getuid!(), process.getuid!()]);
        expect(readdirSync(join(actions, spare))).toEqual(['root']);
        expect(readdirSync(join(actions, spare, 'root'))).toEqual([]);
      }
    } finally {
      await server.stop();
    }
  });

  it("is emptied of a crashed run's action directories at start, and keeps the input cache", async () => {
    const first = await startTestServer();
    const workDir = join(first.dir, 'work');
    const fx = new ActionFixture(first.clients);
    const inputRoot = await fx.tree({ 'kept.txt': 'cached input' });
    await fx.execute(await fx.action({ inputRoot, command: { arguments: ['/bin/true'] } }));
    await first.executor.close();
    // What a crash mid-action leaves behind, or just after its answer, before its folder was deleted.
    mkdirSync(join(workDir, 'actions', 'left-behind', 'root'), { recursive: true });
    writeFileSync(join(workDir, 'actions', 'left-behind', 'root', 'junk'), 'x'.repeat(1000));
    mkdirSync(join(workDir, 'removed', 'answered', 'root'), { recursive: true });
    writeFileSync(join(workDir, 'removed', 'answered', 'root', 'junk'), 'x'.repeat(1000));
    const second = await startTestServer({ args: ['--work-dir', workDir] });
    try {
      expect(readdirSync(join(workDir, 'actions'))).toEqual([]);
      expect(readdirSync(join(workDir, 'removed'))).toEqual([]);
      expect(readdirSync(join(workDir, 'inputs')).length).toBe(1);
    } finally {
      await second.stop();
      first.clients.close();
      rmSync(first.dir, { recursive: true, force: true });
    }
  });
});
