// Every bad input Execute can meet, one test each, against a real executor: each gets a clear answer, nothing is
// left running, and nothing lands in the action cache.
import { create, toBinary } from '@bufbuild/protobuf';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../../executor/reapi/grpc-status.ts';
import {
  ActionSchema,
  DigestSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { failUnlessRoot, needsRoot } from '../../helpers/tools.ts';
import {
  actionLeftovers,
  codeOf,
  digestOf,
  drain,
  randomBytes,
  reachableTempDir,
  startTestServer,
  type TestServer,
} from '../helpers.ts';
import { ActionFixture, missingSubjects } from './fixture.ts';

describe('Execute with bad input', () => {
  let server: TestServer;
  let fx: ActionFixture;

  beforeAll(async () => {
    server = await startTestServer();
    fx = new ActionFixture(server.clients);
  });
  afterAll(() => server?.stop());

  const notCached = async (actionDigest: Parameters<ActionFixture['execute']>[0]) =>
    expect((await codeOf(server.clients.ac.getActionResult({ actionDigest }))).code).toBe(Code.NOT_FOUND);

  it('missing input blobs: FAILED_PRECONDITION listing every one as MISSING blobs/{hash}/{size}', async () => {
    const absent = [digestOf('never uploaded 1'), digestOf('never uploaded 2')];
    const subdir = digestOf('a Directory nobody uploaded');
    const inputRoot = await fx.directory({
      files: [
        { name: 'a', digest: absent[0] },
        { name: 'b', digest: absent[1] },
      ],
      directories: [{ name: 'sub', digest: subdir }],
    });
    const actionDigest = await fx.action({ inputRoot, command: { arguments: ['/bin/true'] } });
    const { response } = await fx.execute(actionDigest);
    expect(response.status?.code).toBe(Code.FAILED_PRECONDITION);
    expect(missingSubjects(response).sort()).toEqual(
      [...absent, subdir].map((d) => `MISSING blobs/${d.hash}/${d.sizeBytes}`).sort(),
    );
    await notCached(actionDigest);
  });

  it('inputs another instance holds are still missing here, after an action there ran over them', async () => {
    // The worker remembers what it saw in each instance's CAS and caches input files for everyone: neither may let
    // one instance's action run over a file only another instance was given.
    const secret = 'only team-a uploaded this\n';
    const teamA = new ActionFixture(server.clients, 'team-a');
    const teamB = new ActionFixture(server.clients, 'team-b');
    const inputRoot = await teamA.tree({ 'secret.txt': secret });
    const ranA = await teamA.execute(
      await teamA.action({ inputRoot, command: { arguments: ['/bin/cat', 'secret.txt'] } }),
    );
    expect(ranA.response.result!.exitCode).toBe(0);
    // team-b knows the digests, uploads the Directory naming the file, but never the file itself.
    await teamB.directory({ files: [{ name: 'secret.txt', digest: create(DigestSchema, digestOf(secret)) }] });
    const { response } = await teamB.execute(
      await teamB.action({ inputRoot, command: { arguments: ['/bin/cat', 'secret.txt'] } }),
    );
    expect(response.status?.code).toBe(Code.FAILED_PRECONDITION);
    expect(missingSubjects(response)).toEqual([`MISSING blobs/${digestOf(secret).hash}/${secret.length}`]);
  });

  it('a missing Action or Command is FAILED_PRECONDITION with its digest, so the client uploads it again', async () => {
    const action = create(DigestSchema, digestOf('no such action'));
    expect(missingSubjects((await fx.execute(action)).response)).toEqual([
      `MISSING blobs/${action.hash}/${action.sizeBytes}`,
    ]);
    const command = digestOf('no such command');
    const [withoutCommand] = await fx.upload(
      toBinary(ActionSchema, create(ActionSchema, { commandDigest: command, inputRootDigest: await fx.directory({}) })),
    );
    expect(missingSubjects((await fx.execute(withoutCommand!)).response)).toEqual([
      `MISSING blobs/${command.hash}/${command.sizeBytes}`,
    ]);
  });

  it('input names that escape the root (..) are INVALID_ARGUMENT', async () => {
    const [file] = await fx.upload(Buffer.from('x'));
    const inputRoot = await fx.directory({ files: [{ name: '..', digest: file }] });
    const { response } = await fx.execute(await fx.action({ inputRoot, command: { arguments: ['/bin/true'] } }));
    expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(response.status?.message).toContain('..');
  });

  it('an input symlink to an absolute path or out of the root is INVALID_ARGUMENT', async () => {
    for (const target of ['/etc/passwd', '../../outside']) {
      const inputRoot = await fx.tree({ dir: { link: { symlink: target } } });
      const { response } = await fx.execute(await fx.action({ inputRoot, command: { arguments: ['/bin/true'] } }));
      expect(response.status?.code, target).toBe(Code.INVALID_ARGUMENT);
    }
  });

  it('output paths that escape the root are INVALID_ARGUMENT, and the command never runs', async () => {
    for (const output of ['../../escape.txt', '/tmp/absolute.txt']) {
      const { response } = await fx.execute(
        await fx.action({ command: { arguments: ['/bin/sh', '-c', 'exit 0'], outputFiles: [output] } }),
      );
      expect(response.status?.code, output).toBe(Code.INVALID_ARGUMENT);
      expect(response.result).toBeUndefined();
    }
  });

  it('a malformed Command, an empty argv and a malformed Directory are INVALID_ARGUMENT', async () => {
    const [garbage] = await fx.upload(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]));
    const [action] = await fx.upload(
      toBinary(ActionSchema, create(ActionSchema, { commandDigest: garbage, inputRootDigest: await fx.directory({}) })),
    );
    const malformed = await codeOf(drain(server.clients.execution.execute({ actionDigest: action })));
    expect(malformed.code).toBe(Code.INVALID_ARGUMENT);
    expect(malformed.details).toContain('Command');

    const empty = await codeOf(
      drain(server.clients.execution.execute({ actionDigest: await fx.action({ command: { arguments: [] } }) })),
    );
    expect(empty.code).toBe(Code.INVALID_ARGUMENT);

    const [notADirectory] = await fx.upload(Buffer.from([0x0a, 0xff, 0xff]));
    const { response } = await fx.execute(
      await fx.action({ inputRoot: notADirectory, command: { arguments: ['/bin/true'] } }),
    );
    expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('an output symlink pointing outside the root is stored as a symlink, never followed', async () => {
    const { response } = await fx.execute(
      await fx.action({
        command: { arguments: ['/bin/sh', '-c', 'ln -s /etc/passwd out'], outputFiles: ['out'], outputPaths: ['out'] },
      }),
    );
    expect(response.status?.code ?? 0).toBe(Code.OK);
    const symlinks = [...response.result!.outputSymlinks, ...response.result!.outputFileSymlinks];
    expect(symlinks.map((s) => [s.path, s.target])).toContainEqual(['out', '/etc/passwd']);
    expect(response.result!.outputFiles).toEqual([]);
  });

  it('a command that cannot be started: exit 127 and a clear message on stderr', async () => {
    const actionDigest = await fx.action({ command: { arguments: ['./no-such-program', 'x'] } });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.exitCode).toBe(127);
    expect((await fx.read(response.result!.stderrDigest)).toString()).toMatch(
      /cannot start "\.\/no-such-program": no such file/,
    );
    expect(response.message).toContain('cannot start');
    await notCached(actionDigest);
  });

  it('a command killed by a signal reports 128+N and names the signal', async () => {
    const actionDigest = await fx.action({ command: { arguments: ['/bin/sh', '-c', 'kill -KILL $$'] } });
    const { response } = await fx.execute(actionDigest);
    expect(response.result!.exitCode).toBe(137);
    expect(response.message).toContain('SIGKILL');
    await notCached(actionDigest);
  });

  it('an Action.timeout beyond the server maximum is capped', async () => {
    const capped = await startTestServer({ args: ['--action-timeout', '1s', '--max-action-timeout', '1s'] });
    try {
      const cfx = new ActionFixture(capped.clients);
      const { response } = await cfx.execute(
        await cfx.action({ timeoutSeconds: 3600, command: { arguments: ['/bin/sleep', '30'] } }),
      );
      expect(response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    } finally {
      await capped.stop();
    }
  });
});

// A full work disk needs a small tmpfs, which needs root; CI runs as root, so there it must run.
const MOUNTS = 'the full-work-disk test mounts a tmpfs';

describe.runIf(needsRoot(MOUNTS))('a full work disk', () => {
  beforeAll(() => failUnlessRoot(MOUNTS));

  it('answers RESOURCE_EXHAUSTED, leaves no action directory behind, and the next action runs', async () => {
    const dir = reachableTempDir('larder-full-work-');
    const mount = join(dir, 'small');
    mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', mount]);
    const server = await startTestServer({ args: ['--work-dir', mount] });
    try {
      const fx = new ActionFixture(server.clients);
      const inputRoot = await fx.tree({ 'big.bin': { content: randomBytes(3 << 20) } });
      const { response } = await fx.execute(await fx.action({ inputRoot, command: { arguments: ['/bin/true'] } }));
      expect(response.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
      expect(response.status?.message).toMatch(/full/);
      expect(actionLeftovers(mount)).toEqual([]);
      const ok = await fx.execute(await fx.action({ command: { arguments: ['/bin/sh', '-c', 'echo fine'] } }));
      expect(ok.response.result!.exitCode).toBe(0);
    } finally {
      await server.stop();
      execFileSync('umount', [mount]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
