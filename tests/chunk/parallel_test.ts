/**
 * Tests for the parallel file hasher: the same chunk list and content id as the sequential
 * {@link hashFile} on random data, on data with no cut points, on files that are mostly a repeated
 * block, and the merge rules on hand-made chunk lists (including neighbours that never meet).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULT_MAX, hashFile } from "../../lib/chunk/fastcdc.ts";
import { hashFileParallel, merge, PARALLEL_MIN, segmentsFor } from "../../lib/chunk/parallel.ts";
import type { RangeChunk } from "../../lib/chunk/hash_worker.ts";

/** Writes `size` bytes made by `fill` (called per 1 MiB block) to a temporary file. */
async function makeFile(
  dir: string,
  name: string,
  size: number,
  fill: (b: Uint8Array, i: number) => void,
) {
  const path = join(dir, name);
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const block = new Uint8Array(1024 * 1024);
    for (let at = 0, i = 0; at < size; at += block.length, i++) {
      fill(block, i);
      const part = block.subarray(0, Math.min(block.length, size - at));
      let off = 0;
      while (off < part.length) off += await f.write(part.subarray(off));
    }
  } finally {
    f.close();
  }
  return path;
}

function random(b: Uint8Array): void {
  for (let o = 0; o < b.length; o += 65536) crypto.getRandomValues(b.subarray(o, o + 65536));
}

Deno.test("parallel hashing gives the sequential result", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-parallel-" });
  try {
    const size = PARALLEL_MIN + 5 * 1024 * 1024 + 12345;
    const cases: { name: string; fill: (b: Uint8Array, i: number) => void }[] = [
      { name: "random data", fill: random },
      { name: "zeros (every chunk at the maximum size)", fill: (b) => b.fill(0) },
      {
        name: "one random block repeated",
        fill: (() => {
          const one = new Uint8Array(1024 * 1024);
          random(one);
          return (b: Uint8Array) => b.set(one);
        })(),
      },
      {
        name: "random with zero stretches",
        fill: (b, i) => (i % 3 === 1 ? b.fill(0) : random(b)),
      },
    ];
    for (const c of cases) {
      await t.step(c.name, async () => {
        const path = await makeFile(dir, "f", size, c.fill);
        const want = await hashFile(path);
        for (const segments of [2, 3, 4]) {
          const got = await hashFileParallel(path, size, segments);
          assert.deepEqual(got, want, `${segments} segments`);
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segmentsFor: small files stay sequential, big ones use the cores", () => {
  assert.equal(segmentsFor(PARALLEL_MIN - 1, 8), 1);
  assert.equal(segmentsFor(PARALLEL_MIN, 1), 1);
  assert.equal(segmentsFor(PARALLEL_MIN, 2), 2);
  assert.equal(segmentsFor(10 * PARALLEL_MIN, 16), 4);
});

Deno.test("merge joins segments where their cut points meet", async (t) => {
  const c = (offset: number, size: number): RangeChunk => ({ offset, size, hash: `h${offset}` });
  const jobs = [
    { path: "f", start: 0, end: 100 + 40 },
    { path: "f", start: 100, end: Number.MAX_SAFE_INTEGER },
  ];
  const rows: { name: string; lists: RangeChunk[][]; want: number[] | null }[] = [
    {
      name: "meet at a chunk start past the boundary",
      lists: [[c(0, 60), c(60, 50), c(110, 20), c(130, 10)], [c(100, 10), c(110, 20), c(130, 30)]],
      want: [0, 60, 110, 130],
    },
    {
      name: "meet exactly at the boundary",
      lists: [[c(0, 100), c(100, 40)], [c(100, 30), c(130, 30)]],
      want: [0, 100, 130],
    },
    {
      name: "the artificial last chunk does not count as a meeting",
      lists: [[c(0, 70), c(70, 70)], [c(100, 40), c(140, 20)]],
      want: null,
    },
    {
      name: "never meet",
      lists: [[c(0, 55), c(55, 55), c(110, 30)], [c(100, 20), c(120, 40)]],
      want: null,
    },
  ];
  for (const r of rows) {
    await t.step(r.name, () => {
      const got = merge(r.lists, jobs);
      assert.deepEqual(got?.map((x) => x.offset) ?? null, r.want);
    });
  }
  assert.equal(DEFAULT_MAX, 1024 * 1024);
});
