// Debian's Bazel 4.2.3 over grpcs:// to `larder executor --tls-cert/--tls-key`. Its bundled Netty (4.1.48,
// Debian build) has no JDK ALPN support at all: with the default JDK provider it stops with "Failed to init
// TLS infrastructure: JDK provider does not support ALPN protocol", whatever JVM flag is given. gRPC picks
// the OpenSSL provider instead when netty-tcnative's native library loads, and Bazel bundles the tcnative
// 2.0.28 classes; Debian's libnetty-tcnative-jni (2.0.28) has the matching library, but named
// libnetty-tcnative.so, while Netty loads `netty_tcnative` and the library refuses to start under any other
// file name (symlinks are resolved, so it must be a copy). So: copy it as libnetty_tcnative.so into a
// folder and give the server JVM `startup --host_jvm_args=-Djava.library.path=FOLDER`.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BazelWorkspace, bazelStatus } from '../bazel/bazel.ts';
import { TARGETS, expectOk, expectOutputs } from '../bazel/expectations.ts';
import { tempDir } from '../helpers/edge-process.ts';
import { requireTool } from '../helpers/tools.ts';
import { startExecutorProcess } from './helpers.ts';
import { makeCertificate, opensslPath } from './tls.ts';

const TCNATIVE = '/usr/lib/x86_64-linux-gnu/jni/libnetty-tcnative.so';

const bazel = bazelStatus();
const haveBazel = requireTool('bazel', bazel.available ? bazel.path : undefined, 'apt-get install bazel-bootstrap');
const haveOpenssl = requireTool('openssl', opensslPath(), 'apt-get install openssl');
const haveTcnative = requireTool(
  'netty-tcnative',
  existsSync(TCNATIVE) ? TCNATIVE : undefined,
  'apt-get install libnetty-tcnative-jni',
);

describe.runIf(haveBazel && haveOpenssl && haveTcnative)('real Bazel against larder executor over grpcs://', () => {
  const dir = tempDir('larder-bazel-grpcs-');
  const libDir = join(dir.path, 'jni');
  let ws: BazelWorkspace;

  beforeAll(async () => {
    mkdirSync(libDir);
    copyFileSync(TCNATIVE, join(libDir, 'libnetty_tcnative.so'));
    ws = await BazelWorkspace.create({ extraBazelrc: `startup --host_jvm_args=-Djava.library.path=${libDir}` });
  });
  afterAll(async () => {
    await BazelWorkspace.shutdownAll();
    dir.remove();
  }, 120_000);

  it('builds, cleans and rebuilds with every action a remote cache hit', async () => {
    const certificate = makeCertificate(dir.path);
    const executor = await startExecutorProcess([
      '--store',
      `disk:${join(dir.path, 'store')}`,
      '--tls-cert',
      certificate.certPath,
      '--tls-key',
      certificate.keyPath,
    ]);
    try {
      expect(executor.url).toMatch(/^grpcs:\/\//);
      const flags = [`--remote_cache=${executor.url}`, `--tls_certificate=${certificate.certPath}`];
      const cold = await ws.build(TARGETS, flags);
      expectOk(cold);
      expect(cold.summary!.remoteCacheHit, cold.summary!.line).toBe(0);
      const processes = cold.summary!.nonInternal;
      expect(processes).toBeGreaterThan(0);

      await ws.clean();
      const warm = await ws.build(TARGETS, flags);
      expectOk(warm);
      expect(warm.summary!.remoteCacheHit, warm.summary!.line).toBe(processes);
      expect(warm.summary!.other, warm.summary!.line).toEqual({});
      await expectOutputs(ws);
    } finally {
      await executor.stop();
    }
  }, 600_000);
});
