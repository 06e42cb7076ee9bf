/**
 * The store syntax of `--store` / LARDER_STORE, parsed into a tree that from-config.ts turns into stores.
 *
 *   memory            an in-memory LRU store of --max-size bytes (memory:SIZE sets its own budget)
 *   disk:PATH         content-addressed files under PATH, LRU-evicted to --max-size (disk:PATH@SIZE sets its own)
 *   s3://BUCKET/PREFIX  objects in an S3 bucket; endpoint, region and credentials from the AWS environment
 *                     (see s3-config.ts); no size budget: expire objects with a bucket lifecycle rule
 *   tiered(A,B[,C…])  A in front of B in front of C: reads are served by the first tier that has the blob and
 *                     fill the tiers before it; writes go through to the last tier (see tiered.ts).
 *                     e.g. tiered(memory:512MiB,disk:/var/cache/larder@20GiB,s3://bucket/larder)
 */
import { LarderError } from '../errors.ts';
import { parseSize } from '../size.ts';
import { describeS3, parseS3Spec, type S3Config } from './s3-config.ts';

export type StoreConfig =
  | { kind: 'memory'; maxBytes: number }
  | { kind: 'disk'; path: string; maxBytes: number }
  | S3Config
  | { kind: 'tiered'; tiers: StoreConfig[] };

export interface StoreDefaults {
  /** The size budget of a store whose spec does not give one (--max-size). */
  maxBytes: number;
  /** The environment, for the S3 endpoint, region and path style. */
  env?: Record<string, string | undefined>;
}

export function parseStoreSpec(spec: string, defaults: StoreDefaults): StoreConfig {
  const text = spec.trim();
  if (text === 'memory') return { kind: 'memory', maxBytes: defaults.maxBytes };
  if (text.startsWith('memory:')) return { kind: 'memory', maxBytes: parseSize(text.slice('memory:'.length)) };
  if (text.startsWith('disk:') && text.length > 'disk:'.length) {
    // A trailing @SIZE gives this disk its own budget (a path that itself ends in "@<digits>" cannot be used).
    const sized = /^disk:(.+)@(\d+(?:\.\d+)?[a-zA-Z]*)$/.exec(text);
    if (sized) return { kind: 'disk', path: sized[1]!, maxBytes: parseSize(sized[2]!) };
    return { kind: 'disk', path: text.slice('disk:'.length), maxBytes: defaults.maxBytes };
  }
  if (text.startsWith('s3://')) return parseS3Spec(text, defaults.env ?? {});
  if (text.startsWith('tiered(') && text.endsWith(')')) {
    const tiers = splitTopLevel(text.slice('tiered('.length, -1), spec).map((tier) => parseStoreSpec(tier, defaults));
    if (tiers.length < 2)
      throw new LarderError(
        'invalid_argument',
        `tiered(…) needs at least two stores, front first: ${JSON.stringify(spec)}`,
      );
    return { kind: 'tiered', tiers };
  }
  throw new LarderError(
    'invalid_argument',
    `unknown store ${JSON.stringify(spec)}: expected memory[:SIZE], disk:PATH[@SIZE], s3://BUCKET/PREFIX or tiered(FRONT,…,BACK)`,
  );
}

export function describeStore(config: StoreConfig): string {
  switch (config.kind) {
    case 'memory':
      return `memory (${config.maxBytes} bytes)`;
    case 'disk':
      return `disk:${config.path} (${config.maxBytes} bytes)`;
    case 's3':
      return describeS3(config);
    case 'tiered':
      return `tiered(${config.tiers.map(describeStore).join(' → ')})`;
  }
}

/** Splits "a,tiered(b,c),d" at the commas outside parentheses. */
function splitTopLevel(list: string, spec: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    const ch = list[i];
    if (ch === '(') depth++;
    else if (ch === ')' && --depth < 0) break;
    else if (ch === ',' && depth === 0) {
      parts.push(list.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new LarderError('invalid_argument', `unbalanced parentheses in store ${JSON.stringify(spec)}`);
  parts.push(list.slice(start));
  return parts.map((part) => part.trim());
}
