/** Comparing bytes in assertions so that a mismatch says what came: sizes and hashes, not a diff of megabytes. */
import { createHash } from 'node:crypto';

export interface BytesSummary {
  size: number;
  sha256: string;
}

/**
 * `expect(bytesOf(got)).toEqual(bytesOf(want))`: equal exactly when the bytes are; on a mismatch both sizes and
 * hashes show (a missing blob shows as null or undefined), where `got.equals(want)` only says "false".
 */
export function bytesOf(data: Uint8Array | null | undefined): BytesSummary | null | undefined {
  if (data === null || data === undefined) return data;
  return { size: data.byteLength, sha256: createHash('sha256').update(data).digest('hex') };
}
