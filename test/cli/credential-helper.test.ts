/**
 * `larder credential-helper`, driven as Bazel drives it (a child process, `get` with {"uri": …} on stdin),
 * signed in through the device grant at a real OpenID provider whose pages the test clicks through as a
 * user would, and checked against a real edge: the token it hands out opens the cache, an expired one is
 * refreshed, and a token file others could read is refused.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approveDeviceCode } from '../helpers/device-approval.ts';
import { type EdgeProcess, startEdgeProcess, tempDir } from '../helpers/edge-process.ts';
import { randomBlob } from '../helpers/http.ts';
import { AUDIENCE, CLI_CLIENT_ID, type TestIdp, startIdp } from '../helpers/oidc-idp.ts';
import { REPO_ROOT } from '../helpers/tools.ts';

const TOKEN_TTL_S = 15;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('larder credential-helper', () => {
  const dir = tempDir('larder-helper-');
  const env = { ...process.env, XDG_CONFIG_HOME: join(dir.path, 'config'), HOME: join(dir.path, 'home') };
  const tokenFile = join(dir.path, 'config', 'larder', 'credentials.json');
  let idp: TestIdp;
  let edge: EdgeProcess;
  let host: string;
  const children = new Set<ChildProcess>();

  /** Runs `larder credential-helper ARGS` with `stdin`, bounded in time; `onStderr` sees stderr as it comes. */
  const helper = (args: string[], stdin = '', onStderr?: (text: string) => void, timeoutMs = 20_000) =>
    new Promise<Run>((resolve, reject) => {
      const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/larder.js'), 'credential-helper', ...args], {
        cwd: dir.path,
        env,
        stdio: 'pipe',
      });
      children.add(child);
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stdout.on('data', (d: Buffer) => (stdout += d));
      child.stderr.on('data', (d: Buffer) => {
        stderr += d;
        onStderr?.(stderr);
      });
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        children.delete(child);
        resolve({ code, stdout, stderr });
      });
      child.stdin.end(stdin);
    });
  /** Bazel's call: the URI of the request it is about to make. */
  const get = (path = `/cas/${randomBlob(8).hash}`) => helper(['get'], JSON.stringify({ uri: `${edge.url}${path}` }));
  const put = async (token: string) => {
    const { data, hash } = randomBlob(64);
    const res = await fetch(`${edge.url}/cas/${hash}`, {
      method: 'PUT',
      body: data,
      headers: { authorization: `Bearer ${token}` },
    });
    await res.arrayBuffer();
    return res;
  };
  const bearerOf = (run: Run) => {
    expect(run.code, run.stderr).toBe(0);
    const answer = JSON.parse(run.stdout) as { headers: { Authorization: string[] }; expires: string };
    expect(answer.expires).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const [value] = answer.headers.Authorization;
    expect(value).toMatch(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    return { token: value!.slice('Bearer '.length), expires: Date.parse(answer.expires) };
  };

  beforeAll(async () => {
    idp = await startIdp({ accessTokenTtl: TOKEN_TTL_S });
    const config = join(dir.path, 'larder.json');
    await import('node:fs/promises').then((fs) =>
      fs.writeFile(
        config,
        JSON.stringify({
          auth: {
            oidc: { clockSkewSeconds: 0, roles: { rules: [{ claim: 'groups', value: 'ci', roles: ['write'] }] } },
          },
        }),
      ),
    );
    edge = await startEdgeProcess({
      runtime: 'node',
      args: ['--store', 'memory', '--config', config, '--oidc-issuer', idp.issuer, '--oidc-audience', AUDIENCE],
    });
    host = new URL(edge.url).host;
  });

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await edge?.stop();
    await idp?.close();
    dir.remove();
  });

  it('answers {} for a host it has no sign-in for', async () => {
    const run = await get();
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({});
  });

  it('signs in with the device grant, the user approving in the IdP pages, and stores the tokens 0600', async () => {
    let prompted: Promise<string> | undefined;
    const run = await helper(
      [
        'login',
        host,
        '--issuer',
        idp.issuer,
        '--client-id',
        CLI_CLIENT_ID,
        '--audience',
        AUDIENCE,
        '--scope',
        'openid offline_access cache',
      ],
      '',
      (stderr) => {
        const match = /open (\S+) and enter the code: (\S+)/.exec(stderr);
        if (match && prompted === undefined) prompted = approveDeviceCode(match[1]!, match[2]!, 'ci-bot');
      },
      60_000,
    );
    expect(prompted, run.stderr).toBeDefined();
    expect(await prompted).toMatch(/Sign-in Success/);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(new RegExp(`signed in to ${host.replace(/\./g, '\\.')}`));
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir.path, 'config', 'larder'))).mode & 0o777).toBe(0o700);
  }, 90_000);

  it('hands Bazel a bearer token that the edge accepts, with its expiry', async () => {
    const { token, expires } = bearerOf(await get());
    expect(expires).toBeGreaterThan(Date.now());
    expect(expires).toBeLessThanOrEqual(Date.now() + TOKEN_TTL_S * 1000);
    expect((await put(token)).status).toBe(200);
    // The same sign-in serves every URI on that host.
    expect(bearerOf(await get(`/ac/${randomBlob(8).hash}`)).token).toBe(token);
  });

  it('prints the --remote_header line for Bazel versions without credential helpers', async () => {
    const run = await helper(['print-header', host]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^--remote_header=Authorization=Bearer [\w-]+\.[\w-]+\.[\w-]+\n$/);
  });

  it('refreshes the token with the refresh token once it has expired', async () => {
    const { token: old, expires } = bearerOf(await get());
    const before = JSON.parse(await readFile(tokenFile, 'utf8')).hosts[host];
    await new Promise((r) => setTimeout(r, Math.max(0, expires - Date.now()) + 1_500));
    const stale = await put(old);
    expect(stale.status).toBe(401);
    expect(stale.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);

    const { token: fresh, expires: freshExpires } = bearerOf(await get());
    expect(fresh).not.toBe(old);
    expect(freshExpires).toBeGreaterThan(Date.now());
    expect((await put(fresh)).status).toBe(200);
    const after = JSON.parse(await readFile(tokenFile, 'utf8')).hosts[host];
    expect(after.refreshToken).toBeDefined();
    expect(after.token).toBe(fresh);
    expect(after.issuedAt).toBeGreaterThan(before.issuedAt);
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
  }, 30_000);

  it('refuses a token file that other users can read, and says how to fix it', async () => {
    await chmod(tokenFile, 0o644);
    try {
      const run = await get();
      expect(run.code).not.toBe(0);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/open to other users \(mode 644\)/);
      expect(run.stderr).toMatch(/chmod 600/);
      expect((await helper(['print-header', host])).code).not.toBe(0);
    } finally {
      await chmod(tokenFile, 0o600);
    }
    expect((await get()).code).toBe(0);
  });

  it('fails loudly on a request that is not {"uri": …}', async () => {
    const run = await helper(['get'], 'not json');
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/uri/);
  });

  it('forgets a sign-in on logout', async () => {
    const run = await helper(['logout', host]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse((await get()).stdout)).toEqual({});
  });
});
