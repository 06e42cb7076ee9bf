/**
 * The two OAuth 2.0 exchanges the credential helper makes: the device authorization grant (RFC 8628), which
 * lets a terminal sign in through a browser elsewhere, and the refresh-token grant (RFC 6749 §6).
 */
import { decodeJwt } from 'jose';
import { LarderError } from '../../shared/errors.ts';

export interface Client {
  clientId: string;
  clientSecret?: string;
  /** Sent as both `audience` (Auth0, Okta) and `resource` (RFC 8707) when set. */
  audience?: string;
  scope: string;
  use: 'access' | 'id';
}

export interface Tokens {
  token: string;
  refreshToken?: string;
  issuedAt: number;
  expiresAt: number;
}

interface TokenResponse {
  access_token?: string;
  id_token?: string;
  refresh_token?: string;
  expires_in?: number;
  error?: string;
  error_description?: string;
}

const HTTP_TIMEOUT_MS = 5_000;

export interface DeviceLogin {
  deviceAuthorizationEndpoint: string;
  tokenEndpoint: string;
  client: Client;
  /** Told the verification URI and user code; the helper prints them to stderr. */
  prompt(verificationUri: string, userCode: string, completeUri: string | undefined): void;
}

export async function deviceLogin(login: DeviceLogin): Promise<Tokens> {
  const { client } = login;
  const start = await post(login.deviceAuthorizationEndpoint, {
    ...clientParams(client),
    scope: client.scope,
    ...audienceParams(client),
  });
  const body = (await start.json().catch(() => ({}))) as {
    device_code?: string;
    user_code?: string;
    verification_uri?: string;
    verification_uri_complete?: string;
    expires_in?: number;
    interval?: number;
    error?: string;
    error_description?: string;
  };
  if (!start.ok || !body.device_code || !body.user_code || !body.verification_uri) {
    throw new LarderError(
      'unauthenticated',
      `the issuer refused the device sign-in: ${describeError(start.status, body)}`,
    );
  }
  login.prompt(body.verification_uri, body.user_code, body.verification_uri_complete);
  let interval = (body.interval ?? 5) * 1000;
  const deadline = Date.now() + (body.expires_in ?? 600) * 1000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, interval));
    const res = await post(login.tokenEndpoint, {
      ...clientParams(client),
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: body.device_code,
    });
    const tokens = (await res.json().catch(() => ({}))) as TokenResponse;
    if (res.ok) return toTokens(tokens, client);
    if (tokens.error === 'authorization_pending') continue;
    // RFC 8628 §3.5: slow down means five more seconds between polls, from now on.
    if (tokens.error === 'slow_down') interval += 5_000;
    else throw new LarderError('unauthenticated', `sign-in failed: ${describeError(res.status, tokens)}`);
  }
  throw new LarderError('timeout', 'the sign-in code expired before it was used');
}

export async function refresh(tokenEndpoint: string, client: Client, refreshToken: string): Promise<Tokens> {
  const res = await post(tokenEndpoint, {
    ...clientParams(client),
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
  });
  const tokens = (await res.json().catch(() => ({}))) as TokenResponse;
  if (!res.ok)
    throw new LarderError('unauthenticated', `refreshing the token failed: ${describeError(res.status, tokens)}`);
  const fresh = toTokens(tokens, client);
  // Issuers that do not rotate refresh tokens leave the old one valid and send none back.
  return { ...fresh, refreshToken: fresh.refreshToken ?? refreshToken };
}

function toTokens(response: TokenResponse, client: Client): Tokens {
  const token = client.use === 'id' ? response.id_token : response.access_token;
  if (typeof token !== 'string')
    throw new LarderError(
      'unauthenticated',
      `the issuer's answer has no ${client.use === 'id' ? 'id_token' : 'access_token'}`,
    );
  const issuedAt = Date.now();
  let expiresAt = typeof response.expires_in === 'number' ? issuedAt + response.expires_in * 1000 : undefined;
  // A JWT says when it expires; for an ID token expires_in describes the access token, not it.
  try {
    const { exp } = decodeJwt(token);
    if (typeof exp === 'number' && (client.use === 'id' || expiresAt === undefined)) expiresAt = exp * 1000;
  } catch {
    // an opaque access token: expires_in is all there is
  }
  return {
    token,
    ...(response.refresh_token === undefined ? {} : { refreshToken: response.refresh_token }),
    issuedAt,
    expiresAt: expiresAt ?? issuedAt + 3600_000,
  };
}

function clientParams(client: Client): Record<string, string> {
  return client.clientSecret === undefined
    ? { client_id: client.clientId }
    : { client_id: client.clientId, client_secret: client.clientSecret };
}

function audienceParams(client: Client): Record<string, string> {
  return client.audience === undefined ? {} : { audience: client.audience, resource: client.audience };
}

async function post(url: string, params: Record<string, string>): Promise<Response> {
  try {
    return await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(params),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
  } catch (err) {
    throw new LarderError('unavailable', `${url} cannot be reached: ${(err as Error).message}`);
  }
}

function describeError(status: number, body: { error?: string; error_description?: string }): string {
  return body.error ? `${body.error}${body.error_description ? ` (${body.error_description})` : ''}` : `HTTP ${status}`;
}
