/**
 * Moving content between the folder and the server, chunk by chunk, with bounded memory:
 *
 * - {@link uploadChunks} asks the server which chunks it lacks (batched `have`), then reads,
 *   verifies, compresses and sends only those, many `put`s in flight at once;
 * - {@link downloadFile} builds a file in `.cloudsync/tmp/`, taking each chunk from a local file
 *   that already holds it (a moved, copied or previous version) or else from the server, verifies
 *   every chunk and the whole file, fsyncs, re-checks that the target did not change locally since
 *   the scan, then renames it into place.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import type { Peer } from "../protocol/peer.ts";
import type { BaseEntry, ChunkRef, LocalEntry, RemoteEntry } from "../core/types.ts";
import { MAX_HAVE } from "../protocol/messages.ts";
import { compressChunk, decompressChunk } from "../chunk/compress.ts";
import { sha256Hex } from "../chunk/hash.ts";
import { fsyncDir, tempPath } from "../util/atomic.ts";
import { statToEntry } from "./scanner.ts";

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
  };
}

/** Runs `fn` over `items` with at most `limit` running at once. */
export async function pool<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Reads exactly `size` bytes at `offset` of `path`, or null if the file is shorter or gone. */
export async function readRange(
  path: string,
  offset: number,
  size: number,
): Promise<Uint8Array | null> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch {
    return null;
  }
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const n = await f.read(buf.subarray(got));
      if (n === null) return null;
      got += n;
    }
    return buf;
  } finally {
    f.close();
  }
}

/** A file and its chunk list, for upload. */
export interface UploadSource {
  path: string;
  chunks: ChunkRef[];
}

/**
 * Makes sure the server holds every chunk of `files`. Returns the paths whose content no longer
 * matches the scan (changed while we read them); those must not be committed.
 */
export async function uploadChunks(
  peer: Peer,
  root: string,
  files: UploadSource[],
  stats: TransferStats,
): Promise<Set<string>> {
  const where = new Map<string, { path: string; offset: number; size: number }>();
  for (const f of files) {
    let offset = 0;
    for (const c of f.chunks) {
      if (!where.has(c.hash)) where.set(c.hash, { path: f.path, offset, size: c.size });
      offset += c.size;
    }
  }
  const hashes = [...where.keys()];
  const missing: string[] = [];
  const batches: string[][] = [];
  for (let i = 0; i < hashes.length; i += MAX_HAVE) batches.push(hashes.slice(i, i + MAX_HAVE));
  await pool(batches, 4, async (batch) => {
    const r = await peer.request({ t: "have", hashes: batch });
    missing.push(...(r.header.missing as string[]));
  });
  const changed = new Set<string>();
  let missingBytes = 0;
  for (const h of missing) missingBytes += where.get(h)!.size;
  let allBytes = 0;
  for (const f of files) for (const c of f.chunks) allBytes += c.size;
  stats.bytesDone += allBytes - missingBytes;
  await pool(missing, 8, async (hash) => {
    const src = where.get(hash)!;
    if (changed.has(src.path)) return;
    const data = await readRange(join(root, src.path), src.offset, src.size);
    if (!data || sha256Hex(data) !== hash) {
      changed.add(src.path);
      return;
    }
    const z = compressChunk(data);
    await peer.request({ t: "put", hash, size: data.length, z: z.compressed }, z.data);
    stats.bytesUp += z.data.length;
    stats.bytesDone += data.length;
  });
  // A chunk shared by several files was read from one of them only: if that one changed, the
  // others are still fine, but simplest and safe is to let them all be retried next pass.
  if (changed.size > 0) {
    for (const f of files) {
      if (f.chunks.some((c) => changed.has(where.get(c.hash)!.path))) changed.add(f.path);
    }
  }
  return changed;
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

/** Result of {@link downloadFile}: the new base entry, or why the file was left alone. */
export type DownloadResult =
  | { ok: true; entry: BaseEntry }
  | { ok: false; reason: "changed-locally" | "blocked" };

/** True when what is at `full` now is still what the scan saw (`expect`; null: nothing). */
export async function stillAsScanned(full: string, expect: LocalEntry | null): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(full);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return expect === null;
    throw e;
  }
  if (!expect) return false;
  const now = statToEntry(expect.path, st, undefined);
  if (st.isSymlink || now.kind !== expect.kind) return false;
  return now.kind === "dir" || (now.size === expect.size && now.mtime === expect.mtime);
}

