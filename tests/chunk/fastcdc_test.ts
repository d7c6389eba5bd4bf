/**
 * Tests for the FastCDC chunker: size bounds, determinism, pinned boundaries, shift resistance,
 * streaming equivalence, and hashFile.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  type ChunkerOptions,
  chunkStream,
  DEFAULT_AVG,
  DEFAULT_MAX,
  DEFAULT_MIN,
  findCut,
  GEAR,
  hashFile,
  resolveChunkerOptions,
  type StreamChunk,
} from "../../lib/chunk/fastcdc.ts";
import { EMPTY_SHA256, fileHash, sha256Hex } from "../../lib/chunk/hash.ts";

const SMALL: ChunkerOptions = { min: 2048, avg: 8192, max: 32768 };

/** Deterministic pseudo-random bytes (splitmix32-style), independent of the chunker's own table. */
function prng(n: number, seed: number): Uint8Array {
  const d = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    d[i] = (z ^ (z >>> 16)) & 255;
  }
  return d;
}

/** Chunk sizes of an in-memory buffer via findCut. */
function cuts(data: Uint8Array, opts: ChunkerOptions): number[] {
  const sizes: number[] = [];
  let pos = 0;
  while (pos < data.length) {
    const n = findCut(data, pos, data.length, opts);
    assert.ok(n > 0);
    sizes.push(n);
    pos += n;
  }
  return sizes;
}

/** A read function over `data` that returns at most `step` bytes per call. */
function reader(data: Uint8Array, step: number): (buf: Uint8Array) => Promise<number | null> {
  let off = 0;
  return (buf) => {
    if (off >= data.length) return Promise.resolve(null);
    const n = Math.min(step, buf.length, data.length - off);
    buf.set(data.subarray(off, off + n));
    off += n;
    return Promise.resolve(n);
  };
}

async function collect(
  data: Uint8Array,
  step: number,
  opts: ChunkerOptions,
): Promise<Omit<StreamChunk, "data">[]> {
  const out: Omit<StreamChunk, "data">[] = [];
  const joined = new Uint8Array(data.length);
  for await (const c of chunkStream(reader(data, step), opts)) {
    joined.set(c.data, c.offset);
    assert.equal(c.data.length, c.size);
    assert.equal(c.hash, sha256Hex(c.data));
    out.push({ offset: c.offset, size: c.size, hash: c.hash });
  }
  assert.deepEqual(joined, data, "chunks concatenate to the input");
  return out;
}

