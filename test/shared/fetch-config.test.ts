/** --fetch-allow and the other download bounds: what the allow-list allows, and which addresses stay out of reach. */
import { describe, expect, it } from 'vitest';
import { allowsSpecialAddresses, isSpecialAddress } from '../../executor/services/asset/addresses.ts';
import { parseExecutorConfig } from '../../executor/config/executor-options.ts';
import { allowedBy, parseAllowList } from '../../shared/fetch-config.ts';

const allowed = (list: string, url: string) => allowedBy(parseAllowList(list), new URL(url)) !== null;

describe('--fetch-allow', () => {
  it('allows hosts, ports, wildcard subdomains and URL prefixes, and nothing else', () => {
    expect(allowed('example.com', 'https://example.com/a.tar.gz')).toBe(true);
    expect(allowed('example.com', 'https://sub.example.com/a')).toBe(false);
    expect(allowed('example.com', 'https://example.com.evil.test/a')).toBe(false);
    expect(allowed('*.example.com', 'https://sub.example.com/a')).toBe(true);
    expect(allowed('*.example.com', 'https://example.com/a')).toBe(false);
    expect(allowed('example.com:8443', 'https://example.com:8443/a')).toBe(true);
    expect(allowed('example.com:8443', 'https://example.com/a')).toBe(false);
    expect(allowed('example.com:443', 'https://example.com/a')).toBe(true);
    expect(allowed('https://example.com/releases/', 'https://example.com/releases/v1.tgz')).toBe(true);
    expect(allowed('https://example.com/releases/', 'https://example.com/other/v1.tgz')).toBe(false);
    expect(allowed('https://example.com/releases/', 'http://example.com/releases/v1.tgz')).toBe(false);
    expect(allowed('example.com', 'ftp://example.com/a')).toBe(false);
    expect(allowed('example.com', 'https://user:pw@example.com/a')).toBe(false);
    expect(allowed('', 'https://example.com/a')).toBe(false);
  });

  it('refuses entries it cannot read, at start-up', () => {
    for (const bad of ['file:///etc', 'https://example.com/?x=1', 'exa mple.com', 'http://'])
      expect(() => parseAllowList(bad), bad).toThrow(/--fetch-allow/);
  });

  it('has LARDER_* twins and checks its bounds', () => {
    const config = parseExecutorConfig([], {
      LARDER_FETCH_ALLOW: 'example.com, 127.0.0.1:9000',
      LARDER_FETCH_TIMEOUT: '90s',
      LARDER_FETCH_CONNECT_TIMEOUT: '2s',
      LARDER_FETCH_CONCURRENCY: '3',
      LARDER_RUN_AS_UIDS: '1900000000-1900000010',
    });
    expect(config.fetch).toMatchObject({ timeoutMs: 90_000, connectTimeoutMs: 2000, concurrency: 3 });
    expect(config.fetch.allow).toHaveLength(2);
    expect(() => parseExecutorConfig(['--fetch-concurrency', '0'], {})).toThrow(/--fetch-concurrency/);
  });
});

describe('special addresses', () => {
  it('are loopback, private, link-local, CGNAT, unspecified and mapped forms of them', () => {
    for (const address of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fe80::1',
      'fd00::1',
      '::ffff:127.0.0.1',
    ])
      expect(isSpecialAddress(address), address).toBe(true);
    for (const address of ['93.184.216.34', '2606:2800:220:1::1', '::ffff:93.184.216.34'])
      expect(isSpecialAddress(address), address).toBe(false);
  });

  it('are reached only through an entry that names the address (or localhost) itself', () => {
    const [ip, name, wildcard, local, prefix] = parseAllowList(
      '127.0.0.1:80,example.com,*.example.com,localhost,http://[::1]:8/x/',
    );
    expect([ip, name, wildcard, local, prefix].map((e) => allowsSpecialAddresses(e!))).toEqual([
      true,
      false,
      false,
      true,
      true,
    ]);
  });
});
