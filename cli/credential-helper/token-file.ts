/**
 * Where the credential helper keeps its tokens: one JSON file, readable by its owner only, at
 * $XDG_CONFIG_HOME/larder/credentials.json (else ~/.config/larder/credentials.json), holding one sign-in per
 * cache host. Writes go to a temporary file renamed into place, under a lock file, so that Bazel running
 * the helper for several URIs at once never sees half a file nor loses a rotated refresh token.
 */
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LarderError } from '../../shared/errors.ts';

export interface SignIn {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  audience?: string;
  scope: string;
  /** Which token Bazel is given: the access token (default) or the ID token (for IdPs such as Google). */
  use: 'access' | 'id';
  tokenEndpoint: string;
  token: string;
  refreshToken?: string;
  /** Milliseconds since the epoch. */
  issuedAt: number;
  expiresAt: number;
}

export interface TokenFileContent {
  version: 1;
  hosts: Record<string, SignIn>;
}

export function tokenFilePath(env: Record<string, string | undefined>): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || '.', '.config');
  return join(base, 'larder', 'credentials.json');
}

/** The file's sign-ins; empty when there is no file. Refuses a file others may read or that someone else owns. */
export async function readTokenFile(path: string): Promise<TokenFileContent> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, hosts: {} };
    throw err;
  }
  if ((info.mode & 0o077) !== 0) {
    throw new LarderError(
      'permission_denied',
      `${path} is open to other users (mode ${(info.mode & 0o777).toString(8)}): tokens there may have leaked; sign in again after: chmod 600 ${path}`,
    );
  }
  if (typeof process.getuid === 'function' && info.uid !== process.getuid()) {
    throw new LarderError('permission_denied', `${path} belongs to another user (uid ${info.uid})`);
  }
  let parsed: TokenFileContent | null = null;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8')) as TokenFileContent;
  } catch {
    // reported below
  }
  if (parsed?.version !== 1 || typeof parsed.hosts !== 'object' || parsed.hosts === null) {
    throw new LarderError('invalid_argument', `${path} is not a larder credentials file; remove it and sign in again`);
  }
  return parsed;
}

export async function writeTokenFile(path: string, content: TokenFileContent): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  // Created 0600 from the start: there is no moment at which the tokens are readable by others.
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(content, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}

const LOCK_WAIT_MS = 5_000;
const LOCK_STALE_MS = 30_000;

/** Runs `fn` holding `${path}.lock`; a lock older than 30 s is left over from a crash and taken over. */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await (await open(lock, 'wx', 0o600)).close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(lock).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > LOCK_STALE_MS) await rm(lock, { force: true });
      else if (Date.now() > deadline)
        throw new LarderError('timeout', `${lock} is held by another larder credential-helper`);
      else await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}
