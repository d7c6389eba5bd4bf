/**
 * What every part of moving content shares: the counters shown to the user, the batch limits, the
 * index of chunks this device already holds, range reads, and the outcome types of a download.
 * The parts, one concern each (after Syncthing's copier/puller/finisher and Mutagen's staging):
 *
 * - `chunk_source.ts`: where a chunk comes from (this device's files or the server), one
 *   verification path;
 * - `staging.ts`: partial files in `.cloudsync/tmp/` (resume, prefetch, in-place rebuild, cleanup);
 * - `placer.ts`: the one step that puts a finished file into the folder;
 * - `downloader.ts`: many files at once (small ones in groups, big ones streamed);
 * - `uploader.ts`: chunks up in batches.
 *
 * @module
 */

import type { BaseEntry, LocalEntry, RemoteEntry } from "../core/types.ts";
import type { LocalFs } from "./fs/local_fs.ts";

/** Counters shown to the user. */
export interface TransferStats {
  /** Bytes sent (as on the wire, after compression). */
  bytesUp: number;
  /** Bytes received (as on the wire). */
  bytesDown: number;
  chunksReused: number;
  /** Files to send or receive in the current pass, and how many are done. */
  filesTotal: number;
  filesDone: number;
  /** Content bytes to move in the current pass, and how many are done (dedup counts as done). */
  bytesTotal: number;
  bytesDone: number;
  /** Of the files of the pass, those to send, and how many of them are on the server. */
  uploadsTotal: number;
  uploadsDone: number;
}

/** Fresh counters. */
export function newStats(): TransferStats {
  return {
    bytesUp: 0,
    bytesDown: 0,
    chunksReused: 0,
    filesTotal: 0,
    filesDone: 0,
    bytesTotal: 0,
    bytesDone: 0,
    uploadsTotal: 0,
    uploadsDone: 0,
  };
}

/** Chunks up to this size are sent and fetched in batches (all chunks the chunker makes). */
export const BATCH_CHUNK_MAX = 1024 * 1024;
/** Files up to this size are written whole by the phased small-file writer. */
export const SMALL_FILE = 1024 * 1024;
/** Most chunks in one batch (the server's limit is 1024). */
export const BATCH_COUNT = 512;
/** Most content bytes in one batch. */
export const BATCH_BYTES = 4 * 1024 * 1024;

/** Reads up to this many bytes synchronously (see {@link readRangeInto}). */
const SYNC_READ_MAX = 64 * 1024;

/**
 * Fills `dst` from `path` at `offset`; false if the file is shorter or gone. Small reads (up to
 * 64 KiB) are done with synchronous calls: thousands of small files then cost no thread hand-offs.
 */
export async function readRangeInto(
  fs: LocalFs,
  path: string,
  offset: number,
  dst: Uint8Array,
): Promise<boolean> {
  if (dst.length <= SYNC_READ_MAX) return readRangeIntoSync(fs, path, offset, dst);
  let f;
  try {
    f = await fs.open(path, { read: true });
  } catch {
    return false;
  }
  try {
    await f.seek(offset);
    let got = 0;
    while (got < dst.length) {
      const n = await f.read(dst.subarray(got));
      if (n === null || n === 0) return false;
      got += n;
    }
    return true;
  } finally {
    f.close();
  }
}

/** Synchronous {@link readRangeInto} (each call a few microseconds). */
function readRangeIntoSync(fs: LocalFs, path: string, offset: number, dst: Uint8Array): boolean {
  let f;
  try {
    f = fs.openSync(path, { read: true });
  } catch {
    return false;
  }
  try {
    if (offset > 0) f.seekSync(offset);
    let got = 0;
    while (got < dst.length) {
      const n = f.readSync(dst.subarray(got));
      if (n === null || n === 0) return false;
      got += n;
    }
    return true;
  } finally {
    f.close();
  }
}

/** Reads exactly `size` bytes at `offset` of `path`, or null if the file is shorter or gone. */
export async function readRange(
  fs: LocalFs,
  path: string,
  offset: number,
  size: number,
): Promise<Uint8Array | null> {
  const buf = new Uint8Array(size);
  return (await readRangeInto(fs, path, offset, buf)) ? buf : null;
}

/** Where a chunk can be copied from locally: a file known to hold it at an offset. */
export type LocalChunkIndex = Map<string, { path: string; offset: number }>;

/** Indexes the chunks of every base file, to reuse them instead of downloading. */
export function indexLocalChunks(base: Iterable<BaseEntry>): LocalChunkIndex {
  const index: LocalChunkIndex = new Map();
  for (const b of base) {
    if (b.kind !== "file") continue;
    let offset = 0;
    for (const c of b.chunks) {
      if (!index.has(c.hash)) index.set(c.hash, { path: b.path, offset });
      offset += c.size;
    }
  }
  return index;
}

/** Result of a download: the new base entry, or why the file was left alone. */
export type DownloadResult =
  | { ok: true; entry: BaseEntry }
  | { ok: false; reason: "changed-locally" | "blocked" };

/** One file to download. */
export interface DownloadItem {
  /** Where to write, relative to the root (the local name). */
  path: string;
  remote: RemoteEntry;
  replace: LocalEntry | null;
  /** The wire path, when it differs from the local name (case-conflict aliases). */
  wire?: string;
  /** An edit following a local move: the old path whose base this download brings up to date. */
  follows?: string;
}
