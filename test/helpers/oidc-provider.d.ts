// The few parts of npm's oidc-provider (which ships no types) that the test IdP uses.
declare module 'oidc-provider' {
  import type { RequestListener } from 'node:http';

  interface ClientLike {
    grantTypeAllowed(grant: string): boolean;
  }
  export default class Provider {
    constructor(
      issuer: string,
      configuration: Record<string, unknown> & {
        findAccount?: (ctx: unknown, sub: string) => unknown;
        extraTokenClaims?: (ctx: unknown, token: unknown) => unknown;
        issueRefreshToken?: (ctx: unknown, client: ClientLike) => boolean;
        features?: Record<
          string,
          Record<string, unknown> & {
            getResourceServerInfo?: (ctx: unknown, indicator: string, client: unknown) => unknown;
          }
        >;
      },
    );
    callback(): RequestListener;
    on(event: string, listener: (...args: never[]) => void): this;
  }
}
