// The access gate and its parts, in-process: credential parsing, the operation table, claim mapping, and
// the decisions (anonymous, bad credentials, missing role) every transport relies on.
import { describe, expect, it } from 'vitest';
import type { Authenticator } from '../../../shared/auth/authenticator.ts';
import { rolesFromClaims } from '../../../shared/auth/claim-roles.ts';
import { parseAuthorization } from '../../../shared/auth/credentials.ts';
import { createAccessGate } from '../../../shared/auth/gate.ts';
import { OPERATION_ROLES, requiredRole } from '../../../shared/auth/operations.ts';
import { LarderError } from '../../../shared/errors.ts';

const b64 = (text: string, alphabet: 'base64' | 'base64url') => Buffer.from(text).toString(alphabet);

describe('credentials', () => {
  it('parses Basic in the standard and the base64url alphabet, padded or not', () => {
    const text = 'ci:s3cret?>>~~'; // encodes to both '+'/'/' and '-'/'_' depending on the alphabet
    expect(b64(text, 'base64')).not.toBe(b64(text, 'base64url'));
    for (const encoded of [b64(text, 'base64'), b64(text, 'base64url'), b64(text, 'base64').replace(/=+$/, '')]) {
      expect(parseAuthorization(`Basic ${encoded}`)).toEqual({ scheme: 'basic', user: 'ci', password: 's3cret?>>~~' });
    }
    expect(parseAuthorization(`basic ${b64('u:p:with:colons', 'base64')}`)).toEqual({
      scheme: 'basic',
      user: 'u',
      password: 'p:with:colons',
    });
  });

  it('parses Bearer and refuses what it cannot read', () => {
    expect(parseAuthorization('Bearer abc.def.ghi')).toEqual({ scheme: 'bearer', token: 'abc.def.ghi' });
    expect(parseAuthorization(undefined).scheme).toBe('none');
    expect(parseAuthorization('  ').scheme).toBe('none');
    for (const bad of [
      'Bearer',
      'Basic !!!',
      `Basic ${b64('nocolon', 'base64')}`,
      `Basic ${b64(':nouser', 'base64')}`,
      'Negotiate abc',
      'Bearer a b',
    ]) {
      expect(parseAuthorization(bad).scheme, bad).toBe('malformed');
    }
  });
});

describe('operation table', () => {
  it('maps HTTP methods and REAPI methods to roles, and anything unknown to write', () => {
    expect([requiredRole('GET'), requiredRole('HEAD'), requiredRole('PUT')]).toEqual(['read', 'read', 'write']);
    expect(requiredRole('/build.bazel.remote.execution.v2.ActionCache/GetActionResult')).toBe('read');
    expect(requiredRole('/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult')).toBe('write');
    expect(requiredRole('/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs')).toBe('read');
    expect(requiredRole('/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs')).toBe('write');
    expect(requiredRole('/google.bytestream.ByteStream/Write')).toBe('write');
    expect(requiredRole('/build.bazel.remote.execution.v2.Execution/Execute')).toBe('execute');
    expect(requiredRole('DELETE')).toBe('write');
    expect(requiredRole('toString')).toBe('write');
    expect(Object.keys(OPERATION_ROLES).length).toBeGreaterThanOrEqual(15);
  });
});

describe('claim roles', () => {
  const mapping = {
    everyone: ['read' as const],
    rules: [
      { claim: 'groups', value: 'ci', roles: ['write' as const] },
      { claim: 'scope', value: 'cache:execute', roles: ['execute' as const] },
      { claim: 'https://example.com/admin', value: 'true', roles: ['write' as const] },
    ],
  };
  it('grants rule roles only on exact matches', () => {
    expect([...rolesFromClaims(mapping, { groups: ['developers', 'ci'] })].sort()).toEqual(['read', 'write']);
    expect([...rolesFromClaims(mapping, { groups: ['ci-readers'] })]).toEqual(['read']);
    expect([...rolesFromClaims(mapping, { groups: 'ci' })].sort()).toEqual(['read', 'write']);
    expect([...rolesFromClaims(mapping, { scope: 'openid cache:execute' })].sort()).toEqual(['execute', 'read']);
    expect([...rolesFromClaims(mapping, { 'https://example.com/admin': true })].sort()).toEqual(['read', 'write']);
    expect([...rolesFromClaims(mapping, {})]).toEqual(['read']);
  });
});

