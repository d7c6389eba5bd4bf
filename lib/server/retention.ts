/**
 * Retention and garbage collection. Overwritten and deleted versions are kept for a period
 * (default 30 days), then forgotten; chunks that nothing references any more are then removed,
 * on every backend by the same two steps, in this order:
 *
 * 1. **Forget** (`ChunkIndex.forgetUnreferenced`): in one transaction that excludes the
 *    account's commits (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the account row's lock that
 *    every commit takes), remove from the chunk index every chunk indexed more than the grace
 *    period ago (a day) that no entry or kept version references. A commit that ran before saw
 *    the chunk and its reference keeps it; a commit after finds it missing and its device
 *    uploads it again.
 * 2. **Sweep** (`BlobStore.sweep`): of the forgotten chunks, those still not in the index have
 *    their bytes deleted, but only if they were last stored more than the grace period ago. An
 *    upload stores the bytes (or, for a chunk already stored, marks it as stored now) before
 *    it indexes the chunk, so a chunk uploaded again at any point after step 1, on this
 *    instance or another, is kept.
 *
 * This holds as long as an upload takes less than the grace period from storing its bytes to
 * indexing them, and the instances' clocks agree to well within it. A crash between the steps
 * leaves unused bytes, never an index row without bytes.
 *
 * @module
 */

import type { BlobStore, MetaStore } from "./stores.ts";

/** Default retention of kept versions, in days. */
export const DEFAULT_KEEP_DAYS = 30;
const DAY = 24 * 60 * 60 * 1000;
/** A chunk stored more recently than this is never collected, referenced or not. */
export const CHUNK_GRACE_MS = DAY;

/** What one collection removed. */
export interface CollectReport {
  versions: number;
  chunks: number;
}

/**
 * Forgets versions older than `keepDays` and deletes unreferenced chunks older than `graceMs`
 * (see the module's doc for the order of operations). `signal`: stops before the next account
 * (the server is stopping); what was done is reported.
 */
export async function collect(
  meta: MetaStore,
  blobs: BlobStore,
  keepDays: number,
  now = Date.now(),
  graceMs = CHUNK_GRACE_MS,
  signal?: AbortSignal,
): Promise<CollectReport> {
  const versions = await meta.pruneVersions(now - keepDays * DAY);
  let chunks = 0;
  for (const account of await meta.accountIds()) {
    if (signal?.aborted) break;
    chunks += await collectChunks(meta, blobs, account, now - graceMs);
  }
  return { versions, chunks };
}

/**
 * Deletes `account`'s chunks that nothing references and that were not stored (or stored again)
 * since `cutoff`, in the two steps of the module doc; returns how many went. A commit that names
 * one of them afterwards is refused as "missing", and its device uploads the chunk again.
 */
export async function collectChunks(
  meta: MetaStore,
  blobs: BlobStore,
  account: string,
  cutoff: number,
): Promise<number> {
  let chunks = 0;
  const forgotten = await meta.forgetUnreferenced(account, cutoff);
  for (let i = 0; i < forgotten.length; i += 1000) {
    // Indexed again since step 1: in use (or about to be); its bytes stay.
    const gone = await meta.missingChunks(account, forgotten.slice(i, i + 1000));
    chunks += (await blobs.sweep(account, gone, cutoff)).length;
  }
  return chunks;
}
