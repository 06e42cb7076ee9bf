// The worker protocol's framing on a persistent worker's stdout: whole responses out of chunks cut anywhere, both
// wire formats, the 64 MiB bound and garbage refused, and work linear in the bytes read (a 16 MiB response in
// chunks from 1 byte to 64 KiB within a time bound that reading it quadratically cannot meet).
import { create, toBinary, toJsonString } from '@bufbuild/protobuf';
import { BinaryWriter, sizeDelimitedDecodeStream, sizeDelimitedEncode } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import {
  encodeRequest,
  MAX_RESPONSE_BYTES,
  ResponseReader,
  type WorkerProtocol,
} from '../../../../executor/worker/persistent/framing.ts';
import {
  type WorkResponse,
  WorkRequestSchema,
  WorkResponseSchema,
} from '../../../../shared/proto/gen/blaze/worker/worker_protocol_pb.ts';

const MiB = 1024 * 1024;

const responses = [
  create(WorkResponseSchema, { requestId: 1, exitCode: 0, output: 'ok' }),
  create(WorkResponseSchema, { requestId: 2, exitCode: 1, output: 'a {brace} and a "quote" \\ and }{ ünïcödé 🐘' }),
  create(WorkResponseSchema, { requestId: 3, wasCancelled: true }),
];

function wire(protocol: WorkerProtocol, messages: WorkResponse[], separator = '\n'): Uint8Array {
  const parts = messages.map((m) =>
    protocol === 'proto'
      ? sizeDelimitedEncode(WorkResponseSchema, m)
      : new TextEncoder().encode(toJsonString(WorkResponseSchema, m) + separator),
  );
  return Buffer.concat(parts);
}

/** What the reader hands out when `bytes` arrive in chunks of `size` (the last may be shorter). */
function readInChunks(protocol: WorkerProtocol, bytes: Uint8Array, size: number): WorkResponse[] {
  const reader = new ResponseReader(protocol);
  const out: WorkResponse[] = [];
  for (let at = 0; at < bytes.byteLength; at += size) out.push(...reader.push(bytes.subarray(at, at + size)));
  return out;
}

const plain = (messages: WorkResponse[]) => messages.map((m) => toJsonString(WorkResponseSchema, m));

