/**
 * Remote Asset API over real gRPC against an in-process executor, with a loopback HTTP server standing in for
 * the internet: FetchBlob downloads once and then answers from the cache (by URI and by checksum), checks
 * every qualifier, tries URIs in order, follows redirects only within the allow-list, and keeps to its size,
 * time and address bounds, storing nothing when a download is refused. PushBlob records what a writer says a
 * URI names; roles decide who may do which.
 */
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import bcrypt from 'bcryptjs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createClient, type CallOptions, type ServiceClient } from '../../../executor/grpc/client.ts';
import { Fetch, Push } from '../../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import { openStore } from '../../../shared/storage/from-config.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';
import { codeOf, digestOf, reachableTempDir, startTestServer, type TestServer } from '../helpers.ts';
import { type Origin, type Route, startOrigin } from './origin.ts';

const { OK, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, DEADLINE_EXCEEDED, UNAVAILABLE } =
  grpc.status;
const FILE = 'the file\n'.repeat(100);
const OTHER = 'another file\n';
const sri = (algorithm: string, data: string) => `${algorithm}-${createHash(algorithm).update(data).digest('base64')}`;

interface Asset {
  fetch: ServiceClient<typeof Fetch>;
  push: ServiceClient<typeof Push>;
}
const assetClients = (server: TestServer): Asset => ({
  fetch: createClient(Fetch, server.address),
  push: createClient(Push, server.address),
});

