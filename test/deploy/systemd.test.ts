// The systemd units in deploy/systemd, checked by systemd itself (`systemd-analyze verify`, from Debian's
// systemd package; these machines do not boot systemd, and verify needs no running manager). verify exits 0
// even for unknown keys and bad values (it only warns), so any output fails the test.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WORKER_DRAIN_MS } from '../../executor/start-worker.ts';
import { findTool, REPO_ROOT, requireTool } from '../helpers/tools.ts';

const analyze = findTool('/usr/bin/systemd-analyze', 'systemd-analyze');
const UNITS = ['larder-edge.service', 'larder-executor.service', 'larder-worker.service', 'larder-worker@.service'];
const dir = join(REPO_ROOT, 'deploy/systemd');

describe.runIf(requireTool('systemd-analyze', analyze, 'apt-get install systemd'))('deploy/systemd units', () => {
  it.each(UNITS)('%s passes systemd-analyze verify without a warning', (unit) => {
    const result = spawnSync(analyze!, ['verify', join(dir, unit)], { encoding: 'utf8', timeout: 60_000 });
    expect(result.status, result.stderr).toBe(0);
    expect(`${result.stdout}${result.stderr}`.trim()).toBe('');
  });

  it.each(UNITS)('%s is hardened and configured through an environment file', (unit) => {
    const text = readFileSync(join(dir, unit), 'utf8');
    for (const line of [
      'DynamicUser=yes',
      'ProtectSystem=strict',
      'NoNewPrivileges=yes',
      'CacheDirectory=',
      'StateDirectory=',
      'LimitNOFILE=',
      'Restart=',
      'EnvironmentFile=/etc/larder/',
    ]) {
      expect(text, line).toContain(line);
    }
  });

  it('larder-worker@.service gives each instance its own user, folders and metrics port, and outlasts the drain', () => {
    const text = readFileSync(join(dir, 'larder-worker@.service'), 'utf8');
    for (const line of [
      'User=larder-worker-%i',
      'CacheDirectory=larder-worker-%i',
      'StateDirectory=larder-worker-%i',
      'LARDER_WORK_DIR=%C/larder-worker-%i',
      'Environment=LARDER_METRICS_LISTEN=127.0.0.1:%i',
      'EnvironmentFile=-/etc/larder/worker-%i.env',
    ])
      expect(text, line).toContain(line);
    // systemd's stop timeout is longer than the worker's own drain bound, so a scale-in never ends in SIGKILL.
    expect(Number(/TimeoutStopSec=(\d+)s/.exec(text)?.[1]) * 1000).toBeGreaterThan(WORKER_DRAIN_MS);
  });

  it('a broken unit is caught (the check is not vacuous)', () => {
    const broken = readFileSync(join(dir, 'larder-worker.service'), 'utf8').replace(
      'ProtectSystem=strict',
      'ProtectSystem=bogus',
    );
    const tmp = mkdtempSync(join(tmpdir(), 'larder-units-'));
    const path = join(tmp, 'larder-broken.service');
    writeFileSync(path, broken);
    const result = spawnSync(analyze!, ['verify', path], { encoding: 'utf8', timeout: 60_000 });
    rmSync(tmp, { recursive: true, force: true });
    expect(result.stderr).toContain('bogus');
  });
});
