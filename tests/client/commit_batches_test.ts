/**
 * Tests for lib/client/commit_batches.ts: commits are cut by size, moves stay in one request,
 * and an item too big for any request is refused locally (with its move partner).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  commitBatches,
  commitInBatches,
  itemBytes,
  MAX_ITEM_BYTES,
} from "../../lib/client/commit_batches.ts";
import type { CommitItem } from "../../lib/server/meta_store.ts";
import type { Peer } from "../../lib/protocol/peer.ts";

const hash = "ab".repeat(32);

function item(path: string, chunks: number): CommitItem {
  return {
    path,
    baseVersion: 0,
    kind: "file",
    deleted: false,
    size: chunks,
    mtime: 0,
    exec: false,
    hash,
    chunks: Array.from({ length: chunks }, () => ({ hash, size: 1 })),
  };
}

Deno.test("commitBatches cuts by estimated bytes and keeps pairs together", () => {
  const items = [item("a", 10), item("b", 10), item("c", 10), item("d", 10), item("e", 10)];
  const one = itemBytes(items[0]!);
  // Two items a batch; b and c travel together.
  const batches = commitBatches(items, (j) => j === 1, 2 * one);
  assert.deepEqual(batches, [[0], [1, 2], [3, 4]]);
  // An item bigger than the budget goes alone.
  assert.deepEqual(
    commitBatches([item("x", 1), item("y", 100_000), item("z", 1)], () => false, one * 3),
    [
      [0],
      [1],
      [2],
    ],
  );
  assert.deepEqual(commitBatches([], () => false), []);
});

Deno.test("commitInBatches sends several requests and refuses an impossible item", async () => {
  const sent: CommitItem[][] = [];
  const peer = {
    request: (h: Record<string, unknown>) => {
      const items = h.items as CommitItem[];
      sent.push(items);
      return Promise.resolve({
        header: { results: items.map((_, i) => ({ ok: true, version: sent.length * 100 + i })) },
        body: new Uint8Array(),
      });
    },
  } as unknown as Peer;
  const huge = Math.ceil(MAX_ITEM_BYTES / 90) + 1;
  const items = [
    item("small", 1),
    item("big-1", 30_000), // about 2.6 MiB each: two requests
    item("big-2", 30_000),
    item("moved/huge.iso", huge), // a move: the upload is too big, so its deletion stays too
    { ...item("huge.iso", 0), deleted: true, chunks: [] },
    item("last", 1),
  ];
  const results = await commitInBatches(peer, items, (j) => j === 3);
  assert.equal(results.length, items.length);
  assert.deepEqual(results.map((r) => r.ok), [true, true, true, false, false, true]);
  assert.match(String((results[3] as { message: string }).message), /more than one request/);
  assert.ok(sent.length >= 2, `${sent.length} requests`);
  assert.ok(!sent.flat().some((i) => i.path.includes("huge")), "nothing of the move was sent");
});
