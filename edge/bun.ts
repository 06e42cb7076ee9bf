/** Serves the edge on Bun: `bun edge/bun.ts --listen … --store …` (`npm run edge:bun`). Bun serves app.fetch directly. */
import process from 'node:process';
import { parseEdgeConfig } from '../shared/config.ts';
import { WholeBodies } from './bodies.ts';
import { bunBodies, bunFileSender, bunSender } from './bun-body.ts';
import { childPort, childReady, isEdgeChild, startEdgeChildren } from './processes.ts';
import { buildEdge, listeningLine } from './start.ts';

declare const Bun: {
  file(path: string): Blob;
  serve(options: {
    hostname: string;
    port: number;
    reusePort: boolean;
    tls?: { cert: Blob; key: Blob };
    idleTimeout: number;
    maxRequestBodySize: number;
    development: boolean;
    fetch(request: Request): Response | Promise<Response>;
    error(err: Error & { code?: string }): Response;
  }): { port: number; stop(closeActiveConnections?: boolean): Promise<void> };
};

const config = parseEdgeConfig(process.argv.slice(2), process.env);
if (config.processes > 1 && !isEdgeChild()) {
  // This process only supervises (processes.ts); its children run this same entry and command line.
  const children = await startEdgeChildren(config, 'bun', { command: process.execPath, args: process.argv.slice(1) });
  const stop = () => void children.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} else {
  const whole = new WholeBodies();
  const { app, store, gate, history } = await buildEdge(config, {
    // Only a disk store lets go of an upload's bytes when its put resolves (bun-body.ts): a memory tier keeps them,
    // and an S3 client may still be sending them for an attempt it gave up on.
    bodies: bunBodies(whole, config.store.kind === 'disk'),
    sender: bunSender(whole),
    fileSender: bunFileSender,
  });
  const server = Bun.serve({
    hostname: config.listen.host,
    port: childPort(config),
    reusePort: config.processes > 1,
    ...(config.tls === null ? {} : { tls: { cert: Bun.file(config.tls.certPath), key: Bun.file(config.tls.keyPath) } }),
    // Seconds, at most 255 (Bun's limit); 0 keeps idle connections open. There is no overall request deadline.
    idleTimeout: Math.min(255, Math.ceil(config.idleTimeoutMs / 1000)),
    // The app refuses blobs over --max-blob-size with 413 before reading them; Bun's own cap (128 MiB) must not cut in first.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    development: false,
    fetch: app.fetch,
    // What the app throws it answers itself; this is only what fails after: the file of a sent blob gone (evicted
    // after it was found, bun-body.ts), which is now a miss.
    error: (err) =>
      err.code === 'ENOENT'
        ? new Response('blob evicted\n', { status: 404 })
        : new Response('internal error\n', { status: 500 }),
  });
  if (isEdgeChild()) childReady(server.port);
  else console.log(listeningLine('bun', config.listen.host, server.port, config.tls !== null));
  const stop = () =>
    void server
      .stop()
      .then(async () => {
        history.stop();
        gate.close();
        await store.close?.();
      })
      .then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
