/**
 * {@link LocalFs} on the real disk, with Deno's calls: every path is joined to the folder's root.
 * Big files are chunked on several cores (`chunk/parallel.ts`).
 *
 * @example
 * ```ts
 * const fs = new DenoFs("/home/me/Documents");
 * fs.lstat("notes.txt"); // { kind: "file", size: 12, mtime: ..., mode: 0o644, ino: ... }
 * ```
 *
 * @module
 */

import { dirname, isAbsolute, join, relative, sep } from "node:path";
import type { PlatformTraits } from "../../core/local_names.ts";
import { DEFAULT_MIN } from "../../chunk/fastcdc.ts";
import { hashFileParallel } from "../../chunk/parallel.ts";
import { sha256Hex } from "../../chunk/hash.ts";
import {
  type Chunked,
  type DirItem,
  type FsHandle,
  isGone,
  type ItemKind,
  type ItemStat,
  type LocalFs,
  type OpenMode,
} from "./local_fs.ts";

/** The name rules of the OS this runs on: Windows case-insensitive with its names, macOS case-insensitive. */
export function hostPlatform(): PlatformTraits {
  const os = Deno.build.os;
  return { caseInsensitive: os === "windows" || os === "darwin", windowsNames: os === "windows" };
}

function kindOf(st: Deno.FileInfo): ItemKind {
  if (st.isSymlink) return "symlink";
  if (st.isDirectory) return "dir";
  if (st.isFile) return "file";
  return "special";
}

/** A Deno stat as an {@link ItemStat}. */
export function toItemStat(st: Deno.FileInfo): ItemStat {
  const kind = kindOf(st);
  const out: ItemStat = {
    kind,
    size: kind === "dir" ? 0 : st.size,
    mtime: kind === "dir" ? 0 : Math.floor(st.mtime?.getTime() ?? 0),
    mode: st.mode === null ? null : st.mode & 0o777,
  };
  if (st.isFifo) out.fifo = true;
  if (kind !== "dir" && typeof st.ino === "number") out.ino = st.ino;
  return out;
}

class DenoHandle implements FsHandle {
  constructor(readonly f: Deno.FsFile) {}
  read(buf: Uint8Array) {
    return this.f.read(buf);
  }
  readSync(buf: Uint8Array) {
    return this.f.readSync(buf);
  }
  write(buf: Uint8Array) {
    return this.f.write(buf);
  }
  writeSync(buf: Uint8Array) {
    return this.f.writeSync(buf);
  }
  async seek(offset: number) {
    await this.f.seek(offset, Deno.SeekMode.Start);
  }
  seekSync(offset: number) {
    this.f.seekSync(offset, Deno.SeekMode.Start);
  }
  truncate(len: number) {
    return this.f.truncate(len);
  }
  sync() {
    return this.f.sync();
  }
  async stat() {
    return toItemStat(await this.f.stat());
  }
  statSync() {
    return toItemStat(this.f.statSync());
  }
  utimeSync(mtime: number) {
    const t = new Date(mtime);
    this.f.utimeSync(t, t);
  }
  close() {
    this.f.close();
  }
}

/** The real disk under `root`. */
export class DenoFs implements LocalFs {
  readonly where: string;
  readonly platform: PlatformTraits;
  #realRoot: string | null = null;
  readonly #foldCase: boolean;

  constructor(readonly root: string, platform: PlatformTraits = hostPlatform()) {
    this.where = root;
    this.platform = platform;
    this.#foldCase = Deno.build.os === "windows" || Deno.build.os === "darwin";
  }

  /** The absolute path of a folder-relative one. */
  full(path: string): string {
    return path === "" ? this.root : join(this.root, path);
  }

  lstat(path: string): ItemStat | null {
    try {
      return toItemStat(Deno.lstatSync(this.full(path)));
    } catch (e) {
      if (isGone(e)) return null; // below a file (ENOTDIR) nothing is there either
      throw e;
    }
  }

  async lstatAsync(path: string): Promise<ItemStat | null> {
    try {
      return toItemStat(await Deno.lstat(this.full(path)));
    } catch (e) {
      if (isGone(e)) return null;
      throw e;
    }
  }

