/** Serves the edge on Deno: `deno task edge --listen … --store …`. Deno serves app.fetch directly. */
import process from 'node:process';
import { parseEdgeConfig } from '../shared/config.ts';
import { childPort, childReady, isEdgeChild, startEdgeChildren } from './processes.ts';
import { buildEdge, listeningLine } from './start.ts';

declare const Deno: {
  args: string[];
  exit(code: number): never;
  execPath(): string;
  permissions: { querySync(descriptor: { name: string }): { state: string } };
  env: { toObject(): Record<string, string> };
  readTextFileSync(path: string): string;
  serve(
    options: {
      hostname: string;
      port: number;
      reusePort?: boolean;
      cert?: string;
      key?: string;
      onListen?: (addr: { port: number }) => void;
    },
    handler: (request: Request) => Response | Promise<Response>,
  ): { shutdown(): Promise<void> };
};

/** The permissions this process was granted in full, as flags for its children (the edge task's, or more). */
const PERMISSIONS = ['net', 'read', 'write', 'env', 'sys', 'run'];
const grantedFlags = () =>
  PERMISSIONS.filter((name) => Deno.permissions.querySync({ name }).state === 'granted').map(
    (name) => `--allow-${name}`,
  );

const config = parseEdgeConfig(Deno.args, Deno.env.toObject());
if (config.processes > 1 && !isEdgeChild()) {
  // This process only supervises (processes.ts); its children run this same entry and command line.
  // --unstable-net: Deno.serve's reusePort, which the children need, is still marked unstable (Deno 2.9).
  const args = ['run', '--unstable-net', ...grantedFlags(), import.meta.filename!, ...Deno.args];
  const children = await startEdgeChildren(config, 'deno', { command: Deno.execPath(), args });
  const stop = () => void children.close().then(() => Deno.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} else await serve();

async function serve(): Promise<void> {
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
      port: childPort(config),
      reusePort: config.processes > 1,
      ...tls,
      onListen: ({ port }) =>
        isEdgeChild()
          ? childReady(port)
          : console.log(listeningLine('deno', config.listen.host, port, config.tls !== null)),
    },
    app.fetch,
  );
}
