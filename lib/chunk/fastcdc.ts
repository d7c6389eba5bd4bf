/**
 * FastCDC content-defined chunking (Xia et al., "FastCDC: a Fast and Efficient Content-Defined
 * Chunking Approach for Data Deduplication", USENIX ATC 2016, and the 2020 TPDS follow-up).
 *
 * A 32-bit gear rolling hash (`h = (h << 1) + GEAR[byte]`) runs over the data; a cut point is
 * declared where `h & mask === 0`. Normalized chunking (level 1) uses a harder mask (`bits + 1`
 * one-bits) before the average size and an easier one (`bits - 1` one-bits) after it, which pulls
 * chunk sizes towards the average. The first `min` bytes of every chunk are skipped (cut-point
 * skipping) and a chunk never exceeds `max` bytes.
 *
 * Defaults: min 16 KiB, avg 256 KiB, max 1 MiB (mean chunk about 280 KiB). Why (measured with
 * 1 MiB overwritten in the middle of 64 MiB of random data, and of the benchmark's file): the
 * skipped prefix and the two masks make the chunking after an edit fall back in step with the old
 * one only when a new boundary happens to meet an old one. With level 2 and a 64 KiB minimum that
 * took 1.3 MiB on random data but 3.5 MiB on the benchmark's file; with level 1 and a 16 KiB
 * minimum it takes 1.05 MiB on both. (A 1 MiB average changed 4 MiB of chunks.)
 *
 * **Compatibility:** the gear table, the masks and the defaults determine every chunk boundary
 * stored on servers and in client merge bases. Changing any of them re-chunks every file and
 * defeats deduplication against existing data. They must never change; the test suite pins them.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { ChunkRef } from "../core/types.ts";
import { fileHash } from "./hash.ts";
import { GEAR } from "./gear.ts";
import { acquireScanner, releaseScanner } from "./fastcdc_scanner.ts";

export { GEAR };

/** Size bounds for chunking, in bytes. Omitted fields take the defaults. */
export interface ChunkerOptions {
  /** Smallest chunk, except the last chunk of a file (default 16 KiB). */
  min?: number;
  /** Target average chunk size; rounded to the nearest power of two for the masks (default 256 KiB). */
  avg?: number;
  /** Largest chunk (default 1 MiB). */
  max?: number;
}

/** Validated chunker parameters with the masks precomputed; made by {@link resolveChunkerOptions}. */
export interface ResolvedChunkerOptions {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  /** Harder mask (more one-bits) used between `min` and `avg`. */
  readonly maskS: number;
  /** Easier mask (fewer one-bits) used between `avg` and `max`. */
  readonly maskL: number;
}

/** Default smallest chunk: 16 KiB. */
export const DEFAULT_MIN = 16 * 1024;
/** Default average chunk: 256 KiB. */
export const DEFAULT_AVG = 256 * 1024;
/** Default largest chunk: 1 MiB. */
export const DEFAULT_MAX = 1024 * 1024;

/** A mask with `bits` one-bits in the top of the 32-bit word (the bits that see the most bytes). */
function topMask(bits: number): number {
  return bits >= 32 ? 0xffffffff : (((1 << bits) - 1) << (32 - bits)) >>> 0;
}

const resolvedCache = new Map<string, ResolvedChunkerOptions>();

/**
 * Validates `opts`, fills in defaults and precomputes the masks. Throws "Cannot chunk: ..." when
 * the sizes are not positive integers with `min <= avg <= max`, or `avg` is outside 64 B..1 GiB.
 */
export function resolveChunkerOptions(
  opts: ChunkerOptions | ResolvedChunkerOptions = {},
): ResolvedChunkerOptions {
  if ("maskS" in opts) return opts;
  const min = opts.min ?? DEFAULT_MIN;
  const avg = opts.avg ?? DEFAULT_AVG;
  const max = opts.max ?? DEFAULT_MAX;
  const key = `${min}/${avg}/${max}`;
  const cached = resolvedCache.get(key);
  if (cached) return cached;
  for (const [name, v] of [["min", min], ["avg", avg], ["max", max]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new Error(`Cannot chunk: ${name} size ${v} is not a positive integer`);
    }
  }
  if (!(min <= avg && avg <= max)) {
    throw new Error(`Cannot chunk: sizes must satisfy min <= avg <= max (got ${key})`);
  }
  if (avg < 64 || avg > 2 ** 30) {
    throw new Error(`Cannot chunk: avg size ${avg} is outside 64 B..1 GiB`);
  }
  const bits = Math.round(Math.log2(avg));
  const resolved: ResolvedChunkerOptions = Object.freeze({
    min,
    avg,
    max,
    maskS: topMask(bits + 1),
    maskL: topMask(bits - 1),
  });
  resolvedCache.set(key, resolved);
  return resolved;
}

/**
 * Finds the next cut point: returns the length of the chunk that starts at `buf[start]`, looking
 * only at `buf[start..end)`.
 *
 * - If `end - start <= min`, or no cut point exists before `max`, the answer depends on `final`:
 *   with `final = true` (the data ends at `end`) the rest (`end - start`, capped at `max`) is one
 *   chunk; with `final = false` it returns 0, meaning "give me more data" — unless `max` bytes are
 *   available, in which case it cuts at `max`.
 * - A cut found inside the available bytes is the same whatever follows, so streaming callers only
 *   need to keep at least `max` bytes buffered (or reach the end of the data).
 *
 * Returns 0 only when `final` is false and fewer than `max` bytes were given without a cut point.
 */