describe.each(['proto', 'json'] as const)('ResponseReader (%s)', (protocol) => {
  it('hands out each response once it is whole, wherever the chunks are cut', () => {
    const bytes = wire(protocol, responses);
    const expected = plain(responses);
    for (let cut = 0; cut <= bytes.byteLength; cut++) {
      const reader = new ResponseReader(protocol);
      const got = [...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))];
      expect(plain(got), `cut at byte ${cut}`).toEqual(expected);
    }
    for (const size of [1, 2, 3, 7, 64])
      expect(plain(readInChunks(protocol, bytes, size)), `chunks of ${size}`).toEqual(expected);
  });

  it('reads a 16 MiB response in chunks of 1 byte to 64 KiB in time linear in its size', () => {
    // Mostly plain text, and every kind of byte the JSON scanner must step over: braces, quotes and backslashes
    // (escaped in JSON), multi-byte UTF-8.
    const pattern = `${'x'.repeat(56)} {"}\\ ü🐘`;
    const output = pattern.repeat(Math.ceil((16 * MiB) / pattern.length)).slice(0, 16 * MiB);
    const bytes = wire(protocol, [create(WorkResponseSchema, { requestId: 7, output }), responses[0]!]);
    // Linear reading takes about 2 s of CPU at 1-byte chunks here and 0.2 s at 1 KiB (figures printed below); a
    // reader that copies or rescans what it holds on every chunk needs hours at 1 byte and minutes at 1 KiB. CPU
    // time, not wall time, is bounded: other suites share the machine's two cores.
    const budget = { cpuMs: 20_000, wallMs: 120_000 };
    const figures: string[] = [];
    for (const size of [1, 1024, 64 * 1024]) {
      const reader = new ResponseReader(protocol);
      const got: WorkResponse[] = [];
      const [wall, cpu] = [performance.now(), process.cpuUsage()];
      const spent = () => {
        const { user, system } = process.cpuUsage(cpu);
        return { cpuMs: (user + system) / 1000, wallMs: performance.now() - wall };
      };
      for (let at = 0, pushes = 0; at < bytes.byteLength; at += size, pushes++) {
        for (const response of reader.push(bytes.subarray(at, at + size))) got.push(response);
        if (pushes % 4096 !== 0) continue;
        const { cpuMs, wallMs } = spent();
        if (cpuMs > budget.cpuMs || wallMs > budget.wallMs)
          expect.fail(
            `chunks of ${size} B: ${at} of ${bytes.byteLength} bytes read in ${Math.round(cpuMs)} ms of CPU (${Math.round(wallMs)} ms)`,
          );
      }
      const { cpuMs, wallMs } = spent();
      figures.push(`${size} B chunks: ${Math.round(cpuMs)} ms CPU (${Math.round(wallMs)} ms)`);
      expect(got.map((r) => [r.requestId, r.output.length])).toEqual([
        [7, output.length],
        [1, 2],
      ]);
      expect(got[0]!.output === output, 'the 16 MiB output read back unchanged').toBe(true);
    }
    console.log(`${protocol}, 16 MiB response: ${figures.join(', ')}`);
  }, 120_000);

  it(`refuses more than ${MAX_RESPONSE_BYTES} bytes without a whole response`, () => {
    const reader = new ResponseReader(protocol);
    if (protocol === 'proto') {
      // Refused on the length prefix alone, before any of the body is buffered.
      const prefix = new BinaryWriter().uint32(MAX_RESPONSE_BYTES + 1).finish();
      expect(() => reader.push(prefix)).toThrow(/announced a 67108865-byte response, over 67108864/);
      return;
    }
    reader.push(new TextEncoder().encode('{"output":"'));
    const filler = new Uint8Array(MiB).fill(0x78);
    for (let i = 0; i < 63; i++) expect(reader.push(filler)).toEqual([]);
    expect(() => reader.push(filler)).toThrow(/over 67108864 bytes without completing a response/);
  });

  it('refuses bytes that are not a response', () => {
    const garbage = protocol === 'proto' ? Uint8Array.of(3, 0xff, 0xff, 0xff) : new TextEncoder().encode(' \n[1,2]');
    expect(() => new ResponseReader(protocol).push(garbage)).toThrow(/is not a (JSON )?WorkResponse/);
  });
});

describe('ResponseReader (proto) length prefixes', () => {
  it('refuses a prefix longer than a uint32 takes, and one announcing 4 GiB or more, before buffering', () => {
    expect(() => new ResponseReader('proto').push(Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80))).toThrow(
      /malformed length prefix/,
    );
    // 2^32 + 5: read as a uint32 it would wrap to 5.
    expect(() => new ResponseReader('proto').push(Uint8Array.of(0x85, 0x80, 0x80, 0x80, 0x10, 1, 2, 3, 4, 5))).toThrow(
      /announced a 4 GiB or larger response/,
    );
  });
});

describe('encodeRequest', () => {
  const request = create(WorkRequestSchema, { requestId: 5, arguments: ['--flag', 'ü'], inputs: [{ path: 'a/b' }] });

  it('writes protobuf requests size-delimited, as any size-delimited reader reads them', async () => {
    const bytes = Buffer.concat([encodeRequest('proto', request), encodeRequest('proto', request)]);
    async function* chunks() {
      for (let i = 0; i < bytes.byteLength; i += 3) yield bytes.subarray(i, i + 3);
    }
    const read = [];
    for await (const message of sizeDelimitedDecodeStream(WorkRequestSchema, chunks())) read.push(message);
    expect(read.map((m) => toBinary(WorkRequestSchema, m))).toEqual([
      toBinary(WorkRequestSchema, request),
      toBinary(WorkRequestSchema, request),
    ]);
  });

  it('writes JSON requests as one object each', () => {
    expect(JSON.parse(new TextDecoder().decode(encodeRequest('json', request)))).toEqual({
      requestId: 5,
      arguments: ['--flag', 'ü'],
      inputs: [{ path: 'a/b' }],
    });
  });
});
