/** Listing what a store folder holds, to prove that a refused or failed upload left nothing behind. */
import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { AHEAD_PREFIX } from '../../shared/storage/temp-files.ts';

/** Every file under `dir`, recursively, sorted. */
export function filesUnder(dir: string): string[] {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(d, entry.name));
      else files.push(join(d, entry.name));
    }
  };
  walk(dir);
  return files.sort();
}

/** What uploads left in a disk store's tmp folder: its files, but for the empty one made ahead (temp-files.ts). */
export function uploadLeftovers(tmp: string): string[] {
  return filesUnder(tmp).filter((path) => !basename(path).startsWith(AHEAD_PREFIX));
}
