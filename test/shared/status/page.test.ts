/**
 * `GET /status` in a real headless Chromium: after real traffic, the edge's page (Node and Deno) and the
 * executor's (on --metrics-listen) draw the last hour's chart and show the figures, stores, configuration in
 * words and, on the executor, queue and workers. Readers only, like the cache; screenshots in test-artifacts/.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, openBrowser, screenshot, type Browser } from '../../helpers/browser.ts';
import { type EdgeProcess, startEdgeProcess, tempDir, edgeRuntimes } from '../../helpers/edge-process.ts';
import { randomBlob } from '../../helpers/http.ts';
import { requireTool } from '../../helpers/tools.ts';
import { ActionFixture } from '../../executor/execution/fixture.ts';
import { startTestServer, type TestServer } from '../../executor/helpers.ts';
import { withMetadata } from '../../helpers/grpc-metadata.ts';

const hasChromium = requireTool('chromium', CHROMIUM, 'apt-get install chromium; npm test installs it');
const runtimes = edgeRuntimes();
const USER = 'ci';
const PASSWORD = 'status-page-password';
const basic = `Basic ${btoa(`${USER}:${PASSWORD}`)}`;

/** An htpasswd user who may read and write, and nothing for anonymous: the page needs credentials. */
function authArgs(dir: string): string[] {
  writeFileSync(join(dir, 'htpasswd'), `${USER}:{SHA}${createHash('sha1').update(PASSWORD).digest('base64')}\n`);
  writeFileSync(
    join(dir, 'larder.json'),
    JSON.stringify({ auth: { anonymous: [], htpasswd: { users: { [USER]: ['write', 'execute'] } } } }),
  );
  return ['--htpasswd', join(dir, 'htpasswd'), '--config', join(dir, 'larder.json')];
}

async function drawnPage(browser: Browser, url: string) {
  const { page } = browser;
  await page.goto(url);
  await page.locator('#chart[data-drawn="true"] canvas').waitFor();
  const figure = (id: string) => page.locator(`[data-figure="${id}"]`).innerText();
  return { page, figure };
}

describe.runIf(hasChromium).each(runtimes)('the edge status page on %s', (runtime) => {
  const dir = tempDir('larder-status-');
  let edge: EdgeProcess;
  let browser: Browser;

  beforeAll(async () => {
    edge = await startEdgeProcess({
      runtime,
      args: ['--store', `disk:${dir.path}/blobs@64MiB`, ...authArgs(dir.path)],
    });
    browser = await openBrowser({ httpCredentials: { username: USER, password: PASSWORD } });
  });
  afterAll(async () => {
    await browser?.close();
    await edge?.stop();
    dir.remove();
  });

  it('is for readers only; /healthz stays open', async () => {
    expect((await fetch(`${edge.url}/status`)).status).toBe(401);
    expect((await fetch(`${edge.url}/healthz`)).status).toBe(200);
    expect(
      (await fetch(`${edge.url}/status`, { headers: { authorization: basic } })).headers.get('content-type'),
    ).toMatch(/^text\/html/);
  });

  it('draws the last hour after real traffic and shows figures, store usage and configuration', async () => {
    const blobs = [randomBlob(4096), randomBlob(8192)];
    const call = (method: string, path: string, body?: Uint8Array) =>
      fetch(`${edge.url}${path}`, {
        method,
        headers: { authorization: basic },
        ...(body === undefined ? {} : { body }),
      }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });
    for (const blob of blobs) expect(await call('PUT', `/cas/${blob.hash}`, blob.data)).toBe(200);
    for (const blob of [...blobs, blobs[0]!]) expect(await call('GET', `/cas/${blob.hash}`)).toBe(200);
    expect(await call('GET', `/cas/${'0'.repeat(64)}`)).toBe(404);

    const { page, figure } = await drawnPage(browser, `${edge.url}/status`);
    expect(await figure('requests')).toBe('6');
    expect(await figure('requests-last-hour')).toBe('6');
    expect(await figure('hit-ratio')).toBe('75.0 %');
    expect(await figure('bytes-served')).toBe('16.0 KiB');
    expect(await figure('bytes-stored')).toBe('12.0 KiB');
    expect(await page.locator('[data-store="disk-0"]').innerText()).toMatch(/12\.0 KiB of 64\.0 MiB/);
    expect(await page.locator('[data-config="storage"]').innerText()).toContain(`disk:${dir.path}/blobs`);
    expect(await page.locator('[data-config="auth"]').innerText()).toMatch(/^htpasswd .*anonymous may do nothing$/);
    // The chart holds the minute so far, with its requests, and uPlot painted it.
    const data = JSON.parse((await page.locator('#chart-data').textContent()) ?? 'null') as number[][];
    expect(data[1]!.at(-1)).toBe(6);
    expect(data[2]!.at(-1)).toBe(75);
    const canvas = await page.locator('#chart canvas').boundingBox();
    expect(canvas!.width).toBeGreaterThan(300);
    expect(await page.content()).not.toContain(PASSWORD);
    await screenshot(page, `status-edge-${runtime}`);
  });
});

describe.runIf(hasChromium)('the executor status page', () => {
  let server: TestServer;
  let browser: Browser;

  beforeAll(async () => {
    const dir = tempDir('larder-status-');
    server = await startTestServer({
      args: [
        '--metrics-listen',
        '127.0.0.1:0',
        '--concurrency',
        '2',
        '--platform',
        'Pool=status',
        ...authArgs(dir.path),
      ],
    });
    browser = await openBrowser({ httpCredentials: { username: USER, password: PASSWORD } });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('shows the queue by platform, running actions and each worker with its figures after an executed action', async () => {
    expect((await fetch(`${server.executor.metricsUrl}/status`)).status).toBe(401);
    const metadata = new grpc.Metadata();
    metadata.set('authorization', basic);
    // The fixture's clients send no credentials and this server wants them: the same clients, with them added.
    const authed = new ActionFixture({
      ...server.clients,
      cas: withMetadata(server.clients.cas, metadata),
      execution: withMetadata(server.clients.execution, metadata),
    });
    const action = await authed.action({ command: { arguments: ['/bin/sh', '-c', 'echo status'] } });
    const { response } = await authed.execute(action);
    expect(response.result?.exitCode).toBe(0);

    const { page, figure } = await drawnPage(browser, `${server.executor.metricsUrl}/status`);
    expect(await figure('queued')).toBe('0');
    expect(await figure('running')).toBe('0');
    expect(await figure('workers')).toBe('1');
    const worker = await page.locator('[data-worker] td').allInnerTexts();
    expect(worker).toEqual([
      expect.stringMatching(/\/0\/0$/), // HOST/POOL/N
      expect.stringMatching(/Arch=amd64.*OSFamily=linux.*Pool=status/i),
      '0 of 2',
      expect.stringMatching(/ ago$/),
      '1',
      '0',
    ]);
    // The queue the action went through, empty again.
    expect(await page.locator('[data-queue] td').allInnerTexts()).toEqual(['any', '0', '0.0 s']);
    expect(Number(await figure('requests'))).toBeGreaterThanOrEqual(3); // the uploads of Command, input root and Action
    expect(await page.content()).not.toContain(PASSWORD);
    await screenshot(page, 'status-executor');
  });
});