/** FetchBlob calls the server answered with `outcome` (larder_asset_fetches_total). */
async function fetchesAnswered(server: TestServer, outcome: string): Promise<number> {
  const counter = server.executor.metrics.registry.getSingleMetric('larder_asset_fetches_total');
  const values = (await counter?.get())?.values ?? [];
  return values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

async function gauge(server: TestServer, name: string): Promise<number> {
  return (await server.executor.metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;
}

/** Whether the CAS holds `data`. */
async function stored(server: TestServer, data: string): Promise<boolean> {
  const { missingBlobDigests } = await server.clients.cas.findMissingBlobs({ blobDigests: [digestOf(data)] });
  return missingBlobDigests.length === 0;
}

describe('FetchBlob and PushBlob', () => {
  let origin: Origin;
  let elsewhere: Origin;
  let server: TestServer;
  let asset: Asset;
  let release: () => void;

  beforeAll(async () => {
    const stalled = new Promise<void>((resolve) => {
      release = resolve;
    });
    elsewhere = await startOrigin({ '/file': { body: FILE } });
    origin = await startOrigin({
      '/file': { body: FILE },
      '/other': { body: OTHER },
      '/mismatch': { body: 'not what was promised' },
      '/redirect-in': { redirect: '/file' },
      '/redirect-out': { redirect: `${elsewhere.url}/file` },
      '/slow': { stall: true, release: stalled },
      '/big': { body: 'x'.repeat(100 * 1024) },
      '/big-chunked': { chunked: 100 * 1024 },
      '/huge-header': { hugeHeader: 20 * 1024 },
      '/private': { body: 'token-only' },
    });
    server = await startTestServer({ args: ['--fetch-allow', origin.host, '--max-blob-size', '64KiB'] });
    asset = assetClients(server);
  });

  afterAll(async () => {
    release?.();
    asset?.fetch.close();
    asset?.push.close();
    await server?.stop();
    await origin?.stop();
    await elsewhere?.stop();
  });

  it('downloads once, stores the blob in the CAS, then answers from the cache without the origin', async () => {
    const uri = `${origin.url}/file`;
    const first = await asset.fetch.fetchBlob({ uris: [uri] });
    expect(first.status?.code ?? OK).toBe(OK);
    expect(first.blobDigest).toEqual(expect.objectContaining(digestOf(FILE)));
    expect(first.uri).toBe(uri);
    const { responses } = await server.clients.cas.batchReadBlobs({ digests: [digestOf(FILE)] });
    expect(Buffer.from(responses[0]!.data).toString()).toBe(FILE);
    const again = await asset.fetch.fetchBlob({ uris: [uri] });
    expect(again.blobDigest?.hash).toBe(digestOf(FILE).hash);
    expect(origin.count('/file')).toBe(1);
  });

  it('answers by checksum alone: a URI never seen, with a known sha256, costs no download', async () => {
    const reply = await asset.fetch.fetchBlob({
      uris: [`${origin.url}/never-asked-for`],
      qualifiers: [{ name: 'checksum.sri', value: sri('sha256', FILE) }],
    });
    expect(reply.status?.code ?? OK).toBe(OK);
    expect(reply.blobDigest?.hash).toBe(digestOf(FILE).hash);
    expect(origin.count('/never-asked-for')).toBe(0);
  });

  it('checks sha384 and sha512 checksums, and records them for later requests by checksum', async () => {
    for (const algorithm of ['sha384', 'sha512']) {
      const reply = await asset.fetch.fetchBlob({
        uris: [`${origin.url}/other`],
        qualifiers: [{ name: 'checksum.sri', value: sri(algorithm, OTHER) }],
      });
      expect(reply.status?.code ?? OK).toBe(OK);
      expect(reply.blobDigest?.hash).toBe(digestOf(OTHER).hash);
    }
    const downloads = origin.count('/other');
    const byChecksum = await asset.fetch.fetchBlob({
      uris: [`${origin.url}/moved-away`],
      qualifiers: [{ name: 'checksum.sri', value: sri('sha512', OTHER) }],
    });
    expect(byChecksum.blobDigest?.hash).toBe(digestOf(OTHER).hash);
    expect(origin.count('/other')).toBe(downloads);
    expect(origin.count('/moved-away')).toBe(0);
  });

  it('refuses a download whose checksum does not match, and stores nothing', async () => {
    const reply = await codeOf(
      asset.fetch.fetchBlob({
        uris: [`${origin.url}/mismatch`],
        qualifiers: [{ name: 'checksum.sri', value: sri('sha256', 'what was promised') }],
      }),
    );
    expect(reply).toEqual({
      code: FAILED_PRECONDITION,
      details: expect.stringMatching(/checksum mismatch: expected sha256-/),
    });
    expect(await stored(server, 'not what was promised')).toBe(false);
  });

  it('refuses bad requests with INVALID_ARGUMENT before any download', async () => {
    const before = origin.count('/file');
    const cases: Array<[Parameters<Asset['fetch']['fetchBlob']>[0], RegExp]> = [
      [
        {
          uris: [`${origin.url}/file`],
          qualifiers: [
            { name: 'resource_type', value: 'x' },
            { name: 'vcs.branch', value: 'y' },
          ],
        },
        /unsupported qualifiers: "resource_type", "vcs.branch"/,
      ],
      [
        { uris: [`${origin.url}/file`], qualifiers: [{ name: 'checksum.sri', value: 'sha256-nope' }] },
        /checksum.sri: expected/,
      ],
      [
        { uris: [`${origin.url}/file`], qualifiers: [{ name: 'checksum.sri', value: 'md5-1B2M2Y8AsgTpgAmY7PhCfg==' }] },
        /checksum.sri/,
      ],
      [
        { uris: [`${origin.url}/file`], qualifiers: [{ name: 'http_header:X-Big', value: 'a'.repeat(9000) }] },
        /header value of 9000 bytes/,
      ],
      [
        { uris: [`${origin.url}/file`], qualifiers: [{ name: 'http_header:X-Evil', value: 'a\r\nHost: b' }] },
        /line break/,
      ],
      [{ uris: ['file:///etc/passwd'] }, /file:\/\/ would read the server's own files/],
      [
        { uris: [`${origin.url}/file`], qualifiers: [{ name: 'http_header:Host', value: 'internal.example' }] },
        /larder sets Host itself/,
      ],
      [{ uris: [] }, /uris is empty/],
    ];
    for (const [request, message] of cases) {
      const { code, details } = await codeOf(asset.fetch.fetchBlob(request));
      expect([code, details]).toEqual([INVALID_ARGUMENT, expect.stringMatching(message)]);
    }
    expect(origin.count('/file')).toBe(before);
  });

  it('tries every URI in order and answers with the one that worked', async () => {
    const uris = [`${origin.url}/gone`, `${origin.url}/other?mirror=2`];
    const reply = await asset.fetch.fetchBlob({
      uris,
      qualifiers: [{ name: 'bazel.canonical_id', value: 'in-order' }],
    });
    expect(reply.status?.code ?? OK).toBe(OK);
    expect(reply.uri).toBe(uris[1]);
    expect(origin.count('/gone')).toBe(1);
  });

  it('reports an upstream 404 as NOT_FOUND in the response', async () => {
    const reply = await codeOf(asset.fetch.fetchBlob({ uris: [`${origin.url}/nothing-here`] }));
    expect(reply.code).toBe(NOT_FOUND);
  });

  it('sends http_header qualifiers upstream, to every URI or to the one named', async () => {
    const reply = await asset.fetch.fetchBlob({
      uris: [`${origin.url}/private`],
      qualifiers: [
        { name: 'http_header:Authorization', value: 'Bearer upstream-token' },
        { name: 'http_header_url:0:X-Mirror', value: 'first' },
      ],
    });
    expect(reply.status?.code ?? OK).toBe(OK);
    expect(origin.headersOf('/private')).toMatchObject({ authorization: 'Bearer upstream-token', 'x-mirror': 'first' });
  });

  it('follows redirects within the allow-list and refuses one that leaves it', async () => {
    const inside = await asset.fetch.fetchBlob({ uris: [`${origin.url}/redirect-in`] });
    expect(inside.status?.code ?? OK).toBe(OK);
    expect(inside.blobDigest?.hash).toBe(digestOf(FILE).hash);
    const outside = await codeOf(asset.fetch.fetchBlob({ uris: [`${origin.url}/redirect-out`] }));
    expect(outside).toEqual({
      code: PERMISSION_DENIED,
      details: expect.stringMatching(/not on this server's --fetch-allow list/),
    });
    expect(elsewhere.count('/file')).toBe(0);
  });

  it('refuses hosts outside the allow-list without contacting them', async () => {
    const reply = await codeOf(asset.fetch.fetchBlob({ uris: [`${elsewhere.url}/file`] }));
    expect(reply.code).toBe(PERMISSION_DENIED);
    expect(elsewhere.count('/file')).toBe(0);
  });

  it('bounds size, with or without Content-Length, and stores nothing', async () => {
    for (const path of ['/big', '/big-chunked']) {
      const reply = await codeOf(asset.fetch.fetchBlob({ uris: [`${origin.url}${path}`] }));
      expect(reply).toEqual({ code: FAILED_PRECONDITION, details: expect.stringMatching(/65536-byte blob limit/) });
    }
    expect(await stored(server, 'x'.repeat(100 * 1024))).toBe(false);
  });

  it("bounds the upstream's response headers", async () => {
    const reply = await codeOf(asset.fetch.fetchBlob({ uris: [`${origin.url}/huge-header`] }));
    expect(reply).toEqual({ code: UNAVAILABLE, details: expect.stringMatching(/response headers over 16384 bytes/) });
  });

  it("honours the request's timeout: DEADLINE_EXCEEDED, nothing stored", async () => {
    const started = Date.now();
    const reply = await codeOf(
      asset.fetch.fetchBlob({
        uris: [`${origin.url}/slow`],
        timeout: { seconds: 0n, nanos: 300_000_000 },
      }),
    );
    expect(reply.code).toBe(DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await stored(server, '1234567890')).toBe(false);
  });

  it('honours oldest_content_accepted: content older than asked for is fetched again', async () => {
    const uri = `${origin.url}/file`;
    await asset.fetch.fetchBlob({ uris: [uri] });
    const before = origin.count('/file');
    const fresh = await asset.fetch.fetchBlob({
      uris: [uri],
      oldestContentAccepted: timestampFromMs(Date.now() + 1000),
    });
    expect(fresh.status?.code ?? OK).toBe(OK);
    expect(origin.count('/file')).toBe(before + 1);
    await asset.fetch.fetchBlob({ uris: [uri], oldestContentAccepted: timestampFromMs(Date.now() - 60_000) });
    expect(origin.count('/file')).toBe(before + 1);
  });

  it('never connects to a loopback address the allow-list does not name itself', async () => {
    const wildcard = await startTestServer({ args: ['--fetch-allow', `*.0.0.1:${new URL(origin.url).port}`] });
    const clients = assetClients(wildcard);
    try {
      const reply = await codeOf(clients.fetch.fetchBlob({ uris: [`${origin.url}/other?wildcard`] }));
      expect(reply).toEqual({ code: PERMISSION_DENIED, details: expect.stringMatching(/loopback or private address/) });
    } finally {
      clients.fetch.close();
      clients.push.close();
      await wildcard.stop();
    }
  });

  it('answers the same request again with what the cache holds now: a URI pushed again names its new blob', async () => {
    // The same request's parse, record names and reply are kept between calls (request-memo.ts, reused-replies.ts);
    // the answer must still come from the record of the moment.
    const uris = ['urn:larder-test:again'];
    await server.clients.cas.batchUpdateBlobs({
      requests: [FILE, OTHER].map((data) => ({ digest: digestOf(data), data: Buffer.from(data) })),
    });
    await asset.push.pushBlob({ uris, blobDigest: digestOf(FILE) });
    for (let i = 0; i < 2; i++)
      expect((await asset.fetch.fetchBlob({ uris })).blobDigest?.hash).toBe(digestOf(FILE).hash);
    await asset.push.pushBlob({ uris, blobDigest: digestOf(OTHER) });
    const again = await asset.fetch.fetchBlob({ uris });
    expect(again.blobDigest).toEqual(expect.objectContaining(digestOf(OTHER)));
    expect(again.uri).toBe(uris[0]);
    const malformed = { uris, qualifiers: [{ name: 'checksum.sri', value: 'sha256-not base64' }] };
    for (let i = 0; i < 2; i++) expect((await codeOf(asset.fetch.fetchBlob(malformed))).code).toBe(INVALID_ARGUMENT);
  });

  it('PushBlob: a pushed URN is fetched from the CAS; pushes of missing blobs or wrong checksums are refused', async () => {
    const urn = 'urn:larder-test:file';
    expect((await codeOf(asset.fetch.fetchBlob({ uris: [urn] }))).code).toBe(NOT_FOUND);
    const qualifiers = [{ name: 'checksum.sri', value: sri('sha512', FILE) }];
    await asset.push.pushBlob({ uris: [urn], blobDigest: digestOf(FILE), qualifiers });
    // Qualifiers match exactly, as pushed.
    const reply = await asset.fetch.fetchBlob({ uris: [urn], qualifiers });
    expect(reply.blobDigest?.hash).toBe(digestOf(FILE).hash);
    await asset.push.pushBlob({ uris: [urn], blobDigest: digestOf(FILE) });
    expect((await asset.fetch.fetchBlob({ uris: [urn] })).blobDigest?.hash).toBe(digestOf(FILE).hash);
    expect((await codeOf(asset.push.pushBlob({ uris: [urn], blobDigest: digestOf('never uploaded') }))).code).toBe(
      grpc.status.FAILED_PRECONDITION,
    );
    const wrong = await codeOf(
      asset.push.pushBlob({
        uris: [urn],
        blobDigest: digestOf(FILE),
        qualifiers: [{ name: 'checksum.sri', value: sri('sha512', OTHER) }],
      }),
    );
    expect(wrong).toEqual({ code: INVALID_ARGUMENT, details: expect.stringMatching(/does not match/) });
    await asset.push.pushBlob({
      uris: ['urn:larder-test:expired'],
      blobDigest: digestOf(FILE),
      expireAt: timestampFromMs(Date.now() - 1000),
    });
    expect((await codeOf(asset.fetch.fetchBlob({ uris: ['urn:larder-test:expired'] }))).code).toBe(NOT_FOUND);
  });
});

/** Something the origin of a test holds back until the test lets it go. */
function stalledRoute(): { route: Route; release: () => void } {
  let release = () => {};
  const stalled = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { route: { stall: true, release: stalled }, release };
}

/**
 * Runs `body` against an origin serving `routes` and an executor started with `args(origin)`; stops both
 * (and the clients) whatever happens.
 */
async function withOrigin(
  routes: Record<string, Route>,
  args: (origin: Origin) => string[],
  body: (origin: Origin, server: TestServer, clients: Asset) => Promise<void>,
  address?: string,
): Promise<void> {
  const origin = await startOrigin(routes, address);
  const server = await startTestServer({ args: args(origin) });
  const clients = assetClients(server);
  try {
    await body(origin, server, clients);
  } finally {
    clients.fetch.close();
    clients.push.close();
    await server.stop();
    await origin.stop();
  }
}

describe('FetchBlob limits and roles', () => {
  it('fetches nothing when --fetch-allow is empty', () =>
    withOrigin(
      { '/file': { body: FILE } },
      () => [],
      async (origin, _server, clients) => {
        const reply = await codeOf(clients.fetch.fetchBlob({ uris: [`${origin.url}/file`] }));
        expect(reply).toEqual({
          code: PERMISSION_DENIED,
          details: expect.stringMatching(/--fetch-allow list is empty/),
        });
        expect(origin.count('/file')).toBe(0);
      },
    ));

  it('bounds concurrent downloads: with --fetch-concurrency 1 a second download waits, and its deadline ends the wait', async () => {
    const slow = stalledRoute();
    const routes = { '/slow': slow.route, '/file': { body: FILE } };
    await withOrigin(
      routes,
      (origin) => ['--fetch-allow', origin.host, '--fetch-concurrency', '1'],
      async (origin, _, clients) => {
        const first = clients.fetch.fetchBlob({ uris: [`${origin.url}/slow`] });
        await vi.waitFor(() => expect(origin.count('/slow')).toBe(1), { timeout: 5000, interval: 20 });
        const waiting = await codeOf(
          clients.fetch.fetchBlob({ uris: [`${origin.url}/file`], timeout: { seconds: 0n, nanos: 300_000_000 } }),
        );
        expect(waiting).toEqual({ code: DEADLINE_EXCEEDED, details: expect.stringMatching(/no download slot/) });
        expect(origin.count('/file')).toBe(0);
        slow.release();
        expect((await first).blobDigest?.hash).toBe(digestOf('1234567890').hash);
        expect((await clients.fetch.fetchBlob({ uris: [`${origin.url}/file`] })).blobDigest?.hash).toBe(
          digestOf(FILE).hash,
        );
      },
    ).finally(slow.release);
  });

  it('resolves host names (explicitly allowed localhost here) and connects to what they resolve to', () =>
    withOrigin(
      { '/file': { body: FILE } },
      (origin) => ['--fetch-allow', `localhost:${new URL(origin.url).port}`],
      async (origin, _server, clients) => {
        const reply = await clients.fetch.fetchBlob({ uris: [`http://localhost:${new URL(origin.url).port}/file`] });
        expect(reply.blobDigest?.hash).toBe(digestOf(FILE).hash);
        expect(origin.count('/file')).toBe(1);
      },
    ));

  it('shares one download among identical fetches in flight; a caller that gives up does not end it for the rest', async () => {
    const slow = stalledRoute();
    await withOrigin(
      { '/slow': slow.route },
      (origin) => ['--fetch-allow', origin.host],
      async (origin, server, clients) => {
        const uris = [`${origin.url}/slow`];
        const first = clients.fetch.fetchBlob({ uris });
        await vi.waitFor(() => expect(origin.count('/slow')).toBe(1), { timeout: 5000, interval: 20 });
        const second = clients.fetch.fetchBlob({ uris });
        const impatient = codeOf(clients.fetch.fetchBlob({ uris, timeout: { seconds: 0n, nanos: 300_000_000 } }));
        await vi.waitFor(async () => expect(await gauge(server, 'larder_asset_download_waiters')).toBe(3), {
          timeout: 5000,
          interval: 20,
        });
        expect(await gauge(server, 'larder_asset_downloads_in_flight')).toBe(1);
        expect(await impatient).toEqual({ code: DEADLINE_EXCEEDED, details: expect.stringMatching(/did not finish/) });
        slow.release();
        const hash = digestOf('1234567890').hash;
        expect((await first).blobDigest?.hash).toBe(hash);
        expect((await second).blobDigest?.hash).toBe(hash);
        expect(origin.count('/slow')).toBe(1);
        expect(await fetchesAnswered(server, 'origin')).toBe(1);
        expect(await fetchesAnswered(server, 'joined')).toBe(1);
        expect(await fetchesAnswered(server, 'failed')).toBe(1);
        await clients.fetch.fetchBlob({ uris });
        expect(await fetchesAnswered(server, 'cache')).toBe(1);
      },
    ).finally(slow.release);
  });

  it('never connects to a loopback address a host name in the allow-list resolves to', async () => {
    // Debian's /etc/hosts points the machine's own name at a loopback address: the DNS answer an attacker
    // controlling an allowed name would give to reach the server's own ports.
    const name = hostname();
    const { address } = await lookup(name, { family: 4 });
    expect(address, `${name} should resolve to a loopback address here`).toMatch(/^127\./);
    const named = (origin: Origin) => `${name}:${new URL(origin.url).port}`;
    await withOrigin(
      { '/file': { body: FILE } },
      (origin) => ['--fetch-allow', named(origin)],
      async (origin, server, clients) => {
        const reply = await codeOf(clients.fetch.fetchBlob({ uris: [`http://${named(origin)}/file`] }));
        expect(reply).toEqual({
          code: PERMISSION_DENIED,
          details: expect.stringMatching(/loopback or private address/),
        });
        expect(origin.count('/file')).toBe(0);
        expect(await stored(server, FILE)).toBe(false);
      },
      address,
    );
  });

  it('answers from the cache with the origin gone even where the batch existence check has forgotten the blob', async () => {
    // An index in front of a store (a bucket index past its TTL) may answer "not known" for a blob the store holds:
    // FetchBlob then asks the store itself, since with the origin down the stored copy is the only one.
    const dir = reachableTempDir('larder-asset-forgetful-');
    const disk = await openStore({ kind: 'disk', path: dir, maxBytes: 64 * 1024 * 1024 });
    const forgetful: BlobStore = { ...disk, statMany: async (keys) => keys.map(() => null) };
    const origin = await startOrigin({ '/file': { body: FILE } });
    const server = await startTestServer({ args: ['--fetch-allow', origin.host], store: forgetful });
    const clients = assetClients(server);
    try {
      const uris = [`${origin.url}/file`];
      expect((await clients.fetch.fetchBlob({ uris })).blobDigest?.hash).toBe(digestOf(FILE).hash);
      await origin.stop();
      expect((await clients.fetch.fetchBlob({ uris })).blobDigest?.hash).toBe(digestOf(FILE).hash);
      expect(origin.count('/file')).toBe(1);
    } finally {
      clients.fetch.close();
      clients.push.close();
      await server.stop();
      await origin.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bounds the time to connect: a TLS upstream that never answers the handshake', async () => {
    const silent = createServer(() => {});
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const host = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const server = await startTestServer({ args: ['--fetch-allow', host, '--fetch-connect-timeout', '300ms'] });
    const clients = assetClients(server);
    try {
      const started = Date.now();
      const reply = await codeOf(clients.fetch.fetchBlob({ uris: [`https://${host}/file`] }));
      expect(reply).toEqual({ code: DEADLINE_EXCEEDED, details: expect.stringMatching(/no connection within 300 ms/) });
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      clients.fetch.close();
      clients.push.close();
      await server.stop();
      silent.close();
    }
  });

  it('lets a reader fetch, and only a writer push', async () => {
    const origin = await startOrigin({ '/file': { body: FILE } });
    const dir = (await startTestServer()).dir; // a scratch folder; its server is stopped right away below
    const scratch = join(dir, '..', `asset-auth-${process.pid}`);
    await import('node:fs/promises').then((fs) => fs.mkdir(scratch, { recursive: true }));
    const htpasswd = join(scratch, 'htpasswd');
    await writeFile(htpasswd, `reader:${bcrypt.hashSync('r', 4)}\nwriter:${bcrypt.hashSync('w', 4)}\n`);
    const config = join(scratch, 'larder.json');
    await writeFile(
      config,
      JSON.stringify({ auth: { htpasswd: { everyone: [], users: { reader: ['read'], writer: ['read', 'write'] } } } }),
    );
    const server = await startTestServer({
      args: ['--fetch-allow', origin.host, '--htpasswd', htpasswd, '--config', config],
    });
    const clients = assetClients(server);
    const as = (user: string, password: string): CallOptions => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`);
      return { metadata };
    };
    try {
      expect((await codeOf(clients.fetch.fetchBlob({ uris: [`${origin.url}/file`] }))).code).toBe(
        grpc.status.UNAUTHENTICATED,
      );
      const fetched = await clients.fetch.fetchBlob({ uris: [`${origin.url}/file`] }, as('reader', 'r'));
      expect(fetched.blobDigest?.hash).toBe(digestOf(FILE).hash);
      const push = { uris: ['urn:larder-test:roles'], blobDigest: digestOf(FILE) };
      expect((await codeOf(clients.push.pushBlob(push, as('reader', 'r')))).code).toBe(PERMISSION_DENIED);
      await clients.push.pushBlob(push, as('writer', 'w'));
      expect((await clients.fetch.fetchBlob({ uris: push.uris }, as('reader', 'r'))).blobDigest?.hash).toBe(
        digestOf(FILE).hash,
      );
    } finally {
      clients.fetch.close();
      clients.push.close();
      await server.stop();
      await origin.stop();
    }
  });
});
