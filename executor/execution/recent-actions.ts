/**
 * The actions this frontend saw finish, for the actions page (shared/status/actions-page.ts): a ring buffer of
 * the last `capacity` records, one per operation, each bounded (strings cut, stderr only its tail), so the
 * memory it takes is bounded whatever runs. The Execution service records an operation when it sends its final
 * response: for a fleet's frontend that response comes from Redis (the operation's update), so a frontend sees
 * the results of whichever workers ran its clients' actions.
 */
import type { Timestamp } from '@bufbuild/protobuf/wkt';
import { blobKey } from '../../shared/digest.ts';
import type { Logger } from '../../shared/log.ts';
import type { BlobStore } from '../../shared/storage/store.ts';
import type {
  ExecuteResponse,
  ExecutedActionMetadata,
  RequestMetadata,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import type { ActionRecord } from '../../shared/status/actions-page.ts';
import { Code } from '../reapi/grpc-status.ts';

/** Records kept: a few hundred, as the page shows. */
export const RECENT_ACTIONS = 300;
/** Of a failed action's stderr, the page shows at most this many final bytes, and of those the last lines. */
export const STDERR_TAIL_BYTES = 2048;
export const STDERR_TAIL_LINES = 20;
/** Longest mnemonic, target, invocation, worker or status kept (they come from clients). */
const FIELD_CHARS = 300;

export interface FinishedOperation {
  name: string;
  instance: string;
  actionHash: string;
  response: ExecuteResponse;
  /** The RequestMetadata of the call that saw it finish, or null. */
  metadata: RequestMetadata | null;
}

export class RecentActions {
  /** The ring: `next` is where the next record goes, over the oldest once full. */
  private readonly ring: Array<ActionRecord | undefined>;
  private next = 0;
  /** Operations recorded (or being recorded), so two waiters of one operation give one record. */
  private readonly seen = new Set<string>();

  constructor(
    private readonly store: BlobStore,
    private readonly log: Logger,
    readonly capacity = RECENT_ACTIONS,
  ) {
    this.ring = new Array(capacity);
  }

  /** Records a finished operation once; never throws (the page must not fail a client's call). */
  async finished(operation: FinishedOperation): Promise<void> {
    if (this.seen.has(operation.name)) return;
    this.seen.add(operation.name);
    try {
      this.add(await this.record(operation));
    } catch (err) {
      this.seen.delete(operation.name);
      this.log.debug('could not record a finished action for the actions page', {
        operation: operation.name,
        error: (err as Error).message,
      });
    }
  }

  /** Newest first; only `invocation`'s when given. */
  list(invocation: string | null = null): ActionRecord[] {
    const out: ActionRecord[] = [];
    for (let i = 1; i <= this.capacity; i++) {
      const record = this.ring[(this.next - i + this.capacity) % this.capacity];
      if (record === undefined) break;
      if (invocation === null || record.invocation === invocation) out.push(record);
    }
    return out;
  }

  private add(record: ActionRecord): void {
    const evicted = this.ring[this.next];
    if (evicted !== undefined) this.seen.delete(evicted.operation);
    this.ring[this.next] = record;
    this.next = (this.next + 1) % this.capacity;
  }

  private async record(operation: FinishedOperation): Promise<ActionRecord> {
    const { response, metadata } = operation;
    const result = response.result;
    const timing = result?.executionMetadata;
    const code = response.status?.code ?? 0;
    const status = code === 0 ? '' : cut(`${Code[code] ?? `code ${code}`}: ${response.status?.message ?? ''}`);
    const failed = status !== '' || (result?.exitCode ?? 0) !== 0;
    return {
      operation: operation.name,
      finishedAt: Date.now(),
      action: operation.actionHash,
      invocation: cut(metadata?.toolInvocationId ?? ''),
      mnemonic: cut(metadata?.actionMnemonic ?? ''),
      target: cut(metadata?.targetId ?? ''),
      worker: cut(timing?.worker ?? ''),
      ...stageDurations(timing),
      exitCode: result === undefined ? null : result.exitCode,
      status,
      cached: response.cachedResult,
      stderrTail: failed && result !== undefined ? await this.stderrTail(operation.instance, response) : '',
    };
  }

  /** The tail of stderr: inlined, or streamed from the CAS keeping only its last STDERR_TAIL_BYTES. */
  private async stderrTail(instance: string, response: ExecuteResponse): Promise<string> {
    const result = response.result!;
    const raw = result.stderrRaw;
    if (raw.byteLength > 0) return decodeTail(raw.subarray(-STDERR_TAIL_BYTES), raw.byteLength > STDERR_TAIL_BYTES);
    const digest = result.stderrDigest;
    if (digest === undefined || digest.sizeBytes === 0n) return '';
    const blob = await this.store.get(blobKey(instance, 'cas', digest.hash));
    if (blob === null) return '(stderr is no longer in the CAS)';
    const cut = blob.size > STDERR_TAIL_BYTES;
    if (blob.bytes !== undefined) return decodeTail(blob.bytes.subarray(-STDERR_TAIL_BYTES), cut);
    let tail = new Uint8Array(0);
    for await (const chunk of blob.body) {
      const joined = new Uint8Array(tail.byteLength + chunk.byteLength);
      joined.set(tail);
      joined.set(chunk, tail.byteLength);
      tail = joined.subarray(-STDERR_TAIL_BYTES);
    }
    return decodeTail(tail, cut);
  }
}

function stageDurations(timing: ExecutedActionMetadata | undefined) {
  const between = (from?: Timestamp, to?: Timestamp) =>
    from === undefined || to === undefined ? null : Math.max(0, millis(to) - millis(from));
  return {
    queuedMs: between(timing?.queuedTimestamp, timing?.workerStartTimestamp),
    fetchMs: between(timing?.inputFetchStartTimestamp, timing?.inputFetchCompletedTimestamp),
    executeMs: between(timing?.executionStartTimestamp, timing?.executionCompletedTimestamp),
    uploadMs: between(timing?.outputUploadStartTimestamp, timing?.outputUploadCompletedTimestamp),
  };
}

function millis(t: Timestamp): number {
  return Number(t.seconds) * 1000 + t.nanos / 1e6;
}

/**
 * The last STDERR_TAIL_LINES whole lines of the bytes, as text. Bytes cut from a longer stderr start mid-line:
 * that partial line is dropped (unless it is all there is).
 */
function decodeTail(bytes: Uint8Array, cut: boolean): string {
  let text = new TextDecoder().decode(bytes);
  const firstBreak = text.indexOf('\n');
  if (cut && firstBreak !== -1 && firstBreak < text.length - 1) text = text.slice(firstBreak + 1);
  const lines = text.split('\n');
  const last = text.endsWith('\n') ? STDERR_TAIL_LINES + 1 : STDERR_TAIL_LINES;
  return lines.slice(-last).join('\n');
}

function cut(text: string): string {
  return text.length <= FIELD_CHARS ? text : `${text.slice(0, FIELD_CHARS - 1)}…`;
}
