/**
 * The edge on Deno Deploy, or anywhere Deno runs without a file system: configured from environment variables
 * alone (LARDER_STORE, LARDER_OIDC_ISSUER, LARDER_OIDC_AUDIENCE, LARDER_CONFIG_JSON, AWS_*), and refusing at start
 * any setting that would need a file (a disk tier, an htpasswd or config file, TLS files: Deploy terminates TLS).
 * The shape to use is `tiered(memory:SIZE,s3://BUCKET/PREFIX)` with OIDC. Run it as Deploy does, with network
 * and environment access only: `deno task deploy`.
 */
import { parseEdgeConfig, type EdgeConfig } from '../shared/config.ts';
import { LarderError } from '../shared/errors.ts';
import type { StoreConfig } from '../shared/storage/config.ts';
import { buildEdge, listeningLine } from './start.ts';

declare const Deno: {
  env: { toObject(): Record<string, string> };
  serve(
    options: { hostname: string; port: number; onListen?: (addr: { port: number }) => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): unknown;
};

const env = Deno.env.toObject();
// Without LARDER_STORE the default would be a disk folder: say what to set instead.
if (!env.LARDER_STORE)
  throw new LarderError(
    'invalid_argument',
    'set LARDER_STORE, e.g. tiered(memory:256MiB,s3://BUCKET/PREFIX): Deno Deploy has no disk',
  );
const config = parseEdgeConfig([], env);
refuseFiles(config);
const { app } = await buildEdge(config);
// Deno Deploy picks its own address and ignores these; locally they come from LARDER_LISTEN.
Deno.serve(
  {
    hostname: config.listen.host,
    port: config.listen.port,
    onListen: ({ port }) => console.log(listeningLine('deno deploy', config.listen.host, port)),
  },
  app.fetch,
);

function refuseFiles(config: EdgeConfig): void {
  const needsFile = (store: StoreConfig): boolean =>
    store.kind === 'disk' || (store.kind === 'tiered' && store.tiers.some(needsFile));
  if (needsFile(config.store))
    throw new LarderError(
      'invalid_argument',
      'LARDER_STORE has a disk tier: Deno Deploy has no disk (use memory in front of s3://)',
    );
  if (config.auth.htpasswd !== null)
    throw new LarderError('invalid_argument', 'LARDER_HTPASSWD needs a file: use OIDC on Deno Deploy');
  if (config.tls !== null)
    throw new LarderError(
      'invalid_argument',
      'LARDER_TLS_CERT/LARDER_TLS_KEY need files: Deno Deploy serves HTTPS itself',
    );
  if (env.LARDER_CONFIG)
    throw new LarderError('invalid_argument', 'LARDER_CONFIG names a file: put its JSON in LARDER_CONFIG_JSON instead');
}
