/**
 * `container-image=docker://IMAGE`, checked against Docker's reference grammar before anything is queued. The
 * reference goes into Engine API paths (`/images/{name}/json`), where a name such as `../../containers/json` made
 * the engine answer with a redirect to another endpoint: only names the engine itself could hold get that far.
 *
 * The grammar, as the engine's reference parser has it: `[DOMAIN/]PATH[:TAG][@DIGEST]`, where
 * - DOMAIN is a host name (dot-separated labels of letters, digits and inner hyphens) or a bracketed IPv6
 *   address, with an optional `:PORT`; the first component is one only if more components follow;
 * - PATH is `/`-separated components of lowercase letters and digits, joined inside by `.`, `_`, `__` or hyphens;
 * - TAG is a word character then up to 127 word characters, dots and hyphens;
 * - DIGEST is `ALGORITHM:HEX` (at least 32 hex digits), ALGORITHM letters and digits joined by `+ . - _`;
 * - the name (DOMAIN/PATH) is at most 255 characters.
 */
import { LarderError } from '../../shared/errors.ts';

const SCHEME = 'docker://';
const MAX_NAME = 255;

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST_NAME = /^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const IPV6_HOST = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]+$/;
const TAG = /^\w[\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;

/** The image reference of a `container-image` value; INVALID_ARGUMENT naming the value and what is wrong. */
export function imageReferenceOf(value: string): string {
  const refuse = (why: string) =>
    new LarderError('invalid_argument', `container-image ${JSON.stringify(value.slice(0, 300))}: ${why}`);
  if (!value.startsWith(SCHEME)) throw refuse('the docker runner takes docker://IMAGE');
  const reference = value.slice(SCHEME.length);
  const problem = referenceProblem(reference);
  if (problem !== null) throw refuse(`not a Docker image reference (${problem})`);
  return reference;
}

/** What is wrong with `reference`, or null when Docker would accept it. */
export function referenceProblem(reference: string): string | null {
  if (reference === '') return 'empty';
  const at = reference.indexOf('@');
  const digest = at < 0 ? null : reference.slice(at + 1);
  const named = at < 0 ? reference : reference.slice(0, at);
  if (digest !== null && !DIGEST.test(digest)) return `bad digest ${JSON.stringify(digest.slice(0, 80))}`;
  // A tag's colon comes after the last slash; a colon before it is a registry's port.
  const colon = named.lastIndexOf(':');
  const tagged = colon > named.lastIndexOf('/');
  const name = tagged ? named.slice(0, colon) : named;
  if (tagged && !TAG.test(named.slice(colon + 1)))
    return `bad tag ${JSON.stringify(named.slice(colon + 1, colon + 81))}`;
  if (name.length > MAX_NAME) return `the name is longer than ${MAX_NAME} characters`;
  const components = name.split('/');
  const path = components.length > 1 && isDomain(components[0]!) ? components.slice(1) : components;
  const bad = path.find((c) => !PATH_COMPONENT.test(c));
  if (bad !== undefined)
    return `bad name component ${JSON.stringify(bad.slice(0, 80))}: lowercase letters and digits, joined by . _ __ or -`;
  return null;
}

function isDomain(component: string): boolean {
  const colon = component.lastIndexOf(':');
  const hasPort = colon >= 0 && colon > component.lastIndexOf(']');
  const host = hasPort ? component.slice(0, colon) : component;
  if (hasPort && !PORT.test(component.slice(colon + 1))) return false;
  return HOST_NAME.test(host) || IPV6_HOST.test(host);
}
