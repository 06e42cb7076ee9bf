/**
 * The htpasswd format: one `user:hash` per line. Accepted hashes are bcrypt (`$2y$`, `$2a$`, `$2b$`, as
 * `htpasswd -B` writes them) and `{SHA}` (base64 of SHA-1, `htpasswd -s`). Apache's MD5 (`$apr1$`), crypt()
 * and plain text are refused with a warning: they are weak, and crypt() is not portable.
 */
import bcrypt from 'bcryptjs';

export type PasswordHash = { kind: 'bcrypt'; hash: string } | { kind: 'sha1'; digest: Uint8Array };

export interface HtpasswdParse {
  users: Map<string, PasswordHash>;
  /** One line per refused entry, naming the line and the user, never the hash. */
  warnings: string[];
}

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

export function parseHtpasswd(text: string): HtpasswdParse {
  const users = new Map<string, PasswordHash>();
  const warnings: string[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const user = colon > 0 ? line.slice(0, colon) : '';
    const hash = line.slice(colon + 1);
    const where = `line ${index + 1}${user ? ` (${user})` : ''}`;
    if (user === '') warnings.push(`${where}: not user:hash`);
    else if (BCRYPT.test(hash)) users.set(user, { kind: 'bcrypt', hash });
    else if (hash.startsWith('{SHA}')) {
      const digest = decodeBase64(hash.slice(5));
      if (digest?.byteLength === 20) users.set(user, { kind: 'sha1', digest });
      else warnings.push(`${where}: {SHA} entry is not base64 of a SHA-1 digest`);
    } else warnings.push(`${where}: unsupported hash (use bcrypt: htpasswd -B)`);
  }
  return { users, warnings };
}

export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  if (stored.kind === 'bcrypt') return bcrypt.compare(password, stored.hash);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-1', new TextEncoder().encode(password)));
  return constantTimeEqual(digest, stored.digest);
}

/** Whether two byte strings are equal, taking the same time wherever they first differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  let diff = 0;
  for (let i = 0; i < a.byteLength; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

const decoys = new Map<number, Promise<PasswordHash>>();

/**
 * A bcrypt hash of a random password at `cost`, compared against when the user is unknown so that a miss
 * costs as long as a wrong password: response time must not tell which user names exist.
 */
export function decoyHash(cost: number): Promise<PasswordHash> {
  let decoy = decoys.get(cost);
  if (decoy === undefined) {
    decoy = bcrypt.hash(crypto.randomUUID(), cost).then((hash) => ({ kind: 'bcrypt' as const, hash }));
    decoys.set(cost, decoy);
  }
  return decoy;
}

/** The cost factor of a bcrypt hash (`$2y$05$…` → 5). */
export function bcryptCost(stored: PasswordHash): number | null {
  return stored.kind === 'bcrypt' ? Number(stored.hash.slice(4, 6)) : null;
}

function decodeBase64(text: string): Uint8Array | null {
  try {
    return Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));
  } catch {
    return null;
  }
}
