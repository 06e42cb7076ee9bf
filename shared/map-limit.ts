/**
 * Runs an async function over many items with at most `limit` in flight, keeping the results in order.
 * Batch calls and action-cache entries carry thousands of digests; a store behind a network (S3) must not
 * see them all at once. Runtime-neutral: the edge (Deno too) and the executor both use it.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
