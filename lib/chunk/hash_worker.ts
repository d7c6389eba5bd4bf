/**
 * Worker side of {@link hashFileParallel}: chunks and hashes one byte range of a file and posts the
 * chunk list back. The range's end is an artificial end of data, so the last chunk is cut there
 * (the caller discards it unless the range ends at the end of the file).
 *
 * Message in: `{ path, start, end }` (byte offsets); out: `{ chunks: {offset, size, hash}[] }` or
 * `{ error: string }`. The worker is terminated by its caller after one job.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { chunkStream } from "./fastcdc.ts";

/** One job: chunk `path` from `start` to `end` (exclusive). */
export interface HashJob {
  path: string;
  start: number;
  end: number;
}

/** A chunk found by a worker, at an absolute file offset. */
export interface RangeChunk {
  offset: number;
  size: number;
  hash: string;
}

self.onmessage = async (e: MessageEvent<HashJob>) => {
  const { path, start, end } = e.data;
  try {
    const file = await Deno.open(path, { read: true });
    try {
      await file.seek(start, Deno.SeekMode.Start);
      let left = end - start;
      const read = async (buf: Uint8Array) => {
        if (left <= 0) return null;
        const n = await file.read(buf.subarray(0, Math.min(buf.length, left)));
        if (n === null) return null;
        left -= n;
        return n;
      };
      const chunks: RangeChunk[] = [];
      for await (const c of chunkStream(read)) {
        chunks.push({ offset: start + c.offset, size: c.size, hash: c.hash });
      }
      self.postMessage({ chunks });
    } finally {
      file.close();
    }
  } catch (err) {
    self.postMessage({ error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
  }
};
