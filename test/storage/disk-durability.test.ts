// Power loss: a blob must never be published (renamed into blobs/) before its bytes are on stable storage,
// or a crash can leave a zero-length or torn file under a valid CAS name. Watched with strace on a real
// edge process (on Node and on Bun): every rename of an upload's temp file follows an fdatasync (or fsync) of that file.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { randomBlob, request } from '../helpers/http.ts';
import { bunPath, findTool, REPO_ROOT, requireTool } from '../helpers/tools.ts';

const haveStrace = requireTool('strace', findTool('strace'), 'apt-get install strace');

/** Attaches strace to every thread of a running process; resolves once it is attached. */
async function traceProcess(pid: number, logFile: string): Promise<{ stop: () => Promise<void> }> {
  const child: ChildProcess = spawn(
    'strace',
    ['-f', '-p', String(pid), '-o', logFile, '-e', 'trace=openat,fdatasync,fsync,rename,renameat,renameat2'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/attached/.test(err)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`strace exited (${code}): ${err}`)));
  });
  return {
    async stop() {
      process.kill(child.pid!, 'SIGINT'); // strace detaches and leaves the traced process running
      await exited;
    },
  };
}

/**
 * The lines of an `strace -f` log with every call whole: a call another thread interrupted is logged as
 * `TID call(args <unfinished ...>` and later `TID <... call resumed>rest`, here joined back into one line.
 */
function wholeCalls(trace: string): string[] {
  const unfinished = new Map<string, string>(); // thread id -> the start of its interrupted call
  const lines: string[] = [];
  for (const line of trace.split('\n')) {
    const start = /^(\d+)\s+(.*) <unfinished \.\.\.>$/.exec(line);
    if (start) {
      unfinished.set(start[1]!, `${start[1]} ${start[2]}`);
      continue;
    }
    const resumed = /^(\d+)\s+<\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (resumed && unfinished.has(resumed[1]!)) {
      lines.push(unfinished.get(resumed[1]!)! + resumed[2]!);
      unfinished.delete(resumed[1]!);
      continue;
    }
    lines.push(line);
  }
  return lines;
}

/**
 * The temp files a process has open, by descriptor: those it created before a trace began (the disk store keeps
 * one created ahead, temp-files.ts), whose creation the trace cannot show. Read once the trace is attached.
 */
function openTempFiles(pid: number, tmpDir: string): Map<string, string> {
  const open = new Map<string, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const path = (() => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return ''; // closed meanwhile
      }
    })();
    if (path.startsWith(tmpDir)) open.set(fd, path);
  }
  return open;
}

/**
 * Temp files renamed without a sync of their descriptor between their creation (or, for those open when the trace
 * began, `openBefore`) and the rename.
 */
function unsyncedPublishes(
  trace: string,
  tmpDir: string,
  openBefore = new Map<string, string>(),
): { published: number; unsynced: string[] } {
  const opened = new Map<string, { fd: string; synced: boolean }>(); // temp path -> its descriptor
  const byFd = new Map<string, string>();
  for (const [fd, path] of openBefore) {
    opened.set(path, { fd, synced: false });
    byFd.set(fd, path);
  }
  let published = 0;
  const unsynced: string[] = [];
  for (const line of wholeCalls(trace)) {
    const open = /openat\([^,]+, "([^"]+)", [^)]*O_CREAT[^)]*\)\s+= (\d+)/.exec(line);
    if (open && open[1]!.startsWith(tmpDir)) {
      opened.set(open[1]!, { fd: open[2]!, synced: false });
      byFd.set(open[2]!, open[1]!);
      continue;
    }
    const sync = /f(?:data)?sync\((\d+)\)\s+= 0/.exec(line);
    if (sync) {
      const path = byFd.get(sync[1]!);
      if (path !== undefined) opened.get(path)!.synced = true;
      continue;
    }
    const rename = /rename(?:at2?)?\((?:[^,]+, )?"([^"]+)", (?:[^,]+, )?"[^"]+"/.exec(line);
    if (rename && rename[1]!.startsWith(tmpDir) && /\)\s+= 0$/.test(line)) {
      published++;
      if (!opened.get(rename[1]!)?.synced) unsynced.push(rename[1]!);
    }
  }
  return { published, unsynced };
}

/**
 * Creations and renames of temp files made by the thread `tid` (strace -f prefixes each line with its thread's
 * id): for the process's main thread, whose id is the pid, these are the event loop's.
 */
