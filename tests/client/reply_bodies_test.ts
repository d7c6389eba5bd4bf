/**
 * Reply bodies of chunk batches are reused once their chunks are in the file
 * (`releasePrefetched`): a download of many batches takes most of its bodies from buffers of
 * earlier batches instead of fresh ones (which raised a receiving client's peak RSS on big files),
 * and the file is still byte for byte right.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Staging } from "../../lib/client/staging.ts";
import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { fileHash, sha256Hex } from "../../lib/chunk/hash.ts";
import { BodyPool } from "../../lib/protocol/body_pool.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import type { RemoteEntry } from "../../lib/core/types.ts";

Deno.test("a download of many batches reuses the reply bodies of the batches already written", async () => {
  // 640 chunks of 5,000 bytes: 10 batches of 64, each reply body 320 KB (pooled from 256 KiB).
  const bytes = new Map<string, Uint8Array>();
  const whole = new Uint8Array(640 * 5000);
  const chunks = Array.from({ length: 640 }, (_, i) => {
    const data = crypto.getRandomValues(new Uint8Array(5000));
    whole.set(data, i * 5000);
    const hash = sha256Hex(data);
    bytes.set(hash, data);
    return { hash, size: data.length };
  });
  const entry: RemoteEntry = {
    path: "big.bin",
    kind: "file",
    deleted: false,
    version: 1,
    size: whole.length,
    mtime: 1000,
    exec: false,
    hash: fileHash(chunks),
    chunks,
    device: "A",
  };
  const pool = new BodyPool();
  let given = 0;
  const peer = {
    request(h: { t: string; hashes: string[] }) {
      assert.equal(h.t, "getMany");
      const body = pool.take(h.hashes.length * 5000);
      h.hashes.forEach((x, i) => body.set(bytes.get(x)!, i * 5000));
      const list = h.hashes.map((hash) => ({ hash, z: false, len: 5000 }));
      return new Promise((r) => setTimeout(() => r({ header: { chunks: list }, body }), 1));
    },
    release(body: Uint8Array) {
      given++;
      pool.give(body);
    },
  } as unknown as Peer;
  const fs = new MemFs();
  fs.mkdirSync(".cloudsync/tmp", true);
  const staging = new Staging(fs, ".cloudsync/tmp");
  const ctx = { fs, peer, local: new Map(), stats: newStats() };
  const tmp = await staging.fill(ctx, entry.path, entry, null);
  assert.deepEqual(fs.readFileSync(tmp), whole);
  assert.equal(given, 10, "every batch's body is given back once written");
  assert.ok(pool.reused >= 6, `reused ${pool.reused} of 10 bodies`);
});
