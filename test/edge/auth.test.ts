/**
 * Authentication and authorisation of a real `larder edge` process (Node and Deno) against a real OpenID
 * provider on loopback: tokens the IdP mints are accepted or refused by role, tokens it would never mint
 * (forged with jose) are refused with 401 and `error="invalid_token"`, key rotation is picked up without a
 * restart, and HTTP Basic users come from an htpasswd file that is reloaded when it changes.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import bcrypt from 'bcryptjs';
import { createHash } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActionResultSchema } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { type EdgeProcess, startEdgeProcess, tempDir, edgeRuntimes } from '../helpers/edge-process.ts';
import { hs256WithPublicKey, signWith, signWithUnknownKey, unsigned } from '../helpers/forged-tokens.ts';
import { randomBlob, sha256 } from '../helpers/http.ts';
import { AUDIENCE, OTHER_AUDIENCE, type TestIdp, startIdp } from '../helpers/oidc-idp.ts';

const runtimes = edgeRuntimes();
const JWKS_COOLDOWN_S = 1;
const CLOCK_SKEW_S = 5;

const bearer = (token: string) => `Bearer ${token}`;
const basic = (user: string, password: string, alphabet: 'base64' | 'base64url' = 'base64') =>
  `Basic ${Buffer.from(`${user}:${password}`).toString(alphabet)}`;
const sha1Entry = (user: string, password: string) =>
  `${user}:{SHA}${createHash('sha1').update(password).digest('base64')}`;
const bcryptEntry = (user: string, password: string) =>
  `${user}:${bcrypt.hashSync(password, 5).replace(/^\$2b\$/, '$2y$')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(runtimes)('auth on %s', (runtime) => {
  const dir = tempDir('larder-auth-');
  const htpasswd = join(dir.path, 'htpasswd');
  let idp: TestIdp;
  let edge: EdgeProcess;
  let ciToken: string;
  let readerToken: string;
  const secrets: string[] = [];

  const call = (method: string, path: string, authorization?: string, body?: Uint8Array) =>
    fetch(`${edge.url}${path}`, {
      method,
      headers: authorization === undefined ? {} : { authorization },
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.timeout(15_000),
    });
  const status = async (method: string, path: string, authorization?: string, body?: Uint8Array) => {
    const res = await call(method, path, authorization, body);
    await res.arrayBuffer();
    return res.status;
  };
  const claims = () => ({ iss: idp.issuer, aud: AUDIENCE });

  beforeAll(async () => {
    idp = await startIdp();
    await writeFile(htpasswd, `${bcryptEntry('ci', 'ci-password')}\n${sha1Entry('bob', 'bobs-password')}\n`);
    const config = join(dir.path, 'larder.json');
    await writeFile(
      config,
      JSON.stringify({
        auth: {
          anonymous: [],
          oidc: {
            clockSkewSeconds: CLOCK_SKEW_S,
            jwksCooldownSeconds: JWKS_COOLDOWN_S,
            algorithms: ['ES256', 'RS256'],
            roles: { everyone: ['read'], rules: [{ claim: 'groups', value: 'ci', roles: ['write'] }] },
          },
          htpasswd: { everyone: ['read'], users: { ci: ['write'] } },
        },
      }),
    );
    edge = await startEdgeProcess({
      runtime,
      args: [
        '--store',
        'memory',
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
      ],
    });
    ciToken = await idp.clientCredentialsToken('ci');
    readerToken = await idp.clientCredentialsToken('reader');
    secrets.push(ciToken, readerToken, 'ci-password', 'bobs-password');
  });

  afterAll(async () => {
    await edge?.stop();
    await idp?.close();
    dir.remove();
  });

  it('answers a request without credentials with 401 and both challenges; /healthz stays open', async () => {
    const { hash } = randomBlob(10);
    const res = await call('GET', `/cas/${hash}`);
    expect(res.status).toBe(401);
    const challenge = res.headers.get('www-authenticate') ?? '';
    expect(challenge).toMatch(/Bearer realm="larder"/);
    expect(challenge).toMatch(/Basic realm="larder"/);
    expect(await res.text()).toMatch(/credentials are required/);
    expect(await status('PUT', `/cas/${hash}`, undefined, new Uint8Array(10))).toBe(401);
    expect(await status('GET', '/healthz')).toBe(200);
  });

  it('lets a token from the IdP with write store and read back, on /cas and /ac', async () => {
    const { data, hash } = randomBlob(1000);
    expect(await status('PUT', `/cas/${hash}`, bearer(ciToken), data)).toBe(200);
    const res = await call('GET', `/cas/${hash}`, bearer(ciToken));
    expect(res.status).toBe(200);
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(hash);
    const ac = toBinary(ActionResultSchema, create(ActionResultSchema, { exitCode: 3 }));
    expect(await status('PUT', `/ac/${randomBlob(8).hash}`, bearer(ciToken), ac)).toBe(200);
  });

  it('lets a token without write read, refuses its uploads to /cas and /ac with 403, and stores nothing', async () => {
    const { data, hash } = randomBlob(500);
    const stored = randomBlob(300);
    expect(await status('PUT', `/cas/${stored.hash}`, bearer(ciToken), stored.data)).toBe(200);
    expect(await status('GET', `/cas/${stored.hash}`, bearer(readerToken))).toBe(200);
    expect(await status('HEAD', `/cas/${stored.hash}`, bearer(readerToken))).toBe(200);

    const put = await call('PUT', `/cas/${hash}`, bearer(readerToken), data);
    expect(put.status).toBe(403);
    expect(put.headers.get('www-authenticate')).toBeNull();
    expect(await put.text()).toMatch(/may not write/);
    const acKey = randomBlob(8).hash;
    const ac = toBinary(ActionResultSchema, create(ActionResultSchema, { exitCode: 1 }));
    expect(await status('PUT', `/ac/${acKey}`, bearer(readerToken), ac)).toBe(403);
    expect(await status('PUT', `/team-a/ac/${acKey}`, bearer(readerToken), ac)).toBe(403);

    expect(await status('GET', `/cas/${hash}`, bearer(ciToken))).toBe(404);
    expect(await status('GET', `/ac/${acKey}`, bearer(ciToken))).toBe(404);
    expect(await status('GET', `/team-a/ac/${acKey}`, bearer(ciToken))).toBe(404);
  });

  const refusedTokens: Array<[string, () => Promise<string>, RegExp]> = [
    ['an expired token', () => signWith(idp.signingKey, { ...claims(), expIn: -60 }), /expired/],
    ['a token not valid yet', () => signWith(idp.signingKey, { ...claims(), nbfIn: 600 }), /not valid yet/],
    [
      'a token from another issuer',
      () => signWith(idp.signingKey, { ...claims(), iss: 'https://evil.example' }),
      /iss/,
    ],
    ['a real token for another audience', () => idp.clientCredentialsToken('reader', OTHER_AUDIENCE), /aud/],
    ['a token signed by an unknown key', () => signWithUnknownKey(claims()), /key the issuer does not publish/],
    ['an unsigned token (alg: none)', async () => unsigned(claims()), /algorithm|malformed/],
    ['an HS256 token keyed with the public key', () => hs256WithPublicKey(idp.signingKey, claims()), /algorithm/],
    ['garbage', async () => 'not.a.jwt', /malformed/],
  ];
  for (const [name, make, reason] of refusedTokens) {
    it(`refuses ${name} with 401 and error="invalid_token"`, async () => {
      const token = await make();
      secrets.push(token);
      const { data, hash } = randomBlob(64);
      for (const [method, body] of [
        ['GET', undefined],
        ['PUT', data],
      ] as const) {
        const res = await call(method, `/cas/${hash}`, bearer(token), body);
        expect(res.status, `${method} ${name}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/Bearer realm="larder", error="invalid_token"/);
        expect(await res.text()).toMatch(reason);
      }
      expect(await status('GET', `/cas/${hash}`, bearer(ciToken))).toBe(404);
    });
  }

  it('allows the configured clock skew on exp', async () => {
    const token = await signWith(idp.signingKey, { ...claims(), expIn: -1 });
    expect(await status('GET', `/cas/${randomBlob(8).hash}`, bearer(token))).toBe(404);
  });

  it('refuses an unsupported scheme and a malformed Basic value with 401', async () => {
    expect(await status('GET', `/cas/${randomBlob(8).hash}`, 'Digest username="x"')).toBe(401);
    expect(await status('GET', `/cas/${randomBlob(8).hash}`, 'Basic !!!')).toBe(401);
  });

  it('picks up a rotated signing key without a restart, and does not refetch the JWKS faster than the cooldown', async () => {
    // A burst of tokens under unknown kids may cause at most one JWKS fetch per cooldown.
    await sleep(JWKS_COOLDOWN_S * 1000 + 200);
    const before = idp.jwksFetches;
    const forged = await Promise.all(Array.from({ length: 30 }, () => signWithUnknownKey(claims())));
    const answers = await Promise.all(forged.map((t) => status('GET', `/cas/${randomBlob(8).hash}`, bearer(t))));
    expect(new Set(answers)).toEqual(new Set([401]));
    expect(idp.jwksFetches - before).toBeLessThanOrEqual(1);

    const newKey = await idp.rotateKeys();
    const rotated = await idp.clientCredentialsToken('ci');
    expect(JSON.parse(Buffer.from(rotated.split('.')[0]!, 'base64url').toString()).kid).toBe(newKey.kid);
    await sleep(JWKS_COOLDOWN_S * 1000 + 200);
    const fetchesBeforeRotated = idp.jwksFetches;
    const { data, hash } = randomBlob(100);
    expect(await status('PUT', `/cas/${hash}`, bearer(rotated), data)).toBe(200);
    expect(idp.jwksFetches, 'the unknown kid made the edge refetch the key set').toBe(fetchesBeforeRotated + 1);
    expect(fetchesBeforeRotated).toBeGreaterThan(0);
    // Tokens signed with the old key stay good while the IdP still publishes it.
    expect(await status('GET', `/cas/${hash}`, bearer(ciToken))).toBe(200);
  });

  it('accepts Basic users from htpasswd (bcrypt $2y$ and {SHA}) in base64 and base64url, with their roles', async () => {
    const { data, hash } = randomBlob(200);
    expect(await status('PUT', `/cas/${hash}`, basic('ci', 'ci-password'), data)).toBe(200);
    expect(await status('GET', `/cas/${hash}`, basic('ci', 'ci-password', 'base64url'))).toBe(200);
    expect(await status('GET', `/cas/${hash}`, basic('bob', 'bobs-password'))).toBe(200);
    expect(await status('PUT', `/cas/${randomBlob(8).hash}`, basic('bob', 'bobs-password'), new Uint8Array(8))).toBe(
      403,
    );
  });

  it('refuses a wrong password and an unknown user alike with 401', async () => {
    for (const auth of [basic('ci', 'wrong'), basic('bob', 'wrong'), basic('mallory', 'ci-password')]) {
      const res = await call('GET', `/cas/${randomBlob(8).hash}`, auth);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/Basic realm="larder"/);
      expect(await res.text()).toMatch(/wrong user name or password/);
    }
  });

  it('reloads the htpasswd file when it changes', async () => {
    const path = `/cas/${randomBlob(8).hash}`;
    expect(await status('GET', path, basic('bob', 'bobs-password'))).toBe(404);
    // Replaced as editors and config management do: a new file renamed into place.
    await writeFile(
      `${htpasswd}.new`,
      `${bcryptEntry('ci', 'ci-password')}\n${sha1Entry('bob', 'new-password')}\n${bcryptEntry('carol', 'carols')}\n`,
    );
    await rename(`${htpasswd}.new`, htpasswd);
    secrets.push('new-password', 'carols');
    await sleep(1_300);
    expect(await status('GET', path, basic('bob', 'bobs-password'))).toBe(401);
    expect(await status('GET', path, basic('bob', 'new-password'))).toBe(404);
    expect(await status('GET', path, basic('carol', 'carols'))).toBe(404);
  });

  it('never writes a token or a password to its log', () => {
    const log = edge.output();
    expect(log).toMatch(/refused/);
    for (const secret of secrets) expect(log, 'a secret reached the log').not.toContain(secret);
  });
});
