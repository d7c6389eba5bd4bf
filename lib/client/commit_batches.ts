/**
 * Sends a list of commit items as requests whose headers stay well below what the server reads
 * after sign-in (16 MiB after decompression): items are cut into batches of about
 * {@link COMMIT_BATCH_BYTES} (the estimated JSON of each: its path and its chunk list), never
 * between the two items of a move (they must land in one transaction), and an item too big for
 * any request (a chunk list of about 50 GB of content) is refused here with a clear message
 * instead of making the server close the connection at every retry.
 *
 * @example
 * ```ts
 * const results = await commitInBatches(peer, items, (i) => false);
 * ```
 *
 * @module
 */

import type { Peer } from "../protocol/peer.ts";
import * as call from "../protocol/calls.ts";
import type { CommitItem, CommitResult } from "../protocol/calls.ts";

/** Estimated header bytes of one request's items at most (several items of big files). */
export const COMMIT_BATCH_BYTES = 4 * 1024 * 1024;
/** Largest single item sent (its estimate; the server reads 16 MiB headers). */
export const MAX_ITEM_BYTES = 12 * 1024 * 1024;

/** About how many bytes `item` takes in a commit's JSON (chunk references are ~85 bytes). */
export function itemBytes(item: Pick<CommitItem, "path" | "chunks">): number {
  return 200 + item.path.length * 3 + item.chunks.length * 90;
}

/**
 * Cuts `items` into batches of at most `budget` estimated bytes (an item over it alone), never
 * between item `j` and `j + 1` when `keepWithNext(j)`. Pure.
 */
export function commitBatches<T extends Pick<CommitItem, "path" | "chunks">>(
  items: readonly T[],
  keepWithNext: (j: number) => boolean,
  budget = COMMIT_BATCH_BYTES,
): number[][] {
  const out: number[][] = [];
  let current: number[] = [];
  let bytes = 0;
  for (let j = 0; j < items.length; j++) {
    // The group starting at j: j and whatever must travel with it.
    let end = j;
    while (end + 1 < items.length && keepWithNext(end)) end++;
    let group = 0;
    for (let k = j; k <= end; k++) group += itemBytes(items[k]!);
    if (current.length > 0 && bytes + group > budget) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    for (let k = j; k <= end; k++) current.push(k);
    bytes += group;
    j = end;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * Commits `items` in as many requests as needed (see the module doc); returns one result per
 * item, in order, as a single commit would. A move whose upload is too big is not sent at all
 * (its deletion alone would remove the file everywhere else).
 */
export async function commitInBatches(
  peer: Peer,
  items: readonly CommitItem[],
  keepWithNext: (j: number) => boolean,
): Promise<CommitResult[]> {
  const results: CommitResult[] = new Array(items.length);
  // Items that cannot be sent: too big, or travelling with one that is.
  const refused = new Set<number>();
  for (let j = 0; j < items.length; j++) {
    let end = j;
    while (end + 1 < items.length && keepWithNext(end)) end++;
    const big = [];
    for (let k = j; k <= end; k++) if (itemBytes(items[k]!) > MAX_ITEM_BYTES) big.push(k);
    if (big.length > 0) {
      const first = items[big[0]!]!;
      for (let k = j; k <= end; k++) {
        refused.add(k);
        results[k] = {
          ok: false,
          reason: "invalid",
          message: `Cannot sync ${first.path}: its ${first.chunks.length} chunks are more than ` +
            "one request can carry (files up to about 50 GB sync)",
        };
      }
    }
    j = end;
  }
  for (const batch of commitBatches(items, keepWithNext)) {
    const send = batch.filter((j) => !refused.has(j));
    if (send.length === 0) continue;
    const got = await call.commit(peer, send.map((j) => items[j]!));
    send.forEach((j, k) => results[j] = got[k]!);
  }
  return results;
}
