// The actions page's memory: a ring of the last N finished operations, one record each, a failed action's
// stderr kept as its tail only (read from the CAS as a stream, never whole), the invocation filter.
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { RecentActions, STDERR_TAIL_BYTES, STDERR_TAIL_LINES } from '../../../executor/execution/recent-actions.ts';
import type { Logger } from '../../../shared/log.ts';
import {
  ExecuteResponseSchema,
  RequestMetadataSchema,
} from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { BlobStore } from '../../../shared/storage/store.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const HASH = 'a'.repeat(64);

/** A store whose one blob (any key) is `chunks`, handed out as a stream only, as a large file on disk is. */
function streamingStore(chunks: Uint8Array[], reads: { count: number }): BlobStore {
  const size = chunks.reduce((sum, c) => sum + c.byteLength, 0);
  return {
    async get() {
      reads.count++;
      let i = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (i < chunks.length) controller.enqueue(chunks[i++]!);
          else controller.close();
        },
      });
      return { size, body };
    },
    stat: async () => size,
    put: async () => {},
  };
}

function finished(name: string, invocation: string, exitCode = 0) {
  return {
    name,
    instance: '',
    actionHash: HASH,
    response: create(ExecuteResponseSchema, {
      result: {
        exitCode,
        stderrDigest: { hash: 'b'.repeat(64), sizeBytes: 10n },
        executionMetadata: {
          worker: 'host/amd64/1#x',
          executionStartTimestamp: { seconds: 100n, nanos: 0 },
          executionCompletedTimestamp: { seconds: 101n, nanos: 500_000_000 },
        },
      },
      status: { code: 0 },
    }),
    metadata: create(RequestMetadataSchema, {
      toolInvocationId: invocation,
      actionMnemonic: 'Genrule',
      targetId: `//:${name}`,
    }),
  };
}

describe('the recent actions ring', () => {
  it('keeps the last N operations, newest first, one record per operation', async () => {
    const recent = new RecentActions(streamingStore([], { count: 0 }), quiet, 3);
    for (const name of ['one', 'two', 'two', 'three', 'four', 'five']) await recent.finished(finished(name, 'inv'));
    expect(recent.list().map((r) => r.operation)).toEqual(['five', 'four', 'three']);
    const [five] = recent.list();
    expect(five).toMatchObject({ mnemonic: 'Genrule', target: '//:five', worker: 'host/amd64/1#x', exitCode: 0 });
    expect(five!.executeMs).toBe(1500);
    expect(five!.queuedMs).toBeNull();
    // An operation evicted from the ring may be recorded again (it is no longer there to be seen twice).
    await recent.finished(finished('one', 'inv'));
    expect(recent.list().map((r) => r.operation)).toEqual(['one', 'five', 'four']);
  });

  it('filters by invocation id', async () => {
    const recent = new RecentActions(streamingStore([], { count: 0 }), quiet, 10);
    await recent.finished(finished('a1', 'A'));
    await recent.finished(finished('b1', 'B'));
    await recent.finished(finished('a2', 'A'));
    expect(recent.list('A').map((r) => r.operation)).toEqual(['a2', 'a1']);
    expect(recent.list('C')).toEqual([]);
  });

  it("reads a failed action's stderr as a stream and keeps only its tail; a passing one's not at all", async () => {
    const line = (i: number) => new TextEncoder().encode(`line-${i}\n`);
    const chunks = Array.from({ length: 5000 }, (_, i) => line(i));
    const reads = { count: 0 };
    const recent = new RecentActions(streamingStore(chunks, reads), quiet, 10);
    await recent.finished(finished('passes', 'A', 0));
    expect(reads.count).toBe(0);
    await recent.finished(finished('fails', 'A', 3));
    const tail = recent.list()[0]!.stderrTail;
    expect(Buffer.byteLength(tail)).toBeLessThanOrEqual(STDERR_TAIL_BYTES);
    // Whole lines only, the last ones.
    const expected = Array.from({ length: STDERR_TAIL_LINES }, (_, i) => `line-${5000 - STDERR_TAIL_LINES + i}\n`);
    expect(tail).toBe(expected.join(''));
  });
});
