/**
 * `larder credential-helper`: Bazel's credential-helper protocol over the tokens of a device-flow sign-in.
 *
 *   get                 Bazel's call: reads {"uri": …} on stdin, writes {"headers": …, "expires": …} on stdout
 *   login HOST          signs in through the issuer's device flow; prints the URL and code to stderr
 *   print-header HOST   prints --remote_header=Authorization=Bearer … for Bazel versions without helpers
 *   logout HOST         forgets the sign-in for HOST
 *
 * Only `get`'s answer goes to stdout; everything meant for a person goes to stderr.
 */
import { resolveOptions, optionsHelp, type Env } from '../../shared/options.ts';
import { discoverIssuer } from '../../shared/auth/discovery.ts';
import { LarderError } from '../../shared/errors.ts';
import { deviceLogin, refresh, type Client } from './oauth.ts';
import { readTokenFile, type SignIn, tokenFilePath, withLock, writeTokenFile } from './token-file.ts';

export interface HelperIo {
  env: Env;
  readStdin(): Promise<string>;
  stdout(text: string): void;
  stderr(text: string): void;
}

const LOGIN_OPTIONS = [
  { flag: 'issuer', env: 'LARDER_OIDC_ISSUER', help: 'the OpenID Connect issuer to sign in with', default: () => '' },
  {
    flag: 'client-id',
    env: 'LARDER_OIDC_CLIENT_ID',
    help: 'the OAuth client registered for the device flow',
    default: () => '',
  },
  {
    flag: 'client-secret',
    env: 'LARDER_OIDC_CLIENT_SECRET',
    help: 'its secret, for IdPs that give device clients one',
    default: () => '',
  },
  {
    flag: 'audience',
    env: 'LARDER_OIDC_AUDIENCE',
    help: "the cache's audience, sent as audience= and resource=",
    default: () => '',
  },
  {
    flag: 'scope',
    env: 'LARDER_OIDC_SCOPE',
    help: 'scopes to ask for; offline_access brings a refresh token',
    default: () => 'openid offline_access',
  },
  { flag: 'token', env: 'LARDER_OIDC_TOKEN', help: 'which token Bazel sends: access or id', default: () => 'access' },
];

export const USAGE = `usage: larder credential-helper <command>

commands:
  get                 (run by Bazel) read {"uri": …} on stdin, print the Authorization header as JSON
  login HOST          sign in for the cache at HOST with the OAuth device flow
  print-header HOST   print --remote_header=Authorization=Bearer … (for Bazel without --credential_helper)
  logout HOST         forget the sign-in for HOST

login options:
${optionsHelp(LOGIN_OPTIONS, {})}
`;