Deno.test("fastcdc", async (t) => {
  await t.step("the gear table and boundaries are pinned and must never change", () => {
    const digest = createHash("sha256").update(new Uint8Array(GEAR.buffer)).digest("hex");
    assert.equal(digest, "d5645726fbbfe495d8d30dbd907b8a405e0222f10b0b0383d3907e0c9b1fcd73");
    assert.deepEqual(
      cuts(prng(200000, 1), SMALL),
      [
        9267,
        12830,
        9266,
        12562,
        6170,
        7990,
        12500,
        6874,
        8332,
        16336,
        2263,
        12091,
        11078,
        9598,
        7877,
        7982,
        7496,
        18207,
        4956,
        8290,
        8035,
      ],
    );
  });

  await t.step("defaults are 16 KiB / 256 KiB / 1 MiB", () => {
    const o = resolveChunkerOptions();
    assert.deepEqual([o.min, o.avg, o.max], [DEFAULT_MIN, DEFAULT_AVG, DEFAULT_MAX]);
    assert.deepEqual([o.min, o.avg, o.max], [16384, 262144, 1048576]);
  });

  for (
    const [name, opts] of [
      ["a negative min is rejected", { min: -1 }],
      ["min above avg is rejected", { min: 9000, avg: 8192, max: 32768 }],
      ["avg above max is rejected", { min: 1024, avg: 8192, max: 4096 }],
      ["a fractional size is rejected", { min: 1.5, avg: 8192, max: 32768 }],
      ["a tiny avg is rejected", { min: 1, avg: 16, max: 64 }],
    ] as [string, ChunkerOptions][]
  ) {
    await t.step(name, () => {
      assert.throws(() => resolveChunkerOptions(opts), /^Error: Cannot chunk: /);
    });
  }

  for (
    const [name, data, opts] of [
      ["random data respects min and max", prng(1_000_000, 2), SMALL],
      ["all-zero data is cut at max", new Uint8Array(300_000), SMALL],
      ["min equal to max gives fixed-size chunks", prng(100_000, 3), {
        min: 4096,
        avg: 4096,
        max: 4096,
      }],
    ] as [string, Uint8Array, ChunkerOptions][]
  ) {
    await t.step(name, () => {
      const o = resolveChunkerOptions(opts);
      const sizes = cuts(data, opts);
      assert.equal(sizes.reduce((a, b) => a + b, 0), data.length);
      sizes.forEach((s, i) => {
        assert.ok(s <= o.max, `chunk ${i} size ${s} <= max`);
        if (i < sizes.length - 1) assert.ok(s >= o.min, `chunk ${i} size ${s} >= min`);
      });
      if (data.every((b) => b === 0)) {
        assert.ok(sizes.slice(0, -1).every((s) => s === o.max));
      }
    });
  }

  await t.step("average chunk size is near the target on random data", () => {
    const sizes = cuts(prng(4_000_000, 4), SMALL);
    const mean = 4_000_000 / sizes.length;
    assert.ok(mean > 6000 && mean < 16000, `mean ${mean}`);
  });

  await t.step("findCut asks for more data only when not final and short of max", () => {
    const data = prng(1000, 5);
    assert.equal(findCut(data, 0, 1000, SMALL, false), 0);
    assert.equal(findCut(data, 0, 1000, SMALL, true), 1000);
    assert.equal(findCut(data, 100, 100, SMALL, true), 0);
    assert.throws(() => findCut(data, 10, 2000, SMALL), /^RangeError: Cannot find cut: /);
  });

  await t.step("chunking is deterministic", async () => {
    const data = prng(500_000, 6);
    assert.deepEqual(cuts(data, SMALL), cuts(data.slice(), SMALL));
    assert.deepEqual(await collect(data, 1 << 20, SMALL), await collect(data, 1 << 20, SMALL));
  });

  await t.step("inserting bytes near the start changes only the first chunks", async () => {
    const data = prng(1_000_000, 7);
    const edited = new Uint8Array(data.length + 7);
    edited.set(data.subarray(0, 100));
    edited.set(new TextEncoder().encode("INSERT!"), 100);
    edited.set(data.subarray(100), 107);
    const before = new Set((await collect(data, 65536, SMALL)).map((c) => c.hash));
    const after = await collect(edited, 65536, SMALL);
    const changed = after.filter((c) => !before.has(c.hash)).length;
    assert.ok(changed >= 1 && changed <= 2, `changed ${changed} of ${after.length}`);
    assert.ok(after.slice(2).every((c) => before.has(c.hash)));
  });

  for (const step of [1, 7, 1000, 4096, 1 << 20]) {
    await t.step(`streaming with ${step}-byte reads matches one big findCut pass`, async () => {
      const data = prng(step === 1 ? 120_000 : 400_000, 8);
      const got = await collect(data, step, SMALL);
      assert.deepEqual(got.map((c) => c.size), cuts(data, SMALL));
      let off = 0;
      for (const c of got) {
        assert.equal(c.offset, off);
        off += c.size;
      }
    });
  }

  for (
    const [name, size, expected] of [
      ["empty input yields no chunks", 0, 0],
      ["input smaller than min is one chunk", 1000, 1],
      ["zero input of exactly max bytes is one chunk", 32768, 1],
    ] as [string, number, number][]
  ) {
    await t.step(name, async () => {
      const data = size === 32768 ? new Uint8Array(size) : prng(size, 9);
      assert.equal((await collect(data, 4096, SMALL)).length, expected);
    });
  }

  await t.step("a reader returning a bad count is an error", async () => {
    const bad = (_b: Uint8Array) => Promise.resolve(-1);
    await assert.rejects(async () => {
      for await (const _ of chunkStream(bad, SMALL)) { /* drain */ }
    }, /Cannot chunk stream: read returned an invalid byte count -1/);
  });

  const dir = await Deno.makeTempDir({ prefix: "fastcdc_test_" });
  try {
    for (
      const [name, data, opts] of [
        ["hashFile on an empty file", new Uint8Array(0), {}],
        ["hashFile on a small file", new TextEncoder().encode("hello world\n"), {}],
        ["hashFile on a multi-chunk file", prng(300_000, 10), SMALL],
        ["hashFile with default sizes", prng(5_000_000, 11), {}],
      ] as [string, Uint8Array, ChunkerOptions][]
    ) {
      await t.step(name, async () => {
        const path = `${dir}/f`;
        await Deno.writeFile(path, data);
        const r = await hashFile(path, opts);
        assert.equal(r.size, data.length);
        assert.equal(r.hash, fileHash(r.chunks));
        if (r.chunks.length <= 1) assert.equal(r.hash, sha256Hex(data));
        assert.equal(r.chunks.reduce((a, c) => a + c.size, 0), data.length);
        if (data.length === 0) {
          assert.equal(r.hash, EMPTY_SHA256);
          assert.deepEqual(r.chunks, []);
        } else if (data.length < (opts.min ?? DEFAULT_MIN)) {
          assert.deepEqual(r.chunks, [{ hash: r.hash, size: data.length }]);
        } else {
          assert.ok(r.chunks.length > 1);
        }
        let off = 0;
        for (const c of r.chunks) {
          assert.equal(c.hash, sha256Hex(data.subarray(off, off + c.size)));
          off += c.size;
        }
      });
    }

    await t.step("hashFile on a missing file rejects and leaks nothing", async () => {
      await assert.rejects(() => hashFile(`${dir}/missing`), Deno.errors.NotFound);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  await t.step("throughput (printed, not asserted)", async () => {
    const n = 64 * 1024 * 1024;
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
    let t0 = performance.now();
    let pos = 0;
    while (pos < n) pos += findCut(data, pos, n);
    const cutMiBs = n / 1048576 / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    for await (const _ of chunkStream(reader(data, 1 << 20))) { /* drain */ }
    const streamMiBs = n / 1048576 / ((performance.now() - t0) / 1000);
    console.log(
      `    fastcdc throughput: findCut ${cutMiBs.toFixed(0)} MiB/s, ` +
        `chunkStream+SHA-256 ${streamMiBs.toFixed(0)} MiB/s (64 MiB, default sizes)`,
    );
  });
});
