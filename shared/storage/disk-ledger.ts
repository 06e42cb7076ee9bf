/**
 * How processes sharing one disk folder keep one size budget. Each appends what it publishes and what it
 * evicts to a ledger of its own (ledger/{owner}.log, owner.ts); before it decides what to evict, each reads
 * what the others appended since it last looked. So every process knows (nearly) every blob, in about the
 * order they were written, and evicts against the folder's total. Two processes evicting at once may both
 * delete: that costs entries, never a wrong answer (presence is always asked of the file system).
 *
 * Lines: `+ SIZE REL` (published) and `- REL` (evicted). A process's ledger is removed once it is gone; the
 * next one to start rebuilds its index from the files, so nothing else needs the history. A long-running
 * process starts a fresh ledger every 16 MiB and removes the old one; a reader that had not finished it loses
 * a few events, which costs accuracy of the budget for a moment, never a wrong answer.
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
}

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

  /** Opens the ledger folder: removes the ledgers of processes that are gone, and skips the others' history. */
  constructor(root: string) {
    this.#dir = join(root, 'ledger');
    mkdirSync(this.#dir, { recursive: true });
    this.#own = this.#fileName();
    for (const name of readdirSync(this.#dir)) {
      const owner = LEDGER_NAME.exec(name)?.[1];
      if (owner === undefined || !ownerAlive(owner)) rmSync(join(this.#dir, name), { force: true });
      else this.#tails.set(name, { offset: statSync(join(this.#dir, name)).size, rest: '' });
    }
    this.#fd = openSync(this.#own, 'a');
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
    this.#fd = openSync(this.#own, 'a');
    rmSync(old, { force: true });
  }

  /** Removes this store's ledger (its blobs stay; whoever opens the folder next indexes them from the files). */
  close(): void {
    if (this.#fd < 0) return;
    closeSync(this.#fd);
    this.#fd = -1;
    rmSync(this.#own, { force: true });
  }

  #fileName(): string {
    return join(this.#dir, `${this.#tag}~${this.#id}.${this.#generation}.log`);
  }

  /** Hands over, in order, what the other processes appended since the last call. */
  catchUp(apply: (event: LedgerEvent) => void): void {
    for (const name of readdirSync(this.#dir)) {
      if (LEDGER_NAME.exec(name)?.[2] === this.#id) continue;
      const tail = this.#tails.get(name) ?? { offset: 0, rest: '' };
      this.#tails.set(name, tail);
      const text = readFrom(join(this.#dir, name), tail.offset);
      if (text === null) {
        this.#tails.delete(name); // its owner is gone and a newcomer removed it
        continue;
      }
      tail.offset += Buffer.byteLength(text);
      const lines = (tail.rest + text).split('\n');
      tail.rest = lines.pop()!;
      for (const line of lines) {
        const added = /^\+ (\d+) (\S+)$/.exec(line);
        if (added) apply({ published: true, rel: added[2]!, size: Number(added[1]) });
        else if (line.startsWith('- ')) apply({ published: false, rel: line.slice(2) });
      }
    }
  }
}

/** A file's bytes from `offset` on, as text ('' when nothing new), or null when the file is gone. */
function readFrom(path: string, offset: number): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const chunks: Buffer[] = [];
    for (let at = offset; ; ) {
      const buffer = Buffer.allocUnsafe(64 * 1024);
      const read = readSync(fd, buffer, 0, buffer.length, at);
      if (read === 0) break;
      chunks.push(buffer.subarray(0, read));
      at += read;
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
