/** Serves the edge on Deno: `deno task edge --listen … --store …`. Deno serves app.fetch directly. */
import { parseEdgeConfig } from '../shared/config.ts';
import { buildEdge, listeningLine } from './start.ts';

declare const Deno: {
  args: string[];
  exit(code: number): never;
  env: { toObject(): Record<string, string> };
  readTextFileSync(path: string): string;
  serve(
    options: {
      hostname: string;
      port: number;
      cert?: string;
      key?: string;
      onListen?: (addr: { port: number }) => void;
    },
    handler: (request: Request) => Response | Promise<Response>,
  ): unknown;
};

const config = parseEdgeConfig(Deno.args, Deno.env.toObject());
// With a certificate Deno.serve speaks HTTPS itself (PEM text, not paths).
const tls =
  config.tls === null
    ? {}
    : { cert: Deno.readTextFileSync(config.tls.certPath), key: Deno.readTextFileSync(config.tls.keyPath) };
const { app } = await buildEdge(config).catch((err: unknown) => {
  // Deno refuses every path under /dev (a RAM disk at /dev/shm included) without --allow-all, whatever
  // --allow-read/--allow-write say; say so plainly instead of leaving the user with the permission error.
  if ((err as Error)?.name === 'NotCapable' && /"\/dev\//.test((err as Error).message)) {
    console.error(
      'larder: Deno allows paths under /dev (such as /dev/shm) only with --allow-all. For a cache in RAM, use a tmpfs ' +
        'mounted elsewhere (e.g. /run/user/$UID, or `mount -t tmpfs tmpfs /var/cache/larder`), or run deno with --allow-all.',
    );
    Deno.exit(2);
  }
  throw err;
});
Deno.serve(
  {
    hostname: config.listen.host,
    port: config.listen.port,
    ...tls,
    onListen: ({ port }) => console.log(listeningLine('deno', config.listen.host, port, config.tls !== null)),
  },
  app.fetch,
);
