/**
 * `GET /actions` in a real headless Chromium, on a fleet's frontend (`larder executor --workers 0 --queue
 * redis://…`, a real Redis) whose actions a `larder worker` process runs: the frontend learns each result from
 * Redis. Two "invocations" send Bazel's RequestMetadata (mnemonic, target, invocation id) with their calls: a
 * passing action, a compile, one that fails with a long stderr, a cache hit, one that runs out of time. The page
 * lists failing ones first with their stderr's tail, the worker and stage times of each, and filters by
 * invocation through its form. Screenshots in test-artifacts/.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REQUEST_METADATA_KEY } from '../../../shared/request-metadata.ts';
import { RequestMetadataSchema } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { ActionFixture } from '../../executor/execution/fixture.ts';
import { type Clients, clientsFor, type ExecutorProcess, reachableTempDir } from '../../executor/helpers.ts';
import { startFrontend, startWorker, type WorkerProcess } from '../../executor/fleet/fleet.ts';
import { CHROMIUM, openBrowser, screenshot, type Browser } from '../../helpers/browser.ts';
import { withMetadata } from '../../helpers/grpc-metadata.ts';
import { freeLoopbackPort } from '../../helpers/ports.ts';
import { haveRedis, startRedis, type TestRedis } from '../../helpers/redis.ts';
import { requireTool } from '../../helpers/tools.ts';

const runs = requireTool('chromium', CHROMIUM, 'apt-get install chromium; npm test installs it') && haveRedis();

const INVOCATION_A = '5b0f0a4e-8c1d-4f5e-9a2b-3c4d5e6f7a8b';
const INVOCATION_B = 'c3d9e1f2-0b7a-4c6d-8e5f-1a2b3c4d5e6f';

describe.runIf(runs)('the actions page of a fleet frontend', () => {
  const dir = reachableTempDir('larder-actions-page-');
  let redis: TestRedis;
  let front: ExecutorProcess;
  let worker: WorkerProcess;
  let clients: Clients;
  let actionsUrl: string;
  let browser: Browser;

  beforeAll(async () => {
    redis = await startRedis();
    const metricsPort = await freeLoopbackPort();
    front = await startFrontend({
      redis: redis.url,
      store: join(dir, 'store'),
      args: ['--metrics-listen', `127.0.0.1:${metricsPort}`],
    });
    actionsUrl = `http://127.0.0.1:${metricsPort}/actions`;
    worker = await startWorker({ redis: redis.url, frontend: front.url });
    clients = clientsFor(`127.0.0.1:${front.port}`);
    browser = await openBrowser();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    clients?.close();
    await worker?.stop();
    await front?.stop();
    await redis?.close();
  }, 60_000);

  /** A fixture whose calls carry RequestMetadata as Bazel sends it. */
  function asBazel(invocation: string, mnemonic: string, target: string): ActionFixture {
    const metadata = new grpc.Metadata();
    const request = create(RequestMetadataSchema, {
      toolDetails: { toolName: 'bazel', toolVersion: '4.2.3' },
      toolInvocationId: invocation,
      actionMnemonic: mnemonic,
      targetId: target,
    });
    metadata.set(REQUEST_METADATA_KEY, Buffer.from(toBinary(RequestMetadataSchema, request)));
    return new ActionFixture({
      ...clients,
      cas: withMetadata(clients.cas, metadata),
      execution: withMetadata(clients.execution, metadata),
    });
  }

  it('lists what ran, failing first with their stderr tail, and filters by invocation', async () => {
    const salt = `actions-${Date.now()}`;
    const passes = { command: { arguments: ['/bin/sh', '-c', 'echo hello'] }, salt };
    const ok = asBazel(INVOCATION_A, 'Genrule', '//demo:hello');
    expect((await ok.execute(await ok.action(passes), { skipCacheLookup: true })).response.result?.exitCode).toBe(0);
    const compile = asBazel(INVOCATION_A, 'CppCompile', '//demo:lib');
    const compiled = await compile.execute(
      await compile.action({ command: { arguments: ['/bin/sh', '-c', 'sleep 0.3; echo compiled'] }, salt }),
    );
    expect(compiled.response.result?.exitCode).toBe(0);
    // 400 lines of stderr (~4 KiB): the page shows the end only.
    const failing = asBazel(INVOCATION_A, 'Genrule', '//demo:fails');
    const failed = await failing.execute(
      await failing.action({
        command: {
          arguments: [
            '/bin/sh',
            '-c',
            'i=1; while [ $i -le 400 ]; do echo "noise-$i" >&2; i=$((i+1)); done; echo "error: the real reason" >&2; exit 3',
          ],
        },
        salt,
      }),
    );
    expect(failed.response.result?.exitCode).toBe(3);
    // Invocation B: the first action again, answered by the action cache, and one that runs out of time.
    const again = asBazel(INVOCATION_B, 'Genrule', '//demo:hello');
    expect((await again.execute(await again.action(passes))).response.cachedResult).toBe(true);
    const slow = asBazel(INVOCATION_B, 'Genrule', '//demo:slow');
    const timedOut = await slow.execute(
      await slow.action({ command: { arguments: ['/bin/sh', '-c', 'sleep 30'] }, timeoutSeconds: 1, salt }),
    );
    expect(timedOut.response.status?.code).toBe(grpc.status.DEADLINE_EXCEEDED);

    const { page } = browser;
    await page.goto(`${actionsUrl.replace(/actions$/, 'status')}`);
    await page.locator('[data-link="actions"]').click();
    await page.waitForURL(actionsUrl);
    const rows = page.locator('tr[data-action]');
    expect(await rows.count()).toBe(5);
    // Failing first (the newest failure first), each followed by its stderr's tail.
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-failed')))).toEqual([
      'true',
      'true',
      'false',
      'false',
      'false',
    ]);
    const cells = (row: number) => rows.nth(row).locator('td').allInnerTexts();
    const [result0, mnemonic0, target0] = await cells(0);
    expect([result0, mnemonic0, target0]).toEqual(['DEADLINE_EXCEEDED', 'Genrule', '//demo:slow']);
    const fails = await cells(1);
    expect(fails.slice(0, 4)).toEqual(['exit 3', 'Genrule', '//demo:fails', worker.name]);
    const stderr = await page.locator('tr.stderr pre').nth(1).innerText();
    // The last lines, whole: the reason, and what came just before it.
    expect(stderr.trimEnd().endsWith('noise-399\nnoise-400\nerror: the real reason')).toBe(true);
    expect(stderr.trimEnd().split('\n')[0]).toMatch(/^noise-\d+$/);
    expect(stderr).not.toMatch(/^noise-1$/m);
    expect(await page.locator('tr.stderr pre').first().innerText()).toMatch(/^DEADLINE_EXCEEDED: /);
    // The passing ones, newest first: the cache hit (its times are the original run's), the compile, the first.
    const cached = await cells(2);
    expect(cached.slice(0, 4)).toEqual(['exit 0 cached', 'Genrule', '//demo:hello', worker.name]);
    const compileRow = await cells(3);
    expect(compileRow.slice(0, 4)).toEqual(['exit 0', 'CppCompile', '//demo:lib', worker.name]);
    // queued, fetch, execute and upload times from ExecutedActionMetadata; the compile slept 0.3 s at least.
    for (const time of compileRow.slice(4, 8)) expect(time).toMatch(/^\d+ ms$|^\d+\.\d\d s$/);
    const executed = /^([\d.]+) (ms|s)$/.exec(compileRow[6]!)!;
    expect(Number(executed[1]) * (executed[2] === 's' ? 1000 : 1)).toBeGreaterThanOrEqual(300);
    expect(compileRow[8]).toBe(`${INVOCATION_A.slice(0, 8)}…`);
    expect(await rows.nth(3).locator('a').getAttribute('title')).toBe(INVOCATION_A);
    await screenshot(page, 'actions-fleet');

    // One invocation's actions, through the page's own form.
    await page.locator('input[name="invocation"]').fill(INVOCATION_B);
    await page.locator('button[type="submit"]').click();
    await page.waitForURL(`${actionsUrl}?invocation=${INVOCATION_B}`);
    expect(await rows.count()).toBe(2);
    expect(await page.locator('tr[data-action] td:nth-child(3)').allInnerTexts()).toEqual([
      '//demo:slow',
      '//demo:hello',
    ]);
    await screenshot(page, 'actions-fleet-one-invocation');
  }, 120_000);
});
