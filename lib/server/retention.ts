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
/** Unreferenced chunks forgotten per page. */
const PAGE = 1000;

/** What one collection removed. */
export interface CollectReport {
  versions: number;
  chunks: number;
}

/** Forgets versions older than `keepDays` and deletes unreferenced chunks older than a day. */
export async function collect(
  meta: MetaStore,
  blobs: BlobStore,
  keepDays: number,
  now = Date.now(),
): Promise<CollectReport> {
  const versions = meta.pruneVersions(now - keepDays * DAY);
  let chunks = 0;
  for (const account of meta.accountIds()) {
    // In pages: neither the journal nor the list of garbage is ever held whole in memory.
    for (;;) {
      const page = meta.unreferencedChunks(account, now - DAY, PAGE);
      for (const hash of page) {
        meta.forgetChunk(account, hash); // index first: a crash leaves an orphan file, never a dangling row
        await blobs.delete(account, hash);
        chunks++;
      }
      if (page.length < PAGE) break;
      await new Promise((r) => setTimeout(r, 0)); // let the sessions run between pages
    }
  }
  return { versions, chunks };
}
