// Operating a fleet, all real processes: one redis-server, a frontend (`larder executor --workers 0 --queue …
// --metrics-listen`) and `larder worker`s with --metrics-listen, one pool per platform (Pool=main, Pool=other).
// A worker serves its own /metrics and /status after real actions; the frontend lists the fleet's workers from
// Redis; the queue figures per platform while one pool is stopped (SIGSTOP: registered, taking nothing); and a
// worker stopped with SIGTERM mid-action hands the action back to its pool and exits.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, openBrowser, screenshot, type Browser } from '../../helpers/browser.ts';
import { scrape, sample, type Samples } from '../../helpers/prometheus.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { requireTool } from '../../helpers/tools.ts';
import { ActionFixture, finalResponse, metadataOf } from '../execution/fixture.ts';
import { type Clients, clientsFor, type ExecutorProcess, reachableTempDir } from '../helpers.ts';
import { startFrontend, startWorker, type WorkerProcess } from './fleet.ts';

const runs = haveRedis() && requireTool('chromium', CHROMIUM, 'apt-get install chromium; npm test installs it');
const SERVE = ['--metrics-listen', '127.0.0.1:0'];

/** Polls `read` until `done` holds (workers publish their figures with each heartbeat, every 5 s): at most 30 s. */
async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < 150; i++) {
    last = await read();
    if (done(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} did not happen in 30 s; last seen: ${JSON.stringify(last, replacer)}`);
}

const replacer = (_: string, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v);

describe.runIf(runs)('a fleet an operator can see: workers serve /metrics and /status, the frontend lists them', () => {
  const dir = reachableTempDir('larder-fleet-observe-');
  let redis: TestRedis;
  let raw: Redis;
  let frontend: ExecutorProcess;
  let frontendMetrics: string;
  let main: WorkerProcess;
  let other: WorkerProcess;
  const extra: WorkerProcess[] = [];
  let clients: Clients;
  let fixture: ActionFixture;
  let browser: Browser;
  const fleetMetrics = () => scrape(`${frontendMetrics}/metrics`);

  beforeAll(async () => {
    redis = await startRedis();
    raw = new Redis(redis.url);
    frontend = await startFrontend({ redis: redis.url, store: `${dir}/store`, args: SERVE });
    frontendMetrics = await until(
      async () => /larder executor metrics on (\S+)\/metrics/.exec(frontend.output())?.[1],
      (url) => url !== undefined,
      "the frontend's metrics line",
    ).then((url) => url!);
    [main, other] = await Promise.all([
      startWorker({ redis: redis.url, frontend: frontend.url, args: [...SERVE, '--platform', 'Pool=main'] }),
      startWorker({ redis: redis.url, frontend: frontend.url, args: [...SERVE, '--platform', 'Pool=other'] }),
    ]);
    clients = clientsFor(`127.0.0.1:${frontend.port}`);
    fixture = new ActionFixture(clients);
    browser = await openBrowser();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    clients?.close();
    other?.signal('SIGCONT');
    await Promise.all([main, other, ...extra].filter(Boolean).map((w) => w.stop()));
    await frontend?.stop();
    raw?.disconnect();
    await redis?.close();
  }, 60_000);

  it("a worker's /metrics, /healthz and /status after real actions: outcomes, input cache, slots", async () => {
    const inputRoot = await fixture.tree({ 'in.txt': 'observed input\n' });
    const salt = `observe-${Date.now()}`;
    const ok = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', 'cat in.txt'] },
      inputRoot,
      platform: { Pool: 'main' },
      salt,
    });
    const failing = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', 'cat in.txt; exit 3'] },
      inputRoot,
      platform: { Pool: 'main' },
      salt,
    });
    expect((await fixture.execute(ok, { skipCacheLookup: true })).response.result?.exitCode).toBe(0);
    expect((await fixture.execute(failing, { skipCacheLookup: true })).response.result?.exitCode).toBe(3);

    expect(main.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const metrics = await scrape(`${main.metricsUrl}/metrics`);
    expect(sample(metrics, 'larder_actions_total', { outcome: 'success' })).toBe(1);
    expect(sample(metrics, 'larder_actions_total', { outcome: 'failed' })).toBe(1);
    expect(sample(metrics, 'larder_action_duration_seconds_count', { outcome: 'success' })).toBe(1);
    // One input, fetched for the first action and linked from the cache for the second.
    expect(sample(metrics, 'larder_input_cache_fetches_total')).toBe(1);
    expect(sample(metrics, 'larder_input_cache_hits_total')).toBe(1);
    expect(sample(metrics, 'larder_input_cache_files')).toBe(1);
    expect(sample(metrics, 'larder_input_cache_bytes')).toBe('observed input\n'.length);
    expect(sample(metrics, 'larder_worker_slots')).toBe(2);
    // The answer goes out before the worker deletes the action's folder, and the slot is running until that is done.
    await expect
      .poll(async () => sample(await scrape(`${main.metricsUrl}/metrics`), 'larder_worker_running_actions'), {
        timeout: 10_000,
      })
      .toBe(0);
    expect(sample(metrics, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    // The fleet's figures are the frontends' to serve: a worker's scrape does not repeat them.
    expect([...metrics.keys()].some((k) => k.startsWith('larder_execution_queued'))).toBe(false);
    expect((await fetch(`${main.metricsUrl}/healthz`)).status).toBe(200);

    const { page } = browser;
    await page.goto(`${main.metricsUrl}/status`);
    await page.locator('#chart[data-drawn="true"] canvas').waitFor();
    const figure = (id: string) => page.locator(`[data-figure="${id}"]`).innerText();
    expect(await page.locator('h1').innerText()).toBe(`larder worker ${main.name}`);
    expect(await page.locator('[data-host="platform"]').innerText()).toMatch(/Arch=amd64.*Pool=main/);
    expect(await figure('running')).toBe('0 of 2');
    expect(await figure('done')).toBe('2');
    expect(await figure('failed')).toBe('1');
    expect(await figure('input-files')).toBe('1');
    expect(await figure('input-hits')).toBe('1');
    expect(await figure('input-misses')).toBe('1');
    expect(await page.locator('[data-host="docker"]').innerText()).toBe('no docker runner');
    await screenshot(page, 'status-worker');
  }, 60_000);

  it("the frontend's /status and larder_workers list the fleet's workers from Redis, with their figures", async () => {
    const workers = (samples: Samples) =>
      [...samples].filter(([key]) => key.startsWith('larder_workers{')).map(([key, n]) => [key, n] as const);
    const listed = workers(await fleetMetrics());
    expect(listed).toHaveLength(2);
    expect(listed.find(([key]) => key.includes('Pool=main'))?.[1]).toBe(1);
    expect(listed.find(([key]) => key.includes('Pool=other'))?.[1]).toBe(1);

    // The main worker's done and failed counts reach Redis with its next heartbeat.
    const { page } = browser;
    const row = page.locator(`[data-worker="${main.name}"]`);
    await until(
      async () => {
        await page.goto(`${frontendMetrics}/status`);
        return (await row.locator('td').allInnerTexts()).join(' | ');
      },
      (text) => text.endsWith('| 2 | 1'),
      "the main worker's figures on the frontend's page",
    );
    const cells = await row.locator('td').allInnerTexts();
    expect(cells[0]).toBe(main.name);
    expect(cells[1]).toMatch(/Arch=amd64.*Pool=main/);
    expect(cells[2]).toBe('0 of 2');
    expect(cells[3]).toMatch(/^\d+\.\d s ago$/);
    expect(await page.locator(`[data-worker="${other.name}"] td`).allInnerTexts()).toEqual([
      other.name,
      expect.stringMatching(/Pool=other/),
      '0 of 2',
      expect.stringMatching(/ ago$/),
      '0',
      '0',
    ]);
    expect(await page.locator('[data-figure="workers"]').innerText()).toBe('2');
    await screenshot(page, 'status-frontend-fleet');
  }, 60_000);

  it('queue figures per platform, fleet-wide: a stopped pool shows its queued action and how long it waited', async () => {
    other.signal('SIGSTOP');
    const action = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', 'echo other'] },
      platform: { Pool: 'other' },
      salt: `queued-${Date.now()}`,
    });
    const running = fixture.execute(action, { skipCacheLookup: true });
    const queued = await until(
      fleetMetrics,
      (s) => sample(s, 'larder_execution_oldest_queued_seconds', { platform: 'Pool=other' }) >= 1,
      'a wait of a second on the stopped pool',
    );
    expect(sample(queued, 'larder_execution_queued', { platform: 'Pool=other' })).toBe(1);
    // The main pool's queue, known from the actions before, is empty and waited on by nothing.
    expect(queued.get('larder_execution_queued{platform="Pool=main"}')).toBe(0);
    expect(queued.get('larder_execution_oldest_queued_seconds{platform="Pool=main"}')).toBe(0);
    const { page } = browser;
    await page.goto(`${frontendMetrics}/status`);
    expect(await page.locator('[data-queue="Pool=other"] td').allInnerTexts()).toEqual([
      'Pool=other',
      '1',
      expect.stringMatching(/^\d+\.\d s$/),
    ]);

    other.signal('SIGCONT');
    const { response } = await running;
    expect(response.result?.exitCode).toBe(0);
    expect(response.result?.executionMetadata?.worker).toBe(other.name);
    const after = await fleetMetrics();
    expect(sample(after, 'larder_execution_queued', { platform: 'Pool=other' })).toBe(0);
    expect(after.get('larder_execution_oldest_queued_seconds{platform="Pool=other"}')).toBe(0);
  }, 60_000);

  it('a worker stopped with SIGTERM mid-action hands the action back to its pool and exits', async () => {
    const spare = await startWorker({ redis: redis.url, frontend: frontend.url, args: ['--platform', 'Pool=main'] });
    extra.push(spare);
    // Long enough to be running when the signal comes; the spare ends it by its timeout.
    const action = await fixture.action({
      command: { arguments: ['/bin/sh', '-c', 'sleep 60'] },
      platform: { Pool: 'main' },
      timeoutSeconds: 5,
      salt: `drain-${Date.now()}`,
    });
    const stream = clients.execution.execute({ actionDigest: action, skipCacheLookup: true });
    const operations = [];
    let stopped: WorkerProcess | undefined;
    let drainMs = 0;
    for await (const operation of stream) {
      operations.push(operation);
      if (stopped === undefined && metadataOf(operation).stage === 3) {
        const holder = await raw.hget(`larder:op:${operation.name}`, 'worker');
        stopped = [main, spare].find((w) => holder?.startsWith(`${w.name}#`));
        expect(stopped, `holder ${holder}`).toBeDefined();
        const signalled = performance.now();
        stopped!.signal('SIGTERM');
        const how = await stopped!.exited;
        drainMs = performance.now() - signalled;
        expect(how, stopped!.output()).toEqual({ code: 0, signal: null });
      }
    }
    const response = finalResponse(operations);
    const taker = stopped === main ? spare : main;
    expect(response.result?.executionMetadata?.worker).toBe(taker.name);
    expect(response.status?.code, response.status?.message).toBe(4); // DEADLINE_EXCEEDED: the spare ran it
    // Handed back, not left to expire: the first delivery was not counted as an attempt.
    expect(await raw.hget(`larder:op:${operations[0]!.name}`, 'attempts')).toBe('1');
    expect(stopped!.output()).not.toContain('not drained');
    console.log(`SIGTERM to exit: ${drainMs.toFixed(0)} ms (an upper bound on this shared machine)`);
  }, 60_000);
});
