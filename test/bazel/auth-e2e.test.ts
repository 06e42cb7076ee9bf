// The real Bazel client (Debian's 4.2.3, which has no --credential_helper) against an edge that demands
// authentication from a real OpenID provider: a token from the IdP in --remote_header makes every cacheable
// action a hit; without it the cache refuses with 401 and Bazel builds locally, hitting and storing nothing;
// a read-only token reads but stores nothing; Basic credentials in the URL work; and bearer tokens over https://.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { AUDIENCE, type TestIdp, startIdp } from '../helpers/oidc-idp.ts';
import { findTool, requireTool } from '../helpers/tools.ts';
import { makeCertificate, opensslPath } from '../executor/tls.ts';
import { BazelWorkspace, bazelStatus, describeRun } from './bazel.ts';
import { TARGETS, expectOk, expectOutputs } from './expectations.ts';
import bcrypt from 'bcryptjs';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const haveOpenssl = requireTool('openssl', opensslPath(), 'apt-get install openssl');
// Bazel's JDK ships it (openjdk-17-jre-headless, a dependency of bazel-bootstrap).
const keytool = findTool('keytool', '/usr/lib/jvm/default-java/bin/keytool');
const haveKeytool = requireTool('keytool', keytool, 'apt-get install openjdk-17-jre-headless');
// Chosen so that its base64 and base64url encodings differ: Bazel sends URL user-info as base64url.
const CI_PASSWORD = 's3cret?>>~~';

/** Every file under `dir`, recursively: what the disk store holds. */
/** Blob files under a disk store; its own bookkeeping (the shared budget's ledger) is not a stored blob. */
function storedFiles(dir: string): string[] {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        if (!(d === dir && entry.name === 'ledger')) walk(path);
      } else files.push(path);
    }
  };
  walk(dir);
  return files.sort();
}

