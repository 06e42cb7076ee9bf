// Auth configuration: the config file's auth section merged with flags, start-up refusals, htpasswd parsing.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAuthConfig } from '../../../shared/auth/config.ts';
import { parseHtpasswd, verifyPassword } from '../../../shared/auth/htpasswd.ts';
import { createOidcAuthenticator } from '../../../shared/auth/oidc.ts';
import { parseEdgeConfig } from '../../../shared/config.ts';
import { buildEdge } from '../../../edge/start.ts';
import { tempDir } from '../../helpers/edge-process.ts';
import { invalidArgumentMessage } from '../../helpers/errors.ts';

const noFlags = { oidcIssuer: '', oidcAudience: '', htpasswd: '', allowAnonymous: false };
const fails = invalidArgumentMessage;

describe('auth config', () => {
  it('without authenticators lets anonymous do everything; with one, nothing unless granted', () => {
    expect(parseAuthConfig(null, noFlags)).toEqual({
      oidc: null,
      htpasswd: null,
      anonymous: ['read', 'write', 'execute'],
      allowAnonymous: false,
    });
    const oidc = parseAuthConfig(null, { ...noFlags, oidcIssuer: 'https://idp.example/', oidcAudience: 'larder' });
    expect(oidc.anonymous).toEqual([]);
    expect(oidc.oidc).toMatchObject({
      issuer: 'https://idp.example/',
      audience: ['larder'],
      clockToleranceSeconds: 30,
      jwksCooldownMs: 30_000,
    });
    expect(oidc.oidc!.roles).toEqual({ everyone: ['read'], rules: [] });
  });

  it('reads the file, and lets flags win over it', () => {
    const file = {
      auth: {
        anonymous: ['read'],
        oidc: {
          issuer: 'https://file.example',
          audience: ['a', 'b'],
          algorithms: ['RS256'],
          clockSkewSeconds: 10,
          roles: { everyone: [], rules: [{ claim: 'groups', value: 'ci', roles: ['read', 'write'] }] },
        },
        htpasswd: { file: '/etc/larder/htpasswd', users: { ci: ['write'] } },
      },
    };
    const config = parseAuthConfig(file, { ...noFlags, oidcIssuer: 'https://flag.example' });
    expect(config.oidc).toMatchObject({
      issuer: 'https://flag.example',
      audience: ['a', 'b'],
      algorithms: ['RS256'],
      clockToleranceSeconds: 10,
    });
    expect(config.oidc!.roles.rules[0]).toEqual({ claim: 'groups', value: 'ci', roles: ['read', 'write'] });
    expect(config.htpasswd).toEqual({ path: '/etc/larder/htpasswd', everyone: ['read'], users: { ci: ['write'] } });
    expect(config.anonymous).toEqual(['read']);
  });

  it('refuses incomplete or misspelt settings with a message', () => {
    expect(fails(() => parseAuthConfig(null, { ...noFlags, oidcIssuer: 'https://idp.example' }))).toMatch(
      /audience.*required/,
    );
    expect(fails(() => parseAuthConfig(null, { ...noFlags, oidcAudience: 'x' }))).toMatch(/without an issuer/);
    expect(fails(() => parseAuthConfig({ auth: { anonymus: [] } }, noFlags))).toMatch(/unknown key "anonymus"/);
    expect(fails(() => parseAuthConfig({ auth: { anonymous: ['admin'] } }, noFlags))).toMatch(/list of roles/);
    expect(fails(() => parseAuthConfig({ auth: { htpasswd: { users: {} } } }, noFlags))).toMatch(/needs a file/);
    expect(fails(() => parseAuthConfig([], noFlags))).toMatch(/JSON object/);
  });

  it('refuses unsafe OIDC settings when the authenticator is built', () => {
    const base = {
      issuer: 'https://idp.example',
      audience: ['larder'],
      algorithms: ['RS256'],
      clockToleranceSeconds: 30,
      jwksCooldownMs: 30_000,
      jwksMaxAgeMs: 600_000,
      roles: { everyone: [], rules: [] },
    };
    expect(() => createOidcAuthenticator(base)).not.toThrow();
    expect(fails(() => createOidcAuthenticator({ ...base, algorithms: ['HS256'] }))).toMatch(/HS256 is not allowed/);
    expect(fails(() => createOidcAuthenticator({ ...base, algorithms: ['none'] }))).toMatch(/none is not allowed/);
    expect(fails(() => createOidcAuthenticator({ ...base, issuer: 'http://idp.example' }))).toMatch(/https/);
    expect(() => createOidcAuthenticator({ ...base, issuer: 'http://127.0.0.1:9000' })).not.toThrow();
  });

  it('takes --config, --allow-anonymous and the TLS pair from flags or their LARDER_* twins', () => {
    const dir = tempDir();
    try {
      const file = join(dir.path, 'larder.json');
      writeFileSync(file, JSON.stringify({ auth: { anonymous: ['read'], htpasswd: { file: '/x' } } }));
      const config = parseEdgeConfig(['--config', file, '--allow-anonymous'], { HOME: '/h' });
      expect(config.auth).toMatchObject({ anonymous: ['read'], allowAnonymous: true, htpasswd: { path: '/x' } });
      expect(parseEdgeConfig([], { HOME: '/h', LARDER_ALLOW_ANONYMOUS: 'on' }).auth.allowAnonymous).toBe(true);
      expect(
        parseEdgeConfig([], { HOME: '/h', LARDER_OIDC_ISSUER: 'https://i', LARDER_OIDC_AUDIENCE: 'a' }).auth.oidc
          ?.issuer,
      ).toBe('https://i');
      expect(parseEdgeConfig(['--tls-cert', 'c.pem', '--tls-key', 'k.pem'], { HOME: '/h' }).tls).toEqual({
        certPath: 'c.pem',
        keyPath: 'k.pem',
      });
      expect(fails(() => parseEdgeConfig(['--tls-cert', 'c.pem'], { HOME: '/h' }))).toMatch(/go together/);
      writeFileSync(file, '{ not json');
      expect(fails(() => parseEdgeConfig(['--config', file], { HOME: '/h' }))).toMatch(/not valid JSON/);
      expect(fails(() => parseEdgeConfig(['--config', join(dir.path, 'missing.json')], { HOME: '/h' }))).toMatch(
        /missing\.json/,
      );
    } finally {
      dir.remove();
    }
  });

  it('refuses to serve beyond loopback without an authenticator unless told --allow-anonymous', async () => {
    const open = parseEdgeConfig(['--listen', '0.0.0.0:0', '--store', 'memory', '--log-level', 'silent'], {
      HOME: '/h',
    });
    await expect(buildEdge(open)).rejects.toThrow(/refusing to serve on 0\.0\.0\.0.*--allow-anonymous/);
    const allowed = parseEdgeConfig(
      ['--listen', '0.0.0.0:0', '--store', 'memory', '--log-level', 'silent', '--allow-anonymous'],
      { HOME: '/h' },
    );
    const edge = await buildEdge(allowed);
    expect((await edge.app.request(`/cas/${'0'.repeat(64)}`)).status).toBe(404);
    const guarded = parseEdgeConfig(
      [
        '--listen',
        '0.0.0.0:0',
        '--store',
        'memory',
        '--log-level',
        'silent',
        '--oidc-issuer',
        'https://idp.example',
        '--oidc-audience',
        'larder',
      ],
      { HOME: '/h' },
    );
    const closed = await buildEdge(guarded);
    expect((await closed.app.request(`/cas/${'0'.repeat(64)}`)).status).toBe(401);
  });
});

describe('htpasswd', () => {
  it('accepts bcrypt and {SHA} entries and warns about the rest without echoing hashes', async () => {
    const { users, warnings } = parseHtpasswd(
      [
        '# comment',
        'a:$2y$05$Q/qrTEDMFr0fYHgJhlEHRutdevajoqDh5tG1AEVs2LZNehle.K.3G',
        'b:{SHA}87u9ZqY9S/F0eUBXjsPQEDUw4h0=',
        'c:$apr1$abc$defdefdef',
        'd:plaintext',
        'nocolon',
        '',
      ].join('\n'),
    );
    expect([...users.keys()]).toEqual(['a', 'b']);
    expect(warnings).toHaveLength(3);
    expect(warnings.join('\n')).not.toMatch(/apr1|plaintext/);
    expect(await verifyPassword('s3cret', users.get('a')!)).toBe(true);
    expect(await verifyPassword('wrong', users.get('a')!)).toBe(false);
    expect(await verifyPassword('hunter2', users.get('b')!)).toBe(true);
    expect(await verifyPassword('hunter3', users.get('b')!)).toBe(false);
  });
});
