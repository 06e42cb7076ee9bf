/**
 * The start-up step that serves gRPC: builds the executor's server (TLS when configured) and binds --listen.
 */
import * as grpc from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import type { AccessGate } from '../../shared/auth/gate.ts';
import type { ExecutorConfig } from '../config/executor-options.ts';
import { LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { Metrics } from '../../shared/metrics/metrics.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import type { PartialUploads } from '../bytestream/partial-uploads.ts';
import { widenReceiveWindows } from '../grpc/flow-control.ts';
import { allowInPlaceFrames } from '../grpc/in-place-frames.ts';
import { allowLentFrames } from '../grpc/lent-frames.ts';
import { watchUnservedMethods } from '../grpc/unserved-methods.ts';
import { createExecutorServer } from './server.ts';
import type { loadZstd } from '../reapi/zstd.ts';
import { bindError } from './bind-error.ts';
import type { DisposalStack } from './disposal-stack.ts';
import type { Execution } from './execution.ts';
import type { RecentActions } from '../execution/recent-actions.ts';

/** Builds the gRPC server and binds --listen. Its undo stops execution first, so the streams following it end. */
export async function startGrpcServer(
  options: {
    config: ExecutorConfig;
    /** How often Execute and WaitExecution streams hear from a long action. */
    keepaliveMs: number;
    log: Logger;
    store: BlobStore;
    uploads: PartialUploads;
    zstd: ReturnType<typeof loadZstd>;
    gate: AccessGate;
    metrics: Metrics;
    execution: Execution | null;
    /** Where the Execution service records finished actions (the actions page). */
    recent: RecentActions | null;
  },
  opened: DisposalStack,
): Promise<{ url: string; port: number }> {
  const { config, keepaliveMs, log, execution, recent, ...services } = options;
  const timeouts = { defaultMs: config.execution.actionTimeoutMs, maxMs: config.execution.maxActionTimeoutMs };
  const server = createExecutorServer({
    ...config,
    ...services,
    log,
    ...(execution?.workers ? { actionCacheWrites: execution.workers.actionCacheWrites } : {}),
    execution:
      execution === null
        ? undefined
        : { scheduler: execution.scheduler, timeouts, keepaliveMs, ...(recent === null ? {} : { recent }) },
  });
  opened.defer(async () => {
    await execution?.stop();
    await shutDown(server);
  });
  const credentials = config.tls === null ? grpc.ServerCredentials.createInsecure() : await tlsCredentials(config.tls);
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${config.listen.port}`, credentials, (err, bound) =>
      err ? reject(bindError('--listen', config.listen, err)) : resolve(bound),
    );
  });
  if (!watchUnservedMethods(server, { log, metrics: options.metrics }))
    log.warn('cannot watch for calls to unserved methods (grpc-js internals changed?): they are not logged');
  if (!allowInPlaceFrames())
    log.warn('cannot frame replies in place (grpc-js internals changed?): every ByteStream Read message is copied');
  if (!allowLentFrames())
    log.warn(
      'cannot decode into handed-back buffers (grpc-js internals changed?): every ByteStream Write message is a new one',
    );
  if (!widenReceiveWindows(server))
    log.warn(
      'could not widen HTTP/2 receive windows (grpc-js internals changed?): uploads stay at 64 KiB per round trip',
    );
  return { url: `${config.tls === null ? 'grpc' : 'grpcs'}://${host}:${port}`, port };
}

/** Gives calls in flight a moment to finish, then cuts the rest off. */
function shutDown(server: grpc.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 5000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function tlsCredentials(tls: { certPath: string; keyPath: string }): Promise<grpc.ServerCredentials> {
  const read = (path: string, what: string) =>
    readFile(path).catch((err: Error) =>
      Promise.reject(new LarderError('invalid_argument', `cannot read the TLS ${what} ${path}: ${err.message}`)),
    );
  // Both are read at once, but a failure is reported in a fixed order (certificate first), not by which
  // read happened to fail first: the same bad configuration always gives the same message.
  const [certRead, keyRead] = await Promise.allSettled([read(tls.certPath, 'certificate'), read(tls.keyPath, 'key')]);
  if (certRead.status === 'rejected') throw certRead.reason;
  if (keyRead.status === 'rejected') throw keyRead.reason;
  const [cert, key] = [certRead.value, keyRead.value];
  try {
    return grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
  } catch (err) {
    throw new LarderError('invalid_argument', `invalid TLS certificate or key: ${(err as Error).message}`);
  }
}
