/**
 * edge/deploy.ts, the Deno Deploy entry, as Deploy runs it: Deno with network and environment access and no file
 * system (reads and writes denied), configured from environment variables alone, with tiered(memory, s3) against
 * the real S3-compatible server and OIDC against the real OpenID provider. The whole HTTP protocol suite runs
 * through it, and a second instance checks that the provider's tokens decide who may write.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EdgeProcess, startEdgeProcess } from '../helpers/edge-process.ts';
import { randomBlob } from '../helpers/http.ts';
import { AUDIENCE, type TestIdp, startIdp } from '../helpers/oidc-idp.ts';
import { S3_BUCKET, type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { denoPath, requireTool } from '../helpers/tools.ts';
import { describeHttpProtocol } from './http-protocol.ts';
import { bytesOf } from '../helpers/bytes.ts';

const hasDeno = requireTool('deno', denoPath(), 'npm ci installs it from @deno/linux-x64-glibc');
let s3: S3Server;
let idp: TestIdp;

beforeAll(async () => {
  if (!hasDeno) return;
  [s3, idp] = await Promise.all([startS3Server(), startIdp()]);
});
afterAll(async () => {
  await Promise.all([s3?.destroy(), idp?.close()]);
});

const config = (anonymous: string[]) =>
  JSON.stringify({
    auth: {
      anonymous,
      oidc: { roles: { everyone: ['read'], rules: [{ claim: 'client_id', value: 'ci', roles: ['write'] }] } },
    },
  });

describe.runIf(hasDeno)('the Deno Deploy entry', () => {
  // The protocol suite sends no credentials, so anonymous may read and write here; OIDC is still configured
  // (discovery and keys come from the provider when a token arrives).
  describeHttpProtocol('HTTP protocol through edge/deploy.ts, tiered(memory, s3), OIDC', {
    runtime: 'deploy',
    store: async () => ({
      args: [
        '--store',
        `tiered(memory:1GiB,s3://${S3_BUCKET}/deploy-${randomUUID()})`,
        '--oidc-issuer',
        idp.issuer,
        '--oidc-audience',
        AUDIENCE,
        '--config-json',
        config(['read', 'write']),
      ],
      env: s3.env(),
      cleanup: () => {},
    }),
    streamsToStorage: false,
  });

  describe('with OIDC deciding who writes', () => {
    let edge: EdgeProcess;
    beforeAll(async () => {
      edge = await startEdgeProcess({
        runtime: 'deploy',
        args: [
          '--store',
          `tiered(memory:64MiB,s3://${S3_BUCKET}/deploy-${randomUUID()})`,
          '--oidc-issuer',
          idp.issuer,
          '--oidc-audience',
          AUDIENCE,
          '--config-json',
          config(['read']),
        ],
        env: s3.env(),
      });
    });
    afterAll(async () => {
      await edge?.stop();
    });

    it('stores for a token with the write role, refuses without one, and serves readers', async () => {
      const blob = randomBlob(5000);
      const put = (authorization?: string) =>
        fetch(`${edge.url}/cas/${blob.hash}`, {
          method: 'PUT',
          body: blob.data,
          headers: authorization === undefined ? {} : { authorization },
        }).then(async (r) => {
          await r.arrayBuffer();
          return r.status;
        });
      expect(await put()).toBe(401);
      expect(await put(`Bearer ${await idp.clientCredentialsToken('reader')}`)).toBe(403);
      expect(await put(`Bearer ${await idp.clientCredentialsToken('ci')}`)).toBe(200);
      const got = await fetch(`${edge.url}/cas/${blob.hash}`);
      expect(got.status).toBe(200);
      expect(bytesOf(new Uint8Array(await got.arrayBuffer()))).toEqual(bytesOf(blob.data));
      // The object is in the bucket, under the deploy prefix: S3 is the durable tier.
      expect((await s3.list('deploy-')).map((o) => o.key)).toContainEqual(
        expect.stringMatching(new RegExp(`/cas/${blob.hash}$`)),
      );
    });
  });

  it('refuses settings that need files', async () => {
    await expect(
      startEdgeProcess({ runtime: 'deploy', args: ['--store', 'tiered(memory:1MiB,disk:/tmp/x)'] }),
    ).rejects.toThrow(/Deno Deploy has no disk/);
    await expect(
      startEdgeProcess({ runtime: 'deploy', args: ['--store', 'memory', '--htpasswd', '/etc/htpasswd'] }),
    ).rejects.toThrow(/use OIDC/);
  });
});