describe('access gate', () => {
  const fake: Authenticator = {
    scheme: 'bearer',
    async authenticate(credentials) {
      if (credentials.scheme !== 'bearer') throw new Error('unreachable');
      if (credentials.token === 'writer') return { subject: 'w', via: 'oidc', roles: new Set(['read', 'write']) };
      if (credentials.token === 'reader') return { subject: 'r', via: 'oidc', roles: new Set(['read']) };
      if (credentials.token === 'idp-down') throw new LarderError('unavailable', 'the IdP is down');
      throw new LarderError('unauthenticated', 'the token has expired');
    },
  };

  it('decides by role: 401 without credentials or with bad ones, 403 for a missing role', async () => {
    const gate = createAccessGate({ authenticators: [fake], anonymousRoles: [] });
    expect(gate.authenticates).toBe(true);
    const none = await gate.check(undefined, 'GET');
    expect(none).toMatchObject({ allowed: false, code: 'unauthenticated', challenges: ['Bearer realm="larder"'] });
    expect(await gate.check('Bearer writer', 'PUT')).toMatchObject({ allowed: true, principal: { subject: 'w' } });
    expect(await gate.check('Bearer reader', 'GET')).toMatchObject({ allowed: true });
    expect(await gate.check('Bearer reader', 'PUT')).toMatchObject({
      allowed: false,
      code: 'permission_denied',
      challenges: [],
    });
    expect(await gate.check('Bearer stale', 'GET')).toMatchObject({
      allowed: false,
      code: 'unauthenticated',
      message: 'the token has expired',
      challenges: ['Bearer realm="larder", error="invalid_token"'],
    });
    expect(await gate.check('Bearer idp-down', 'GET')).toMatchObject({ allowed: false, code: 'unavailable' });
    expect(await gate.check(`Basic ${b64('u:p', 'base64')}`, 'GET')).toMatchObject({
      allowed: false,
      code: 'unauthenticated',
    });
  });

  it('lets anonymous do what it is granted, but never overlooks bad credentials', async () => {
    const gate = createAccessGate({ authenticators: [fake], anonymousRoles: ['read'] });
    expect(await gate.check(undefined, 'GET')).toMatchObject({ allowed: true, principal: { via: 'anonymous' } });
    expect(await gate.check(undefined, 'PUT')).toMatchObject({ allowed: false, code: 'unauthenticated' });
    expect(await gate.check('Bearer stale', 'GET')).toMatchObject({ allowed: false, code: 'unauthenticated' });
    // The same answer without a promise, for requests without credentials (the edge's downloads).
    expect(gate.anonymous('GET')).toMatchObject({ via: 'anonymous', roles: new Set(['read']) });
    expect(gate.anonymous('HEAD')).toBe(gate.anonymous('GET')); // one principal for every anonymous request
    expect(gate.anonymous('PUT')).toBeNull();
    expect(gate.anonymous('DELETE')).toBeNull();
  });

  it('without authenticators, anonymous holds the roles configured for it', async () => {
    const open = createAccessGate({ authenticators: [], anonymousRoles: ['read', 'write', 'execute'] });
    expect(open.authenticates).toBe(false);
    expect(await open.check(undefined, 'PUT')).toMatchObject({ allowed: true });
    expect(await open.check(undefined, '/build.bazel.remote.execution.v2.Execution/Execute')).toMatchObject({
      allowed: true,
    });
    const readOnly = createAccessGate({ authenticators: [], anonymousRoles: ['read'] });
    expect(await readOnly.check(undefined, 'GET')).toMatchObject({ allowed: true });
    expect(await readOnly.check(undefined, 'PUT')).toMatchObject({
      allowed: false,
      code: 'permission_denied',
      challenges: [],
    });
  });
});
