/**
 * Retention and garbage collection. Overwritten and deleted versions are kept for a period
 * (`--keep-days`, default 30), then thinned by the policy of `lib/core/retention_policy.ts`
 * (`--keep-daily`, `--keep-weekly`, `--keep-monthly`, as restic's `forget`; without them every
 * older version goes). The policy is applied path by path to the account's old versions as they
 * stream from the store (`oldVersions`, in path order, paged): never an account's whole history
 * in memory. Chunks that nothing references any more are then removed, on every backend by the
 * same two steps, in this order:
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

import type { BlobStore, MetaStore, VersionRef } from "./stores.ts";
import {
  cutoffOnly,
  DEFAULT_POLICY,
  keepCutoff,
  type RetentionPolicy,
  type VersionAge,
  versionsToForget,
} from "../core/retention_policy.ts";
import { LOCAL_ZONE, type Zone } from "../core/time_spec.ts";

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

/** Kept versions forgotten per call of `forgetVersions`. */
const FORGET_BATCH = 1000;

/**
 * Forgets the versions of `account` the policy no longer keeps, path by path as they stream in;
 * returns how many.
 */
export async function thinVersions(
  meta: MetaStore,
  account: string,
  policy: RetentionPolicy,
  now: number,
  zone: Zone = LOCAL_ZONE,
): Promise<number> {
  let forgotten = 0;
  let batch: VersionRef[] = [];
  let path: string | null = null;
  let group: VersionAge[] = [];
  const flush = async (force: boolean) => {
    if (batch.length >= FORGET_BATCH || (force && batch.length > 0)) {
      forgotten += await meta.forgetVersions(account, batch);
      batch = [];
    }
  };
  const decide = async () => {
    if (path === null) return;
    for (const version of versionsToForget(group, policy, now, zone)) batch.push({ path, version });
    group = [];
    await flush(false);
  };
  for await (const v of meta.oldVersions(account, keepCutoff(policy, now))) {
    if (v.path !== path) {
      await decide();
      path = v.path;
    }
    group.push(v);
  }
  await decide();
  await flush(true);
  return forgotten;
}

/**
 * Forgets the versions `policy` no longer keeps (a number: `--keep-days` alone) and deletes
 * unreferenced chunks older than `graceMs` (see the module's doc for the order of operations).
 * `signal`: stops before the next account (the server is stopping); what was done is reported.
 */
export async function collect(
  meta: MetaStore,
  blobs: BlobStore,
  policy: RetentionPolicy | number = DEFAULT_POLICY,
  now = Date.now(),
  graceMs = CHUNK_GRACE_MS,
  signal?: AbortSignal,
): Promise<CollectReport> {
  const p = typeof policy === "number" ? { ...DEFAULT_POLICY, keepDays: policy } : policy;
  const accounts = await meta.accountIds();
  let versions = 0;
  if (cutoffOnly(p)) versions = await meta.pruneVersions(keepCutoff(p, now));
  else {
    for (const account of accounts) {
      if (signal?.aborted) break;
      versions += await thinVersions(meta, account, p, now);
    }
  }
  let chunks = 0;
  for (const account of accounts) {
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
