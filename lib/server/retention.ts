/**
 * Retention: overwritten and deleted versions are kept for a period (default 30 days), then
 * forgotten, and chunks that nothing references any more are removed from the blob store. A chunk
 * younger than a day is never collected, so an upload whose commit has not arrived yet is safe.
 *
 * @module
 */

import type { BlobStore } from "./blob_store.ts";
import type { MetaStore } from "./meta_store.ts";

/** Default retention of kept versions, in days. */
export const DEFAULT_KEEP_DAYS = 30;
const DAY = 24 * 60 * 60 * 1000;
/** What one collection removed. */
export interface CollectReport {
  versions: number;
  chunks: number;
}

function nextTurn(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/**
 * Forgets versions older than `keepDays` and deletes unreferenced chunks older than a day.
 * Every step is small and the sessions run between two of them (see `ChunkSweep`): neither an
 * account's journal nor its garbage is ever held whole in memory, and nobody waits for it.
 * `signal`: stops between two steps (the server is stopping); what was done is reported.
 */
export async function collect(
  meta: MetaStore,
  blobs: BlobStore,
  keepDays: number,
  now = Date.now(),
  signal?: AbortSignal,
): Promise<CollectReport> {
  const PRUNE = 5000;
  let versions = 0;
  for (;;) {
    const n = meta.pruneVersions(now - keepDays * DAY, PRUNE);
    versions += n;
    if (n < PRUNE || signal?.aborted) break;
    await nextTurn();
  }
  let chunks = 0;
  for (const account of meta.accountIds()) {
    if (signal?.aborted) break;
    const sweep = meta.chunkSweep(account);
    try {
      while (sweep.mark()) {
        if (signal?.aborted) return { versions, chunks };
        await nextTurn();
      }
      for (;;) {
        if (signal?.aborted) break;
        const gone = sweep.take(now - DAY); // index first: a crash leaves an orphan file, never a dangling row
        if (gone === null) break;
        for (const hash of gone) await blobs.delete(account, hash);
        chunks += gone.length;
        await nextTurn();
      }
    } finally {
      sweep.close();
    }
  }
  return { versions, chunks };
}
