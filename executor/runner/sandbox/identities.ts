/**
 * Who an action runs as. When larder runs as root, every slot (a running action, a persistent worker process)
 * gets a uid of its own from `--run-as-uids`, so that even without namespaces no action can read, signal or
 * change another's files or processes. A uid goes back to the pool only once nothing of its holder is left
 * running (the runner waits for that), so two holders never overlap. `--run-as USER` keeps the older model: one
 * unprivileged user for all. Not root: the server's own user, and the namespaces alone keep actions apart.
 */
import { LarderError } from '../../../shared/errors.ts';

export interface Identity {
  readonly uid: number;
  readonly gid: number;
}

export interface Identities {
  /** A uid for one slot; null: run as the server's own user. Throws when every uid of the range is in use. */
  acquire(): Identity | null;
  release(identity: Identity | null): void;
  /** Every identity an action may ever have (start-up checks: can any of them read the store?). */
  readonly all: readonly Identity[];
  /** How many slots can hold a uid at once (Infinity when they share one). */
  readonly capacity: number;
  /**
   * Each holder has its uid to itself: no process runs as it but the holder's own, and none before the holder
   * starts one. False when slots share one user (or the server's own).
   */
  readonly exclusive: boolean;
}

/** A uid (and a group of the same number) per slot, from an inclusive range. */
export function uidRange(first: number, last: number): Identities {
  const free: number[] = [];
  for (let uid = last; uid >= first; uid--) free.push(uid);
  const inUse = new Set<number>();
  return {
    acquire() {
      const uid = free.pop();
      if (uid === undefined) {
        throw new LarderError(
          'unavailable',
          `all ${last - first + 1} uids of --run-as-uids ${first}-${last} are in use; give a larger range`,
        );
      }
      inUse.add(uid);
      return { uid, gid: uid };
    },
    release(identity) {
      if (identity === null || !inUse.delete(identity.uid)) return;
      free.push(identity.uid);
    },
    // Checks only ever need one representative: every uid of the range is alike to the file system.
    all: [{ uid: first, gid: first }],
    capacity: last - first + 1,
    exclusive: true,
  };
}

/** Every slot as the same user (`--run-as USER`), or as the server itself (null). */
export function sharedIdentity(identity: Identity | null): Identities {
  return {
    acquire: () => identity,
    release: () => undefined,
    all: identity === null ? [] : [identity],
    capacity: Number.POSITIVE_INFINITY,
    exclusive: false,
  };
}
