/**
 * How processes sharing one disk folder keep one size budget. Each appends what it publishes and what it
 * evicts to a ledger of its own (ledger/{owner}.log, owner.ts); before it decides what to evict, each reads
 * what the others appended since it last looked. So every process knows (nearly) every blob, in about the
 * order they were written, and evicts against the folder's total. Two processes evicting at once may both
 * delete: that costs entries, never a wrong answer (presence is always asked of the file system).
 *
 * Lines: `+ SIZE REL` (published) and `- REL` (evicted). A process's ledger is removed once it is gone; the
 * next one to start rebuilds its index from the files, so nothing else needs the history. A long-running
 * process starts a fresh ledger every 16 MiB and removes the old one; a reader keeps the others' ledgers open, so
 * it still reads the last lines of a removed one (one it had never opened is lost, which costs accuracy of the
 * budget for a moment, never a wrong answer).
 */
import { Buffer } from 'node:buffer';
import { closeSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ownerAlive, ownerTag } from './owner.ts';

export type LedgerEvent = { published: true; rel: string; size: number } | { published: false; rel: string };

interface Tail {
  offset: number;
  /** The start of a line whose end has not been written yet. */
  rest: string;
  /** Kept open between catch-ups: reading what is new is then one read(2), not an open, a read and a close. */
  fd: number | null;
}

/** The folder is listed again when its mtime moves (a ledger created, rotated or removed), and at least this often:
 * a file system's coarse timestamps can leave a ledger created in the same tick as the last listing unseen. */
const RELIST_MS = 1000;

const ROTATE_BYTES = 16 * 1024 * 1024;
/** `{owner}~{store}.{n}.log`: a process may open more than one store on a folder (tests do). */
const LEDGER_NAME = /^(p\d+-(?:\d+|x))~([0-9a-f]+)\.\d+\.log$/;

export class Ledger {
  readonly #dir: string;
  readonly #tag = ownerTag();
  readonly #id = randomUUID().slice(0, 8);
  #own: string;
  /** Kept open: a publish costs one small append, not an open and a close as well. */
  #fd: number;
  #generation = 0;
  #written = 0;
  readonly #tails = new Map<string, Tail>();
  /** The folder's mtime at the last listing, and when that was. */
  #listedMtime = -1;
  #listedAt = 0;

