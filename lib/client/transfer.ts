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

import { dirname, join } from "node:path";
import { type Peer, RemoteError } from "../protocol/peer.ts";
import type { BaseEntry, ChunkRef, LocalEntry, RemoteEntry } from "../core/types.ts";
import { MAX_CHUNK, MAX_HAVE } from "../protocol/messages.ts";
import { compressChunk, decompressChunk } from "../chunk/compress.ts";
import { fileHash, sha256Hex } from "../chunk/hash.ts";
import { fsyncDir, removeTempSync, tempPath } from "../util/atomic.ts";
import { debug } from "../util/debug.ts";
import { pool } from "../util/pool.ts";
import { baseFrom } from "../core/reconcile.ts";
import { perms } from "../core/metadata.ts";
import { stillInside } from "./inside.ts";
import { sameFileStat, statToEntry } from "./scanner.ts";

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

/** Reads up to this many bytes synchronously (see {@link readRangeInto}). */
const SYNC_READ_MAX = 64 * 1024;

const spareBuffers: Uint8Array[] = [];

/** A batch-sized buffer from a small free list (uploads reuse them instead of making garbage). */
function acquireBuffer(): Uint8Array {
  return spareBuffers.pop() ?? new Uint8Array(BATCH_BYTES);
}

function releaseBuffer(b: Uint8Array): void {
  if (spareBuffers.length < 8) spareBuffers.push(b);
}

/**
 * Fills `dst` from `path` at `offset`; false if the file is shorter or gone. Small reads (up to
 * 64 KiB) are done with synchronous calls: thousands of small files then cost no thread hand-offs.
 */
export async function readRangeInto(
  path: string,
  offset: number,
  dst: Uint8Array,
): Promise<boolean> {
  if (dst.length <= SYNC_READ_MAX) return readRangeIntoSync(path, offset, dst);
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch {
    return false;
  }
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < dst.length) {
      const n = await f.read(dst.subarray(got));
      if (n === null) return false;
      got += n;
    }
    return true;
  } finally {
    f.close();
  }
}

/** Synchronous {@link readRangeInto} (each call a few microseconds). */
function readRangeIntoSync(path: string, offset: number, dst: Uint8Array): boolean {
  let f: Deno.FsFile;
  try {
    f = Deno.openSync(path, { read: true });
  } catch {
    return false;
  }
  try {
    if (offset > 0) f.seekSync(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < dst.length) {
      const n = f.readSync(dst.subarray(got));
      if (n === null) return false;
      got += n;
    }
    return true;
  } finally {
    f.close();
  }
}

/** Reads exactly `size` bytes at `offset` of `path`, or null if the file is shorter or gone. */
export async function readRange(
  path: string,
  offset: number,
  size: number,
): Promise<Uint8Array | null> {
  const buf = new Uint8Array(size);
  return (await readRangeInto(path, offset, buf)) ? buf : null;
}

