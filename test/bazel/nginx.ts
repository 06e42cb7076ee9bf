// A reference HTTP cache for end-to-end tests: Debian's nginx with WebDAV PUT
// serving a temp directory on a free loopback port. Bazel's HTTP cache protocol
// is plain GET/PUT of /ac/{hex} and /cas/{hex}, which nginx handles as files.
//
// nginx runs in the foreground as our child process (daemon off, master_process
// off), with every path (config, pid, logs, temp files) inside its own temp
// directory, and is stopped by PID.

import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeLoopbackPort } from '../helpers/ports.ts';

export function nginxPath(): string {
  const fromEnv = process.env.LARDER_NGINX;
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : '/usr/sbin/nginx';
}

export function nginxAvailable(): boolean {
  try {
    accessSync(nginxPath(), fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** One line of the access log. */
export interface DavRequest {
  method: string;
  /** Decoded, normalized path, e.g. "/ac/3ffd…". */
  path: string;
  status: number;
  /** Content-Length of the request (PUT), 0 when absent. */
  bytesIn: number;
  /** Response body bytes sent (GET). */
  bytesOut: number;
  userAgent: string;
}

export interface DavCache {
  /** Base URL with a trailing slash, e.g. "http://127.0.0.1:40123/". */
  url: string;
  port: number;
  pid: number;
  /** Directory whose files are the cache entries. */
  dataDir: string;
  /** All requests logged so far, oldest first. */
  requests(): Promise<DavRequest[]>;
  stop(): Promise<void>;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function config(dir: string, port: number): string {
  const p = (name: string): string => join(dir, name);
  return `daemon off;
master_process off;
worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} notice;
events { worker_connections 256; }
http {
  log_format larder '$request_method\\t$uri\\t$status\\t$content_length\\t$body_bytes_sent\\t$http_user_agent';
  access_log ${p('access.log')} larder;
  client_body_temp_path ${p('tmp/body')};
  proxy_temp_path ${p('tmp/proxy')};
  fastcgi_temp_path ${p('tmp/fastcgi')};
  uwsgi_temp_path ${p('tmp/uwsgi')};
  scgi_temp_path ${p('tmp/scgi')};
  client_max_body_size 0;
  server {
    listen 127.0.0.1:${port};
    root ${p('data')};
    location / {
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw;
    }
  }
}
`;
}

/** Starts nginx as a WebDAV-PUT file cache on a free loopback port. */
export async function startNginxDavCache(): Promise<DavCache> {
  const dir = await mkdtemp(join(tmpdir(), 'larder-nginx-'));
  await mkdir(join(dir, 'data'));
  await mkdir(join(dir, 'tmp'));
  let lastError = '';
  // The free port can be taken between probing and binding; try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freeLoopbackPort();
    const conf = join(dir, 'nginx.conf');
    await writeFile(conf, config(dir, port));
    const child = spawn(nginxPath(), ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    const pid = child.pid;
    if (pid === undefined) {
      await new Promise((r) => child.once('error', r));
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cannot start ${nginxPath()}`);
    }
    const deadline = Date.now() + 10_000;
    let up = false;
    while (!exited(child) && Date.now() < deadline) {
      if (await canConnect(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (up) {
      return {
        url: `http://127.0.0.1:${port}/`,
        port,
        pid,
        dataDir: join(dir, 'data'),
        requests: async () => parseAccessLog(await readFile(join(dir, 'access.log'), 'utf8').catch(() => '')),
        stop: async () => {
          if (!exited(child)) {
            process.kill(pid, 'SIGTERM');
            if (!(await waitExit(child, 5_000))) {
              process.kill(pid, 'SIGKILL');
              await waitExit(child, 5_000);
            }
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    if (!exited(child)) {
      process.kill(pid, 'SIGKILL');
      await waitExit(child, 5_000);
    }
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    lastError = `${stderr}${log}`.trim();
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`nginx did not come up on a loopback port:\n${lastError}`);
}

function parseAccessLog(text: string): DavRequest[] {
  const out: DavRequest[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [method = '', path = '', status = '0', bytesIn = '0', bytesOut = '0', userAgent = ''] = line.split('\t');
    out.push({
      method,
      path,
      status: Number(status),
      bytesIn: bytesIn === '-' ? 0 : Number(bytesIn),
      bytesOut: Number(bytesOut),
      userAgent,
    });
  }
  return out;
}
