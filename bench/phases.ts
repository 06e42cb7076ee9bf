/**
 * Where an Execute's time goes: its life cut at the timestamps the worker records in ExecutedActionMetadata, plus
 * the client's own send and receive times (one clock: the client, the executor and any workers run on this
 * machine). The execution bench and the fleet bench both report these medians.
 */
import { percentile } from './interleave.ts';
import type { ExecuteResponse } from '../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

type MetadataInstant =
  | 'queuedTimestamp'
  | 'workerStartTimestamp'
  | 'inputFetchStartTimestamp'
  | 'inputFetchCompletedTimestamp'
  | 'executionStartTimestamp'
  | 'executionCompletedTimestamp'
  | 'outputUploadCompletedTimestamp'
  | 'workerCompletedTimestamp';

/** Ms since the epoch of each instant of one Execute's life. */
export type Instants = Record<MetadataInstant | 'sent' | 'received', number>;

export const PHASES: ReadonlyArray<{ name: string; from: keyof Instants; to: keyof Instants }> = [
  { name: 'sent → queued', from: 'sent', to: 'queuedTimestamp' },
  { name: 'queued → worker', from: 'queuedTimestamp', to: 'workerStartTimestamp' },
  { name: 'worker → staging', from: 'workerStartTimestamp', to: 'inputFetchStartTimestamp' },
  { name: 'staging', from: 'inputFetchStartTimestamp', to: 'inputFetchCompletedTimestamp' },
  { name: 'staged → run', from: 'inputFetchCompletedTimestamp', to: 'executionStartTimestamp' },
  { name: 'run', from: 'executionStartTimestamp', to: 'executionCompletedTimestamp' },
  { name: 'outputs', from: 'executionCompletedTimestamp', to: 'outputUploadCompletedTimestamp' },
  { name: 'outputs → done', from: 'outputUploadCompletedTimestamp', to: 'workerCompletedTimestamp' },
  { name: 'done → received', from: 'workerCompletedTimestamp', to: 'received' },
];

const METADATA_INSTANTS: readonly MetadataInstant[] = [
  'queuedTimestamp',
  'workerStartTimestamp',
  'inputFetchStartTimestamp',
  'inputFetchCompletedTimestamp',
  'executionStartTimestamp',
  'executionCompletedTimestamp',
  'outputUploadCompletedTimestamp',
  'workerCompletedTimestamp',
];

/** The instants of an Execute sent at `sent` and answered with `response` at `received`; throws if one is missing. */
export function instantsOf(response: ExecuteResponse, sent: number, received: number, what: string): Instants {
  const metadata = response.result?.executionMetadata;
  const instants = { sent, received } as Instants;
  for (const name of METADATA_INSTANTS) {
    const t = metadata?.[name];
    if (t === undefined) throw new Error(`${what}: no ${name} in the result's metadata`);
    instants[name] = Number(t.seconds) * 1000 + t.nanos / 1e6;
  }
  return instants;
}

/** Each phase's median over `lives`, in ms: each is its own median, so they need not add up to the p50. */
export function phaseMediansMs(lives: Instants[]): number[] {
  return PHASES.map(({ from, to }) =>
    percentile(
      lives.map((l) => l[to] - l[from]).sort((a, b) => a - b),
      0.5,
    ),
  );
}
