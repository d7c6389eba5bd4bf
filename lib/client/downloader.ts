/**
 * Downloading many files at once, with bounded memory. Big files (over 1 MiB) go through their
 * partial file (`staging.ts`), two at a time, each with a few 4 MiB batches in flight. Small files
 * go in groups of up to 512 files and 4 MiB, in phases so thousands of files cost few thread
 * hand-offs: one `getMany` for the group's missing chunks (the next group's fetched meanwhile),
 * synchronous writes of temporary files, fsyncs in parallel, then placement (`placer.ts`) and one
 * fsync per folder. Every file ends in the same placer, with the same guarantees.
 *
 * @example
 * ```ts
 * await downloadMany(ctx, items, (item, result) => record(item, result));
 * ```
 *
 * @module
 */

import { ahead } from "../util/ahead.ts";
import type { LocalEntry, RemoteEntry } from "../core/types.ts";
import { fileHash } from "../chunk/hash.ts";
import { debug } from "../util/debug.ts";
import { pool } from "../util/pool.ts";
import { tempName } from "../util/atomic.ts";
import { type FsHandle, isDiskFullError } from "./fs/local_fs.ts";
import {
  fetchChunk,
  type FetchContext,
  prefetchChunks,
  type RawChunk,
  releasePrefetched,
} from "./chunk_source.ts";
import type { Staging } from "./staging.ts";
import { parentOf, place } from "./placer.ts";
import {
  BATCH_BYTES,
  BATCH_COUNT,
  type DownloadItem,
  type DownloadResult,
  SMALL_FILE,
} from "./transfer.ts";

/** What downloads share: the folder, its staging area, the connection, the local chunks. */
export interface DownloadContext extends FetchContext {
  staging: Staging;
}

/**
 * Writes `remote`'s content at `path` atomically (through its partial file). `replace` is what the
 * scan saw there (null: nothing); if that changed meanwhile, nothing is touched.
 */
export async function downloadFile(
  ctx: DownloadContext,
  path: string,
  remote: RemoteEntry,
  replace: LocalEntry | null,
): Promise<DownloadResult> {
  const fs = ctx.fs;
  const tmp = await ctx.staging.fill(ctx, path, remote, replace);
  try {
    const r = place(fs, tmp, path, remote, replace);
    if (r.ok) await fs.fsyncDir(parentOf(path));
    return r;
  } catch (e) {
    // A full disk needs the space back; any other failure keeps the partial file to resume.
    if (isDiskFullError(e)) await fs.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Downloads many files (see the module doc). `onResult` gets each outcome; a file whose place
 * changed meanwhile is left alone and reported so.
 */
export async function downloadMany(
  ctx: DownloadContext,
  items: DownloadItem[],
  onResult: (item: DownloadItem, result: DownloadResult | Error) => void,
): Promise<void> {
  const run = async (item: DownloadItem) => {
    try {
      onResult(item, await downloadFile(ctx, item.path, item.remote, item.replace));
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
    let next = groups.length > 0 ? ahead(prefetchChunks(ctx, groups[0]!.hashes)) : null;
    // Group i+1 is fetched while group i is written, and written while group i is fsynced.
    let finishing: Promise<void> = Promise.resolve();
    for (let i = 0; i < groups.length; i++) {
      let prefetched: Map<string, RawChunk>;
      try {
        prefetched = await next!;
      } catch (e) {
        for (const item of groups[i]!.items) onResult(item, e as Error);
        next = i + 1 < groups.length ? ahead(prefetchChunks(ctx, groups[i + 1]!.hashes)) : null;
        continue;
      }
      next = i + 1 < groups.length ? ahead(prefetchChunks(ctx, groups[i + 1]!.hashes)) : null;
      const staged = await stageSmallFiles({ ...ctx, prefetched }, groups[i]!.items, onResult);
      releasePrefetched(ctx, prefetched); // every file of the group is written: reuse its body
      try {
        await finishing;
      } catch (e) {
        // The previous group failed (a folder's fsync): drop this one's temporary files too.
        for (const f of staged) {
          f.file.close();
          removeQuietly(ctx, f.tmp);
        }
        throw e;
      }
      finishing = ahead(finishSmallFiles(ctx, staged, onResult)); // awaited at the next group
    }
    await finishing;
    await next?.catch(() => {});
  })();
  // Two big files at a time (each with a few 4 MiB batches in flight) besides the small-file
  // groups: on 2 cores a third adds no speed, only memory.
  await Promise.all([smallDone, pool(big, 2, run)]);
}

function removeQuietly(ctx: DownloadContext, path: string): void {
  try {
    ctx.fs.removeSync(path);
  } catch { /* never created, or already gone */ }
}

/** A small file written to its temporary file, not yet fsynced nor in place. */
interface StagedFile {
  item: DownloadItem;
  tmp: string;
  file: FsHandle;
}

/**
 * First phase of a group: the content of each file is assembled and verified and written to a
 * temporary file with quick synchronous calls. {@link finishSmallFiles} does the rest.
 */
async function stageSmallFiles(
  ctx: DownloadContext,
  items: DownloadItem[],
  onResult: (item: DownloadItem, result: DownloadResult | Error) => void,
): Promise<StagedFile[]> {
  const fs = ctx.fs;
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
    const tmp = ctx.staging.file(tempName("download"));
    let file: FsHandle | null = null;
    try {
      file = fs.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
      let off = 0;
      while (off < data.length) off += file.writeSync(data.subarray(off));
      staged.push({ item, tmp, file });
      ctx.stats.bytesDone += data.length;
    } catch (e) {
      file?.close();
      removeQuietly(ctx, tmp);
      onResult(item, e as Error);
    }
  });
  debug(() => `small files ${items.length}: written in ${(performance.now() - t0).toFixed(0)} ms`);
  return staged;
}

/** Second phase: fsync (many in parallel), place each file, fsync each touched folder once. */
async function finishSmallFiles(
  ctx: DownloadContext,
  staged: StagedFile[],
  onResult: (item: DownloadItem, result: DownloadResult | Error) => void,
): Promise<void> {
  const fs = ctx.fs;
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
  const realDirs = new Map<string, string>();
  const placed: [DownloadItem, DownloadResult][] = [];
  for (const s of staged) {
    const { item, tmp } = s;
    let renamed = false;
    try {
      if (!synced.has(s)) continue;
      const r = place(fs, tmp, item.path, item.remote, item.replace, dirs, realDirs);
      renamed = r.ok;
      if (r.ok) {
        dirs.add(parentOf(item.path));
        placed.push([item, r]); // reported once its folder is durable
      } else onResult(item, r);
    } catch (e) {
      onResult(item, e as Error);
    } finally {
      if (!renamed) removeQuietly(ctx, tmp);
    }
  }
  const t3 = performance.now();
  await pool([...dirs], 16, (d) => fs.fsyncDir(d));
  for (const [item, r] of placed) onResult(item, r);
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
