/**
 * HTTP Basic against an htpasswd file that may change while the server runs: its mtime is checked at most
 * once per `checkIntervalMs`, and a changed file replaces the user list (a broken edit keeps the old one).
 *
 * Bazel sends the same Basic credentials on every request, up to ~100 at once, and bcrypt is meant to be
 * slow, so a verified user/password pair is remembered for `cacheTtlMs` (under an HMAC with a per-process
 * key, never in clear) and concurrent checks of the same pair share one bcrypt run.
 */
import { stat, readFile } from 'node:fs/promises';
import { LarderError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Authenticator, Principal } from './authenticator.ts';
import { bcryptCost, decoyHash, type PasswordHash, parseHtpasswd, verifyPassword } from './htpasswd.ts';
import type { Role } from './operations.ts';

export interface HtpasswdFileOptions {
  path: string;
  /** Roles of every user in the file. */
  everyone: Role[];
  /** Extra roles per user name. */
  users: Record<string, Role[]>;
  log: Logger;
  checkIntervalMs?: number;
  cacheTtlMs?: number;
}

interface Loaded {
  users: Map<string, PasswordHash>;
  version: string;
  decoy: Promise<PasswordHash>;
}

const MAX_REMEMBERED = 10_000;

export async function createHtpasswdAuthenticator(options: HtpasswdFileOptions): Promise<Authenticator> {
  const { path, log } = options;
  const checkIntervalMs = options.checkIntervalMs ?? 1_000;
  const cacheTtlMs = options.cacheTtlMs ?? 60_000;
  let current = await load(path, log).catch((err: Error) => {
    throw new LarderError('invalid_argument', `--htpasswd ${path}: ${err.message}`);
  });
  let checkedAt = Date.now();
  let reloading: Promise<void> | null = null;
  const remembered = new Map<string, number>(); // HMAC of user+password → when the proof runs out
  const inFlight = new Map<string, Promise<boolean>>();
  const hmacKey = await crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);

  async function refresh(): Promise<void> {
    if (Date.now() - checkedAt < checkIntervalMs) return;
    reloading ??= (async () => {
      try {
        if ((await version(path)) === current.version) return;
        current = await load(path, log);
        remembered.clear(); // a changed password or a removed user must take effect now
        log.info('htpasswd reloaded', { path, users: current.users.size });
      } catch (err) {
        log.warn(`htpasswd ${path} could not be reloaded; keeping the previous users: ${(err as Error).message}`);
      } finally {
        checkedAt = Date.now();
        reloading = null;
      }
    })();
    await reloading;
  }

  async function check(user: string, password: string): Promise<boolean> {
    const stored = current.users.get(user);
    const matches = await verifyPassword(password, stored ?? (await current.decoy));
    return matches && stored !== undefined;
  }

  return {
    scheme: 'basic',
    async authenticate(credentials) {
      if (credentials.scheme !== 'basic') throw new LarderError('unauthenticated', 'Basic credentials are required');
      await refresh();
      const { user, password } = credentials;
      const proof = await fingerprint(hmacKey, current.version, user, password);
      const until = remembered.get(proof);
      let ok = until !== undefined && until > Date.now();
      if (!ok) {
        let pending = inFlight.get(proof);
        if (pending === undefined) {
          pending = check(user, password).finally(() => inFlight.delete(proof));
          inFlight.set(proof, pending);
        }
        ok = await pending;
        if (ok) {
          if (remembered.size >= MAX_REMEMBERED) remembered.clear();
          remembered.set(proof, Date.now() + cacheTtlMs);
        }
      }
      // One message for unknown users and wrong passwords: which user names exist is not the client's business.
      if (!ok) throw new LarderError('unauthenticated', 'wrong user name or password');
      const principal: Principal = {
        subject: user,
        via: 'basic',
        roles: new Set([...options.everyone, ...(options.users[user] ?? [])]),
      };
      return principal;
    },
  };
}

async function load(path: string, log: Logger): Promise<Loaded> {
  const before = await version(path);
  const { users, warnings } = parseHtpasswd(await readFile(path, 'utf8'));
  for (const warning of warnings) log.warn(`htpasswd ${path} ${warning}`);
  const firstBcrypt = [...users.values()].map(bcryptCost).find((cost) => cost !== null);
  return { users, version: before, decoy: decoyHash(firstBcrypt ?? 10) };
}

/** What identifies one state of the file: a rename-into-place changes the inode, an edit the mtime or size. */
async function version(path: string): Promise<string> {
  const s = await stat(path);
  return `${s.ino}:${s.size}:${s.mtimeMs}`;
}

async function fingerprint(key: CryptoKey, version: string, user: string, password: string): Promise<string> {
  const data = new TextEncoder().encode(`${version}\0${user}\0${password}`);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, data));
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join('');
}
