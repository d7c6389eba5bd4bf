/**
 * Partial files: where a file is built before it is placed into the folder, in
 * `.cloudsync/tmp/`. All their rules live here, in one {@link Staging} per folder:
 *
 * - **Resume**: the same file (path and content) always builds in the same partial file
 *   (`partial-<hash of path and content id>`), so a download cut short continues where it
 *   stopped; a partial file this process completed is trusted, any other one is verified chunk by
 *   chunk from its start.
 * - **In place**: a big file edited in place starts as an in-kernel copy of its old version
 *   (while that is still as synced, checked before and after), and only the changed chunks are
 *   written over it.
 * - **Prefetch**: a big file another device is still uploading starts filling while it uploads.
 * - **Cleanup**: partial files nothing needs any more are deleted once the folder is in sync and
 *   they have been unused for a while; a full disk removes the partial that filled it.
 *
 * @example
 * ```ts
 * const staging = new Staging(fs, ".cloudsync/tmp");
 * const tmp = await staging.fill(ctx, "big.iso", remote, scanned); // complete and fsynced
 * ```
 *
 * @module
 */

import { ahead } from "../util/ahead.ts";
import type { ChunkRef, LocalEntry, RemoteEntry } from "../core/types.ts";
import { fileHash, sha256Hex } from "../chunk/hash.ts";
import { perms } from "../core/metadata.ts";
import { type FsHandle, isDiskFullError, type LocalFs, stillAs } from "./fs/local_fs.ts";
import {
  type ChunkOrigin,
  fetchChunk,
  type FetchContext,
  prefetchChunks,
  releasePrefetched,
} from "./chunk_source.ts";
import { BATCH_BYTES } from "./transfer.ts";

/** Partial downloads in `.cloudsync/tmp/` are named with this prefix (kept across restarts). */
export const PARTIAL_PREFIX = "partial-";

/** How long an unused partial download is kept once everything is in sync. */
export const PARTIAL_GRACE_MS = 10 * 60 * 1000;

/** Files from this size up may be rebuilt from an in-kernel copy of their old version. */
const IN_PLACE_MIN = 1024 * 1024;

/** Batches of a big file in flight at once (each up to 4 MiB). */
const WINDOW = 3;

/** Name of the partial file that builds `path` with content `hash` (stable across runs). */
export function partialName(path: string, hash: string): string {
  return PARTIAL_PREFIX + sha256Hex(new TextEncoder().encode(`${path}\0${hash}`)).slice(0, 32);
}

/** The partial files of one folder (see the module doc). */
export class Staging {
  /** Partial files completed (and verified chunk by chunk) by this process: path -> size. */
  readonly #complete = new Map<string, number>();
  /** Partial files being filled right now (a prefetch): path -> its end. */
  readonly #filling = new Map<string, Promise<unknown>>();
  /** Bytes prefetches received for each partial file, not yet counted by a download. */
  readonly #prefetchedBytes = new Map<string, number>();

  /** `tmpDir`: the staging folder, relative to the folder's root (`.cloudsync/tmp`). */
  constructor(readonly fs: LocalFs, readonly tmpDir: string) {}

  /** The path (relative to the root) of a file named `name` in the staging folder. */
  file(name: string): string {
    return this.tmpDir === "" ? name : `${this.tmpDir}/${name}`;
  }

  /** The path (relative to the root) of the partial file of (`path`, `hash`). */
  partialPath(path: string, hash: string): string {
    return this.file(partialName(path, hash));
  }

  /**
   * Brings the partial file of (`path`, `remote`) to its full content, fsynced: keeps the
   * verified prefix of an earlier attempt, takes chunks from this device where it can, fetches
   * the rest. Returns the partial file's path. A failure keeps the partial file (to resume),
   * except on a full disk.
   */
  async fill(
    ctx: FetchContext,
    path: string,
    remote: RemoteEntry,
    replace: LocalEntry | null,
  ): Promise<string> {
    const fs = this.fs;
    // Every chunk is verified against its own hash; the entry must name exactly this chunk list.
    if (
      fileHash(remote.chunks) !== remote.hash ||
      remote.chunks.reduce((n, c) => n + c.size, 0) !== remote.size
    ) {
      throw new Error(`Cannot download ${path}: the server's entry does not match its chunk list`);
    }
    const tmp = this.partialPath(path, remote.hash);
    await this.#filling.get(tmp)?.catch(() => {}); // a prefetch of this file: let it finish first
    // What a prefetch received for this file was received for this download (the pass says so).
    ctx.stats.bytesDown += this.#prefetchedBytes.get(tmp) ?? 0;
    this.#prefetchedBytes.delete(tmp);
    const inPlace = await this.#startInPlace(ctx, path, tmp, remote, replace);
    const file = await fs.open(tmp, {
      read: true,
      write: true,
      create: true,
      mode: perms(remote) | 0o600, // writable by us until it is complete (a resume reopens it)
    });
    try {
      try {
        await this.#fillOpen(ctx, file, tmp, path, remote, replace, inPlace);
      } finally {
        file.close();
      }
      return tmp;
    } catch (e) {
      // A full disk needs the space back; any other failure keeps the partial file to resume.
      if (isDiskFullError(e)) await fs.remove(tmp).catch(() => {});
      throw e;
    }
  }

