/**
 * Bounded concurrency: run an async function over many items with at most N at once, so that
 * thousands of small files overlap their I/O without unbounded queues.
 *
 * @example
 * ```ts
 * await pool(paths, 8, async (p) => await Deno.lstat(p));
 * ```
 *
 * @module
 */

/** Runs `fn` over `items` with at most `limit` running at once; rejects on the first failure. */
export async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
