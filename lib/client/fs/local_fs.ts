/**
 * `LocalFs`: everything the client does to a synced folder, as one small interface. The sync
 * code (scanner, executor, transfer, engine) never calls `Deno.*` file functions on the folder;
 * it asks its `LocalFs`, so the very same code runs on the real disk (`deno_fs.ts`) and on an
 * in-memory double with inodes, case-insensitive and Windows name rules, crash semantics and
 * fault hooks (`mem_fs.ts`), which is how it is tested at scale.
 *
 * Paths are relative to the folder, `/`-separated, as the local filesystem names them (not wire
 * paths): `""` is the folder itself, `.cloudsync/tmp/x` the client's own staging area. Errors are
 * Deno's (`Deno.errors.NotFound`, `PermissionDenied`, ...; a full disk is an `Error` whose message
 * says `No space left on device (os error 28)`), so callers handle both implementations alike.
 *
 * @example
 * ```ts
 * const st = fs.lstat("docs/report.txt"); // null if nothing is there
 * if (st?.kind === "file" && stillAs(fs, "docs/report.txt", scanned)) await fs.remove("docs/report.txt");
 * ```
 *
 * @module
 */

import type { PlatformTraits } from "../../core/local_names.ts";
import type { ChunkRef, LocalEntry } from "../../core/types.ts";

/** What is at a path. `special`: a FIFO (`fifo` set), socket or device. */
export type ItemKind = "file" | "dir" | "symlink" | "special";

/** The parts of a stat the client uses. */
export interface ItemStat {
  kind: ItemKind;
  /** True for a named pipe (FIFO). */
  fifo?: boolean;
  size: number;
  /** Modification time, whole milliseconds since the epoch. */
  mtime: number;
  /** Permission bits (at most 0o777); null where the OS has none (Windows). */
  mode: number | null;
  /** Inode number, where the OS has one. */
  ino?: number;
}

/** One directory entry: its name and what the directory listing says it is. */
export interface DirItem {
  name: string;
  kind: ItemKind;
}

/** How to open a file (the subset of `Deno.OpenOptions` the client uses). */
export interface OpenMode {
  read?: boolean;
  write?: boolean;
  create?: boolean;
  /** Fail if it exists. */
  createNew?: boolean;
  truncate?: boolean;
  /** Permission bits of a file created now (before the umask). */
  mode?: number;
}

/** An open file: a position, reads and writes at it, and its own metadata. */
export interface FsHandle {
  read(buf: Uint8Array): Promise<number | null>;
  readSync(buf: Uint8Array): number | null;
  write(buf: Uint8Array): Promise<number>;
  writeSync(buf: Uint8Array): number;
  seek(offset: number): Promise<void>;
  seekSync(offset: number): void;
  truncate(len: number): Promise<void>;
  /** Makes the content durable. */
  sync(): Promise<void>;
  stat(): Promise<ItemStat>;
  statSync(): ItemStat;
  /** Sets the modification (and access) time. */
  utimeSync(mtime: number): void;
  close(): void;
}

/** A file's content as the chunker cuts it. */
export interface Chunked {
  size: number;
  hash: string;
  chunks: ChunkRef[];
}

/** The client's view of its synced folder (see the module doc). */
export interface LocalFs {
  /** What names this filesystem can hold (case rules, Windows names). */
  readonly platform: PlatformTraits;
  /** Where the folder is, for messages only. */
  readonly where: string;

  /** What is at `path`, without following a symlink; null when nothing is there. */
  lstat(path: string): ItemStat | null;
  lstatAsync(path: string): Promise<ItemStat | null>;
  /** The entries of a directory. Throws `NotFound` / `NotADirectory` / `PermissionDenied`. */
  readDir(path: string): Promise<DirItem[]>;
  /**
   * True when every folder on the way to `path` (the nearest existing ancestor, if the last ones
   * do not exist yet) is a real folder inside the synced folder: no symlink swapped in.
   */
  inside(path: string): boolean;
  /**
   * An identity of the folder at `path` ("" the synced folder): a symlink at `path` itself is no
   * folder (null), those on the way are followed, so a folder moved or swapped in its place or
   * above it has another identity. Null too where there is no folder, or the OS gives no identity
   * (then nothing may be cached by it).
   */
  dirId(path: string): string | null;

  open(path: string, mode: OpenMode): Promise<FsHandle>;
  openSync(path: string, mode: OpenMode): FsHandle;
  /** A whole (small) file. */
  readFileSync(path: string): Uint8Array;
  /** Cuts and hashes a file's content (FastCDC + SHA-256; big files on several cores). */
  chunkFile(path: string, sizeHint: number): Promise<Chunked>;

  /** Renames (replacing a file at `to`). */
  rename(from: string, to: string): Promise<void>;
  renameSync(from: string, to: string): void;
  /** A second name for a file; fails if `to` exists (never replaces anything). */
  link(from: string, to: string): Promise<void>;
  linkSync(from: string, to: string): void;
  /** Removes a file or an empty directory (never recursive). */
  remove(path: string): Promise<void>;
  removeSync(path: string): void;
  mkdir(path: string, recursive?: boolean): Promise<void>;
  mkdirSync(path: string, recursive?: boolean): void;
  chmod(path: string, mode: number): Promise<void>;
  chmodSync(path: string, mode: number): void;
  utime(path: string, mtime: number): Promise<void>;
  utimeSync(path: string, mtime: number): void;
  /** Makes a directory's entries durable (renames and creations in it). */
  fsyncDir(path: string): Promise<void>;
  /** Copies a file (in the kernel where it can). */
  copyFile(from: string, to: string): Promise<void>;
  /** Milliseconds since the epoch, by this filesystem's clock. */
  now(): number;
}

/** True for an error that means "nothing there" (or a parent that is not a folder). */
export function isGone(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory;
}

/** True for "no space left" from the filesystem. */
export function isDiskFullError(e: unknown): boolean {
  return /ENOSPC|os error 28|No space left/i.test(e instanceof Error ? e.message : String(e));
}

/**
 * The one "still as scanned" check every step that replaces, moves or deletes a local item makes
 * just before it acts: what is at `path` now is what the scan saw (`expect`; null: nothing).
 * Files compare size, modification time and inode (where both have one); a symlink or another
 * kind is never what was scanned.
 */
export function stillAs(fs: LocalFs, path: string, expect: LocalEntry | null): boolean {
  return statMatches(fs.lstat(path), expect);
}

/** {@link stillAs} for a stat already taken. */
export function statMatches(st: ItemStat | null, expect: LocalEntry | null): boolean {
  if (!st || !expect) return !st && !expect;
  if (st.kind !== expect.kind) return false;
  if (st.kind === "dir") return true;
  return st.size === expect.size && st.mtime === expect.mtime &&
    (st.ino === undefined || expect.ino === undefined || st.ino === expect.ino);
}
