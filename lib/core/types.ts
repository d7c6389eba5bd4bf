/**
 * Shared data types of the sync core: what a path looks like on the server, in the client's merge
 * base, and in a local scan. Paths are always relative, `/`-separated and NFC-normalized.
 *
 * @module
 */

/** One content-defined chunk of a file: its SHA-256 (lowercase hex) and its length in bytes. */
export interface ChunkRef {
  hash: string;
  size: number;
}

/** The kinds of item that sync. Symlinks are skipped by the scanner (see README). */
export type Kind = "file" | "dir";

/** A path's record on the server (and in `changes` replies). Tombstones have `deleted: true`. */
export interface RemoteEntry {
  path: string;
  kind: Kind;
  deleted: boolean;
  /** Account sequence number at which this record was written; strictly increasing per account. */
  version: number;
  size: number;
  /** Modification time, milliseconds since the epoch. */
  mtime: number;
  exec: boolean;
  /**
   * Permission bits (rwx for user, group, other: at most 0o777) of a file; absent (older
   * devices, directories): 0o755 with `exec`, else 0o644. `exec` always agrees with it.
   */
  mode?: number;
  /** SHA-256 of the whole content (hex); "" for directories and tombstones. */
  hash: string;
  /** Ordered chunk list; empty for directories, tombstones and empty files. */
  chunks: ChunkRef[];
  /** Name of the device that wrote this record (used to name conflict copies). */
  device: string;
  /**
   * When the server wrote this version (ms, the server's clock). Server side only: the stores
   * carry it from an entry to its kept version; `changes` replies leave it out.
   */
  made?: number;
}

/** The client's merge base for one path: the last state both sides agreed on. */
export interface BaseEntry {
  path: string;
  kind: Kind;
  /** Server version this base corresponds to. */
  version: number;
  size: number;
  /** Local mtime (ms) observed when the path was last synced; used to skip rehashing. */
  mtime: number;
  exec: boolean;
  /** Permission bits when synced (see {@link RemoteEntry.mode}). */
  mode?: number;
  hash: string;
  chunks: ChunkRef[];
  /**
   * Inode number seen when synced (absent where the OS has none, e.g. Windows): a file replaced
   * by another with the same size and mtime is then still noticed.
   */
  ino?: number;
}

/** One item found by a local scan. `hash` is set for files whose content was (re)hashed. */
export interface LocalEntry {
  path: string;
  kind: Kind;
  size: number;
  mtime: number;
  exec: boolean;
  /** Permission bits (see {@link RemoteEntry.mode}); on Windows, those of the base. */
  mode?: number;
  hash?: string;
  chunks?: ChunkRef[];
  /** Inode number, where the OS has one (see {@link BaseEntry.ino}). */
  ino?: number;
}
