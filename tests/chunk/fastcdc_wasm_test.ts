/**
 * The WebAssembly gear loop (lib/chunk/fastcdc_scanner.ts) against the TypeScript reference
 * `findCut`, cut by cut: random buffers of 0 B to 5 MiB (random, zero runs, short repeats, a small
 * alphabet), random ranges and option sets, `final` both ways; `chunkStream` on random streams
 * with random read sizes against the TypeScript chunker; and the embedded module against a fresh
 * build of lib/chunk/fastcdc_gear.wat.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type ChunkerOptions,
  chunkStream,
  type CutEngine,
  findCut,
  resolveChunkerOptions,
  type ResolvedChunkerOptions,
} from "../../lib/chunk/fastcdc.ts";
import { findCutWasm, wasmAvailable } from "../../lib/chunk/fastcdc_scanner.ts";
import { GEAR } from "../../lib/chunk/gear.ts";
import { GEAR_WASM } from "../../lib/chunk/fastcdc_wasm.ts";

const MiB = 1 << 20;

/** A seeded generator (xorshift32): the test is the same on every run. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

/** `n` bytes of one of four kinds: random, random with long zero runs, a short repeat, 4 symbols. */
function data(n: number, kind: number, r: (n: number) => number): Uint8Array {
  const d = new Uint8Array(n);
  let x = (r(0x7fffffff) | 1) >>> 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    d[i] = x & 255;
  }
  if (kind === 1) {
    for (let k = 0; k < 8; k++) {
      const at = r(n + 1);
      d.fill(0, at, at + r(3 * MiB));
    }
  } else if (kind === 2) {
    const period = 1 + r(5000);
    for (let i = period; i < n; i++) d[i] = d[i - period]!;
  } else if (kind === 3) {
    for (let i = 0; i < n; i++) d[i] = d[i]! & 3;
  }
  return d;
}

/** The defaults, fixed edge cases, and random sizes (min <= avg <= max, avg 64 B..1 MiB). */
function optionSets(r: (n: number) => number): ChunkerOptions[] {
  const sets: ChunkerOptions[] = [
    {},
    { min: 2048, avg: 8192, max: 32768 },
    { min: 1, avg: 64, max: 64 },
    { min: 64, avg: 64, max: 4096 },
    { min: 4096, avg: 4096, max: 4096 },
    { min: 100, avg: 3000, max: 10_000 },
    { min: 1, avg: 1 << 20, max: 4 << 20 },
  ];
  for (let k = 0; k < 9; k++) {
    const avg = 64 + r(1 << 20);
    const min = 1 + r(avg);
    sets.push({ min, avg, max: avg + r(3 * avg + 1) });
  }
  return sets;
}

/** Asserts that WebAssembly and TypeScript agree on one call, and returns the cut. */
function same(
  buf: Uint8Array,
  start: number,
  end: number,
  o: ResolvedChunkerOptions,
  final: boolean,
): number {
  const want = findCut(buf, start, end, o, final);
  const got = findCutWasm(buf, start, end, o, final);
  if (got !== want) {
    assert.fail(
      `cut differs at ${start}..${end} of ${buf.length} B, final ${final}, ` +
        `min/avg/max ${o.min}/${o.avg}/${o.max}: WebAssembly ${got}, TypeScript ${want}`,
    );
  }
  return want;
}

Deno.test("WebAssembly is available, so the product chunks with it", () => {
  assert.ok(WebAssembly.validate(GEAR_WASM as Uint8Array<ArrayBuffer>));
  assert.ok(wasmAvailable());
});

Deno.test("the embedded module is what deno task build:wasm makes of fastcdc_gear.wat", async (t) => {
  let build: typeof import("../../scripts/build_wasm.ts");
  try {
    build = await import("../../scripts/build_wasm.ts");
  } catch (err) {
    console.log(`    skipped: cannot load npm:wabt (${err}); the bytes were only validated`);
    return;
  }
  const bytes = await build.buildGearWasm();
  assert.deepEqual(
    GEAR_WASM,
    bytes,
    "run deno task build:wasm and commit lib/chunk/fastcdc_wasm.ts",
  );
  await t.step("and the committed file is the rendered one", async () => {
    const committed = await Deno.readTextFile(build.OUT_URL);
    assert.equal(committed, build.renderModule(bytes));
  });
});

Deno.test("WebAssembly findCut = TypeScript findCut, cut by cut, on random data and options", () => {
  const r = rng(17);
  let calls = 0;
  const sizes = [0, 1, 63, 64, 65, 4095, 4096, 4097, 8191, 70_000, 300_000, MiB, 5 * MiB];
  for (let k = 0; k < 12; k++) sizes.push(r(5 * MiB));
  sizes.forEach((n, k) => {
    const buf = data(n, k % 4, r);
    for (const opts of optionSets(r)) {
      const o = resolveChunkerOptions(opts);
      // A whole walk from a random start to a random end, final and not.
      const start = r(Math.min(n, 2 * o.max) + 1);
      const end = start + r(n - start + 1);
      for (const final of [true, false]) {
        for (let at = start; at < end;) {
          const cut = same(buf, at, end, o, final);
          calls++;
          if (cut === 0) break;
          at += cut;
        }
      }
      // Short random ranges around the size bounds.
      for (let j = 0; j < 20; j++) {
        const a = r(n + 1);
        const span = [o.min, o.avg, o.max][j % 3]! + r(129) - 64;
        const b = Math.min(n, Math.max(a, a + span));
        same(buf, a, b, o, j % 2 === 0);
        calls++;
      }
    }
  });
  assert.ok(calls > 10_000, `only ${calls} comparisons`);
});

