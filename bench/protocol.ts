/** Messages between the orchestrator (run.ts) and the load-generator process (loadgen.ts). */

export type Scenario = 'get-hit' | 'put-new' | 'put-existing';

export const SCENARIOS: readonly Scenario[] = ['get-hit', 'put-existing', 'put-new'];

export type Command =
  /** Make (once per size) the blob set and PUT it to the server, so reads and re-uploads find it. */
  | { op: 'populate'; url: string; size: number; count: number }
  /** One autocannon run against the server. */
  | { op: 'load'; url: string; scenario: Scenario; size: number; connections: number; seconds: number }
  /** Stream one big blob in (put) or out (get) on one connection. */
  | { op: 'stream'; url: string; size: number; direction: 'put' | 'get' }
  /** Forget the blob set of a size (frees its memory). */
  | { op: 'forget'; size: number };

export interface LoadResult {
  /** 2xx responses. */
  ok: number;
  /** Non-2xx responses by status, plus connection errors and timeouts: any of them makes the run invalid. */
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU the load generator itself used, in % of one core, so a saturated generator is visible. */
  generatorCpu: number;
}

export interface StreamResult {
  status: number;
  bytes: number;
  seconds: number;
  /** For get: every byte equal to the blob as generated. For put: the server accepted it (2xx). */
  verified: boolean;
}

export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };
