/** The one place that turns a StoreConfig tree into live stores. Every upload path gets verification here. */
import { DiskStore } from './disk.ts';
import { MemoryStore } from './memory.ts';
import type { Logger } from '../log.ts';
import type { StoreConfig } from './config.ts';
import type { BlobStore } from './store.ts';
import { TieredStore } from './tiered.ts';
import { verifying } from './verifying.ts';

export interface OpenStoreOptions {
  /** Where stores report what they carry on without (a failing front tier); silent when absent. */
  log?: Logger;
}

/** Builds the store graph and wraps it so every upload is checked once, at the top. */
export async function openStore(config: StoreConfig, options: OpenStoreOptions = {}): Promise<BlobStore> {
  return verifying(await openNode(config, options));
}

async function openNode(config: StoreConfig, options: OpenStoreOptions): Promise<BlobStore> {
  switch (config.kind) {
    case 'memory':
      return new MemoryStore({ maxBytes: config.maxBytes });
    case 'disk':
      return DiskStore.open({ path: config.path, maxBytes: config.maxBytes, log: options.log });
    case 's3': {
      // Loaded only when used: the AWS SDK adds ~120 ms and ~15 MiB to start-up, which memory and disk edges need not pay.
      const { S3Store } = await import('./s3.ts');
      return new S3Store(config);
    }
    case 'tiered': {
      // tiered(a, b, c) is a in front of tiered(b, c): each level is one front and one back.
      const [front, ...rest] = config.tiers;
      const back = rest.length === 1 ? rest[0]! : { kind: 'tiered' as const, tiers: rest };
      return new TieredStore({ front: await openNode(front!, options), back: await openNode(back, options), log: options.log });
    }
  }
}