describe.runIf(haveBazel && haveOpenssl && haveKeytool)('real Bazel against an authenticating larder edge', () => {
  const dir = tempDir('larder-auth-e2e-');
  let idp: TestIdp;
  let config: string;
  let htpasswd: string;

  beforeAll(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
    config = join(dir.path, 'larder.json');
    htpasswd = join(dir.path, 'htpasswd');
    await writeFile(htpasswd, `ci:${bcrypt.hashSync(CI_PASSWORD, 5)}\n`);
    await writeFile(
      config,
      JSON.stringify({
        auth: {
          oidc: { roles: { everyone: ['read'], rules: [{ claim: 'groups', value: 'ci', roles: ['write'] }] } },
          htpasswd: { users: { ci: ['write'] } },
        },
      }),
    );
  });

  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    await idp?.close();
    dir.remove();
  }, 120_000);

  const startEdge = (store: string, extra: string[] = []) =>
    startEdgeProcess({
      runtime: 'node',
      args: [
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
        ...extra,
      ],
    });

  it('with a bearer token from the IdP every cacheable action hits; without one, 401 and nothing hit or stored', async () => {
    const store = join(dir.path, 'http-store');
    const edge: EdgeProcess = await startEdge(store);
    const nonce = `auth-${Date.now()}`;
    const writer = await BazelWorkspace.create({ nonce });
    const anonymous = await BazelWorkspace.create({ nonce });
    try {
      const remote = `--remote_cache=${edge.url}`;
      const header = `--remote_header=Authorization=Bearer ${await idp.clientCredentialsToken('ci')}`;
      const cold = await writer.build(TARGETS, [remote, header]);
      expectOk(cold);
      expect(cold.summary!.remoteCacheHit).toBe(0);
      await writer.clean();
      const warm = await writer.build(TARGETS, [remote, header]);
      expectOk(warm);
      expect(warm.summary!.remoteCacheHit, describeRun(warm)).toBe(cold.summary!.nonInternal);
      await expectOutputs(writer);

      // Same action keys, the cache warm, but no credentials: every lookup is refused.
      const before = storedFiles(store);
      const refused = await anonymous.build(TARGETS, [remote]);
      expect(refused.summary?.remoteCacheHit ?? 0, describeRun(refused)).toBe(0);
      expect(refused.stderr, describeRun(refused)).toMatch(/WARNING: Reading from Remote Cache:\s*\n401 Unauthorized/);
      // Bazel 4.2.3 treats cache errors as warnings and builds locally.
      expectOk(refused);
      await expectOutputs(anonymous);
      expect(storedFiles(store)).toEqual(before);
      expect(edge.output()).not.toMatch(/ERROR/);

      // Basic credentials in the URL's user-info (which Bazel encodes as base64url) open the same cache.
      await anonymous.clean();
      const userInfo = `--remote_cache=${edge.url.replace('://', `://ci:${encodeURIComponent(CI_PASSWORD)}@`)}`;
      const basic = await anonymous.build(TARGETS, [userInfo]);
      expectOk(basic);
      expect(basic.summary!.remoteCacheHit, describeRun(basic)).toBe(cold.summary!.nonInternal);
    } finally {
      await writer.shutdown();
      await anonymous.shutdown();
      await edge.stop();
    }
  }, 900_000);

  it('a token without the write role reads but stores nothing', async () => {
    const store = join(dir.path, 'reader-store');
    const edge = await startEdge(store, ['--log-level', 'info']);
    const ws = await BazelWorkspace.create();
    try {
      const header = `--remote_header=Authorization=Bearer ${await idp.clientCredentialsToken('reader')}`;
      const run = await ws.build(TARGETS, [`--remote_cache=${edge.url}`, header]);
      expectOk(run);
      expect(run.summary!.remoteCacheHit).toBe(0);
      // Bazel 4.2.3 reports failed uploads only as "N errors during bulk transfer"; the edge says why.
      expect(run.stderr, describeRun(run)).toMatch(/WARNING: Writing to Remote Cache/);
      expect(edge.output()).toMatch(
        /refused: permission denied method=PUT path=\/(ac|cas)\/\w+ status=403 subject=reader/,
      );
      expect(storedFiles(store)).toEqual([]);
      await expectOutputs(ws);
    } finally {
      await ws.shutdown();
      await edge.stop();
    }
  }, 600_000);

  it('works over https:// with a generated certificate that Bazel is told to trust', async () => {
    const certDir = tempDir('larder-auth-tls-');
    const cert = makeCertificate(certDir.path);
    // Bazel 4.2.3's HTTP cache client does not use --tls_certificate (only its gRPC channels do): it trusts
    // what the JVM trusts. So the certificate also goes into a trust store handed to Bazel's server JVM.
    const trustStore = join(certDir.path, 'truststore.p12');
    execFileSync(
      keytool!,
      [
        '-importcert',
        '-noprompt',
        '-alias',
        'larder-test',
        '-file',
        cert.certPath,
        '-keystore',
        trustStore,
        '-storetype',
        'PKCS12',
        '-storepass',
        'larder',
      ],
      { stdio: 'pipe', timeout: 60_000 },
    );
    const edge = await startEdge(join(dir.path, 'https-store'), [
      '--tls-cert',
      cert.certPath,
      '--tls-key',
      cert.keyPath,
    ]);
    const ws = await BazelWorkspace.create({
      extraBazelrc: `startup --host_jvm_args=-Djavax.net.ssl.trustStore=${trustStore} --host_jvm_args=-Djavax.net.ssl.trustStorePassword=larder`,
    });
    try {
      expect(edge.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const flags = [
        `--remote_cache=${edge.url}`,
        `--tls_certificate=${cert.certPath}`,
        `--remote_header=Authorization=Bearer ${await idp.clientCredentialsToken('ci')}`,
      ];
      const cold = await ws.build(TARGETS, flags);
      expectOk(cold);
      await ws.clean();
      const warm = await ws.build(TARGETS, flags);
      expectOk(warm);
      expect(warm.summary!.remoteCacheHit, describeRun(warm)).toBe(cold.summary!.nonInternal);
      await expectOutputs(ws);
    } finally {
      await ws.shutdown();
      await edge.stop();
      certDir.remove();
    }
  }, 900_000);
});
