/**
 * A real OpenID provider (npm's oidc-provider) on a free loopback port, for auth tests: JWT access tokens
 * for the audience AUDIENCE through client credentials (clients `ci`, which is in group `ci`, and `reader`)
 * and the device authorization grant (public client `larder-cli`, with refresh tokens). Every user who signs
 * in through the device flow's pages is accepted with any password; user `ci-bot` is in group `ci`.
 *
 * Keys are generated per instance; rotateKeys() swaps in a provider with a new signing key (the old one
 * still published), behind the same port and issuer, as an IdP rotating its keys does.
 */
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export const AUDIENCE = 'https://larder.test/cache';
/** A second API at the same IdP: its tokens are real, signed, and must not open the cache. */
export const OTHER_AUDIENCE = 'https://other.test/api';
export const CLI_CLIENT_ID = 'larder-cli';
export const CLIENTS = {
  ci: { id: 'ci', secret: 'ci-secret-0123456789' },
  reader: { id: 'reader', secret: 'reader-secret-0123456789' },
} as const;

export interface IdpOptions {
  /** Lifetime of access tokens, seconds. */
  accessTokenTtl?: number;
}

export interface SigningKey {
  kid: string;
  alg: 'ES256';
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface TestIdp {
  issuer: string;
  /** The key the provider signs with now. */
  readonly signingKey: SigningKey;
  /** How many times the JWKS was fetched (to see the cooldown work). */
  readonly jwksFetches: number;
  clientCredentialsToken(client: keyof typeof CLIENTS, resource?: string): Promise<string>;
  rotateKeys(): Promise<SigningKey>;
  close(): Promise<void>;
}

async function newKey(): Promise<SigningKey & { privateJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `k-${crypto.randomUUID().slice(0, 8)}`;
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return { kid, alg: 'ES256', privateKey, publicJwk, privateJwk };
}

export async function startIdp(options: IdpOptions = {}): Promise<TestIdp> {
  let handler: http.RequestListener = (_req, res) => res.end();
  let jwksFetches = 0;
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/jwks')) jwksFetches++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const keys: Array<Awaited<ReturnType<typeof newKey>>> = [];

  const install = () => {
    const provider = createProvider(
      issuer,
      keys.map((k) => k.privateJwk),
      options,
    );
    handler = provider.callback();
  };
  keys.push(await newKey());
  install();

  return {
    issuer,
    get signingKey() {
      return keys[0]!;
    },
    get jwksFetches() {
      return jwksFetches;
    },
    async clientCredentialsToken(client, resource = AUDIENCE) {
      const { id, secret } = CLIENTS[client];
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${btoa(`${id}:${secret}`)}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'cache' }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!res.ok || !body.access_token) throw new Error(`token request failed: ${res.status} ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async rotateKeys() {
      // New key first: the provider signs with the first key for the algorithm, and keeps publishing the old.
      keys.unshift(await newKey());
      install();
      return keys[0]!;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function createProvider(issuer: string, jwks: JWK[], options: IdpOptions): Provider {
  const accessTokenTTL = options.accessTokenTtl ?? 600;
  const resourceServer = (audience: string) => ({
    scope: 'cache',
    audience,
    accessTokenTTL,
    accessTokenFormat: 'jwt' as const,
    jwt: { sign: { alg: 'ES256' } },
  });
  const provider = new Provider(issuer, {
    clients: [
      ...Object.values(CLIENTS).map(({ id, secret }) => ({
        client_id: id,
        client_secret: secret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      })),
      {
        client_id: CLI_CLIENT_ID,
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    jwks: { keys: jwks as never },
    scopes: ['openid', 'offline_access', 'cache'],
    cookies: { keys: ['larder-test-cookie-key'] },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator === AUDIENCE || indicator === OTHER_AUDIENCE) return resourceServer(indicator);
          throw new Error(`unknown resource ${indicator}`);
        },
      },
    },
    // The claim the edge maps to the write role: CI's client, and the CI robot user.
    extraTokenClaims: (_ctx, token) => {
      const who = (token as { accountId?: string }).accountId ?? (token as { clientId?: string }).clientId;
      return { groups: who === 'ci' || who === 'ci-bot' ? ['ci'] : ['developers'] };
    },
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: { DeviceCode: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  });
  provider.on('server_error', (_ctx, err) => console.error('test IdP server_error', err));
  return provider;
}
