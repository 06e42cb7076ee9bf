/**
 * The Go peer: bazel-remote 2.4.4 (../shared/tools/bazel-remote/, see its README; BENCH_BAZEL_REMOTE overrides the
 * path), the cache most Bazel users would pick instead of larder, serving the same URL layout over HTTP from a disk
 * store on the same file system as larder's. CAS blobs are stored uncompressed (its default, zstd, would make it pay
 * for compression larder's disk store does not do), with no access log (larder logs nothing per request either).
 * It is one multi-threaded process: its CPU is the whole process's.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../test/helpers/ports.ts';
import { type RunningServer, serverHandle } from './nginx.ts';
import { spawnTracked, waitForPort } from './proc.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BAZEL_REMOTE =
  process.env.BENCH_BAZEL_REMOTE ?? join(REPO_ROOT, '../shared/tools/bazel-remote/bazel-remote');

export function bazelRemoteFound(): boolean {
  return existsSync(BAZEL_REMOTE);
}

/** Its HTTP server (`url`) and, for the gRPC bench, its gRPC address (`127.0.0.1:PORT`). */
export async function startBazelRemote(
  dir: string,
  cpu: number | undefined,
): Promise<RunningServer & { grpcAddress: string }> {
  if (!bazelRemoteFound()) throw new Error(`bazel-remote not found at ${BAZEL_REMOTE} (BENCH_BAZEL_REMOTE=path)`);
  const [http, grpc] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const args = [
    '--dir',
    join(dir, 'store'),
    '--max_size',
    '1000',
    '--storage_mode',
    'uncompressed',
    '--http_address',
    `127.0.0.1:${http}`,
    '--grpc_address',
    `127.0.0.1:${grpc}`,
    '--access_log_level',
    'none',
  ];
  const child = spawnTracked(BAZEL_REMOTE, args, cpu, { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitForPort(http, child);
  await waitForPort(grpc, child);
  return { ...serverHandle('bazel-remote', `http://127.0.0.1:${http}`, child), grpcAddress: `127.0.0.1:${grpc}` };
}
