// The OIDC authenticator in-process against a real OpenID provider on loopback: discovery or a configured
// JWKS URL, roles from claims, and the difference between a bad token (unauthenticated) and an IdP that
// cannot be reached or misdescribes itself (unavailable).
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOidcAuthenticator, DEFAULT_ALGORITHMS, type OidcOptions } from '../../../shared/auth/oidc.ts';
import { isLarderError } from '../../../shared/errors.ts';
import { AUDIENCE, type TestIdp, startIdp } from '../../helpers/oidc-idp.ts';

describe('OIDC authenticator', () => {
  let idp: TestIdp;
  const options = (): OidcOptions => ({
    issuer: idp.issuer,
    audience: [AUDIENCE],
    algorithms: DEFAULT_ALGORITHMS,
    clockToleranceSeconds: 5,
    jwksCooldownMs: 1_000,
    jwksMaxAgeMs: 600_000,
    roles: { everyone: ['read'], rules: [{ claim: 'groups', value: 'ci', roles: ['write'] }] },
  });
  const failure = async (promise: Promise<unknown>) => {
    try {
      await promise;
    } catch (err) {
      return isLarderError(err) ? `${err.code}: ${err.message}` : `unexpected: ${String(err)}`;
    }
    return 'accepted';
  };

  beforeAll(async () => {
    idp = await startIdp();
  });
  afterAll(() => idp?.close());

  it('finds the keys through discovery and maps claims to roles', async () => {
    const oidc = createOidcAuthenticator(options());
    const ci = await oidc.authenticate({ scheme: 'bearer', token: await idp.clientCredentialsToken('ci') });
    expect(ci).toMatchObject({ subject: 'ci', via: 'oidc' });
    expect([...ci.roles].sort()).toEqual(['read', 'write']);
    const reader = await oidc.authenticate({ scheme: 'bearer', token: await idp.clientCredentialsToken('reader') });
    expect([...reader.roles]).toEqual(['read']);
  });

  it('uses a configured JWKS URL without discovery', async () => {
    const oidc = createOidcAuthenticator({ ...options(), jwksUrl: `${idp.issuer}/jwks` });
    const ci = await oidc.authenticate({ scheme: 'bearer', token: await idp.clientCredentialsToken('ci') });
    expect(ci.subject).toBe('ci');
  });

  it('refuses a token of an algorithm outside its allow-list', async () => {
    const oidc = createOidcAuthenticator({ ...options(), algorithms: ['RS256'] });
    expect(
      await failure(oidc.authenticate({ scheme: 'bearer', token: await idp.clientCredentialsToken('ci') })),
    ).toMatch(/^unauthenticated: .*algorithm/);
  });

  it('reports an issuer that names itself differently, or that is down, as unavailable', async () => {
    const token = await idp.clientCredentialsToken('ci');
    // Discovery answers for `issuer`, not `issuer/`: the document must name exactly the configured issuer.
    const misnamed = createOidcAuthenticator({ ...options(), issuer: `${idp.issuer}/` });
    expect(await failure(misnamed.authenticate({ scheme: 'bearer', token }))).toMatch(
      /^unavailable: OIDC discovery .* names issuer/,
    );
    // An issuer that answers every request with 503, counting them.
    let asked = 0;
    const failing = createServer((_req, res) => {
      asked++;
      res.writeHead(503).end();
    });
    failing.listen(0, '127.0.0.1');
    await once(failing, 'listening');
    try {
      const issuer = `http://127.0.0.1:${(failing.address() as AddressInfo).port}`;
      const down = createOidcAuthenticator({ ...options(), issuer, jwksCooldownMs: 60_000 });
      expect(await failure(down.authenticate({ scheme: 'bearer', token }))).toMatch(/^unavailable: /);
      expect(asked).toBe(1);
      // A failed discovery is not retried before the cooldown: the second call answers from memory.
      expect(await failure(down.authenticate({ scheme: 'bearer', token }))).toMatch(/^unavailable: /);
      expect(asked).toBe(1);
    } finally {
      failing.close();
    }
  });
});
