/**
 * A real headless Chromium (Debian's `chromium`, driven by playwright-core) for the tests that look at pages as
 * a person would, with a fresh profile each time. Screenshots go to test-artifacts/ (gitignored).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { findTool, REPO_ROOT } from './tools.ts';

export const CHROMIUM = findTool('/usr/bin/chromium', 'chromium');
export const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');

export interface Browser {
  page: Page;
  context: BrowserContext;
  close(): Promise<void>;
}

export async function openBrowser(
  options: { httpCredentials?: { username: string; password: string } } = {},
): Promise<Browser> {
  if (CHROMIUM === undefined) throw new Error('chromium is not installed');
  const profile = mkdtempSync(join(tmpdir(), 'larder-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // No network beyond loopback, no background services, no sandbox (tests may run as root).
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1000, height: 1100 },
    timeout: 30_000,
    ...(options.httpCredentials === undefined ? {} : { httpCredentials: options.httpCredentials }),
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  return {
    page,
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a screenshot under test-artifacts/ and says where, so a person can look at it. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
  return path;
}
