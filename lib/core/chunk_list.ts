/**
 * What a file's chunk list may be, on every side (server checks what devices send, devices
 * check what the server sends): every chunk holds 1 to {@link MAX_CHUNK} bytes, the sizes add
 * up to the file's, and there are at most {@link maxChunksFor}(size) of them, so that a list can
 * never cost more metadata, memory or disk than the file it describes. Pure.
 *
 * @example
 * ```ts
 * chunkListProblem(3, [{ hash: "…", size: 3 }]); // null
 * chunkListProblem(1, [{ hash: "…", size: 1 }, { hash: "…", size: 1 }]); // "2 chunks are too many…"
 * ```
 *
 * @module
 */

import type { ChunkRef } from "./types.ts";

/** Largest chunk accepted (the chunker cuts at most 1 MiB; 4 MiB leaves room). */
export const MAX_CHUNK = 4 * 1024 * 1024;
/**
 * Smallest chunk the chunker cuts (but the last one of a file): with it, a file's size bounds
 * the length of its chunk list (see {@link maxChunksFor}).
 */
export const MIN_CHUNK = 16 * 1024;

/** Most chunks a file of `size` bytes can have: every chunk but the last is >= MIN_CHUNK. */
export function maxChunksFor(size: number): number {
  return size <= 0 ? 0 : Math.floor(size / MIN_CHUNK) + 1;
}

/** Why the chunk list of a file of `size` bytes is impossible (see the module doc), or null. */
export function chunkListProblem(size: number, chunks: readonly ChunkRef[]): string | null {
  if (chunks.length > maxChunksFor(size)) {
    return `${chunks.length} chunks are too many for a file of ${size} bytes`;
  }
  let total = 0;
  for (const c of chunks) {
    if (c.size < 1 || c.size > MAX_CHUNK) return `a chunk of ${c.size} bytes is not possible`;
    total += c.size;
  }
  if (total !== size) return "chunk sizes do not add up to the file size";
  return null;
}
