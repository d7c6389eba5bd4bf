/**
 * Chunk compression with zstd (level 1, through `node:zlib`). A chunk is stored and sent
 * compressed only when that saves at least 5%; otherwise the raw bytes are used and the caller
 * records `compressed: false`. Decompression is bounded by the chunk's known size, so a hostile
 * peer cannot make us allocate more than that (zip bomb). {@link CompressionHint} skips the
 * compression attempt for the next chunks of a file whose data just proved incompressible.
 *
 * @module
 */

import zlib from "node:zlib";

/** Compressed output must be at most this fraction of the input to be worth keeping. */
export const MIN_SAVING_RATIO = 0.95;

const COMPRESS_OPTIONS: zlib.ZstdOptions = {
  params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 },
};

function asUint8Array(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

const PROBE = 64 * 1024;

function compresses(sample: Uint8Array): boolean {
  return zlib.zstdCompressSync(sample, COMPRESS_OPTIONS).length <= sample.length * MIN_SAVING_RATIO;
}

/**
 * Compresses `data` with zstd level 1. Returns the compressed bytes with `compressed: true` when
 * they are at most 95% of the input size, else `data` itself with `compressed: false`.
 */
export function compressChunk(data: Uint8Array): { data: Uint8Array; compressed: boolean } {
  if (data.length === 0) return { data, compressed: false };
  // Big chunks: a 64 KiB probe first, so incompressible data (media, archives) costs little.
  if (data.length > 4 * PROBE && !compresses(data.subarray(0, PROBE))) {
    return { data, compressed: false };
  }
  const out = zlib.zstdCompressSync(data, COMPRESS_OPTIONS);
  if (out.length <= data.length * MIN_SAVING_RATIO) {
    return { data: asUint8Array(out), compressed: true };
  }
  return { data, compressed: false };
}

/** After a chunk of a file did not compress, this many of its next chunks are sent as they are. */
export const SKIP_AFTER_INCOMPRESSIBLE = 15;

/**
 * Per-file memory of incompressible data, for uploads: once a chunk of a file (the `key`) did not
 * compress, its next {@link SKIP_AFTER_INCOMPRESSIBLE} chunks are not tried at all (sent raw),
 * then one is tried again (a re-probe: a file whose content changes kind, such as a disk image,
 * gets compression back within 16 chunks, about 4.5 MiB). Media, archives and encrypted files then
 * cost one zstd probe per 16 chunks instead of one per chunk (measured on random data: the
 * probes took 0.43 CPU s/GiB on the uploading client). Skipping only ever sends bytes raw, which
 * every receiver accepts.
 */
export class CompressionHint {
  readonly #skip = new Map<string, number>();
  /** Chunks tried (compressed or probed), for tests. */
  tried = 0;

  /** Like {@link compressChunk}, unless the file `key` just proved incompressible. */
  compress(key: string, data: Uint8Array): { data: Uint8Array; compressed: boolean } {
    const left = this.#skip.get(key);
    if (left !== undefined && left > 0) {
      this.#skip.set(key, left - 1);
      return { data, compressed: false };
    }
    this.tried++;
    const r = compressChunk(data);
    if (r.compressed) this.#skip.delete(key);
    else this.#skip.set(key, SKIP_AFTER_INCOMPRESSIBLE);
    return r;
  }
}

/**
 * Decompresses a zstd chunk that must expand to exactly `expectedSize` bytes. Throws
 * "Cannot decompress chunk: ..." when the data is not valid zstd, or expands to more (stopped
 * early, never allocated) or fewer bytes than expected.
 */
export function decompressChunk(data: Uint8Array, expectedSize: number): Uint8Array {
  if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) {
    throw new Error(`Cannot decompress chunk: expected size ${expectedSize} is not valid`);
  }
  let out: Uint8Array;
  try {
    out = zlib.zstdDecompressSync(data, { maxOutputLength: Math.max(1, expectedSize) });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === "ERR_BUFFER_TOO_LARGE") {
      throw new Error(
        `Cannot decompress chunk: output exceeds the expected ${expectedSize} bytes`,
      );
    }
    throw new Error(`Cannot decompress chunk: data is not valid zstd (${(e as Error).message})`);
  }
  if (out.length !== expectedSize) {
    throw new Error(
      `Cannot decompress chunk: got ${out.length} bytes, expected ${expectedSize}`,
    );
  }
  return asUint8Array(out);
}
