/**
 * Roles from a verified token's claims: everyone with a valid token gets `everyone`, and each rule adds
 * its roles when the claim holds the value. Matching is exact so that a group called "ci-readers" never
 * passes for "ci"; only `scope`, which RFC 9068 defines as a space-separated list, is split.
 */
import { LarderError } from '../errors.ts';
import { isRole, type Role } from './operations.ts';

export interface ClaimRoleRule {
  /** A top-level claim name, e.g. `groups`, `scope`, or a namespaced `https://example.com/roles`. */
  claim: string;
  value: string;
  roles: Role[];
}

export interface ClaimRoleMapping {
  everyone: Role[];
  rules: ClaimRoleRule[];
}

/** Valid tokens may read; nobody writes or executes until a rule says so. */
export const DEFAULT_CLAIM_ROLES: ClaimRoleMapping = { everyone: ['read'], rules: [] };

export function rolesFromClaims(mapping: ClaimRoleMapping, claims: Record<string, unknown>): Set<Role> {
  const roles = new Set<Role>(mapping.everyone);
  for (const rule of mapping.rules) {
    if (claimHolds(rule.claim, claims[rule.claim], rule.value)) for (const role of rule.roles) roles.add(role);
  }
  return roles;
}

function claimHolds(name: string, held: unknown, value: string): boolean {
  if (Array.isArray(held)) return held.some((item) => item === value);
  if (typeof held === 'string') return name === 'scope' ? held.split(' ').includes(value) : held === value;
  if (typeof held === 'boolean' || typeof held === 'number') return String(held) === value;
  return false;
}

/** Checks a list of role names from a config file; `where` names the place for the error message. */
export function parseRoleList(value: unknown, where: string): Role[] {
  if (!Array.isArray(value) || !value.every(isRole)) {
    throw new LarderError(
      'invalid_argument',
      `${where} must be a list of roles ("read", "write", "execute", "operate")`,
    );
  }
  return [...new Set(value)];
}

export function parseClaimRoleMapping(value: unknown, where: string): ClaimRoleMapping {
  if (value === undefined) return DEFAULT_CLAIM_ROLES;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LarderError('invalid_argument', `${where} must be an object with "everyone" and "rules"`);
  }
  const { everyone, rules, ...rest } = value as Record<string, unknown>;
  rejectUnknown(rest, where);
  const parsedRules = (rules ?? []) as unknown;
  if (!Array.isArray(parsedRules)) throw new LarderError('invalid_argument', `${where}.rules must be a list`);
  return {
    everyone: everyone === undefined ? DEFAULT_CLAIM_ROLES.everyone : parseRoleList(everyone, `${where}.everyone`),
    rules: parsedRules.map((rule: unknown, i) => {
      const at = `${where}.rules[${i}]`;
      const r = (rule ?? {}) as Record<string, unknown>;
      const { claim, value: held, roles, ...extra } = r;
      rejectUnknown(extra, at);
      if (typeof claim !== 'string' || claim === '')
        throw new LarderError('invalid_argument', `${at}.claim must name a claim`);
      if (typeof held !== 'string') throw new LarderError('invalid_argument', `${at}.value must be a string`);
      return { claim, value: held, roles: parseRoleList(roles, `${at}.roles`) };
    }),
  };
}

export function rejectUnknown(rest: Record<string, unknown>, where: string): void {
  const unknown = Object.keys(rest);
  if (unknown.length > 0)
    throw new LarderError('invalid_argument', `${where}: unknown key ${JSON.stringify(unknown[0])}`);
}