export async function credentialHelper(args: string[], io: HelperIo): Promise<number> {
  const [command, ...rest] = args;
  const file = tokenFilePath(io.env);
  switch (command) {
    case 'get': {
      const request = parseRequest(await io.readStdin());
      const host = hostOf(request.uri);
      const signIn = await currentSignIn(file, host);
      if (signIn === null) {
        io.stdout('{}\n');
        return 0;
      }
      io.stdout(
        `${JSON.stringify({ headers: { Authorization: [`Bearer ${signIn.token}`] }, expires: rfc3339(signIn.expiresAt) })}\n`,
      );
      return 0;
    }
    case 'print-header': {
      const host = hostOf(requireHost(rest));
      const signIn = await currentSignIn(file, host);
      if (signIn === null)
        throw new LarderError(
          'unauthenticated',
          `not signed in to ${host}: run larder credential-helper login ${host}`,
        );
      io.stdout(`--remote_header=Authorization=Bearer ${signIn.token}\n`);
      return 0;
    }
    case 'login':
      return login(file, rest, io);
    case 'logout': {
      const host = hostOf(requireHost(rest));
      await withLock(file, async () => {
        const content = await readTokenFile(file);
        delete content.hosts[host];
        await writeTokenFile(file, content);
      });
      io.stderr(`signed out of ${host}\n`);
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stderr(USAGE);
      return command === undefined ? 2 : 0;
    default:
      io.stderr(`larder credential-helper: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

async function login(file: string, args: string[], io: HelperIo): Promise<number> {
  const host = hostOf(requireHost(args));
  const values = resolveOptions(LOGIN_OPTIONS, args.slice(1), io.env);
  if (!values.issuer || !values['client-id']) {
    throw new LarderError(
      'invalid_argument',
      'login needs --issuer and --client-id (or LARDER_OIDC_ISSUER and LARDER_OIDC_CLIENT_ID)',
    );
  }
  const use = values.token;
  if (use !== 'access' && use !== 'id')
    throw new LarderError('invalid_argument', `--token must be access or id, not ${use}`);
  const client: Client = {
    clientId: values['client-id']!,
    scope: values.scope!,
    use,
    ...(values['client-secret'] ? { clientSecret: values['client-secret'] } : {}),
    ...(values.audience ? { audience: values.audience } : {}),
  };
  // Fail on a bad token file now, not after the user has gone through the browser.
  await readTokenFile(file);
  const metadata = await discoverIssuer(values.issuer!);
  if (!metadata.device_authorization_endpoint || !metadata.token_endpoint) {
    throw new LarderError('invalid_argument', `${values.issuer} does not offer the device authorization grant`);
  }
  const tokens = await deviceLogin({
    deviceAuthorizationEndpoint: metadata.device_authorization_endpoint,
    tokenEndpoint: metadata.token_endpoint,
    client,
    prompt: (uri, code, complete) =>
      io.stderr(
        `To sign in to ${host}, open ${uri} and enter the code: ${code}\n${complete ? `(or open ${complete})\n` : ''}Waiting…\n`,
      ),
  });
  await withLock(file, async () => {
    const content = await readTokenFile(file);
    content.hosts[host] = { issuer: values.issuer!, ...client, tokenEndpoint: metadata.token_endpoint!, ...tokens };
    await writeTokenFile(file, content);
  });
  io.stderr(`signed in to ${host}; the token is valid until ${rfc3339(tokens.expiresAt)}\n`);
  return 0;
}

/**
 * The sign-in for `host`, refreshed first when it is close to expiry: within a quarter of its lifetime
 * or a minute, whichever is less, so a build that starts now does not see it expire halfway.
 */
async function currentSignIn(file: string, host: string): Promise<SignIn | null> {
  const stored = (await readTokenFile(file)).hosts[host];
  if (stored === undefined) return null;
  if (!needsRefresh(stored)) return stored;
  return withLock(file, async () => {
    // Another helper may have refreshed while this one waited for the lock.
    const content = await readTokenFile(file);
    const signIn = content.hosts[host];
    if (signIn === undefined) return null;
    if (!needsRefresh(signIn)) return signIn;
    if (signIn.refreshToken === undefined) {
      // Without a refresh token (the IdP gave none) the token is used to its last second, then a new login is due.
      if (signIn.expiresAt > Date.now()) return signIn;
      throw new LarderError(
        'unauthenticated',
        `the sign-in for ${host} has expired: run larder credential-helper login ${host}`,
      );
    }
    const tokens = await refresh(signIn.tokenEndpoint, signIn, signIn.refreshToken).catch((err: unknown) => {
      throw new LarderError('unauthenticated', `${(err as Error).message}; run larder credential-helper login ${host}`);
    });
    content.hosts[host] = { ...signIn, ...tokens };
    await writeTokenFile(file, content);
    return content.hosts[host]!;
  });
}

function needsRefresh(signIn: SignIn): boolean {
  const margin = Math.min(60_000, (signIn.expiresAt - signIn.issuedAt) / 4);
  return signIn.expiresAt - Date.now() < margin;
}

function parseRequest(text: string): { uri: string } {
  let request: unknown;
  try {
    request = JSON.parse(text);
  } catch {
    throw new LarderError('invalid_argument', 'expected {"uri": …} as JSON on stdin');
  }
  const uri = (request as { uri?: unknown } | null)?.uri;
  if (typeof uri !== 'string') throw new LarderError('invalid_argument', 'expected {"uri": …} as JSON on stdin');
  return { uri };
}

function requireHost(args: string[]): string {
  const host = args[0];
  if (host === undefined || host.startsWith('-'))
    throw new LarderError('invalid_argument', 'name the cache host, e.g. cache.example.com');
  return host;
}

/** The key a sign-in is stored under: host[:port] of a URI (Bazel's `https://…`, `grpcs://…`) or a bare host. */
export function hostOf(uriOrHost: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(uriOrHost) ? uriOrHost : `https://${uriOrHost}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new LarderError('invalid_argument', `not a host or URI: ${JSON.stringify(uriOrHost)}`);
  }
  // https://host and grpcs://host:443 are the same cache: drop the TLS default port so both find one sign-in.
  const port = url.port === '443' && /^(https|grpcs):$/.test(url.protocol) ? '' : url.port;
  return `${url.hostname.toLowerCase()}${port ? `:${port}` : ''}`;
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
