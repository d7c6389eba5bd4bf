/**
 * Chunks and hashes a big file on several cores at once, with exactly the result of
 * {@link hashFile}.
 *
 * The file is split into segments (at multiples of the largest chunk size); a worker chunks each
 * segment from its start, the first ones running on {@link OVERLAP} bytes into the next segment.
 * FastCDC's cut points depend only on the bytes since the previous cut, so once a segment's
 * sequence of cuts reaches a position where the next segment's sequence has a chunk start, the two
 * sequences are identical from there on: the merge takes segment k's chunks up to that point and
 * segment k+1's after it. On data where the sequences never meet within the overlap (long exact
 * repetitions with an unlucky period), the file is hashed sequentially instead: the result is the
 * same, only slower.
 *
 * Only one file is hashed in parallel at a time (a second caller hashes sequentially), so memory
 * stays bounded: each worker holds one chunk buffer of at most 2 MiB.
 *
 * @example
 * ```ts
 * const { hash, size, chunks } = await hashFileParallel("big.iso", (await Deno.stat("big.iso")).size);
 * ```
 *
 * @module
 */

import type { ChunkRef } from "../core/types.ts";
import { DEFAULT_MAX, hashFile } from "./fastcdc.ts";
import { fileHash } from "./hash.ts";
import type { HashJob, RangeChunk } from "./hash_worker.ts";

/** Files from this size up are hashed in parallel. */
export const PARALLEL_MIN = 48 * 1024 * 1024;
/** How far a segment's worker reads into the next segment to meet its cut points. */
export const OVERLAP = 16 * DEFAULT_MAX;

let busy = false;

/** How many workers a file of `size` bytes gets (1 = hash sequentially). */
export function segmentsFor(size: number, cores = navigator.hardwareConcurrency ?? 1): number {
  if (size < PARALLEL_MIN) return 1;
  return Math.max(1, Math.min(cores, 4, Math.floor(size / (PARALLEL_MIN / 2))));
}

/**
 * Same result as {@link hashFile}(path): uses up to {@link segmentsFor} workers when `sizeHint`
 * (the file's size from `stat`) is big enough and no other parallel hash runs.
 */
export async function hashFileParallel(
  path: string,
  sizeHint: number,
  segments = segmentsFor(sizeHint),
): Promise<{ size: number; hash: string; chunks: ChunkRef[] }> {
  if (segments < 2 || busy) return await hashFile(path);
  busy = true;
  try {
    const starts: number[] = [];
    for (let k = 0; k < segments; k++) {
      starts.push(Math.floor((sizeHint * k / segments) / DEFAULT_MAX) * DEFAULT_MAX);
    }
    const jobs: HashJob[] = starts.map((start, k) => ({
      path,
      start,
      end: k + 1 < segments ? starts[k + 1]! + OVERLAP : Number.MAX_SAFE_INTEGER,
    }));
    let lists: RangeChunk[][];
    try {
      lists = await Promise.all(jobs.map(runJob));
    } catch {
      // A worker that cannot start or read (a missing module in a build, a file gone): the
      // sequential hash gives the same result, or the real error.
      return await hashFile(path);
    }
    const merged = merge(lists, jobs);
    if (!merged) return await hashFile(path);
    const chunks = merged.map(({ hash, size }) => ({ hash, size }));
    const size = chunks.reduce((n, c) => n + c.size, 0);
    return { size, hash: fileHash(chunks), chunks };
  } finally {
    busy = false;
  }
}

/**
 * Joins the segments' chunk lists, or returns null when two neighbours never meet (or the file
 * changed size meanwhile, so that a segment ended early).
 */
export function merge(lists: RangeChunk[][], jobs: HashJob[]): RangeChunk[] | null {
  let out: RangeChunk[] = [];
  let cur = lists[0]!;
  for (let k = 0; k + 1 < lists.length; k++) {
    const next = lists[k + 1]!;
    // The last chunk of a segment that stopped at its artificial end was cut there: not genuine.
    const curEnd = cur.length > 0 ? cur[cur.length - 1]!.offset + cur[cur.length - 1]!.size : 0;
    const genuine = curEnd < jobs[k]!.end ? cur : cur.slice(0, -1);
    const nextStarts = new Map<number, number>();
    next.forEach((c, i) => nextStarts.set(c.offset, i));
    let met = -1;
    let i = 0;
    for (; i < genuine.length; i++) {
      const at = nextStarts.get(genuine[i]!.offset);
      if (at !== undefined) {
        met = at;
        break;
      }
    }
    // The end of a genuine chunk list can also be where `next` starts a chunk.
    if (met < 0 && i === genuine.length && genuine.length > 0) {
      const end = genuine[genuine.length - 1]!.offset + genuine[genuine.length - 1]!.size;
      const at = nextStarts.get(end);
      if (at !== undefined) met = at;
    }
    if (met < 0) return null;
    out = out.concat(genuine.slice(0, i));
    cur = next.slice(met);
  }
  return out.concat(cur);
}

function runJob(job: HashJob): Promise<RangeChunk[]> {
  const worker = new Worker(new URL("./hash_worker.ts", import.meta.url).href, { type: "module" });
  return new Promise<RangeChunk[]>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<{ chunks?: RangeChunk[]; error?: string }>) => {
      if (e.data.chunks) resolve(e.data.chunks);
      else reject(new Error(`Cannot hash ${job.path}: ${e.data.error}`));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      reject(new Error(`Cannot hash ${job.path}: ${e.message}`));
    };
    worker.postMessage(job);
  }).finally(() => worker.terminate());
}