/** Chunks up to this size are sent and fetched in batches (all chunks the chunker makes). */
export const BATCH_CHUNK_MAX = 1024 * 1024;
/** Files up to this size are written whole by the phased small-file writer. */
export const SMALL_FILE = 1024 * 1024;
/** Most chunks in one batch (the server's limit is 1024). */
export const BATCH_COUNT = 512;
/** Most content bytes in one batch. */
export const BATCH_BYTES = 4 * 1024 * 1024;

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
  known?: ReadonlySet<string>,
): Promise<Set<string>> {
  const where = new Map<string, { path: string; offset: number; size: number }>();
  for (const f of files) {
    let offset = 0;
    for (const c of f.chunks) {
      if (!where.has(c.hash)) where.set(c.hash, { path: f.path, offset, size: c.size });
      offset += c.size;
    }
  }
  const hashes = known ? [...where.keys()].filter((h) => !known.has(h)) : [...where.keys()];
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
  // Small chunks travel in batches (one request, one server transaction each); big ones alone.
  const jobs: string[][] = [];
  let batch: string[] = [];
  let batchBytes = 0;
  for (const h of missing) {
    const size = where.get(h)!.size;
    if (size > BATCH_CHUNK_MAX) {
      jobs.push([h]);
      continue;
    }
    if (batch.length >= BATCH_COUNT || batchBytes + size > BATCH_BYTES) {
      jobs.push(batch);
      batch = [];
      batchBytes = 0;
    }
    batch.push(h);
    batchBytes += size;
  }
  if (batch.length > 0) jobs.push(batch);
  await pool(jobs, 3, async (job) => {
    // Each chunk is read straight into one reused batch buffer (no garbage per chunk), then
    // compressed chunks are compacted in place: a compressed chunk is never longer than raw.
    const raw = job.map((hash) => where.get(hash)!);
    const total = raw.reduce((n, r) => n + r.size, 0);
    const body = total <= BATCH_BYTES ? acquireBuffer() : new Uint8Array(total);
    try {
      const offsets: number[] = [];
      let at = 0;
      for (const r of raw) {
        offsets.push(at);
        at += r.size;
      }
      // Neighbouring chunks of one file (a big file's batch) are read with one open and one read.
      const runs: { path: string; offset: number; at: number; size: number; first: number }[] = [];
      raw.forEach((r, i) => {
        const last = runs[runs.length - 1];
        if (last && last.path === r.path && last.offset + last.size === r.offset) {
          last.size += r.size;
        } else {
          runs.push({ path: r.path, offset: r.offset, at: offsets[i]!, size: r.size, first: i });
        }
      });
      const runOk = await Promise.all(
        runs.map((run) =>
          readRangeInto(join(root, run.path), run.offset, body.subarray(run.at, run.at + run.size))
        ),
      );
      const ok: boolean[] = [];
      runs.forEach((run, k) => {
        const end = runs[k + 1]?.first ?? raw.length;
        for (let i = run.first; i < end; i++) ok.push(runOk[k]!);
      });
      const parts: { hash: string; size: number; z: boolean; len: number }[] = [];
      let w = 0;
      job.forEach((hash, i) => {
        const r = raw[i]!;
        // The server checks every chunk against its name (a file changed since the scan is
        // refused as "bad-chunk" below), so the data is not hashed a second time here.
        if (!ok[i]) {
          changed.add(r.path);
          return;
        }
        const data = body.subarray(offsets[i]!, offsets[i]! + r.size);
        const z = compressChunk(data);
        if (z.compressed) body.set(z.data, w);
        else if (w !== offsets[i]) body.copyWithin(w, offsets[i]!, offsets[i]! + r.size);
        parts.push({ hash, size: r.size, z: z.compressed, len: z.data.length });
        w += z.data.length;
      });
      if (parts.length === 0) return;
      const sent = body.subarray(0, w);
      try {
        if (parts.length === 1 && job.length === 1) {
          const p = parts[0]!;
          await peer.request({ t: "put", hash: p.hash, size: p.size, z: p.z }, sent);
        } else {
          await peer.request({ t: "putMany", chunks: parts }, sent);
        }
      } catch (e) {
        if (!(e instanceof RemoteError && e.code === "bad-chunk")) throw e;
        // Some file changed since the scan: retry all of this batch's files on the next pass.
        for (const p of parts) changed.add(where.get(p.hash)!.path);
        return;
      }
      for (const p of parts) {
        stats.bytesUp += p.len;
        stats.bytesDone += p.size;
      }
    } finally {
      if (body.length === BATCH_BYTES) releaseBuffer(body);
    }
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
  let st: Deno.FileInfo | null;
  try {
    st = await Deno.lstat(full);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    st = null;
  }
  return statMatches(st, expect);
}

/** Whether a stat (null: nothing there) still shows what the scan saw. */
function statMatches(st: Deno.FileInfo | null, expect: LocalEntry | null): boolean {
  if (!st || !expect) return !st && !expect;
  const now = statToEntry(expect.path, st, undefined);
  if (st.isSymlink || now.kind !== expect.kind) return false;
  return now.kind === "dir" || sameFileStat(now, expect);
}

/** What downloads share: the connection, where to build files, and where chunks may come from. */
export interface DownloadContext {
  peer: Peer;
  root: string;
  tmpDir: string;
  /** Chunks already on this device, to copy instead of download. */
  local: LocalChunkIndex;
  stats: TransferStats;
  /** Ask the server to wait for chunks another device is still uploading (prefetch). */
  wait?: boolean;
  /** Chunks fetched ahead in batches (raw as received: maybe compressed, not yet verified). */
  prefetched?: Map<string, { z: boolean; data: Uint8Array }>;
}

function verified(c: ChunkRef, z: boolean, raw: Uint8Array): Uint8Array {
  const data = z ? decompressChunk(raw, c.size) : raw;
  if (data.length !== c.size || sha256Hex(data) !== c.hash) {
    throw new Error(
      `Cannot download chunk ${c.hash.slice(0, 12)}: its content does not match its hash`,
    );
  }
  return data;
}

async function fetchChunk(ctx: DownloadContext, c: ChunkRef): Promise<Uint8Array> {
  const pre = ctx.prefetched?.get(c.hash);
  if (pre) return verified(c, pre.z, pre.data);
  const src = ctx.local.get(c.hash);
  if (src) {
    const data = await readRange(join(ctx.root, src.path), src.offset, c.size);
    if (data && sha256Hex(data) === c.hash) {
      ctx.stats.chunksReused++;
      return data;
    }
  }
  const r = await ctx.peer.request({ t: "get", hash: c.hash, ...(ctx.wait ? { wait: true } : {}) });
  ctx.stats.bytesDown += r.body.length;
  if (r.body.length > MAX_CHUNK) {
    throw new Error("Cannot download chunks: the server sent more than one chunk's worth");
  }
  return verified(c, r.header.z === true, r.body);
}

/** Fetches many small chunks in one `getMany` round trip. */
export async function prefetchChunks(
  ctx: DownloadContext,
  hashes: string[],
): Promise<Map<string, { z: boolean; data: Uint8Array }>> {
  const out = new Map<string, { z: boolean; data: Uint8Array }>();
  if (hashes.length === 0) return out;
  const t0 = performance.now();
  const r = await ctx.peer.request({ t: "getMany", hashes, ...(ctx.wait ? { wait: true } : {}) });
  debug(() =>
    `getMany ${hashes.length}: ${r.body.length} B in ${(performance.now() - t0).toFixed(0)} ms`
  );
  const list = r.header.chunks;
  const malformed = () => new Error("Cannot download chunks: the server sent a malformed reply");
  // Only what was asked, each once and at most one chunk long: a hostile server's reply cannot
  // hold more than the request named.
  const asked = new Set(hashes);
  if (!Array.isArray(list) || list.length > asked.size) throw malformed();
  let off = 0;
  for (const v of list) {
    const o = v as { hash?: unknown; z?: unknown; len?: unknown };
    if (
      typeof o.hash !== "string" || !asked.has(o.hash) || out.has(o.hash) ||
      typeof o.len !== "number" || !Number.isSafeInteger(o.len) || o.len < 0 ||
      o.len > MAX_CHUNK || off + o.len > r.body.length
    ) {
      throw malformed();
    }
    out.set(o.hash, { z: o.z === true, data: r.body.subarray(off, off + o.len) });
    off += o.len;
  }
  if (off !== r.body.length) throw malformed();
  ctx.stats.bytesDown += r.body.length;
  return out;
}

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

/**
 * Downloads many files: big ones (any chunk over the batch limit) a few at a time with their
 * chunks pipelined; small ones in groups whose missing chunks come in one `getMany`, the next
 * group's fetch overlapping this group's writes. `onResult` gets each outcome.
 */
export async function downloadMany(
  ctx: DownloadContext,
  items: DownloadItem[],
  onResult: (item: DownloadItem, result: DownloadResult | Error) => void,
): Promise<void> {
  const run = async (c: DownloadContext, item: DownloadItem) => {
    try {
      onResult(item, await downloadFile(c, item.path, item.remote, item.replace));
    } catch (e) {
      onResult(item, e instanceof Error ? e : new Error(String(e)));
    }
  };
  const big = items.filter((i) => i.remote.size > SMALL_FILE);
  const small = items.filter((i) => i.remote.size <= SMALL_FILE);
  const groups: { items: DownloadItem[]; hashes: string[] }[] = [];
  let group: { items: DownloadItem[]; hashes: string[] } = { items: [], hashes: [] };
  let bytes = 0;
  const seen = new Set<string>();
  for (const item of small) {
    const need = item.remote.chunks.filter((c) => !ctx.local.has(c.hash) && !seen.has(c.hash));
    const needBytes = need.reduce((n, c) => n + c.size, 0);
    if (
      group.items.length > 0 &&
      (group.hashes.length + need.length > BATCH_COUNT || bytes + needBytes > BATCH_BYTES)
    ) {
      groups.push(group);
      group = { items: [], hashes: [] };
      bytes = 0;
    }
    group.items.push(item);
    for (const c of need) {
      seen.add(c.hash);
      group.hashes.push(c.hash);
    }
    bytes += needBytes;
  }
  if (group.items.length > 0) groups.push(group);
  const smallDone = (async () => {
    let next = groups.length > 0 ? prefetchChunks(ctx, groups[0]!.hashes) : null;
    // Group i+1 is fetched while group i is written, and written while group i is fsynced.
    let finishing: Promise<void> = Promise.resolve();
    for (let i = 0; i < groups.length; i++) {
      let prefetched: Map<string, { z: boolean; data: Uint8Array }>;
      try {
        prefetched = await next!;
      } catch (e) {
        for (const item of groups[i]!.items) onResult(item, e as Error);
        next = i + 1 < groups.length ? prefetchChunks(ctx, groups[i + 1]!.hashes) : null;
        continue;
      }
      next = i + 1 < groups.length ? prefetchChunks(ctx, groups[i + 1]!.hashes) : null;
      const staged = await stageSmallFiles({ ...ctx, prefetched }, groups[i]!.items, onResult);
      try {
        await finishing;
      } catch (e) {
        // The previous group failed (a folder's fsync): drop this one's temporary files too.
        for (const f of staged) {
          f.file.close();
          removeTempSync(f.tmp);
        }
        throw e;
      }
      finishing = finishSmallFiles(ctx, staged, onResult);
      finishing.catch(() => {}); // awaited (and thrown) at the next group or below
    }
    await finishing;
    await next?.catch(() => {});
  })();
  // Two big files at a time (each with a few 4 MiB batches in flight) besides the small-file
  // groups: on 2 cores a third adds no speed, only memory.
  await Promise.all([smallDone, pool(big, 2, (item) => run(ctx, item))]);
}

/** A small file written to its temporary file, not yet fsynced nor in place. */
interface StagedFile {
  item: DownloadItem;
  tmp: string;
  file: Deno.FsFile;
  st: Deno.FileInfo;
}

/**
 * Writes a group of small files in phases, so thousands of files cost few thread hand-offs: the
 * content of each is assembled and verified and written to a temporary file with quick
 * synchronous calls (this function); {@link finishSmallFiles} then fsyncs them (many in
 * parallel), re-checks each against the scan, renames it into place and fsyncs each touched
 * directory. Together, the same guarantees as {@link downloadFile}.
 */
async function stageSmallFiles(
  ctx: DownloadContext,
  items: DownloadItem[],
  onResult: (item: DownloadItem, result: DownloadResult | Error) => void,
): Promise<StagedFile[]> {
  const staged: StagedFile[] = [];
  const contents = new Array<Uint8Array | Error>(items.length);
  const t0 = performance.now();
  await pool(items.map((_, i) => i), 16, async (i) => {
    const item = items[i]!;
    try {
      const parts = await Promise.all(item.remote.chunks.map((c) => fetchChunk(ctx, c)));
      const data = parts.length === 1 ? parts[0]! : concat(parts);
      // Every chunk was verified against its own hash; the entry must name this chunk list.
      if (fileHash(item.remote.chunks) !== item.remote.hash) {
        throw new Error(`Cannot download ${item.path}: the assembled file does not match its hash`);
      }
      contents[i] = data;
    } catch (e) {
      contents[i] = e instanceof Error ? e : new Error(String(e));
    }
  });
  items.forEach((item, i) => {
    const data = contents[i]!;
    if (data instanceof Error) return onResult(item, data);
    const tmp = tempPath(ctx.tmpDir, "download");
    let file: Deno.FsFile | null = null;
    try {
      file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
      let off = 0;
      while (off < data.length) off += file.writeSync(data.subarray(off));
      // Exactly the file's permission bits (the process's umask does not apply to chmod).
      if (Deno.build.os !== "windows") Deno.chmodSync(tmp, perms(item.remote));
      const mtime = new Date(item.remote.mtime);
      file.utimeSync(mtime, mtime);
      staged.push({ item, tmp, file, st: file.statSync() });
      ctx.stats.bytesDone += data.length;
    } catch (e) {
      file?.close();
      removeTempSync(tmp);
      onResult(item, e as Error);
    }
  });
  debug(() => `small files ${items.length}: written in ${(performance.now() - t0).toFixed(0)} ms`);
  return staged;
}

/** Second half of {@link stageSmallFiles}: fsync, re-check, rename, fsync the directories. */
async function finishSmallFiles(
  ctx: DownloadContext,
  staged: StagedFile[],
  onResult: (item: DownloadItem, result: DownloadResult | Error) => void,
): Promise<void> {
  const t1 = performance.now();
  const synced = new Set<StagedFile>();
  await pool(staged, 16, async (s) => {
    try {
      await s.file.sync();
      synced.add(s);
    } catch (e) {
      onResult(s.item, e as Error);
    } finally {
      s.file.close();
    }
  });
  const t2 = performance.now();
  const dirs = new Set<string>();
  for (const s of staged) {
    const { item, tmp } = s;
    let renamed = false;
    try {
      if (!synced.has(s)) continue;
      const full = join(ctx.root, item.path);
      if (!stillAsScannedSync(full, item.replace)) {
        onResult(item, { ok: false, reason: "changed-locally" });
        continue;
      }
      if (item.replace?.kind === "dir") {
        try {
          Deno.removeSync(full);
        } catch {
          onResult(item, { ok: false, reason: "blocked" });
          continue;
        }
      }
      if (!stillInside(ctx.root, full)) {
        onResult(item, { ok: false, reason: "blocked" }); // a folder on the way is a symlink now
        continue;
      }
      const parent = dirname(full);
      if (!dirs.has(parent)) Deno.mkdirSync(parent, { recursive: true });
      Deno.renameSync(tmp, full);
      renamed = true;
      dirs.add(parent);
      const l = statToEntry(item.path, s.st, undefined);
      const r = item.remote;
      onResult(item, { ok: true, entry: { ...baseFrom(r, l), path: item.path } });
    } catch (e) {
      onResult(item, e as Error);
    } finally {
      if (!renamed) removeTempSync(tmp);
    }
  }
  const t3 = performance.now();
  await pool([...dirs], 16, fsyncDir);
  debug(() =>
    `small files ${staged.length}: fsync ${(t2 - t1).toFixed(0)} rename ${
      (t3 - t2).toFixed(0)
    } dirs ${(performance.now() - t3).toFixed(0)} ms`
  );
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Synchronous {@link stillAsScanned}, for the phased small-file writer. */
export function stillAsScannedSync(full: string, expect: LocalEntry | null): boolean {
  let st: Deno.FileInfo | null;
  try {
    st = Deno.lstatSync(full);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    st = null;
  }
  return statMatches(st, expect);
}

/** Partial files completed (and verified chunk by chunk) by this process: path -> size. */
const complete = new Map<string, number>();
/** Bytes prefetches received for each partial file, not yet counted by a download. */
const prefetchedBytes = new Map<string, number>();
/** Partial files being filled right now (a prefetch): path -> its end. */
const filling = new Map<string, Promise<unknown>>();

/**
 * Brings the partial file of (`path`, `remote`) to its full content: keeps the verified prefix
 * of an earlier attempt, takes chunks from this device where it can, fetches the rest. Returns
 * the partial file's path. A failure keeps the partial file (to resume), except on a full disk.
 */
async function fillPartial(
  ctx: DownloadContext,
  path: string,
  remote: RemoteEntry,
  replace: LocalEntry | null,
): Promise<string> {
  const full = join(ctx.root, path);
  // Every chunk is verified against its own hash; the entry must name exactly this chunk list.
  if (
    fileHash(remote.chunks) !== remote.hash ||
    remote.chunks.reduce((n, c) => n + c.size, 0) !== remote.size
  ) {
    throw new Error(`Cannot download ${path}: the server's entry does not match its chunk list`);
  }
  // The same file (path and content) always builds in the same partial file, so a download cut
  // short (connection lost, client stopped or killed) continues where it stopped.
  const tmp = join(ctx.tmpDir, partialName(path, remote.hash));
  await filling.get(tmp)?.catch(() => {}); // a prefetch of the same file: let it finish first
  // What a prefetch received for this file was received for this download (the pass says so).
  ctx.stats.bytesDown += prefetchedBytes.get(tmp) ?? 0;
  prefetchedBytes.delete(tmp);
  const inPlace = await startInPlace(ctx, path, full, tmp, remote, replace);
  const file = await Deno.open(tmp, {
    read: true,
    write: true,
    create: true,
    mode: perms(remote) | 0o600, // writable by us until it is complete (a resume reopens it)
  });
  try {
    // A partial file this process completed and verified is trusted as is; any other one is
    // checked chunk by chunk.
    const size = (await file.stat()).size;
    const done = inPlace
      ? { bytes: 0, chunks: 0 }
      : complete.get(tmp) === size
      ? { bytes: size, chunks: remote.chunks.length }
      : await verifiedPrefix(file, remote.chunks);
    complete.delete(tmp);
    await file.truncate(inPlace ? remote.size : done.bytes);
    await file.seek(done.bytes, Deno.SeekMode.Start);
    ctx.stats.bytesDone += done.bytes;
    const todo = remote.chunks.slice(done.chunks);
    /** Where each chunk of `todo` goes in the file. */
    const offsets: number[] = [];
    for (let at = done.bytes, i = 0; i < todo.length; at += todo[i]!.size, i++) offsets.push(at);
    try {
      // Chunks travel in batches of up to 4 MiB (one getMany each, chunks already on this device
      // read locally); a few batches are in flight while earlier ones are written, in order.
      const batches: ChunkRef[][] = [];
      let batch: ChunkRef[] = [];
      let bytes = 0;
      for (const c of todo) {
        if (batch.length > 0 && (batch.length >= 64 || bytes + c.size > BATCH_BYTES)) {
          batches.push(batch);
          batch = [];
          bytes = 0;
        }
        batch.push(c);
        bytes += c.size;
      }
      if (batch.length > 0) batches.push(batch);
      // Unchanged chunks of the version being replaced are copied from it without hashing when
      // it is still as the scan (or merge base) saw it, before and after the copy; a partial file
      // this fill did not finish is verified chunk by chunk when resumed.
      const old = replace?.kind === "file" && await stillAsScanned(full, replace)
        ? await Deno.open(full, { read: true }).catch(() => null)
        : null;
      const fromOld = (c: ChunkRef) => old !== null && ctx.local.get(c.hash)?.path === path;
      const fetchBatch = async (
        list: ChunkRef[],
        first: number,
      ): Promise<(Uint8Array | number)[]> => {
        // In place, chunks already at their offset (copied with the file) are skipped: -2.
        if (!inPlace) return await fetchParts(list);
        const skip = list.map((_, i) => inPlace[done.chunks + first + i] === true);
        if (skip.every((x) => x)) return list.map(() => -2);
        const got = await fetchParts(list.filter((_, i) => !skip[i]));
        let k = 0;
        return skip.map((x) => x ? -2 : got[k++]!);
      };
      const fetchParts = async (list: ChunkRef[]): Promise<(Uint8Array | number)[]> => {
        const remoteOnes = list.filter((c) => !ctx.local.has(c.hash)).map((c) => c.hash);
        const prefetched = remoteOnes.length > 1
          ? await prefetchChunks(ctx, [...new Set(remoteOnes)])
          : undefined;
        const c2: DownloadContext = prefetched ? { ...ctx, prefetched } : ctx;
        // -1 stands for "copy it from the old version, at its offset there".
        return await Promise.all(
          list.map((c) => fromOld(c) ? Promise.resolve(-1) : fetchChunk(c2, c)),
        );
      };
      let copyBuf: Uint8Array | null = null; // only for in-place rebuilds, made when first needed
      let filePos = done.bytes;
      const write = async (data: Uint8Array, at: number) => {
        if (at !== filePos) await file.seek(at, Deno.SeekMode.Start);
        let off = 0;
        while (off < data.length) off += await file.write(data.subarray(off));
        filePos = at + data.length;
        ctx.stats.bytesDone += data.length;
      };
      const firsts: number[] = [];
      for (let i = 0, at = 0; i < batches.length; at += batches[i]!.length, i++) firsts.push(at);
      const WINDOW = 3;
      const pending: Promise<(Uint8Array | number)[]>[] = [];
      let next = 0;
      while (next < batches.length && pending.length < WINDOW) {
        pending.push(fetchBatch(batches[next]!, firsts[next++]!));
      }
      try {
        let b = 0;
        while (pending.length > 0) {
          const parts = await pending.shift()!;
          const first = firsts[b]!;
          const list = batches[b++]!;
          if (next < batches.length) pending.push(fetchBatch(batches[next]!, firsts[next++]!));
          for (let i = 0; i < parts.length;) {
            const data = parts[i]!;
            if (data === -2) {
              ctx.stats.chunksReused++;
              ctx.stats.bytesDone += list[i]!.size;
              i++;
              continue;
            }
            if (typeof data !== "number") {
              await write(data, offsets[first + i]!);
              i++;
              continue;
            }
            // A run of chunks that sit back to back in the old version: one read, one write.
            const from = ctx.local.get(list[i]!.hash)!.offset;
            let len = 0;
            let j = i;
            while (
              j < parts.length && parts[j] === -1 &&
              ctx.local.get(list[j]!.hash)!.offset === from + len &&
              len + list[j]!.size <= BATCH_BYTES
            ) {
              len += list[j]!.size;
              j++;
            }
            copyBuf ??= new Uint8Array(BATCH_BYTES);
            const run = copyBuf.subarray(0, len);
            await old!.seek(from, Deno.SeekMode.Start);
            let got = 0;
            while (got < len) {
              const n = await old!.read(run.subarray(got));
              if (n === null) {
                throw new Error(`Cannot download ${path}: the old version changed meanwhile`);
              }
              got += n;
            }
            ctx.stats.chunksReused += j - i;
            await write(run, offsets[first + i]!);
            i = j;
          }
        }
      } catch (e) {
        // The fetches still in flight fail too (same connection): nobody awaits them any more.
        for (const p of pending) p.catch(() => {});
        throw e;
      } finally {
        old?.close();
      }
      if ((old || inPlace) && !(await stillAsScanned(full, replace))) {
        throw new Error(`Cannot download ${path}: the old version changed meanwhile`);
      }
      await file.sync();
    } finally {
      file.close();
    }
    return tmp;
  } catch (e) {
    // A full disk needs the space back; any other failure keeps the partial file to resume.
    if (isDiskFullError(e)) await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * An edit in place: when most of `remote` (at least half of its bytes, 1 MiB or more) consists of
 * chunks at the same offset in the version being replaced, and that file is still as the scan or
 * merge base saw it, the partial file starts as an in-kernel copy of it (`copyFile`, no bytes
 * through this process). Returns which chunks of `remote` are then already in place, or null (no
 * copy made: the partial file is filled from its start as usual). A partial file that already
 * exists is resumed instead.
 */
async function startInPlace(
  ctx: DownloadContext,
  path: string,
  full: string,
  tmp: string,
  remote: RemoteEntry,
  replace: LocalEntry | null,
): Promise<boolean[] | null> {
  if (replace?.kind !== "file" || remote.size < IN_PLACE_MIN) return null;
  const inPlace: boolean[] = [];
  let same = 0;
  let at = 0;
  for (const c of remote.chunks) {
    const here = ctx.local.get(c.hash);
    const ok = here?.path === path && here.offset === at;
    inPlace.push(ok);
    if (ok) same += c.size;
    at += c.size;
  }
  if (same * 2 < remote.size) return null;
  try {
    await Deno.lstat(tmp);
    return null; // resume what is there
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!(await stillAsScanned(full, replace))) return null;
  try {
    await Deno.copyFile(full, tmp);
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, perms(remote) | 0o600);
  } catch (e) {
    // A full disk (or the old file gone) must not leave half a copy taking space.
    await Deno.remove(tmp).catch(() => {});
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return inPlace;
}

/** Files from this size up may be rebuilt from an in-kernel copy of their old version. */
const IN_PLACE_MIN = 1024 * 1024;

/** Whether a prefetch is running (another one would not start). */
export function prefetchBusy(): boolean {
  return filling.size > 0;
}

/**
 * Starts filling the partial file of a file another device is still uploading (announced with
 * `incoming`), so that most of it is here by the time the server has it all. Chunks come with
 * `wait: true` (the server answers as soon as each is stored). Nothing becomes visible: the
 * ordinary download later finds the partial file complete. At most one prefetch runs at a time.
 * `current` is the merge base's entry for `path` (null: none): while the file there still matches
 * it, its unchanged chunks are copied rather than read and hashed one by one.
 */
export function prefetchFile(
  ctx: DownloadContext,
  path: string,
  remote: RemoteEntry,
  current: LocalEntry | null,
): boolean {
  const tmp = join(ctx.tmpDir, partialName(path, remote.hash));
  if (filling.size > 0 || filling.has(tmp)) return false;
  const run = fillPartial({ ...ctx, wait: true }, path, remote, current).then(async (p) => {
    complete.set(p, (await Deno.stat(p)).size);
  }).finally(() => {
    // The download that finishes this file counts these bytes as its own.
    prefetchedBytes.set(tmp, (prefetchedBytes.get(tmp) ?? 0) + ctx.stats.bytesDown);
    if (prefetchedBytes.size > 1000) prefetchedBytes.clear();
    filling.delete(tmp);
  });
  run.catch(() => {}); // an unfinished prefetch is simply resumed by the real download
  filling.set(tmp, run);
  return true;
}

/**
 * Writes `remote`'s content at `path` (relative to `root`) atomically. `replace` is what the scan
 * saw there (null: nothing); if that changed meanwhile, nothing is touched.
 */
export async function downloadFile(
  ctx: DownloadContext,
  path: string,
  remote: RemoteEntry,
  replace: LocalEntry | null,
): Promise<DownloadResult> {
  const full = join(ctx.root, path);
  const tmp = await fillPartial(ctx, path, remote, replace);
  let renamed = false;
  let keepPartial = true;
  try {
    // Exactly the file's permission bits (a partial file is writable while it is filled).
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, perms(remote));
    const mtime = new Date(remote.mtime);
    await Deno.utime(tmp, mtime, mtime);
    // Record what we wrote (stat before the rename): an edit right after the rename then shows
    // up as a local change instead of being mistaken for our own file.
    const l = statToEntry(path, await Deno.stat(tmp), undefined);
    if (!(await stillAsScanned(full, replace))) return { ok: false, reason: "changed-locally" };
    if (replace?.kind === "dir") {
      try {
        await Deno.remove(full);
      } catch {
        return { ok: false, reason: "blocked" };
      }
    }
    if (!stillInside(ctx.root, full)) return { ok: false, reason: "blocked" };
    await Deno.mkdir(dirname(full), { recursive: true });
    await Deno.rename(tmp, full);
    renamed = true;
    await fsyncDir(dirname(full));
    return { ok: true, entry: { ...baseFrom(remote, l), path } };
  } catch (e) {
    // A full disk needs the space back; any other failure keeps the partial file to resume.
    if (isDiskFullError(e)) keepPartial = false;
    throw e;
  } finally {
    if (!renamed && !keepPartial) await Deno.remove(tmp).catch(() => {});
  }
}

/** Name of the partial file that builds `path` with content `hash` (stable across runs). */
export function partialName(path: string, hash: string): string {
  return PARTIAL_PREFIX + sha256Hex(new TextEncoder().encode(`${path}\0${hash}`)).slice(0, 32);
}

/** Partial downloads in `.cloudsync/tmp/` are named with this prefix (kept across restarts). */
export const PARTIAL_PREFIX = "partial-";

/** How long an unused partial download is kept once everything is in sync. */
export const PARTIAL_GRACE_MS = 10 * 60 * 1000;

/**
 * Deletes partial downloads nobody will finish: to be called when a full pass found everything in
 * sync, so no download needs them. Spared: the one a prefetch is filling now, and any touched in
 * the last `graceMs` (a prefetch of an upload still running elsewhere, cut by a reconnection,
 * whose download would resume from it). Returns how many were deleted.
 */
export async function prunePartials(
  tmpDir: string,
  graceMs = PARTIAL_GRACE_MS,
  now = Date.now(),
): Promise<number> {
  let removed = 0;
  for await (const e of Deno.readDir(tmpDir)) {
    if (!e.isFile || !e.name.startsWith(PARTIAL_PREFIX)) continue;
    const path = join(tmpDir, e.name);
    if (filling.has(path)) continue;
    try {
      const st = await Deno.lstat(path);
      if (now - (st.mtime?.getTime() ?? now) < graceMs) continue;
      await Deno.remove(path);
      complete.delete(path);
      removed++;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return removed;
}

function isDiskFullError(e: unknown): boolean {
  return /ENOSPC|os error 28|No space left/i.test(e instanceof Error ? e.message : String(e));
}

/**
 * How much of a partial file is already right: whole chunks from the start whose content matches
 * the chunk list (read and hashed one chunk at a time).
 */
async function verifiedPrefix(
  file: Deno.FsFile,
  chunks: ChunkRef[],
): Promise<{ bytes: number; chunks: number }> {
  const size = (await file.stat()).size;
  let bytes = 0;
  let n = 0;
  await file.seek(0, Deno.SeekMode.Start);
  for (const c of chunks) {
    if (bytes + c.size > size) break;
    const buf = new Uint8Array(c.size);
    let got = 0;
    while (got < c.size) {
      const r = await file.read(buf.subarray(got));
      if (r === null) break;
      got += r;
    }
    if (got < c.size || sha256Hex(buf) !== c.hash) break;
    bytes += c.size;
    n++;
  }
  return { bytes, chunks: n };
}
