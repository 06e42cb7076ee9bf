// Remote persistent workers on the local runner, against a real executor and real worker processes: the test
// workspace's JSON worker (with misbehaviours on request) and a protobuf worker made with @bazel/worker.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import type { Digest } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { WORKSPACE_TEMPLATE } from '../../bazel/bazel.ts';
import { REPO_ROOT } from '../../helpers/tools.ts';
import { codeOf, drain, startTestServer, type TestServer } from '../helpers.ts';
import { ActionFixture, type TreeSpec, treeOf } from './fixture.ts';

const JSON_WORKER = readFileSync(join(WORKSPACE_TEMPLATE, 'tools/upper_worker.js'));
const PROTO_WORKER = readFileSync(join(import.meta.dirname, 'workers/proto-worker.js'));
const NODE = process.execPath;

describe('remote persistent workers (local runner)', () => {
  let server: TestServer;
  let fx: ActionFixture;

  beforeAll(async () => {
    server = await startTestServer({ args: ['--persistent-workers', 'local', '--concurrency', '2'] });
    fx = new ActionFixture(server.clients);
  });
  afterAll(async () => {
    await server?.stop();
  });

  const stats = () => server.executor.persistentWorkers!.stats();

  /** An upper-casing action through `worker`: its own input file, a flag file naming it and its output. */
  async function workerAction(options: {
    worker?: Buffer;
    name: string;
    content?: string;
    directives?: string[];
    platform?: Record<string, string>;
    startup?: string[];
    env?: Record<string, string>;
    timeoutSeconds?: number;
    /** More of the input root (a tool's node_modules). */
    extra?: TreeSpec;
  }): Promise<Digest> {
    const flags = `${[`in/${options.name}.txt`, `out/${options.name}.TXT`, ...(options.directives ?? [])].join('\n')}\n`;
    const inputRoot = await fx.tree({
      tools: { 'worker.js': { content: options.worker ?? JSON_WORKER, executable: true } },
      in: { [`${options.name}.txt`]: options.content ?? `content of ${options.name}\n` },
      [`${options.name}.args`]: flags,
      ...options.extra,
    });
    return fx.action({
      inputRoot,
      timeoutSeconds: options.timeoutSeconds,
      platform: { persistentWorkerKey: 'upper-1', persistentWorkerProtocol: 'json', ...options.platform },
      command: {
        arguments: [NODE, 'tools/worker.js', ...(options.startup ?? []), `@${options.name}.args`],
        environmentVariables: Object.entries(options.env ?? {}).map(([name, value]) => ({ name, value })),
        outputFiles: [`out/${options.name}.TXT`],
      },
    });
  }

  /**
   * @bazel/worker and its one dependency as input files, as a client stages a tool's node_modules: the sandbox
   * shows an action nothing of the host beyond its system folders, so the repo's node_modules is not there.
   */
  async function workerModulesTree(): Promise<TreeSpec> {
    return {
      '@bazel': { worker: treeOf(join(REPO_ROOT, 'node_modules/@bazel/worker')) },
      'google-protobuf': treeOf(join(REPO_ROOT, 'node_modules/google-protobuf')),
    };
  }

  async function workerModules(): Promise<Digest> {
    return fx.tree(await workerModulesTree());
  }

  async function run(actionDigest: Digest) {
    const { response } = await fx.execute(actionDigest);
    return response;
  }

  it('20 actions of a worker with a 1 s start-up are served by one process', async () => {
    const before = stats();
    for (let i = 0; i < 20; i++) {
      const response = await run(await workerAction({ name: `file${i}`, startup: ['--startup-delay-ms=1000'] }));
      expect(response.status?.code ?? 0, response.status?.message).toBe(Code.OK);
      expect(response.result!.exitCode).toBe(0);
      expect((await fx.read(response.result!.outputFiles[0]!.digest)).toString()).toBe(`CONTENT OF FILE${i}\n`);
    }
    const after = stats();
    expect(after.started - before.started).toBe(1);
    expect(after.requests - before.requests).toBe(20);
  });

  it('the worker answers as a WorkResponse: its output is the action stderr, its exit code the action exit code', async () => {
    const response = await run(await workerAction({ name: 'failing', directives: ['fail'] }));
    expect(response.result!.exitCode).toBe(3);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toBe('failing on purpose\n');
  });

  it('different cache-silo-keys never share a worker process; the same key does', async () => {
    const before = stats().started;
    const pids = new Map<string, Set<string>>();
    for (const silo of ['team-a', 'team-b', 'team-a', 'team-b']) {
      const response = await run(
        await workerAction({
          name: `silo-${silo}-${pids.size}-${Math.random()}`.replace('.', ''),
          platform: { 'cache-silo-key': silo },
        }),
      );
      const pid = (await fx.read(response.result!.stderrDigest)).toString();
      pids.set(silo, (pids.get(silo) ?? new Set()).add(pid));
    }
    expect(stats().started - before).toBe(2);
    expect(pids.get('team-a')!.size).toBe(1);
    expect(pids.get('team-b')!.size).toBe(1);
    expect([...pids.get('team-a')!][0]).not.toBe([...pids.get('team-b')!][0]);
  });

  it('a worker that dies mid-request is replaced and the action retried once on a fresh one', async () => {
    const before = stats().started;
    // The marker lives in the slot's folder, which stays as it is between the two attempts of one action.
    const response = await run(
      await workerAction({
        name: 'crash',
        directives: ['crash-once:crash-marker'],
        platform: { 'cache-silo-key': 'crash' },
      }),
    );
    expect(response.result!.exitCode).toBe(0);
    expect((await fx.read(response.result!.outputFiles[0]!.digest)).toString()).toBe('CONTENT OF CRASH\n');
    expect(stats().started - before).toBe(2);
  });

  it('a worker that writes garbage is killed; twice, and the action fails with a clear message', async () => {
    const response = await run(
      await workerAction({ name: 'garbage', directives: ['garbage'], platform: { 'cache-silo-key': 'garbage' } }),
    );
    expect(response.result!.exitCode).toBe(1);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toMatch(
      /persistent worker failed twice \(.*not a JSON WorkResponse/,
    );
  });

  it('a worker that never answers is killed at the timeout: DEADLINE_EXCEEDED, and the next action gets a fresh one', async () => {
    const before = stats().started;
    const response = await run(
      await workerAction({
        name: 'hang',
        directives: ['hang'],
        timeoutSeconds: 1,
        platform: { 'cache-silo-key': 'hang' },
      }),
    );
    expect(response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    const next = await run(await workerAction({ name: 'after-hang', platform: { 'cache-silo-key': 'hang' } }));
    expect(next.result!.exitCode).toBe(0);
    expect(stats().started - before).toBe(2);
  });

  it('a new version of the tool (the start-up command line names it) gets a new worker process', async () => {
    const before = stats().started;
    const v1 = await run(await workerAction({ name: 'tool-v1', platform: { 'cache-silo-key': 'versions' } }));
    const v1again = await run(
      await workerAction({ name: 'tool-v1-again', platform: { 'cache-silo-key': 'versions' } }),
    );
    const v2 = await run(
      await workerAction({
        name: 'tool-v2',
        worker: Buffer.concat([JSON_WORKER, Buffer.from('\n// v2\n')]),
        platform: { 'cache-silo-key': 'versions' },
      }),
    );
    for (const r of [v1, v1again, v2]) expect(r.result!.exitCode).toBe(0);
    expect(stats().started - before).toBe(2);
  });

  // Bazel ≥ 6 (--experimental_remote_mark_tool_inputs) marks the tool's files and sets the key itself; the client's
  // key is the same for every action here: only the server's own key (tool digests) tells the versions apart.
  for (const [protocol, worker] of [
    ['json', JSON_WORKER],
    ['proto', PROTO_WORKER],
  ] as const) {
    it(`Bazel ≥ 6's request shape (${protocol} worker): tool inputs marked bazel_tool_input key the pool; other inputs do not`, async () => {
      const before = stats().started;
      const marked = async (name: string, tool: Buffer) => {
        const [toolDigest, input, flags] = await fx.upload(
          tool,
          Buffer.from(`marked ${name}\n`),
          Buffer.from(`in.txt\nout.txt\n`),
        );
        const inputRoot = await fx.directory({
          ...(protocol === 'proto' ? { directories: [{ name: 'node_modules', digest: await workerModules() }] } : {}),
          files: [
            { name: 'args', digest: flags },
            { name: 'in.txt', digest: input },
            {
              name: 'worker.js',
              digest: toolDigest,
              isExecutable: true,
              nodeProperties: { properties: [{ name: 'bazel_tool_input', value: '' }] },
            },
          ],
        });
        return run(
          await fx.action({
            inputRoot,
            platform: {
              persistentWorkerKey: 'client-key',
              persistentWorkerProtocol: protocol,
              'cache-silo-key': `marked-${protocol}`,
            },
            command: {
              arguments: [NODE, 'worker.js', '@args'],
              outputFiles: ['out.txt'],
            },
          }),
        );
      };
      const a = await marked('a', worker);
      const b = await marked('b', worker);
      const c = await marked('c', Buffer.concat([worker, Buffer.from('\n// changed\n')]));
      for (const r of [a, b, c]) expect(r.result!.exitCode, r.status?.message).toBe(0);
      expect((await fx.read(b.result!.outputFiles[0]!.digest)).toString()).toBe('MARKED B\n');
      expect(stats().started - before).toBe(2);
    });
  }

  it('a real protobuf worker made with @bazel/worker (length-delimited WorkRequests)', async () => {
    const before = stats();
    for (let i = 0; i < 3; i++) {
      const response = await run(
        await workerAction({
          name: `proto${i}`,
          worker: PROTO_WORKER,
          platform: { persistentWorkerProtocol: 'proto', 'cache-silo-key': 'proto' },
          extra: { node_modules: await workerModulesTree() },
        }),
      );
      expect(response.result!.exitCode, (await fx.read(response.result!.stderrDigest)).toString()).toBe(0);
      expect((await fx.read(response.result!.outputFiles[0]!.digest)).toString()).toBe(`CONTENT OF PROTO${i}\n`);
    }
    expect(stats().started - before.started).toBe(1);
  });

  it('persistentWorkerKey with a container-image but without dockerReuse is a clear error at once', async () => {
    const actionDigest = await workerAction({ name: 'no-reuse', platform: { 'container-image': 'docker://busybox' } });
    const failure = await codeOf(drain(server.clients.execution.execute({ actionDigest })));
    expect(failure.code).toBe(Code.INVALID_ARGUMENT);
    expect(failure.details).toContain('dockerReuse=True');
  });

  it('an unknown persistentWorkerProtocol is a clear error at once', async () => {
    const actionDigest = await workerAction({ name: 'bad-protocol', platform: { persistentWorkerProtocol: 'xml' } });
    const failure = await codeOf(drain(server.clients.execution.execute({ actionDigest })));
    expect(failure.code).toBe(Code.INVALID_ARGUMENT);
    expect(failure.details).toContain('persistentWorkerProtocol');
  });
});
