/**
 * Authentication and authorisation of a real `larder executor` process over a real gRPC channel, against a
 * real OpenID provider on loopback (tokens it mints) and an htpasswd file: no credentials or bad ones are
 * UNAUTHENTICATED, a reader's uploads are PERMISSION_DENIED before a byte is stored, a writer may do
 * everything, Basic works as bearer does, GetCapabilities tells each caller whether it may update the action
 * cache, health stays open, and no secret reaches the log.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import bcrypt from 'bcryptjs';
import { createHash, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizeCalls } from '../../executor/grpc/auth.ts';
import type { CallOptions } from '../../executor/grpc/client.ts';
import { checkExposure } from '../../shared/auth/exposure.ts';
import { createAccessGate } from '../../shared/auth/gate.ts';
import { parseExecutorConfig } from '../../executor/config/executor-options.ts';
import type { WriteRequestSchema } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { HealthCheckResponse_ServingStatus } from '../../shared/proto/gen/grpc/health/v1/health_pb.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { hs256WithPublicKey, signWith, signWithUnknownKey, unsigned } from '../helpers/forged-tokens.ts';
import { AUDIENCE, OTHER_AUDIENCE, type TestIdp, startIdp } from '../helpers/oidc-idp.ts';
import {
  type Clients,
  clientsFor,
  codeOf,
  digestOf,
  drain,
  type ExecutorProcess,
  randomBytes,
  sha256,
  startExecutorProcess,
  startTestServer,
} from './helpers.ts';
import { ActionFixture } from './execution/fixture.ts';
import { filesUnder } from '../helpers/files.ts';
import { bytesOf } from '../helpers/bytes.ts';

type WriteInit = MessageInitShape<typeof WriteRequestSchema>;
const MiB = 1024 * 1024;
const CLOCK_SKEW_S = 5;
const { UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, UNAVAILABLE } = grpc.status;

const bearer = (token: string) => `Bearer ${token}`;
const basic = (user: string, password: string, alphabet: 'base64' | 'base64url' = 'base64') =>
  `Basic ${Buffer.from(`${user}:${password}`).toString(alphabet)}`;
/** Call options carrying `authorization` metadata (none when undefined). */
const as = (authorization?: string): CallOptions => {
  const metadata = new grpc.Metadata();
  if (authorization !== undefined) metadata.set('authorization', authorization);
  return { metadata, timeoutMs: 15_000 };
};

/** Write requests for `data` in 1 MiB pieces: large enough that the server would record a partial upload. */
function* chunks(resourceName: string, data: Uint8Array): Generator<WriteInit> {
  for (let offset = 0; offset < data.byteLength; offset += MiB) {
    const end = Math.min(offset + MiB, data.byteLength);
    yield {
      resourceName,
      writeOffset: BigInt(offset),
      data: data.subarray(offset, end),
      finishWrite: end === data.byteLength,
    };
  }
}

/** Reads a server stream, counting the messages that arrive before it ends or fails. */
async function readOutcome(
  stream: AsyncIterable<{ data: Uint8Array }>,
): Promise<{ messages: number; code: number | null; details?: string }> {
  let messages = 0;
  try {
    for await (const _ of stream) messages++;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { messages, code: e.code, details: e.details };
  }
  return { messages, code: null };
}