function tempCallsBy(trace: string, tmpDir: string, tid: number): string[] {
  return wholeCalls(trace).filter((line) => {
    const call =
      /^(\d+)\s+(?:openat\([^,]+, "([^"]+)", [^)]*O_CREAT|rename\("([^"]+)"|renameat2?\([^,]+, "([^"]+)")/.exec(line);
    return call !== null && Number(call[1]) === tid && (call[2] ?? call[3] ?? call[4])!.startsWith(tmpDir);
  });
}

// On Bun the disk store writes a blob with one call that creates, writes and syncs it (disk-files.ts): the same
// promises hold there.
const runtimes = [
  'node',
  ...(requireTool('bun', bunPath(), 'npm ci installs it from @oven/bun-linux-x64') ? ['bun'] : []),
];

describe.runIf(haveStrace).each(runtimes as Array<'node' | 'bun'>)('disk store durability on %s', (runtime) => {
  const dir = tempDir('larder-durability-');
  const store = join(dir.path, 'store');
  let edge: EdgeProcess;
  const agent = new http.Agent({ keepAlive: true });
  beforeAll(async () => {
    edge = await startEdgeProcess({ runtime, args: ['--store', `disk:${store}`] });
  });
  afterAll(async () => {
    agent.destroy();
    await edge?.stop();
    dir.remove();
  });

  it('syncs every upload (small and large) to stable storage before publishing it', async () => {
    const logFile = join(dir.path, 'strace.log');
    const trace = await traceProcess(edge.pid, logFile);
    const openBefore = openTempFiles(edge.pid, join(store, 'tmp'));
    try {
      for (const size of [100, 4096, 65_536, 200_000, 3 * 1024 * 1024]) {
        const { data, hash } = randomBlob(size);
        expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
      }
    } finally {
      await trace.stop();
    }
    const { published, unsynced } = unsyncedPublishes(readFileSync(logFile, 'utf8'), join(store, 'tmp'), openBefore);
    expect(published).toBe(5);
    expect(unsynced).toEqual([]);
  }, 60_000);

  // Bun writes large whole blobs past the page cache (disk-files.ts DIRECT_WRITES): the aligned part direct, the
  // tail through the page cache. Either way the blob reads back byte for byte, and is synced before it is published.
  it(`writes large whole uploads ${runtime === 'bun' ? 'with' : 'without'} O_DIRECT, tails included`, async () => {
    const logFile = join(dir.path, 'strace-direct.log');
    const sizes = [300_001, 1024 * 1024, 2_000_000];
    const blobs = sizes.map((size) => randomBlob(size));
    const trace = await traceProcess(edge.pid, logFile);
    const openBefore = openTempFiles(edge.pid, join(store, 'tmp'));
    try {
      for (const { data, hash } of blobs)
        expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
    } finally {
      await trace.stop();
    }
    for (const { data, hash } of blobs) {
      const got = await request(agent, `${edge.url}/cas/${hash}`, 'GET');
      expect([got.status, got.body.equals(data)]).toEqual([200, true]);
    }
    const text = readFileSync(logFile, 'utf8');
    const tmpDir = join(store, 'tmp');
    // Each temp file is created once (O_EXCL); Bun then appends a tail that is not a whole block by a second open.
    const creations = wholeCalls(text).filter((line) => line.includes(tmpDir) && /O_EXCL/.test(line));
    expect(creations).toHaveLength(3);
    expect(creations.filter((line) => /O_DIRECT/.test(line))).toHaveLength(runtime === 'bun' ? 3 : 0);
    expect(unsyncedPublishes(text, tmpDir, openBefore)).toEqual({ published: 3, unsynced: [] });
  }, 60_000);

  // Creating or renaming a file waits for the journal while other writes' fdatasync commit it (milliseconds on
  // ext4): on the event loop that stalled every request, once per action-cache write.
  it('creates and publishes small blobs off the event loop', async () => {
    const logFile = join(dir.path, 'strace-small.log');
    const trace = await traceProcess(edge.pid, logFile);
    const openBefore = openTempFiles(edge.pid, join(store, 'tmp'));
    try {
      for (const size of [100, 4096, 65_536]) {
        const { data, hash } = randomBlob(size);
        expect((await request(agent, `${edge.url}/cas/${hash}`, 'PUT', data)).status).toBe(200);
      }
    } finally {
      await trace.stop();
    }
    const text = readFileSync(logFile, 'utf8');
    const tmpDir = join(store, 'tmp');
    expect(unsyncedPublishes(text, tmpDir, openBefore).published).toBe(3);
    expect(tempCallsBy(text, tmpDir, edge.pid)).toEqual([]);
  }, 60_000);
});

describe.runIf(haveStrace && runtimes.includes('bun'))('direct writes on Bun', () => {
  // A buffer O_DIRECT cannot take (one byte off the alignment Bun's upload buffers have) is refused by the kernel
  // with EINVAL; the blob is then written through the page cache instead, whole and right.
  it('writes a blob the kernel refuses to take direct through the page cache instead', () => {
    const dir = tempDir('larder-direct-');
    try {
      const blobs = join(dir.path, 'blobs');
      mkdirSync(blobs);
      const script = `
        const { writeWholeFile } = await import(${JSON.stringify(`${REPO_ROOT}/shared/storage/disk-files.ts`)});
        const { TempFiles } = await import(${JSON.stringify(`${REPO_ROOT}/shared/storage/temp-files.ts`)});
        const { readFileSync } = await import('node:fs');
        const bytes = new Uint8Array(1024 * 1024 + 1).map((_, i) => i % 251).subarray(1);
        const path = await writeWholeFile(new TempFiles(${JSON.stringify(blobs)}), bytes, async () => false);
        console.log(JSON.stringify(Buffer.from(readFileSync(path)).equals(Buffer.from(bytes))));`;
      const log = join(dir.path, 'strace.log');
      const result = spawnSync(
        'strace',
        ['-f', '-o', log, '-e', 'trace=openat,write,pwrite64', bunPath()!, '--eval', script],
        {
          encoding: 'utf8',
          timeout: 60_000,
        },
      );
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.trim()).toBe('true');
      const calls = readFileSync(log, 'utf8')
        .split('\n')
        .filter((line) => line.includes(`${blobs}/`) || /write(?:64)?\(\d+, .*, 1048576(?:, 0)?\)/.test(line));
      expect(calls.some((line) => /O_DIRECT/.test(line))).toBe(true);
      expect(calls.some((line) => /= -1 EINVAL/.test(line))).toBe(true);
    } finally {
      dir.remove();
    }
  }, 60_000);
});