async function fetchChunk(
  peer: Peer,
  root: string,
  c: ChunkRef,
  local: LocalChunkIndex,
  stats: TransferStats,
): Promise<Uint8Array> {
  const src = local.get(c.hash);
  if (src) {
    const data = await readRange(join(root, src.path), src.offset, c.size);
    if (data && sha256Hex(data) === c.hash) {
      stats.chunksReused++;
      return data;
    }
  }
  const r = await peer.request({ t: "get", hash: c.hash });
  stats.bytesDown += r.body.length;
  const data = r.header.z === true ? decompressChunk(r.body, c.size) : r.body;
  if (data.length !== c.size || sha256Hex(data) !== c.hash) {
    throw new Error(
      `Cannot download chunk ${c.hash.slice(0, 12)}: its content does not match its hash`,
    );
  }
  return data;
}

/**
 * Writes `remote`'s content at `path` (relative to `root`) atomically. `replace` is what the scan
 * saw there (null: nothing); if that changed meanwhile, nothing is touched.
 */
export async function downloadFile(
  peer: Peer,
  root: string,
  tmpDir: string,
  path: string,
  remote: RemoteEntry,
  replace: LocalEntry | null,
  local: LocalChunkIndex,
  stats: TransferStats,
): Promise<DownloadResult> {
  const full = join(root, path);
  const tmp = tempPath(tmpDir, "download");
  const file = await Deno.open(tmp, {
    write: true,
    createNew: true,
    mode: remote.exec ? 0o755 : 0o644,
  });
  let renamed = false;
  try {
    const whole = createHash("sha256");
    try {
      const WINDOW = 8;
      const pending: Promise<Uint8Array>[] = [];
      let next = 0;
      const chunks = remote.chunks;
      while (next < chunks.length && pending.length < WINDOW) {
        pending.push(fetchChunk(peer, root, chunks[next++]!, local, stats));
      }
      while (pending.length > 0) {
        const data = await pending.shift()!;
        if (next < chunks.length) {
          pending.push(fetchChunk(peer, root, chunks[next++]!, local, stats));
        }
        whole.update(data);
        let off = 0;
        while (off < data.length) off += await file.write(data.subarray(off));
        stats.bytesDone += data.length;
      }
      await file.sync();
    } finally {
      file.close();
    }
    if (whole.digest("hex") !== remote.hash) {
      throw new Error(`Cannot download ${path}: the assembled file does not match its hash`);
    }
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, remote.exec ? 0o755 : 0o644);
    const mtime = new Date(remote.mtime);
    await Deno.utime(tmp, mtime, mtime);
    if (!(await stillAsScanned(full, replace))) return { ok: false, reason: "changed-locally" };
    if (replace?.kind === "dir") {
      try {
        await Deno.remove(full);
      } catch {
        return { ok: false, reason: "blocked" };
      }
    }
    await Deno.mkdir(dirname(full), { recursive: true });
    await Deno.rename(tmp, full);
    renamed = true;
    await fsyncDir(dirname(full));
    const st = await Deno.lstat(full);
    const l = statToEntry(path, st, undefined);
    return {
      ok: true,
      entry: {
        path,
        kind: "file",
        version: remote.version,
        size: l.size,
        mtime: l.mtime,
        exec: remote.exec,
        hash: remote.hash,
        chunks: remote.chunks,
      },
    };
  } finally {
    if (!renamed) await Deno.remove(tmp).catch(() => {});
  }
}