export function findCut(
  buf: Uint8Array,
  start: number,
  end: number,
  opts: ChunkerOptions | ResolvedChunkerOptions = {},
  final = true,
): number {
  const o = resolveChunkerOptions(opts);
  if (start < 0 || end > buf.length || start > end) {
    throw new RangeError(`Cannot find cut: range ${start}..${end} is outside 0..${buf.length}`);
  }
  const len = end - start;
  if (len <= o.min) return final ? len : (len >= o.max ? o.max : 0);
  const limit = len < o.max ? len : o.max;
  const normal = limit < o.avg ? limit : o.avg;
  const gear = GEAR;
  const maskS = o.maskS;
  const maskL = o.maskL;
  let h = 0;
  let i = start + o.min;
  const normalEnd = start + normal;
  for (; i < normalEnd; i++) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & maskS) === 0) return i + 1 - start;
  }
  const limitEnd = start + limit;
  for (; i < limitEnd; i++) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & maskL) === 0) return i + 1 - start;
  }
  if (limit === o.max) return o.max;
  return final ? len : 0;
}

/** One chunk produced by {@link chunkStream}. */
export interface StreamChunk {
  /** Byte offset of the chunk in the stream. */
  offset: number;
  /** Chunk length in bytes. */
  size: number;
  /** SHA-256 of the chunk, lowercase hex. */
  hash: string;
  /**
   * The chunk bytes: a view into the chunker's reused buffer, valid only until the generator is
   * resumed. Copy it (`data.slice()`) to keep it.
   */
  data: Uint8Array;
}

/** Which loop finds cut points: WebAssembly where it can be instantiated, or the reference. */
export type CutEngine = "auto" | "typescript";

/**
 * Chunks a stream of any size with bounded memory: one buffer of at most `2 * max` bytes (grown
 * from 64 KiB as needed, so small files stay cheap) is reused for the whole stream.
 *
 * `read` has `Deno.FsFile.read` semantics: it fills a prefix of the given buffer and returns the
 * count, or `null` at the end of the data. Input smaller than `min` is one chunk; empty input
 * yields nothing. Each yielded `data` is valid only until the next iteration.
 *
 * With `engine` "auto" the buffer is the window of a `WasmScanner` (lib/chunk/fastcdc_scanner.ts),
 * read into directly and scanned in WebAssembly; "typescript" (or no WebAssembly) uses
 * {@link findCut}. Both give the same chunks.
 */
export async function* chunkStream(
  read: (buf: Uint8Array) => Promise<number | null>,
  opts: ChunkerOptions | ResolvedChunkerOptions = {},
  engine: CutEngine = "auto",
): AsyncGenerator<StreamChunk> {
  const o = resolveChunkerOptions(opts);
  const cap = 2 * o.max;
  const scanner = engine === "auto" ? acquireScanner(cap) : null;
  try {
    const first = Math.min(cap, 64 * 1024);
    let buf = scanner ? scanner.window(first) : new Uint8Array(first);
    let start = 0;
    let end = 0;
    let offset = 0;
    let eof = false;
    for (;;) {
      while (!eof && end - start < o.max) {
        if (end === buf.length) {
          if (start > 0) {
            buf.copyWithin(0, start, end);
          } else if (scanner) {
            buf = scanner.window(Math.min(cap, buf.length * 2)); // grown in place: contents kept
          } else {
            const bigger = new Uint8Array(Math.min(cap, buf.length * 2));
            bigger.set(buf.subarray(start, end));
            buf = bigger;
          }
          end -= start;
          start = 0;
        }
        const n = await read(buf.subarray(end));
        if (n === null) eof = true;
        else if (!Number.isInteger(n) || n < 0 || n > buf.length - end) {
          throw new Error(`Cannot chunk stream: read returned an invalid byte count ${n}`);
        } else end += n;
      }
      if (start === end) return;
      const size = scanner ? scanner.findCut(start, end, o, eof) : findCut(buf, start, end, o, eof);
      const data = buf.subarray(start, start + size);
      const hash = createHash("sha256").update(data).digest("hex");
      yield { offset, size, hash, data };
      start += size;
      offset += size;
    }
  } finally {
    if (scanner) releaseScanner(scanner);
  }
}

/**
 * Hashes a file in one pass: its content id ({@link fileHash}: the SHA-256 of the content for files
 * of at most one chunk), its size, and its
 * chunk list. The empty file has the SHA-256 of the empty input and no chunks.
 */
export async function hashFile(
  path: string,
  opts: ChunkerOptions | ResolvedChunkerOptions = {},
): Promise<{ size: number; hash: string; chunks: ChunkRef[] }> {
  const file = await Deno.open(path, { read: true });
  try {
    const chunks: ChunkRef[] = [];
    let size = 0;
    for await (const c of chunkStream((b) => file.read(b), opts)) {
      chunks.push({ hash: c.hash, size: c.size });
      size += c.size;
    }
    return { size, hash: fileHash(chunks), chunks };
  } finally {
    file.close();
  }
}
