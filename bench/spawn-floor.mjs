// @ts-check
/**
 * The floor of remote execution's per-action cost: a small Node process (plain JavaScript, no loader, nothing
 * else in memory) that starts a command and waits for it to exit, `count` times with `concurrency` in flight.
 * bench/execution.ts runs it beside the executor and compares.
 *
 *   node bench/spawn-floor.mjs '{"argv":["/bin/true"],"count":200,"concurrency":1,"user":null}'
 *
 * Prints one JSON line: { latenciesMs: number[], seconds: number, cpuMicrosPerRun: number }.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

const request = JSON.parse(process.argv[2] ?? '{}');
const [program, ...args] = request.argv;
const options = {
  stdio: /** @type {'ignore'} */ ('ignore'),
  ...(request.user === null ? {} : { uid: request.user.uid, gid: request.user.gid }),
};

/** @returns {Promise<number>} the run's latency in ms; rejects unless the command exited 0 */
function runOnce() {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, options);
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve(performance.now() - started) : reject(new Error(`${program}: exit ${code} ${signal}`)),
    );
  });
}

// Unmeasured warm-up: the first spawns page in Node's and the command's code.
for (let i = 0; i < 20; i++) await runOnce();

/** @type {number[]} */
const latenciesMs = [];
let next = 0;
const cpuBefore = process.cpuUsage();
const started = performance.now();
await Promise.all(
  Array.from({ length: request.concurrency }, async () => {
    while (next < request.count) {
      next++;
      latenciesMs.push(await runOnce());
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(
  `${JSON.stringify({ latenciesMs, seconds, cpuMicrosPerRun: (cpu.user + cpu.system) / request.count })}\n`,
);
