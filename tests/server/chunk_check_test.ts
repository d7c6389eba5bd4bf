/**
 * Tests for the server's chunk check: good chunks (raw and zstd) pass; a wrong hash, a changed
 * byte, a wrong size, broken zstd and an oversized chunk are refused with the right code.
 *
 * @module
 */

import assert from "node:assert/strict";
import { compressChunk } from "../../lib/chunk/compress.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";
import { checkClaims, type ChunkClaim } from "../../lib/server/chunk_check.ts";

/** A body of `n` chunks of `size` bytes (every second one zstd-compressible) and its claims. */
function upload(n: number, size: number): { claims: ChunkClaim[]; body: Uint8Array } {
  const parts: Uint8Array[] = [];
  const claims: ChunkClaim[] = [];
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const plain = new Uint8Array(size);
    if (i % 2 === 0) {
      for (let o = 0; o < size; o += 65536) crypto.getRandomValues(plain.subarray(o, o + 65536));
    } else plain.fill(i);
    const z = compressChunk(plain);
    parts.push(z.data);
    claims.push({ hash: sha256Hex(plain), size, z: z.compressed, offset, len: z.data.length });
    offset += z.data.length;
  }
  const body = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    body.set(p, at);
    at += p.length;
  }
  return { claims, body };
}

Deno.test("chunk check: every claim must match its bytes", async (t) => {
  const rows: {
    name: string;
    spoil: (u: { claims: ChunkClaim[]; body: Uint8Array }) => void;
    code: string | null;
  }[] = [
    { name: "good chunks pass", spoil: () => {}, code: null },
    { name: "a wrong hash", spoil: (u) => (u.claims[1]!.hash = "0".repeat(64)), code: "bad-chunk" },
    { name: "a changed byte", spoil: (u) => (u.body[10] = u.body[10]! ^ 1), code: "bad-chunk" },
    { name: "a wrong size", spoil: (u) => (u.claims[0]!.size += 1), code: "bad-chunk" },
    {
      name: "broken zstd",
      spoil: (u) => u.body.fill(7, u.claims[1]!.offset, u.claims[1]!.offset + u.claims[1]!.len),
      code: "bad-chunk",
    },
    {
      name: "a chunk over 4 MiB",
      spoil: (u) => (u.claims[0]!.size = 5 * 1024 * 1024),
      code: "bad-request",
    },
  ];
  for (const r of rows) {
    await t.step(r.name, () => {
      const u = upload(4, 300 * 1024);
      assert.ok(u.claims.some((c) => c.z) && u.claims.some((c) => !c.z), "raw and zstd chunks");
      r.spoil(u);
      assert.equal(checkClaims(u.claims, u.body)?.code ?? null, r.code);
    });
  }
});
