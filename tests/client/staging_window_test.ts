/**
 * Tests for the window of batches `Staging.fill` keeps in flight: a batch ahead that fails while
 * an earlier one is still being fetched or written (a `getMany` of an upload withdrawn meanwhile)
 * fails the fill with its error, and never escapes as an unhandled rejection (which ends the
 * client's process).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Staging } from "../../lib/client/staging.ts";
import { DenoFs } from "../../lib/client/fs/deno_fs.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { RemoteError } from "../../lib/protocol/peer.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import { fileHash, sha256Hex } from "../../lib/chunk/hash.ts";
import type { ChunkRef, RemoteEntry } from "../../lib/core/types.ts";

Deno.test("a failing batch ahead fails the fill, and is never an unhandled rejection", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-staging-" });
  try {
    // 130 small chunks: three batches (at most 64 chunks each), each one getMany.
    const data = new Map<string, Uint8Array>();
    const chunks: ChunkRef[] = [];
    for (let i = 0; i < 130; i++) {
      const bytes = new TextEncoder().encode(`chunk ${i} `.repeat(10));
      const hash = sha256Hex(bytes);
      data.set(hash, bytes);
      chunks.push({ hash, size: bytes.length });
    }
    const size = chunks.reduce((n, c) => n + c.size, 0);
    const remote: RemoteEntry = {
      path: "f.bin",
      kind: "file",
      deleted: false,
      version: 1,
      size,
      mtime: 0,
      exec: false,
      hash: fileHash(chunks),
      chunks,
      device: "A",
    };
    let calls = 0;
    const peer = {
      request(h: { t: string; hashes: string[] }) {
        const n = ++calls;
        // The first batch comes late; the ones after it fail at once (withdrawn).
        if (n > 1) {
          return new Promise((_, reject) =>
            setTimeout(() => reject(new RemoteError("missing", "Cannot send chunk: gone")), 1)
          );
        }
        const parts = h.hashes.map((x) => data.get(x)!);
        const body = new Uint8Array(parts.reduce((k, p) => k + p.length, 0));
        let off = 0;
        for (const p of parts) body.set(p, (off += p.length) - p.length);
        return new Promise((resolve) =>
          setTimeout(() =>
            resolve({
              header: {
                chunks: h.hashes.map((x, i) => ({ hash: x, z: false, len: parts[i]!.length })),
              },
              body,
            }), 30)
        );
      },
      release() {},
    } as unknown as Peer;
    const fs = new DenoFs(dir);
    await Deno.mkdir(`${dir}/tmp`);
    const staging = new Staging(fs, "tmp");
    const ctx = { fs, peer, local: new Map(), stats: newStats(), wait: true };
    await assert.rejects(staging.fill(ctx, "f.bin", remote, null), /Cannot send chunk: gone/);
    // Let every timer and rejection run out inside this test.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(calls, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
