import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { defaultCacheDir, isLoopback, parseEdgeConfig, parseListen } from '../../shared/config.ts';
import { parseSize } from '../../shared/size.ts';
import { REPO_ROOT } from '../helpers/tools.ts';
import { invalidArgumentMessage } from '../helpers/errors.ts';

const fails = invalidArgumentMessage;

describe('configuration', () => {
  it('parses sizes with binary and decimal units', () => {
    expect(parseSize('20GiB')).toBe(20 * 2 ** 30);
    expect(parseSize('512MiB')).toBe(512 * 2 ** 20);
    expect(parseSize('1.5KiB')).toBe(1536);
    expect(parseSize('10MB')).toBe(10_000_000);
    expect(parseSize('4096')).toBe(4096);
    expect(fails(() => parseSize('12 parsecs'))).toMatch(/invalid size/);
    expect(fails(() => parseSize('-1GiB'))).toMatch(/invalid size/);
  });

  it('parses listen addresses', () => {
    expect(parseListen('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen(':9000')).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(fails(() => parseListen('localhost'))).toMatch(/HOST:PORT/);
    expect(fails(() => parseListen('127.0.0.1:70000'))).toMatch(/HOST:PORT/);
    expect(['127.0.0.1', '::1', 'localhost', '0.0.0.0', '10.0.0.1'].filter(isLoopback)).toEqual([
      '127.0.0.1',
      '::1',
      'localhost',
    ]);
  });

  it('takes a flag over its environment twin over the default', () => {
    const env = { HOME: '/home/u', LARDER_LISTEN: '127.0.0.1:9999', LARDER_STORE: 'memory', LARDER_MAX_SIZE: '1GiB' };
    const fromEnv = parseEdgeConfig([], env);
    expect(fromEnv.listen.port).toBe(9999);
    expect(fromEnv.store).toEqual({ kind: 'memory', maxBytes: 2 ** 30 });
    const fromFlags = parseEdgeConfig(['--listen', '127.0.0.1:1234', '--store', 'disk:/data/cache'], env);
    expect(fromFlags.listen.port).toBe(1234);
    expect(fromFlags.store).toEqual({ kind: 'disk', path: '/data/cache', maxBytes: 2 ** 30 });
    const defaults = parseEdgeConfig([], { HOME: '/home/u' });
    expect(defaults.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(defaults.store).toEqual({ kind: 'disk', path: '/home/u/.cache/larder', maxBytes: 10 * 2 ** 30 });
    expect(defaults.validateActionResults).toBe(true);
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/xdg', HOME: '/home/u' })).toBe('/xdg/larder');
  });

  it('refuses unknown flags, stores and values with a message', () => {
    expect(fails(() => parseEdgeConfig(['--lisen', 'x'], {}))).toMatch(/lisen/);
    expect(fails(() => parseEdgeConfig(['--store', 'ftp://x'], {}))).toMatch(/unknown store/);
    expect(fails(() => parseEdgeConfig(['--ac-validation', 'maybe'], {}))).toMatch(/on or off/);
    expect(fails(() => parseEdgeConfig(['--log-level', 'loud'], {}))).toMatch(/log-level/);
  });
});

describe('larder CLI', () => {
  const run = promisify(execFile);
  const larder = (...args: string[]) =>
    run(process.execPath, [join(REPO_ROOT, 'bin/larder.js'), ...args], { timeout: 20_000 });

  it('prints help for edge with every option and its environment variable', async () => {
    const { stdout } = await larder('edge', '--help');
    for (const text of [
      '--listen',
      'LARDER_LISTEN',
      '--store',
      'LARDER_STORE',
      '--max-size',
      '--max-blob-size',
      '--log-level',
    ]) {
      expect(stdout).toContain(text);
    }
  });

  it('exits 2 with a clear message on a bad flag or an unknown command', async () => {
    const bad = await larder('edge', '--max-size', 'lots').catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2 });
    expect((bad as { stderr: string }).stderr).toMatch(/invalid size "lots"/);
    const unknown = await larder('bake').catch((e: { code: number; stderr: string }) => e);
    expect(unknown).toMatchObject({ code: 2 });
    expect((unknown as { stderr: string }).stderr).toMatch(/unknown command "bake"/);
  });
});
