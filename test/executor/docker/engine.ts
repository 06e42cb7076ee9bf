/**
 * A private Docker engine for one test file (or the benchmark): dockerd on its own socket, data and exec roots,
 * pidfile and containerd namespace, with no iptables and no bridge (containers get only the none and host
 * networks), started with setsid and stopped by its PID. Local images are imported from root file systems that
 * images.ts builds (no registry here). Needs root, dockerd (docker.io) and /bin/busybox (busybox-static); under
 * CI=true their absence fails the suite.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, mkdtempSync, rmSync, createReadStream } from 'node:fs';
import { join } from 'node:path';
import { DockerEngine } from '../../../executor/runner/docker/index.ts';
import { findTool, requireTool } from '../../helpers/tools.ts';
import { type ImageName, imageTarball } from './images.ts';

const INSTALL = 'apt-get install docker.io busybox-static, as root (npm test does it)';

/** Whether the Docker suites can run here (throws under CI=true when they cannot). */
export function dockerAvailable(): boolean {
  const isRoot = process.getuid?.() === 0;
  return (
    requireTool('dockerd', findTool('dockerd', '/usr/sbin/dockerd'), INSTALL) &&
    requireTool('busybox', findTool('/bin/busybox'), INSTALL) &&
    requireTool('root (a private dockerd needs it)', isRoot ? 'root' : undefined, 'run the Docker suites as root')
  );
}

export interface TestEngine {
  /** `unix:///…/docker.sock`, for --docker-host. */
  readonly host: string;
  readonly api: DockerEngine;
  /** Image references by name, as imported. */
  readonly images: Record<ImageName, string>;
  /** IDs of the containers larder has on the engine (label `larder`), running or not. */
  larderContainers(): Promise<string[]>;
  stop(): Promise<void>;
}

/** How long dockerd may take to answer /_ping (well under a second here; generous for a loaded machine). */
const READY_LIMIT_MS = 30_000;
let serial = 0;

export async function startTestEngine(images: readonly ImageName[] = ['busybox']): Promise<TestEngine> {
  // A short path: a unix socket path must stay under 108 bytes.
  const dir = mkdtempSync('/tmp/ldk-');
  const socket = join(dir, 'docker.sock');
  const log = openSync(join(dir, 'dockerd.log'), 'a');
  const namespace = `larder-test-${process.pid}-${++serial}`;
  const child: ChildProcess = spawn(
    findTool('dockerd', '/usr/sbin/dockerd')!,
    [
      '-H',
      `unix://${socket}`,
      '--data-root',
      join(dir, 'data'),
      '--exec-root',
      join(dir, 'exec'),
      '--pidfile',
      join(dir, 'dockerd.pid'),
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      '--bridge=none',
      '--storage-driver=overlay2',
      '--containerd-namespace',
      namespace,
      '--containerd-plugins-namespace',
      `${namespace}-plugins`,
      '--shutdown-timeout',
      '2',
    ],
    { detached: true, stdio: ['ignore', log, log] },
  );
  closeSync(log);
  // Should this process end without stop() (a crash, a timeout), the engine must not outlive it.
  const orphanGuard = () => child.kill('SIGTERM');
  process.once('exit', orphanGuard);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      process.off('exit', orphanGuard);
      resolve();
    }),
  );
  const api = new DockerEngine(socket);
  const stop = async () => {
    api.close();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(killer);
    }
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      console.warn(`could not remove ${dir}: ${(err as Error).message}`);
    }
  };
  try {
    await ready(api, exited, dir);
    const refs = {} as Record<ImageName, string>;
    for (const name of images) refs[name] = await importImage(api, name);
    return {
      host: `unix://${socket}`,
      api,
      images: refs,
      async larderContainers() {
        const list = await api.call<Array<{ Id: string }>>(
          'GET',
          `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ label: ['larder'] }))}`,
        );
        return list.map((c) => c.Id);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Waits for the engine to answer (it creates the socket a moment before it serves). */
async function ready(api: DockerEngine, exited: Promise<void>, dir: string): Promise<void> {
  let dead = false;
  void exited.then(() => (dead = true));
  const deadline = Date.now() + READY_LIMIT_MS;
  for (;;) {
    if (dead) throw new Error(`dockerd exited at start; see ${dir}/dockerd.log`);
    try {
      await api.call('GET', '/_ping', undefined, { timeoutMs: 2_000 });
      return;
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`dockerd did not answer within ${READY_LIMIT_MS / 1000} s: ${(err as Error).message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** `POST /images/create?fromSrc=-` with the root file system as a tar body: an image without a registry. */
async function importImage(api: DockerEngine, name: ImageName): Promise<string> {
  const tarball = await imageTarball(name);
  const repo = `larder-test/${name}`;
  await api.progress('POST', `/images/create?fromSrc=-&repo=${repo}&tag=1`, createReadStream(tarball));
  return `${repo}:1`;
}