  async readDir(path: string): Promise<DirItem[]> {
    const out: DirItem[] = [];
    for await (const d of Deno.readDir(this.full(path))) {
      const kind: ItemKind = d.isSymlink
        ? "symlink"
        : d.isDirectory
        ? "dir"
        : d.isFile
        ? "file"
        : "special";
      out.push({ name: d.name, kind });
    }
    return out;
  }

  dirId(path: string): string | null {
    try {
      const st = Deno.lstatSync(this.full(path));
      if (!st.isDirectory || st.ino === null || st.dev === null) return null;
      return `${st.dev}:${st.ino}`;
    } catch {
      return null;
    }
  }

  inside(path: string): boolean {
    if (path === "") return true; // the folder itself: nothing on the way
    this.#realRoot ??= Deno.realPathSync(this.root);
    const same = (a: string, b: string) =>
      this.#foldCase ? a.toLowerCase() === b.toLowerCase() : a === b;
    let rel = relative(this.root, dirname(this.full(path)));
    if (rel === ".." || rel.startsWith(".." + sep) || isAbsolute(rel)) return false;
    for (;;) {
      try {
        const want = rel === "" ? this.#realRoot : join(this.#realRoot, rel);
        const real = Deno.realPathSync(this.full(rel));
        // A file on the way is no folder either. (Not by a trailing separator: under
        // --allow-read Deno normalizes it away before realpath sees it.)
        return same(real, want) && (rel === "" || Deno.statSync(real).isDirectory);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound) || rel === "") return false;
        const up = dirname(rel);
        rel = up === "." ? "" : up; // not created yet: the nearest folder that exists decides
      }
    }
  }

  async open(path: string, mode: OpenMode): Promise<FsHandle> {
    return new DenoHandle(await Deno.open(this.full(path), mode));
  }

  openSync(path: string, mode: OpenMode): FsHandle {
    return new DenoHandle(Deno.openSync(this.full(path), mode));
  }

  readFileSync(path: string): Uint8Array {
    return Deno.readFileSync(this.full(path));
  }

  async chunkFile(path: string, sizeHint: number): Promise<Chunked> {
    if (sizeHint < DEFAULT_MIN) {
      const data = this.readFileSync(path); // small: cheaper than an async read
      if (data.length < DEFAULT_MIN) {
        const hash = sha256Hex(data);
        return {
          size: data.length,
          hash,
          chunks: data.length > 0 ? [{ hash, size: data.length }] : [],
        };
      }
    }
    return await hashFileParallel(this.full(path), sizeHint);
  }

  rename(from: string, to: string) {
    return Deno.rename(this.full(from), this.full(to));
  }
  renameSync(from: string, to: string) {
    Deno.renameSync(this.full(from), this.full(to));
  }
  link(from: string, to: string) {
    return Deno.link(this.full(from), this.full(to));
  }
  linkSync(from: string, to: string) {
    Deno.linkSync(this.full(from), this.full(to));
  }
  remove(path: string) {
    return Deno.remove(this.full(path));
  }
  removeSync(path: string) {
    Deno.removeSync(this.full(path));
  }
  mkdir(path: string, recursive = false) {
    return Deno.mkdir(this.full(path), { recursive });
  }
  mkdirSync(path: string, recursive = false) {
    Deno.mkdirSync(this.full(path), { recursive });
  }
  async chmod(path: string, mode: number) {
    if (Deno.build.os !== "windows") await Deno.chmod(this.full(path), mode);
  }
  chmodSync(path: string, mode: number) {
    if (Deno.build.os !== "windows") Deno.chmodSync(this.full(path), mode);
  }
  utime(path: string, mtime: number) {
    const t = new Date(mtime);
    return Deno.utime(this.full(path), t, t);
  }
  utimeSync(path: string, mtime: number) {
    const t = new Date(mtime);
    Deno.utimeSync(this.full(path), t, t);
  }
  async fsyncDir(path: string): Promise<void> {
    if (Deno.build.os === "windows") return;
    try {
      const f = await Deno.open(this.full(path), { read: true });
      try {
        await f.sync();
      } finally {
        f.close();
      }
    } catch {
      // Some filesystems refuse fsync on directories; the rename itself is still atomic.
    }
  }
  copyFile(from: string, to: string) {
    return Deno.copyFile(this.full(from), this.full(to));
  }
  now(): number {
    return Date.now();
  }
}
