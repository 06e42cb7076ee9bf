/**
 * A real S3-compatible server for tests: s3rver, as its own process on a loopback port with a temp directory,
 * stopped by PID and restartable on the same port and directory (for outage and recovery tests).
 *
 * Why s3rver: it is a real HTTP server speaking S3's REST/XML protocol with SigV4 checking, storing objects as
 * files, and it installs from npm and starts in well under a second. MinIO is not packaged for Debian or npm,
 * Debian's radosgw needs a Ceph cluster, and the newer npm emulators need Node ≥ 22 or keep everything in memory.
 * Its gaps, which the tests work around: no AbortMultipartUpload (405) and no ListMultipartUploads.
 */
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './edge-process.ts';
import { REPO_ROOT } from './tools.ts';

export const S3_BUCKET = 'larder-test';
const CHILD = join(REPO_ROOT, 'test/helpers/s3rver-child.cjs');
const START_TIMEOUT_MS = 20_000;

export interface S3Server {
  readonly port: number;
  readonly endpoint: string;
  readonly dir: string;
  readonly pid: number | undefined;
  /** The environment an edge needs to reach this server (endpoint, region, s3rver's fixed credentials, path style). */
  env(endpoint?: string): Record<string, string>;
  /** A client for inspecting the bucket from the test. */
  client(): S3Client;
  /** Keys under a prefix (every page). */
  list(prefix: string): Promise<Array<{ key: string; size: number }>>;
  /** SIGTERM (then SIGKILL) by PID; the data directory stays. */
  stop(): Promise<void>;
  /** Starts again on the same port and directory. */
  restart(): Promise<void>;
  /** stop() and remove the directory. */
  destroy(): Promise<void>;
}

/** `dir`: where s3rver keeps its data (kept afterwards); by default a temp folder that destroy() removes. */
export async function startS3Server(options: { dir?: string } = {}): Promise<S3Server> {
  const dir = options.dir === undefined ? tempDir('larder-s3-') : { path: options.dir, remove: () => {} };
  mkdirSync(dir.path, { recursive: true });
  let child: ChildProcess | null = null;
  let port = 0;
  const launch = async () => {
    const started = await spawnServer(dir.path, port);
    child = started.child;
    port = started.port;
  };
  await launch();
  const stop = async () => {
    const running = child;
    child = null;
    if (running === null || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  const endpoint = () => `http://127.0.0.1:${port}`;
  let sdk: S3Client | null = null;
  const client = () => {
    sdk ??= new S3Client({
      endpoint: endpoint(),
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    return sdk;
  };
  return {
    get port() {
      return port;
    },
    get endpoint() {
      return endpoint();
    },
    dir: dir.path,
    get pid() {
      return (child as ChildProcess | null)?.pid;
    },
    env: (url = endpoint()) => ({
      AWS_ENDPOINT_URL_S3: url,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      LARDER_S3_FORCE_PATH_STYLE: '1',
      // Never let the SDK's credential chain look for an instance-metadata service off this machine.
      AWS_EC2_METADATA_DISABLED: 'true',
    }),
    client,
    async list(prefix) {
      const found: Array<{ key: string; size: number }> = [];
      let token: string | undefined;
      do {
        const page = await client().send(
          new ListObjectsV2Command({ Bucket: S3_BUCKET, Prefix: prefix, ContinuationToken: token }),
        );
        for (const item of page.Contents ?? []) found.push({ key: item.Key!, size: item.Size ?? 0 });
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return found;
    },
    stop,
    restart: launch,
    async destroy() {
      sdk?.destroy();
      await stop();
      dir.remove();
    },
  };
}

function spawnServer(dir: string, port: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CHILD, dir, String(port), S3_BUCKET], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms:\n${output}`));
    }, START_TIMEOUT_MS);
    const onData = (d: Buffer) => {
      output += d.toString();
      const match = /s3rver listening on (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve({ child, port: Number(match[1]) });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited (${code ?? signal}) before listening:\n${output}`));
    });
  });
}