/**
 * Sets the three bytes ending at `at` so that the hash of a chunk starting at `start` meets `mask`
 * there (a planted cut point). Returns false if no three bytes do.
 */
function plant(buf: Uint8Array, start: number, at: number, min: number, mask: number): boolean {
  let h0 = 0;
  for (let i = start + min; i < at - 2; i++) h0 = ((h0 << 1) + GEAR[buf[i]!]!) | 0;
  for (let a = 0; a < 256; a++) {
    const h1 = ((h0 << 1) + GEAR[a]!) | 0;
    for (let b = 0; b < 256; b++) {
      const h2 = ((h1 << 1) + GEAR[b]!) | 0;
      for (let c = 0; c < 256; c++) {
        if (((((h2 << 1) + GEAR[c]!) | 0) & mask) === 0) {
          buf.set([a, b, c], at - 2);
          return true;
        }
      }
    }
  }
  return false;
}

Deno.test("cut points planted where the WebAssembly lanes and blocks meet are found", () => {
  // The loop scans blocks of 4096 bytes as two lanes of 2048 from the chunk's min onwards; a cut
  // exactly at a lane's first or last byte, or at the switch of masks, is where it would slip.
  const r = rng(5);
  let planted = 0;
  let checked = 0;
  for (const opts of [{}, { min: 1000, avg: 16384, max: 100_000 }]) {
    const o = resolveChunkerOptions(opts);
    const base = data(2 * o.max, 0, r);
    const starts = [0, 3, 4096 + 5];
    const offsets: number[] = [o.avg - 1, o.avg, o.avg + 2048, o.max - 1];
    for (let k = 0; k < 3; k++) {
      for (const d of [0, 1, 7, 8, 2047, 2048, 2049, 4095]) offsets.push(o.min + 4096 * k + d);
    }
    for (const start of starts) {
      for (const off of offsets) {
        const buf = base.slice();
        const at = start + off;
        if (plant(buf, start, at, o.min, off < o.avg ? o.maskS : o.maskL)) {
          const cut = same(buf, start, buf.length, o, true);
          if (cut === off + 1) planted++;
          checked++;
        }
      }
    }
  }
  // A random earlier cut point can pre-empt a planted one, but rarely.
  assert.ok(planted >= checked * 0.8 && checked >= 80, `${planted} of ${checked} planted cuts`);
});

/** The chunks of `stream` with reads of random sizes (1 B .. 2 MiB, or tiny ones). */
async function streamChunks(
  stream: Uint8Array,
  opts: ChunkerOptions,
  engine: CutEngine,
  seed: number,
): Promise<string[]> {
  const r = rng(seed);
  const tiny = seed % 3 === 0;
  let at = 0;
  const read = (buf: Uint8Array) => {
    if (at >= stream.length) return Promise.resolve(null);
    const n = Math.min(buf.length, stream.length - at, 1 + r(tiny ? 700 : 2 * MiB));
    buf.set(stream.subarray(at, at + n));
    at += n;
    return Promise.resolve(n);
  };
  const out: string[] = [];
  for await (const c of chunkStream(read, opts, engine)) {
    out.push(`${c.offset}+${c.size} ${c.hash}`);
  }
  return out;
}

Deno.test("WebAssembly chunkStream = TypeScript chunkStream on random streams and reads", async () => {
  const r = rng(4242);
  for (let k = 0; k < 24; k++) {
    const opts = k < 8 ? {} : optionSets(r)[k % 16]!;
    const n = k % 3 === 0 ? r(200_000) : r(12 * MiB);
    const stream = data(n, k % 4, r);
    const want = await streamChunks(stream, opts, "typescript", 1000 + k);
    const got = await streamChunks(stream, opts, "auto", 2000 + k);
    assert.deepEqual(got, want, `stream ${k}: ${n} B, options ${JSON.stringify(opts)}`);
  }
});

Deno.test("interleaved chunkStreams each keep their own WebAssembly window", async () => {
  const r = rng(99);
  const streams = [data(9 * MiB, 0, r), data(7 * MiB, 1, r), data(3 * MiB, 3, r)];
  const want = await Promise.all(streams.map((s, k) => streamChunks(s, {}, "typescript", k)));
  const got = await Promise.all(streams.map((s, k) => streamChunks(s, {}, "auto", 10 + k)));
  assert.deepEqual(got, want);
});
