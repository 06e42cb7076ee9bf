/**
 * Which network addresses FetchBlob may connect to. Loopback, private, link-local and other special ranges
 * are reached only when the allow-list names that address (or `localhost`) itself: allowing a host name
 * must never let its DNS answer point the server at its own network (cloud metadata, an admin port).
 */
import { BlockList, isIP } from 'node:net';
import type { AllowEntry } from '../../../shared/fetch-config.ts';

const special = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const)
  special.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  special.addSubnet(net, bits, 'ipv6');

/** Whether `address` (an IP literal) is loopback, private or otherwise not a public internet address. */
export function isSpecialAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return special.check(address, 'ipv4');
  if (family === 6) {
    // An IPv4-mapped address is judged by its IPv4 part (a ::ffff:0:0/96 rule in the list would match every IPv4 address).
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    return mapped ? special.check(mapped[1]!, 'ipv4') : special.check(address, 'ipv6');
  }
  return true;
}

/** Whether an allow-list entry names a loopback or private host itself, which is what allows connecting to one. */
export function allowsSpecialAddresses(entry: AllowEntry): boolean {
  const host = entry.host.replace(/^\[|\]$/g, '');
  if (entry.kind === 'host' && entry.wildcard) return false;
  return host === 'localhost' || isIP(host) !== 0;
}