  async #fillOpen(
    ctx: FetchContext,
    file: FsHandle,
    tmp: string,
    path: string,
    remote: RemoteEntry,
    replace: LocalEntry | null,
    inPlace: boolean[] | null,
  ): Promise<void> {
    const fs = this.fs;
    // A partial file this process completed and verified is trusted as is; any other one is
    // checked chunk by chunk.
    const size = (await file.stat()).size;
    const done = inPlace
      ? { bytes: 0, chunks: 0 }
      : this.#complete.get(tmp) === size
      ? { bytes: size, chunks: remote.chunks.length }
      : await verifiedPrefix(file, remote.chunks);
    this.#complete.delete(tmp);
    await file.truncate(inPlace ? remote.size : done.bytes);
    await file.seek(done.bytes);
    ctx.stats.bytesDone += done.bytes;
    const todo = remote.chunks.slice(done.chunks);
    /** Where each chunk of `todo` goes in the file. */
    const offsets: number[] = [];
    for (let at = done.bytes, i = 0; i < todo.length; at += todo[i]!.size, i++) offsets.push(at);
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
    // Unchanged chunks of the version being replaced are copied from it without hashing when it
    // is still as the scan (or merge base) saw it, before and after the copy; a partial file this
    // fill did not finish is verified chunk by chunk when resumed.
    const old = replace?.kind === "file" && stillAs(fs, path, replace)
      ? await fs.open(path, { read: true }).catch(() => null)
      : null;
    const fromOld = (c: ChunkRef) => old !== null && ctx.local.get(c.hash)?.path === path;
    /** A batch's origins, and what to call once they are all written (its reply body). */
    type Batch = { parts: ChunkOrigin[]; done: () => void };
    const origins = async (list: ChunkRef[], first: number): Promise<Batch> => {
      // In place, chunks already at their offset (copied with the file) are skipped.
      const skip = list.map((_, i) => inPlace?.[done.chunks + first + i] === true);
      const need = list.filter((_, i) => !skip[i]);
      const remoteOnes = need.filter((c) => !ctx.local.has(c.hash)).map((c) => c.hash);
      const prefetched = remoteOnes.length > 1
        ? await prefetchChunks(ctx, [...new Set(remoteOnes)])
        : undefined;
      const c2: FetchContext = prefetched ? { ...ctx, prefetched } : ctx;
      const got = await Promise.all(
        need.map((c): Promise<ChunkOrigin> =>
          fromOld(c)
            ? Promise.resolve({ from: "old", offset: ctx.local.get(c.hash)!.offset })
            : fetchChunk(c2, c).then((data) => ({ from: "bytes", data }))
        ),
      );
      let k = 0;
      const parts = skip.map((x): ChunkOrigin => x ? { from: "inPlace" } : got[k++]!);
      return { parts, done: () => releasePrefetched(ctx, prefetched) };
    };
    let copyBuf: Uint8Array | null = null; // only for copies from the old version
    let filePos = done.bytes;
    const write = async (data: Uint8Array, at: number) => {
      if (at !== filePos) await file.seek(at);
      let off = 0;
      while (off < data.length) off += await file.write(data.subarray(off));
      filePos = at + data.length;
      ctx.stats.bytesDone += data.length;
    };
    const firsts: number[] = [];
    for (let i = 0, at = 0; i < batches.length; at += batches[i]!.length, i++) firsts.push(at);
    const pending: Promise<Batch>[] = [];
    let next = 0;
    while (next < batches.length && pending.length < WINDOW) {
      pending.push(ahead(origins(batches[next]!, firsts[next++]!)));
    }
    try {
      let b = 0;
      while (pending.length > 0) {
        const { parts, done: written } = await pending.shift()!;
        const first = firsts[b]!;
        const list = batches[b++]!;
        if (next < batches.length) pending.push(ahead(origins(batches[next]!, firsts[next++]!)));
        for (let i = 0; i < parts.length;) {
          const o = parts[i]!;
          if (o.from === "inPlace") {
            ctx.stats.chunksReused++;
            ctx.stats.bytesDone += list[i]!.size;
            i++;
            continue;
          }
          if (o.from === "bytes") {
            await write(o.data, offsets[first + i]!);
            i++;
            continue;
          }
          // A run of chunks that sit back to back in the old version: one read, one write.
          let len = 0;
          let j = i;
          for (; j < parts.length; j++) {
            const p = parts[j]!;
            if (p.from !== "old" || p.offset !== o.offset + len) break;
            if (len + list[j]!.size > BATCH_BYTES) break;
            len += list[j]!.size;
          }
          copyBuf ??= new Uint8Array(BATCH_BYTES);
          const run = copyBuf.subarray(0, len);
          await old!.seek(o.offset);
          let got = 0;
          while (got < len) {
            const n = await old!.read(run.subarray(got));
            if (n === null || n === 0) {
              throw new Error(`Cannot download ${path}: the old version changed meanwhile`);
            }
            got += n;
          }
          ctx.stats.chunksReused += j - i;
          await write(run, offsets[first + i]!);
          i = j;
        }
        written(); // every part of this batch is in the file: its reply body can be reused
      }
    } finally {
      old?.close();
    }
    if ((old || inPlace) && !stillAs(fs, path, replace)) {
      throw new Error(`Cannot download ${path}: the old version changed meanwhile`);
    }
    await file.sync();
  }

  /**
   * An edit in place: when most of `remote` (at least half of its bytes, 1 MiB or more) consists
   * of chunks at the same offset in the version being replaced, and that file is still as the
   * scan or merge base saw it, the partial file starts as an in-kernel copy of it. Returns which
   * chunks of `remote` are then already in place, or null (no copy made: the partial file is
   * filled from its start as usual). A partial file that already exists is resumed instead.
   */
  async #startInPlace(
    ctx: FetchContext,
    path: string,
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
    if (this.fs.lstat(tmp)) return null; // resume what is there
    if (!stillAs(this.fs, path, replace)) return null;
    try {
      await this.fs.copyFile(path, tmp);
      await this.fs.chmod(tmp, perms(remote) | 0o600);
    } catch (e) {
      // A full disk (or the old file gone) must not leave half a copy taking space.
      await this.fs.remove(tmp).catch(() => {});
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    return inPlace;
  }

  /**
   * Starts filling the partial file of a file another device is still uploading (announced with
   * `incoming`), so that most of it is here by the time the server has it all. Chunks come with
   * `wait: true`. Nothing becomes visible: the ordinary download later finds the partial file
   * complete. At most one prefetch runs at a time. `current` is the merge base's entry for `path`
   * (null: none): while the file there still matches it, its unchanged chunks are copied.
   */
  prefetch(
    ctx: FetchContext,
    path: string,
    remote: RemoteEntry,
    current: LocalEntry | null,
  ): boolean {
    const tmp = this.partialPath(path, remote.hash);
    if (this.#filling.size > 0 || this.#filling.has(tmp)) return false;
    const run = this.fill({ ...ctx, wait: true }, path, remote, current).then(async (p) => {
      this.#complete.set(p, (await this.fs.lstatAsync(p))?.size ?? -1);
    }).finally(() => {
      // The download that finishes this file counts these bytes as its own.
      this.#prefetchedBytes.set(tmp, (this.#prefetchedBytes.get(tmp) ?? 0) + ctx.stats.bytesDown);
      if (this.#prefetchedBytes.size > 1000) this.#prefetchedBytes.clear();
      this.#filling.delete(tmp);
    });
    run.catch(() => {}); // an unfinished prefetch is simply resumed by the real download
    this.#filling.set(tmp, run);
    return true;
  }

  /** Whether a prefetch is running (another one would not start). */
  busy(): boolean {
    return this.#filling.size > 0;
  }

  /** Waits for a running prefetch (tests; a clean stop). */
  async settled(): Promise<void> {
    await Promise.all([...this.#filling.values()].map((p) => p.catch(() => {})));
  }

  /**
   * Deletes partial downloads nobody will finish: to be called when a full pass found everything
   * in sync, so no download needs them. Spared: the one a prefetch is filling now, and any touched
   * in the last `graceMs` (a prefetch of an upload still running elsewhere, cut by a reconnection,
   * whose download would resume from it). Returns how many were deleted.
   */
  async prune(graceMs = PARTIAL_GRACE_MS, now = this.fs.now()): Promise<number> {
    let removed = 0;
    for (const e of await this.fs.readDir(this.tmpDir)) {
      if (e.kind !== "file" || !e.name.startsWith(PARTIAL_PREFIX)) continue;
      const path = this.file(e.name);
      if (this.#filling.has(path)) continue;
      try {
        const st = await this.fs.lstatAsync(path);
        if (!st || now - st.mtime < graceMs) continue;
        await this.fs.remove(path);
        this.#complete.delete(path);
        removed++;
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    return removed;
  }
}

/**
 * How much of a partial file is already right: whole chunks from the start whose content matches
 * the chunk list (read and hashed one chunk at a time).
 */
async function verifiedPrefix(
  file: FsHandle,
  chunks: ChunkRef[],
): Promise<{ bytes: number; chunks: number }> {
  const size = (await file.stat()).size;
  let bytes = 0;
  let n = 0;
  await file.seek(0);
  for (const c of chunks) {
    if (bytes + c.size > size) break;
    const buf = new Uint8Array(c.size);
    let got = 0;
    while (got < c.size) {
      const r = await file.read(buf.subarray(got));
      if (r === null || r === 0) break;
      got += r;
    }
    if (got < c.size || sha256Hex(buf) !== c.hash) break;
    bytes += c.size;
    n++;
  }
  return { bytes, chunks: n };
}
