/**
 * What bounds the 1 MiB edit's bytes a hop: the bench's own 1 GiB file and edit (same seeds as
 * `deno task bench`), chunked in memory before and after the edit by the product's FastCDC, for
 * the product's chunk sizes and for smaller ones. For each it prints the chunks the edit changed
 * (the content a device must send, at least) and the size of the file's chunk list as the
 * protocol sends it (JSON, zstd-compressed as a frame header is): both cross each hop.
 *
 *   deno task bench:edit-bound [--size=BYTES]
 *
 * No network, no disk: a pure measurement of chunk granularity. The product's sizes (16 KiB min,
 * 256 KiB average, 1 MiB max) are fixed forever by the stored data (`lib/chunk/fastcdc.ts`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { makePatch, Prng } from "./data.ts";
import { findCut, resolveChunkerOptions } from "../lib/chunk/fastcdc.ts";
import { compressChunk } from "../lib/chunk/compress.ts";

const MiB = 1 << 20;

/** Chunk boundaries of `buf` as `offset:size` keys, in order. */
function cuts(buf: Uint8Array, min: number, avg: number, max: number): [number, number][] {
  const o = resolveChunkerOptions({ min, avg, max });
  const out: [number, number][] = [];
  for (let p = 0; p < buf.length;) {
    const n = findCut(buf, p, buf.length, o, true);
    out.push([p, n]);
    p += n;
  }
  return out;
}

/** Bytes of a chunk list as the protocol carries it: JSON `{hash, size}` items, zstd. */
function listBytes(count: number, avgSize: number): number {
  const items = [];
  for (let i = 0; i < count; i++) {
    const h = crypto.getRandomValues(new Uint8Array(32));
    items.push({
      hash: Array.from(h, (b) => b.toString(16).padStart(2, "0")).join(""),
      size: Math.round(avgSize),
    });
  }
  return compressChunk(new TextEncoder().encode(JSON.stringify(items))).data.length;
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { size: { type: "string" } } });
  const size = Number(values.size ?? 1 << 30);
  const buf = new Uint8Array(size);
  const rng = new Prng("cloudsync-bench-big", 4 * MiB);
  for (let p = 0; p < size; p += 4 * MiB) {
    const n = Math.min(4 * MiB, size - p);
    buf.set(rng.next(n), p);
  }
  const patch = makePatch(size, "cloudsync-bench-edit");
  const edited = buf.slice();
  edited.set(patch.bytes, patch.offset);
  const pEnd = patch.offset + patch.bytes.length;
  console.log(
    `file ${size} B, edit ${patch.bytes.length} B at ${patch.offset}; chunk sizes min/avg/max`,
  );
  const sets: [number, number, number][] = [
    [16 << 10, 256 << 10, 1 << 20],
    [16 << 10, 128 << 10, 1 << 20],
    [8 << 10, 64 << 10, 512 << 10],
    [8 << 10, 32 << 10, 256 << 10],
    [4 << 10, 16 << 10, 128 << 10],
  ];
  for (const [min, avg, max] of sets) {
    const before = new Set(cuts(buf, min, avg, max).map(([p, n]) => `${p}:${n}`));
    const after = cuts(edited, min, avg, max);
    let changed = 0;
    let count = 0;
    for (const [p, n] of after) {
      if (!before.has(`${p}:${n}`) || (p < pEnd && p + n > patch.offset)) {
        changed += n;
        count++;
      }
    }
    const list = listBytes(after.length, size / after.length);
    const product = min === 16 << 10 && avg === 256 << 10 && max === 1 << 20;
    console.log(
      `${min >> 10}/${avg >> 10}/${max >> 10} KiB${
        product ? " (the product's)" : ""
      }: ${after.length} chunks; the edit changed ${count} chunks, ${
        (changed / MiB).toFixed(3)
      } MiB; chunk list ${(list / MiB).toFixed(3)} MiB; at least ${
        ((changed + list) / MiB).toFixed(3)
      } MiB a hop`,
    );
  }
}