  /** Opens the ledger folder: removes the ledgers of processes that are gone, and skips the others' history. */
  constructor(root: string) {
    this.#dir = join(root, 'ledger');
    // Private like the blobs (disk.ts): the lines name every tenant's instances and hashes.
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    this.#own = this.#fileName();
    for (const name of readdirSync(this.#dir)) {
      const owner = LEDGER_NAME.exec(name)?.[1];
      if (owner === undefined || !ownerAlive(owner)) rmSync(join(this.#dir, name), { force: true });
      else this.#tails.set(name, { offset: statSync(join(this.#dir, name)).size, rest: '', fd: null });
    }
    this.#fd = openSync(this.#own, 'a', 0o600);
  }

  published(rel: string, size: number): void {
    this.#append(`+ ${size} ${rel}\n`);
  }

  evicted(rels: string[]): void {
    if (rels.length > 0) this.#append(rels.map((rel) => `- ${rel}\n`).join(''));
  }

  #append(lines: string): void {
    writeSync(this.#fd, lines);
    this.#written += lines.length;
    if (this.#written < ROTATE_BYTES) return;
    const old = this.#own;
    closeSync(this.#fd);
    this.#generation++;
    this.#own = this.#fileName();
    this.#written = 0;
    this.#fd = openSync(this.#own, 'a', 0o600);
    rmSync(old, { force: true });
  }

  /** Removes this store's ledger (its blobs stay; whoever opens the folder next indexes them from the files). */
  close(): void {
    for (const tail of this.#tails.values()) if (tail.fd !== null) closeSync(tail.fd);
    this.#tails.clear();
    if (this.#fd < 0) return;
    closeSync(this.#fd);
    this.#fd = -1;
    rmSync(this.#own, { force: true });
  }

  #fileName(): string {
    return join(this.#dir, `${this.#tag}~${this.#id}.${this.#generation}.log`);
  }

  /**
   * Hands over, in order, what the other processes appended since the last call. Every upload calls this, so it
   * costs one stat of the folder and one read per other ledger; the folder is listed only when it changed.
   *
   * Resolves false when some of it may be lost: the folder changed (a process started, stopped or rotated its
   * ledger), so a ledger may have come and gone unread in between, or one listed was gone before it was opened.
   * Lost lines cost the budget's accuracy only, but a lost eviction would leave the caller believing a deleted blob
   * present (disk.ts statMany withdraws its trust then). The one change this cannot see is a ledger created and
   * removed within the file system's timestamp tick (a few ms) of a listing, too short for a process to start,
   * evict and stop.
   */
  catchUp(apply: (event: LedgerEvent) => void): boolean {
    let complete = this.#relistIfChanged(apply);
    for (const [name, tail] of this.#tails) {
      tail.fd ??= openOrNull(join(this.#dir, name));
      if (tail.fd === null) {
        this.#tails.delete(name); // its owner is gone and a newcomer removed it
        complete = false;
      } else applyLines(tail, readFrom(tail.fd, tail.offset), apply);
    }
    return complete;
  }

  /**
   * Follows the ledgers that appeared, and lets go of those removed once their last lines are read. False when the
   * folder changed since the last listing (see catchUp).
   */
  #relistIfChanged(apply: (event: LedgerEvent) => void): boolean {
    const mtime = statSync(this.#dir).mtimeMs;
    const now = Date.now();
    const changed = mtime !== this.#listedMtime;
    if (!changed && now - this.#listedAt < RELIST_MS) return true;
    this.#listedMtime = mtime;
    this.#listedAt = now;
    const present = new Set(readdirSync(this.#dir).filter((name) => LEDGER_NAME.exec(name)?.[2] !== this.#id));
    for (const name of present) if (!this.#tails.has(name)) this.#tails.set(name, { offset: 0, rest: '', fd: null });
    for (const [name, tail] of this.#tails) {
      if (present.has(name)) continue;
      // Removed (rotated, or its owner is gone): an open descriptor still reads what was appended before that.
      if (tail.fd !== null) {
        applyLines(tail, readFrom(tail.fd, tail.offset), apply);
        closeSync(tail.fd);
      }
      this.#tails.delete(name);
    }
    return !changed;
  }
}

/** Parses what was read from a ledger past `tail.offset` and hands its complete lines over. */
function applyLines(tail: Tail, text: string, apply: (event: LedgerEvent) => void): void {
  if (text === '') return;
  tail.offset += Buffer.byteLength(text);
  const lines = (tail.rest + text).split('\n');
  tail.rest = lines.pop()!;
  for (const line of lines) {
    const added = /^\+ (\d+) (\S+)$/.exec(line);
    if (added) apply({ published: true, rel: added[2]!, size: Number(added[1]) });
    else if (line.startsWith('- ')) apply({ published: false, rel: line.slice(2) });
  }
}

function openOrNull(path: string): number | null {
  try {
    return openSync(path, 'r');
  } catch {
    return null;
  }
}

/** One buffer for every read: most catch-ups find nothing new, and should not allocate for it. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** An open file's bytes from `offset` on, as text ('' when nothing new). */
function readFrom(fd: number, offset: number): string {
  const chunks: Buffer[] = [];
  for (let at = offset; ; ) {
    const read = readSync(fd, READ_BUFFER, 0, READ_BUFFER.length, at);
    if (read === 0) break;
    chunks.push(Buffer.from(READ_BUFFER.subarray(0, read)));
    at += read;
  }
  return chunks.length === 0 ? '' : Buffer.concat(chunks).toString('utf8');
}
