/**
 * Requests started ahead (chunk batches in flight while earlier ones are written, the next
 * small-file group fetched while one is written) that fail while nobody awaits them yet: the
 * failure reaches the download that started them, never the process as an unhandled rejection.
 * Found end to end: a prefetch of an announced upload whose announcement was withdrawn (the
 * server's disk was full) crashed the receiving client with "Uncaught (in promise) RemoteError:
 * Cannot send chunk: not stored for this account".
 *
 * @module
 */

import assert from "node:assert/strict";
import { Staging } from "../../lib/client/staging.ts";
import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { fileHash, sha256Hex } from "../../lib/chunk/hash.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import type { RemoteEntry } from "../../lib/core/types.ts";

/** A file of `n` distinct 10-byte chunks, and their bytes by hash. */
function remoteFile(path: string, n: number) {
  const bytes = new Map<string, Uint8Array>();
  const chunks = Array.from({ length: n }, (_, i) => {
    const data = new TextEncoder().encode(`chunk ${String(i).padStart(4, "0")}`);
    const hash = sha256Hex(data);
    bytes.set(hash, data);
    return { hash, size: data.length };
  });
  const entry: RemoteEntry = {
    path,
    kind: "file",
    deleted: false,
    version: 1,
    size: chunks.reduce((s, c) => s + c.size, 0),
    mtime: 1000,
    exec: false,
    hash: fileHash(chunks),
    chunks,
    device: "A",
  };
  return { entry, bytes };
}

/** A peer whose first `getMany` answers late and whose later ones fail at once. */
function lateThenFailing(bytes: Map<string, Uint8Array>, asked: Promise<unknown>[]) {
  let calls = 0;
  return {
    request(h: { t: string; hashes: string[] }) {
      assert.equal(h.t, "getMany");
      if (calls++ > 0) {
        const failed = Promise.reject(new Error("Cannot send chunk: not stored for this account"));
        asked.push(failed);
        return failed;
      }
      const parts = h.hashes.map((x) => bytes.get(x)!);
      const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      for (const p of parts) {
        body.set(p, off);
        off += p.length;
      }
      const chunks = h.hashes.map((hash, i) => ({ hash, z: false, len: parts[i]!.length }));
      const late = new Promise((resolve) =>
        setTimeout(() => resolve({ header: { chunks }, body }), 30)
      );
      asked.push(late);
      return late;
    },
    release() {},
  } as unknown as Peer;
}

Deno.test("a batch fetched ahead that fails while an earlier one is awaited fails the download, not the process", async () => {
  const fs = new MemFs();
  fs.mkdirSync(".cloudsync/tmp", true);
  const staging = new Staging(fs, ".cloudsync/tmp");
  const { entry, bytes } = remoteFile("big.bin", 200); // 64 chunks a batch: 4 batches
  const asked: Promise<unknown>[] = [];
  const ctx = { fs, peer: lateThenFailing(bytes, asked), local: new Map(), stats: newStats() };
  await assert.rejects(
    staging.fill(ctx, entry.path, entry, null),
    /not stored for this account/,
  );
  // Every request has settled, and the event loop turned once since: a rejection nobody
  // handled would have been reported by now (the test runner fails on it).
  await Promise.allSettled(asked);
  await new Promise((r) => setTimeout(r, 0));
});