describe('larder executor with OIDC and htpasswd', () => {
  const dir = tempDir('larder-executor-auth-');
  const store = join(dir.path, 'store');
  let idp: TestIdp;
  let executor: ExecutorProcess;
  let clients: Clients;
  let ciToken: string;
  let readerToken: string;
  const secrets: string[] = ['ci-password', 'bobs-password'];
  const claims = () => ({ iss: idp.issuer, aud: AUDIENCE });

  beforeAll(async () => {
    idp = await startIdp();
    const htpasswd = join(dir.path, 'htpasswd');
    const sha1 = createHash('sha1').update('bobs-password').digest('base64');
    const builderSha1 = createHash('sha1').update('builders-password').digest('base64');
    await writeFile(
      htpasswd,
      `ci:${bcrypt.hashSync('ci-password', 5)}\nbob:{SHA}${sha1}\nbuilder:{SHA}${builderSha1}\n`,
    );
    const config = join(dir.path, 'larder.json');
    await writeFile(
      config,
      JSON.stringify({
        auth: {
          oidc: {
            clockSkewSeconds: CLOCK_SKEW_S,
            jwksCooldownSeconds: 1,
            roles: { everyone: ['read'], rules: [{ claim: 'groups', value: 'ci', roles: ['write'] }] },
          },
          htpasswd: { everyone: ['read'], users: { ci: ['write'], builder: ['write', 'execute'] } },
        },
      }),
    );
    // The same flags as the edge's, and debug logging, so the log check below sees every refusal.
    executor = await startExecutorProcess([
      '--store',
      `disk:${store}`,
      '--config',
      config,
      '--oidc-issuer',
      idp.issuer,
      '--oidc-audience',
      AUDIENCE,
      '--htpasswd',
      htpasswd,
      '--log-level',
      'debug',
    ]);
    clients = clientsFor(`127.0.0.1:${executor.port}`);
    ciToken = await idp.clientCredentialsToken('ci');
    readerToken = await idp.clientCredentialsToken('reader');
    secrets.push(ciToken, readerToken);
  });

  afterAll(async () => {
    clients?.close();
    await executor?.stop();
    await idp?.close();
    dir.remove();
  });

  /** Every cache call once, each with a fresh blob or key, as `authorization`; resolves to each call's outcome. */
  async function everyCall(authorization?: string) {
    const blob = randomBytes(100, Math.floor(Math.random() * 1e9) + 1);
    const big = randomBytes(3 * MiB, Math.floor(Math.random() * 1e9) + 1);
    const digest = digestOf(blob);
    const options = as(authorization);
    const upload = `uploads/${randomUUID()}/blobs/${sha256(big)}/${big.byteLength}`;
    const outcome = (call: Promise<unknown>) =>
      call.then(
        () => ({ code: 0, details: '' }),
        (err: grpc.ServiceError) => ({ code: err.code, details: err.details }),
      );
    return {
      digests: { small: digest, big: digestOf(big), action: digestOf(`action-${randomUUID()}`) },
      upload,
      results: {
        GetCapabilities: await outcome(clients.capabilities.getCapabilities({}, options)),
        FindMissingBlobs: await outcome(clients.cas.findMissingBlobs({ blobDigests: [digest] }, options)),
        BatchReadBlobs: await outcome(clients.cas.batchReadBlobs({ digests: [digest] }, options)),
        GetTree: await outcome(drain(clients.cas.getTree({ rootDigest: digest }, options))),
        BatchUpdateBlobs: await outcome(clients.cas.batchUpdateBlobs({ requests: [{ digest, data: blob }] }, options)),
        GetActionResult: await outcome(clients.ac.getActionResult({ actionDigest: digest }, options)),
        UpdateActionResult: await outcome(
          clients.ac.updateActionResult(
            { actionDigest: digestOf(`action-${randomUUID()}`), actionResult: { exitCode: 0 } },
            options,
          ),
        ),
        Read: await outcome(drain(clients.bytestream.read({ resourceName: `blobs/${digest.hash}/100` }, options))),
        Write: await outcome(clients.bytestream.write(chunks(upload, big), options)),
        QueryWriteStatus: await outcome(clients.bytestream.queryWriteStatus({ resourceName: upload }, options)),
      },
    };
  }

  it('without credentials, every cache call is UNAUTHENTICATED with a reason, nothing is stored, and health stays open', async () => {
    const before = filesUnder(store);
    const { results } = await everyCall();
    for (const [method, result] of Object.entries(results)) {
      expect(result, method).toEqual({
        code: UNAUTHENTICATED,
        details: expect.stringMatching(/credentials are required to (read|write)/),
      });
    }
    const read = await readOutcome(clients.bytestream.read({ resourceName: `blobs/${sha256('x')}/1` }, as()));
    expect(read).toEqual({ messages: 0, code: UNAUTHENTICATED, details: 'credentials are required to read' });
    expect(filesUnder(store)).toEqual(before);
    expect((await clients.health.check({}, as())).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  const refused: Array<[string, () => Promise<string>, RegExp]> = [
    [
      'an expired token signed by the IdP',
      async () => bearer(await signWith(idp.signingKey, { ...claims(), expIn: -60 })),
      /expired/,
    ],
    [
      'a real token for another audience',
      async () => bearer(await idp.clientCredentialsToken('ci', OTHER_AUDIENCE)),
      /aud/,
    ],
    [
      'a token from another issuer',
      async () => bearer(await signWith(idp.signingKey, { ...claims(), iss: 'https://evil.example' })),
      /iss/,
    ],
    [
      'a token signed by an unknown key',
      async () => bearer(await signWithUnknownKey(claims())),
      /key the issuer does not publish/,
    ],
    ['an unsigned token (alg: none)', async () => bearer(unsigned(claims())), /algorithm|malformed/],
    [
      'an HS256 token keyed with the public key',
      async () => bearer(await hs256WithPublicKey(idp.signingKey, claims())),
      /algorithm/,
    ],
    ['garbage', async () => bearer('not.a.jwt'), /malformed/],
    ['a wrong password', async () => basic('ci', 'guess'), /wrong user name or password/],
    ['an unknown user', async () => basic('mallory', 'ci-password'), /wrong user name or password/],
    ['an unsupported scheme', async () => 'Digest username="ci"', /unsupported authorization scheme/],
  ];

  it.each(refused)(
    'refuses %s with UNAUTHENTICATED, for reads and writes alike, storing nothing',
    async (_name, make, reason) => {
      const authorization = await make();
      secrets.push(authorization);
      const before = filesUnder(store);
      const { results } = await everyCall(authorization);
      for (const method of [
        'FindMissingBlobs',
        'GetActionResult',
        'BatchUpdateBlobs',
        'UpdateActionResult',
        'Write',
      ] as const) {
        expect(results[method].code, method).toBe(UNAUTHENTICATED);
        expect(results[method].details, method).toMatch(reason);
      }
      expect(filesUnder(store)).toEqual(before);
    },
  );

  it('lets a read-only token read, refuses its uploads with PERMISSION_DENIED, and stores none of them', async () => {
    // What the reader will read, stored by the writer.
    const data = randomBytes(2 * MiB + 7, 11);
    const digest = digestOf(data);
    const action = digestOf(`read-only-${randomUUID()}`);
    await clients.bytestream.write(
      chunks(`uploads/${randomUUID()}/blobs/${digest.hash}/${data.byteLength}`, data),
      as(bearer(ciToken)),
    );
    await clients.ac.updateActionResult({ actionDigest: action, actionResult: { exitCode: 7 } }, as(bearer(ciToken)));

    const reader = as(bearer(readerToken));
    expect((await clients.cas.findMissingBlobs({ blobDigests: [digest] }, reader)).missingBlobDigests).toEqual([]);
    expect((await clients.ac.getActionResult({ actionDigest: action }, reader)).exitCode).toBe(7);
    const parts: Uint8Array[] = [];
    for await (const part of clients.bytestream.read(
      { resourceName: `blobs/${digest.hash}/${data.byteLength}` },
      reader,
    ))
      parts.push(part.data);
    expect(sha256(Buffer.concat(parts))).toBe(digest.hash);
    const small = randomBytes(64, 12);
    await clients.cas.batchUpdateBlobs({ requests: [{ digest: digestOf(small), data: small }] }, as(bearer(ciToken)));
    const batch = await clients.cas.batchReadBlobs({ digests: [digestOf(small)] }, reader);
    expect(bytesOf(batch.responses[0]!.data)).toEqual(bytesOf(small));

    const before = filesUnder(store);
    const { results, digests, upload } = await everyCall(bearer(readerToken));
    // Allowed, and answering for keys nobody stored (the reader's uploads were refused): OK or NOT_FOUND.
    for (const method of [
      'GetCapabilities',
      'FindMissingBlobs',
      'BatchReadBlobs',
      'GetTree',
      'GetActionResult',
      'Read',
    ] as const) {
      expect([0, NOT_FOUND], `${method}: ${results[method].details}`).toContain(results[method].code);
    }
    for (const method of ['BatchUpdateBlobs', 'UpdateActionResult', 'Write', 'QueryWriteStatus'] as const) {
      expect(results[method], method).toEqual({ code: PERMISSION_DENIED, details: 'reader may not write' });
    }
    expect(filesUnder(store)).toEqual(before);
    // The writer sees none of it: blobs missing, no partial upload to resume.
    const missing = await clients.cas.findMissingBlobs(
      { blobDigests: [digests.small, digests.big] },
      as(bearer(ciToken)),
    );
    expect(missing.missingBlobDigests.map((d) => d.hash).sort()).toEqual([digests.small.hash, digests.big.hash].sort());
    expect(await clients.bytestream.queryWriteStatus({ resourceName: upload }, as(bearer(ciToken)))).toMatchObject({
      committedSize: 0n,
      complete: false,
    });
  });

  it("refuses a reader's Write before reading its stream: the refusal comes while the client is still sending", async () => {
    const data = randomBytes(3 * MiB, 13);
    const name = `uploads/${randomUUID()}/blobs/${sha256(data)}/${data.byteLength}`;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // One chunk, then a stream that stays open: a server that read before deciding would wait for the rest.
    async function* stalled(): AsyncGenerator<WriteInit> {
      yield { resourceName: name, writeOffset: 0n, data: data.subarray(0, MiB), finishWrite: false };
      await held;
    }
    const before = filesUnder(store);
    const started = Date.now();
    try {
      expect(await codeOf(clients.bytestream.write(stalled(), as(bearer(readerToken))))).toEqual({
        code: PERMISSION_DENIED,
        details: 'reader may not write',
      });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      release();
    }
    expect(filesUnder(store)).toEqual(before);
    expect(await clients.bytestream.queryWriteStatus({ resourceName: name }, as(bearer(ciToken)))).toMatchObject({
      committedSize: 0n,
    });
  });

  it('lets a token with write do everything, and reads back what it wrote', async () => {
    const { results, digests, upload } = await everyCall(bearer(ciToken));
    for (const [method, result] of Object.entries(results)) {
      // GetTree and GetActionResult ask for keys nobody stored (a blob is not a Directory): NOT_FOUND is their answer.
      const allowed = ['GetTree', 'GetActionResult'].includes(method) ? [0, NOT_FOUND] : [0];
      expect(allowed, `${method}: ${result.details}`).toContain(result.code);
    }
    expect(results.Write.code).toBe(0);
    expect(await clients.bytestream.queryWriteStatus({ resourceName: upload }, as(bearer(ciToken)))).toMatchObject({
      complete: true,
    });
    const found = await clients.cas.findMissingBlobs(
      { blobDigests: [digests.small, digests.big] },
      as(bearer(readerToken)),
    );
    expect(found.missingBlobDigests).toEqual([]);
    const parts: Uint8Array[] = [];
    for await (const part of clients.bytestream.read(
      { resourceName: `blobs/${digests.big.hash}/${digests.big.sizeBytes}` },
      as(bearer(ciToken)),
    ))
      parts.push(part.data);
    expect(sha256(Buffer.concat(parts))).toBe(digests.big.hash);
  });

  it('takes Basic credentials from the htpasswd file (bcrypt and {SHA}, base64 and base64url) with per-user roles', async () => {
    const data = randomBytes(200, 21);
    const digest = digestOf(data);
    const ci = as(basic('ci', 'ci-password', 'base64url'));
    expect((await clients.cas.batchUpdateBlobs({ requests: [{ digest, data }] }, ci)).responses[0]!.status?.code).toBe(
      0,
    );
    const bob = as(basic('bob', 'bobs-password'));
    expect((await clients.cas.batchReadBlobs({ digests: [digest] }, bob)).responses[0]!.status?.code).toBe(0);
    const other = randomBytes(200, 22);
    expect(
      await codeOf(clients.cas.batchUpdateBlobs({ requests: [{ digest: digestOf(other), data: other }] }, bob)),
    ).toEqual({ code: PERMISSION_DENIED, details: 'bob may not write' });
    expect(
      (await clients.cas.findMissingBlobs({ blobDigests: [digestOf(other)] }, ci)).missingBlobDigests,
    ).toHaveLength(1);
  });

  it('guards Execute, WaitExecution and Operations with the execute role, and reports exec_enabled by it', async () => {
    const builder = as(basic('builder', 'builders-password'));
    const writer = as(basic('ci', 'ci-password'));
    const execEnabled = async (options: ReturnType<typeof as>) =>
      (await clients.capabilities.getCapabilities({}, options)).executionCapabilities?.execEnabled;
    expect(await execEnabled(builder)).toBe(true);
    expect(await execEnabled(writer)).toBe(false);
    const fixture = new ActionFixture(clientsWith(builder));
    const actionDigest = await fixture.action({ command: { arguments: ['/bin/sh', '-c', 'echo authorised'] } });
    expect((await codeOf(drain(clients.execution.execute({ actionDigest }, writer)))).code).toBe(PERMISSION_DENIED);
    expect((await codeOf(drain(clients.execution.execute({ actionDigest })))).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await codeOf(clients.operations.getOperation({ name: 'operations/x' }, writer))).code).toBe(
      PERMISSION_DENIED,
    );
    expect((await codeOf(drain(clients.execution.waitExecution({ name: 'operations/x' }, writer)))).code).toBe(
      PERMISSION_DENIED,
    );
    const { response } = await fixture.execute(actionDigest);
    expect(response.result?.exitCode, response.status?.message).toBe(0);
    expect((await fixture.read(response.result!.stdoutDigest)).toString()).toBe('authorised\n');
  });

  /** The same clients, every call made with `options` (credentials). */
  function clientsWith(options: ReturnType<typeof as>): Clients {
    const withAuth = <T extends object>(client: T): T =>
      new Proxy(client, {
        get: (target, key) => {
          const method = (target as Record<string | symbol, unknown>)[key];
          return typeof method === 'function'
            ? (request: unknown, extra?: object) => method.call(target, request, { ...options, ...extra })
            : method;
        },
      });
    return {
      ...clients,
      cas: withAuth(clients.cas),
      ac: withAuth(clients.ac),
      execution: withAuth(clients.execution),
      capabilities: withAuth(clients.capabilities),
    };
  }

  it("reports update_enabled by the caller's role in GetCapabilities", async () => {
    const updateEnabled = async (authorization: string) =>
      (await clients.capabilities.getCapabilities({}, as(authorization))).cacheCapabilities
        ?.actionCacheUpdateCapabilities?.updateEnabled;
    expect(await updateEnabled(bearer(ciToken))).toBe(true);
    expect(await updateEnabled(bearer(readerToken))).toBe(false);
    expect(await updateEnabled(basic('ci', 'ci-password'))).toBe(true);
    expect(await updateEnabled(basic('bob', 'bobs-password'))).toBe(false);
  });

  it('logs refusals with reason and subject, and never a token or password', () => {
    const log = executor.output();
    expect(log).toMatch(
      /INFO refused: permission denied rpc=\/build\.bazel\.remote\.execution\.v2\.ActionCache\/UpdateActionResult subject=reader reason="reader may not write"/,
    );
    expect(log).toMatch(
      /DEBUG refused: not authenticated rpc=\/google\.bytestream\.ByteStream\/Write reason="the token has expired"/,
    );
    expect(log).toMatch(
      /INFO authentication auth="oidc issuer=http:\/\/127\.0\.0\.1:\d+ audience=https:\/\/larder\.test\/cache; htpasswd \S+; anonymous may do nothing"/,
    );
    for (const secret of secrets) {
      for (const piece of [secret, secret.replace(/^(Bearer|Basic) /, '')])
        expect(log, 'a secret in the log').not.toContain(piece);
    }
    expect(log).not.toMatch(/ERROR/);
  });
});

describe('executor auth configuration', () => {
  it('takes the edge auth flags and their LARDER_* twins', () => {
    const config = parseExecutorConfig(['--oidc-issuer', 'https://idp.example/', '--oidc-audience', 'larder'], {
      HOME: '/h',
      LARDER_HTPASSWD: '/etc/htpasswd',
    });
    expect(config.auth.oidc).toMatchObject({ issuer: 'https://idp.example/', audience: ['larder'] });
    expect(config.auth.htpasswd).toMatchObject({ path: '/etc/htpasswd', everyone: ['read'] });
    expect(config.auth.anonymous).toEqual([]);
    expect(() => parseExecutorConfig(['--oidc-issuer', 'https://idp.example/'], { HOME: '/h' })).toThrow(
      /--oidc-audience/,
    );
    // No authenticator: the loopback developer set-up, where anonymous may do everything.
    expect(parseExecutorConfig([], { HOME: '/h' }).auth.anonymous).toEqual(['read', 'write', 'execute']);
  });

  it('beyond loopback, refuses without an authenticator unless --allow-anonymous, and warns about plain grpc', () => {
    // checkExposure is what startExecutor calls first; tested directly so that nothing binds beyond loopback.
    const warnings: string[] = [];
    const log = { debug() {}, info() {}, warn: (m: string) => void warnings.push(m), error() {} };
    const exposure = (args: string[]) => ({
      host: '0.0.0.0',
      auth: parseExecutorConfig(args, { HOME: '/h' }).auth,
      tls: false,
      plainProtocol: 'grpc',
    });
    expect(() => checkExposure(exposure([]), log)).toThrow(/refusing to serve on 0\.0\.0\.0.*--allow-anonymous/);
    checkExposure(exposure(['--allow-anonymous']), log);
    checkExposure(exposure(['--oidc-issuer', 'https://idp.example/', '--oidc-audience', 'larder']), log);
    expect(warnings).toEqual([
      expect.stringMatching(
        /with no authentication \(--allow-anonymous\): anyone who can reach it can read, write, execute/,
      ),
      expect.stringMatching(/over plain grpc: tokens and passwords travel in clear text/),
    ]);
  });

  it('refuses two authorization values rather than picking one', async () => {
    // grpc-js clients refuse to send two (other clients may), so the hook is called as the adapter would.
    const gate = createAccessGate({ authenticators: [], anonymousRoles: ['read'] });
    const metadata = new grpc.Metadata();
    metadata.add('authorization', 'Bearer a');
    metadata.add('authorization', 'Basic Yjpj');
    const ctx = {
      path: '/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs',
      metadata,
      signal: new AbortController().signal,
      principal: null,
    };
    const silent = { debug() {}, info() {}, warn() {}, error() {} };
    await expect(authorizeCalls(gate, silent)(ctx)).rejects.toMatchObject({
      code: 'unauthenticated',
      message: 'more than one authorization value was sent',
    });
    metadata.remove('authorization');
    await expect(authorizeCalls(gate, silent)(ctx)).resolves.toMatchObject({ subject: 'anonymous' });
  });

  it('answers UNAVAILABLE, not UNAUTHENTICATED, when the IdP cannot be reached to fetch its keys', async () => {
    // A port that was free a moment ago: nothing listens there.
    const idp = await startIdp();
    const issuer = idp.issuer;
    await idp.close();
    const server = await startTestServer({ args: ['--oidc-issuer', issuer, '--oidc-audience', AUDIENCE] });
    try {
      const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
      const result = await codeOf(server.clients.cas.findMissingBlobs({ blobDigests: [] }, as(bearer(token))));
      expect(result.code).toBe(UNAVAILABLE);
      expect(result.details).toMatch(/discovery|key set/);
    } finally {
      await server.stop();
    }
  });
});
