/**
 * The `auth` section of the config file (`--config FILE`, JSON), merged with the `--oidc-*`, `--htpasswd`
 * and `--allow-anonymous` flags, which win over the file. Checked once at start-up; every key is
 * described in shared/auth/README-section.md.
 */
import { LarderError } from '../errors.ts';
import { parseClaimRoleMapping, parseRoleList, rejectUnknown } from './claim-roles.ts';
import { DEFAULT_ALGORITHMS, type OidcOptions } from './oidc.ts';
import { OPEN_ROLES, type Role } from './operations.ts';

/** The OIDC section of the config, exactly what the authenticator takes. */
export type OidcConfig = OidcOptions;

export interface HtpasswdConfig {
  path: string;
  everyone: Role[];
  users: Record<string, Role[]>;
}

export interface AuthConfig {
  oidc: OidcConfig | null;
  htpasswd: HtpasswdConfig | null;
  /** Roles of requests without credentials. */
  anonymous: Role[];
  /** The operator said serving beyond loopback without an authenticator is intended. */
  allowAnonymous: boolean;
}

export interface AuthFlags {
  oidcIssuer: string;
  oidcAudience: string;
  htpasswd: string;
  allowAnonymous: boolean;
}

/** `file` is the parsed config file (or null without one); empty flag strings mean "not given". */
export function parseAuthConfig(file: unknown, flags: AuthFlags): AuthConfig {
  const section = objectAt(file === null ? {} : (objectAt(file, 'the config file').auth ?? {}), 'auth');
  const { oidc, htpasswd, anonymous, ...rest } = section;
  rejectUnknown(rest, 'auth');
  const oidcConfig = parseOidc(oidc === undefined ? {} : objectAt(oidc, 'auth.oidc'), flags);
  const htpasswdConfig = parseHtpasswdSection(htpasswd === undefined ? {} : objectAt(htpasswd, 'auth.htpasswd'), flags);
  const anyAuthenticator = oidcConfig !== null || htpasswdConfig !== null;
  return {
    oidc: oidcConfig,
    htpasswd: htpasswdConfig,
    // Without an authenticator everybody is anonymous, so anonymous must be able to do everything a user can,
    // as before authentication existed (operating on others' operations is not that); with one, anonymous gets
    // nothing unless the file grants it.
    anonymous:
      anonymous === undefined ? (anyAuthenticator ? [] : [...OPEN_ROLES]) : parseRoleList(anonymous, 'auth.anonymous'),
    allowAnonymous: flags.allowAnonymous,
  };
}

function parseOidc(section: Record<string, unknown>, flags: AuthFlags): OidcConfig | null {
  const {
    issuer,
    audience,
    jwksUrl,
    algorithms,
    clockSkewSeconds,
    jwksCooldownSeconds,
    jwksMaxAgeSeconds,
    roles,
    ...rest
  } = section;
  rejectUnknown(rest, 'auth.oidc');
  const chosenIssuer = flags.oidcIssuer || optionalString(issuer, 'auth.oidc.issuer');
  const audiences = flags.oidcAudience ? [flags.oidcAudience] : stringList(audience, 'auth.oidc.audience');
  if (chosenIssuer === undefined) {
    if (Object.keys(section).length > 0 || flags.oidcAudience) {
      throw new LarderError(
        'invalid_argument',
        'OIDC settings were given without an issuer: set --oidc-issuer (or auth.oidc.issuer)',
      );
    }
    return null;
  }
  if (audiences.length === 0) {
    throw new LarderError(
      'invalid_argument',
      '--oidc-audience (or auth.oidc.audience) is required with an OIDC issuer: without it, tokens minted for any other service would be accepted',
    );
  }
  const chosenJwks = optionalString(jwksUrl, 'auth.oidc.jwksUrl');
  return {
    issuer: chosenIssuer,
    audience: audiences,
    ...(chosenJwks === undefined ? {} : { jwksUrl: chosenJwks }),
    algorithms: algorithms === undefined ? DEFAULT_ALGORITHMS : stringList(algorithms, 'auth.oidc.algorithms'),
    clockToleranceSeconds: seconds(clockSkewSeconds, 'auth.oidc.clockSkewSeconds', 30),
    jwksCooldownMs: 1000 * seconds(jwksCooldownSeconds, 'auth.oidc.jwksCooldownSeconds', 30),
    jwksMaxAgeMs: 1000 * seconds(jwksMaxAgeSeconds, 'auth.oidc.jwksMaxAgeSeconds', 600),
    roles: parseClaimRoleMapping(roles, 'auth.oidc.roles'),
  };
}

function parseHtpasswdSection(section: Record<string, unknown>, flags: AuthFlags): HtpasswdConfig | null {
  const { file, everyone, users, ...rest } = section;
  rejectUnknown(rest, 'auth.htpasswd');
  const path = flags.htpasswd || optionalString(file, 'auth.htpasswd.file');
  if (path === undefined) {
    if (Object.keys(section).length > 0)
      throw new LarderError('invalid_argument', 'auth.htpasswd needs a file (or --htpasswd FILE)');
    return null;
  }
  const perUser: Record<string, Role[]> = {};
  for (const [user, roles] of Object.entries(users === undefined ? {} : objectAt(users, 'auth.htpasswd.users'))) {
    perUser[user] = parseRoleList(roles, `auth.htpasswd.users.${user}`);
  }
  return {
    path,
    everyone: everyone === undefined ? ['read'] : parseRoleList(everyone, 'auth.htpasswd.everyone'),
    users: perUser,
  };
}

function objectAt(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LarderError('invalid_argument', `${where} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new LarderError('invalid_argument', `${where} must be a string`);
  return value;
}

function stringList(value: unknown, where: string): string[] {
  if (value === undefined) return [];
  if (typeof value === 'string') return [value];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
    throw new LarderError('invalid_argument', `${where} must be a string or a list of strings`);
  }
  return value;
}

function seconds(value: unknown, where: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new LarderError('invalid_argument', `${where} must be a number of seconds, at least 0`);
  }
  return value;
}
