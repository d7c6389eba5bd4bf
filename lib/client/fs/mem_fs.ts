/**
 * An in-memory {@link LocalFs} for tests and the simulator: the real sync code runs on it as on a
 * disk. It has what the real filesystems have that matters to sync:
 *
 * - inodes (a rename or a hard link keeps them; a new file gets a new one), a clock for
 *   modification times, permission bits;
 * - a case-insensitive, case-preserving mode (Windows, macOS) and Windows' name rules;
 * - symlinks and FIFOs as items that exist but are not files (nothing ever goes through a symlink
 *   here: a path through one throws, so a test sees any attempt);
 * - crash semantics: a file's content is durable only once fsynced ({@link MemFs.crash} reverts
 *   what was not), directory operations are durable at once (as a journaling filesystem's);
 * - fault hooks: {@link MemFs.before} runs before every change and may throw (permission denied,
 *   I/O error, a full disk via {@link MemFs.capacity}) or change the filesystem itself ("the user
 *   edits or deletes this path right now", between a check and the change).
 *
 * @example
 * ```ts
 * const fs = new MemFs({ caseInsensitive: true, windowsNames: true });
 * fs.writeText("Report.txt", "v1");
 * fs.lstat("report.TXT")?.kind; // "file"
 * ```
 *
 * @module
 */

import type { PlatformTraits } from "../../core/local_names.ts";
import { foldName } from "../../core/local_names.ts";
import { isWindowsUnsafeName } from "../../core/paths.ts";
import { chunkStream } from "../../chunk/fastcdc.ts";
import { fileHash } from "../../chunk/hash.ts";
import type {
  Chunked,
  DirItem,
  FsHandle,
  ItemKind,
  ItemStat,
  LocalFs,
  OpenMode,
} from "./local_fs.ts";

interface FileNode {
  kind: "file";
  ino: number;
  data: Uint8Array;
  size: number;
  /** Content as of the last fsync (what survives a crash). */
  durable: Uint8Array;
  mode: number;
  mtime: number;
}

interface DirNode {
  kind: "dir";
  ino: number;
  /** Folded name -> the name as created, and the node. */
  entries: Map<string, { name: string; node: Node }>;
  mode: number;
}

interface OtherNode {
  kind: "symlink" | "special";
  ino: number;
  fifo: boolean;
  mtime: number;
}

type Node = FileNode | DirNode | OtherNode;

/** What a {@link MemFs.before} hook is told. */
export type MemOp =
  | "write"
  | "create"
  | "rename"
  | "link"
  | "remove"
  | "mkdir"
  | "chmod"
  | "utime"
  | "sync"
  | "read"
  | "readDir";

const enc = new TextEncoder();
const dec = new TextDecoder();

function notFound(path: string): Error {
  return new Deno.errors.NotFound(`No such file or directory (os error 2): ${path}`);
}

function isADirectory(path: string): Error {
  return new Deno.errors.IsADirectory(`Is a directory (os error 21): ${path}`);
}

/** The in-memory filesystem (see the module doc). */
export class MemFs implements LocalFs {
  readonly where = "(memory)";
  readonly platform: PlatformTraits;
  /** Most content bytes all files may hold; a write past it fails as a full disk. */
  capacity = Number.POSITIVE_INFINITY;
  /**
   * Called before every change (and before reads and listings): may throw to make the operation
   * fail, or change the filesystem (through this object: the hook is off while it runs).
   */
  before: ((op: MemOp, path: string) => void) | null = null;
  /** Set by {@link kill}: every later call throws it (a process that died mid-step). */
  dead: Error | null = null;
  /**
   * The clock, ms since the epoch: {@link now} reads it, each change moves it on by 1 ms (so
   * every write gets a modification time of its own), {@link advance} moves it on.
   */
  time = Date.UTC(2026, 0, 1);
  #root: DirNode;
  #ino = 1;
  #inHook = false;

  constructor(platform: PlatformTraits = { caseInsensitive: false, windowsNames: false }) {
    this.platform = platform;
    this.#root = { kind: "dir", ino: this.#ino++, entries: new Map(), mode: 0o755 };
  }

  /** Lets `ms` pass. */
  advance(ms: number): void {
    this.time += ms;
  }

  #clock(): number {
    return ++this.time;
  }

  // ---- helpers for tests (no hooks) ----

  /** Writes a whole file (creating folders), as a user would. */
  writeText(path: string, text: string, mode = 0o644): void {
    this.writeBytes(path, enc.encode(text), mode);
  }

  writeBytes(path: string, data: Uint8Array, mode = 0o644): void {
    this.#quiet(() => {
      const parts = this.#split(path);
      this.#mkdirs(parts.slice(0, -1));
      const existing = this.#find(path);
      if (existing?.kind === "file") {
        this.#setData(existing, data.slice());
        existing.mtime = this.#clock();
        existing.durable = existing.data.subarray(0, existing.size).slice();
        return;
      }
      if (existing) throw new Error(`MemFs: ${path} is not a file`);
      const node = this.#newFile(mode);
      this.#setData(node, data.slice());
      node.durable = data.slice();
      this.#dirOf(parts.slice(0, -1)).entries.set(this.#key(parts.at(-1)!), {
        name: parts.at(-1)!,
        node,
      });
    });
  }

  /** A file's content as text (null: not a file). */
  readText(path: string): string | null {
    const n = this.#find(path);
    return n?.kind === "file" ? dec.decode(n.data.subarray(0, n.size)) : null;
  }

  /** Adds a symlink or a FIFO (items that exist but do not sync). */
  addOther(path: string, kind: "symlink" | "fifo"): void {
    const parts = this.#split(path);
    this.#mkdirs(parts.slice(0, -1));
    const node: OtherNode = {
      kind: kind === "fifo" ? "special" : "symlink",
      ino: this.#ino++,
      fifo: kind === "fifo",
      mtime: this.#clock(),
    };
    this.#dirOf(parts.slice(0, -1)).entries.set(this.#key(parts.at(-1)!), {
      name: parts.at(-1)!,
      node,
    });
  }

  /** Every item under the root, `path -> kind:content` for files (sorted), for comparisons. */
  snapshot(opts: { skip?: (path: string) => boolean } = {}): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (dir: DirNode, prefix: string) => {
      for (
        const { name, node } of [...dir.entries.values()].sort((a, b) => a.name < b.name ? -1 : 1)
      ) {
        const p = prefix + name;
        if (opts.skip?.(p)) continue;
        if (node.kind === "dir") {
          out.set(p, "dir");
          walk(node, p + "/");
        } else if (node.kind === "file") {
          out.set(p, `file:${dec.decode(node.data.subarray(0, node.size))}`);
        } else out.set(p, node.kind);
      }
    };
    walk(this.#root, "");
    return out;
  }

  /** A crash: every content not fsynced since its last write is lost (directories stay). */
  crash(): void {
    const walk = (dir: DirNode) => {
      for (const { node } of dir.entries.values()) {
        if (node.kind === "dir") walk(node);
        else if (node.kind === "file") {
          node.data = node.durable.slice();
          node.size = node.durable.length;
        }
      }
    };
    walk(this.#root);
  }

  /** From now on every call fails with `error` (a process killed mid-step); {@link revive} ends it. */
  kill(error: Error): void {
    this.dead = error;
  }

  revive(): void {
    this.dead = null;
  }

  /** Bytes held by all files. */
  usedBytes(): number {
    let n = 0;
    const seen = new Set<number>();
    const walk = (dir: DirNode) => {
      for (const { node } of dir.entries.values()) {
        if (node.kind === "dir") walk(node);
        else if (node.kind === "file" && !seen.has(node.ino)) {
          seen.add(node.ino);
          n += node.size;
        }
      }
    };
    walk(this.#root);
    return n;
  }

  // ---- LocalFs ----

  now(): number {
    return this.time;
  }

  lstat(path: string): ItemStat | null {
    this.#check("read", path);
    const n = this.#find(path);
    return n ? this.#stat(n) : null;
  }

  lstatAsync(path: string): Promise<ItemStat | null> {
    return this.#async(() => this.lstat(path));
  }

  readDir(path: string): Promise<DirItem[]> {
    return this.#async(() => {
      this.#check("readDir", path);
      const n = this.#find(path);
      if (!n) throw notFound(path);
      if (n.kind !== "dir") throw new Deno.errors.NotADirectory(`Not a directory: ${path}`);
      return [...n.entries.values()].map(({ name, node }) => ({
        name,
        kind: node.kind === "dir" ? "dir" : node.kind === "file" ? "file" : node.kind as ItemKind,
      }));
    });
  }

  dirId(path: string): string | null {
    const n = path === "" ? this.#root : this.#find(path);
    return n?.kind === "dir" ? String(n.ino) : null;
  }

  inside(path: string): boolean {
    const parts = this.#split(path).slice(0, -1);
    let dir: Node = this.#root;
    for (const p of parts) {
      if (dir.kind !== "dir") return false;
      const e = dir.entries.get(this.#key(p));
      if (!e) return true; // not created yet: what exists is a real folder
      if (e.node.kind !== "dir") return false;
      dir = e.node;
    }
    return true;
  }

  open(path: string, mode: OpenMode): Promise<FsHandle> {
    return this.#async(() => this.openSync(path, mode));
  }

  openSync(path: string, mode: OpenMode): FsHandle {
    // As Deno's own open: these options make no sense without write (checked before anything).
    if ((mode.create || mode.createNew) && !mode.write) {
      throw new Error("'create' or 'createNew' options require 'write' or 'append' to be true");
    }
    if (mode.truncate && !mode.write) {
      throw new Error("'truncate' option requires 'write' to be true");
    }
    this.#check(mode.write ? "write" : "read", path);
    let n = this.#find(path);
    if (n && mode.createNew) throw new Deno.errors.AlreadyExists(`File exists: ${path}`);
    if (!n) {
      if (!mode.create && !mode.createNew) throw notFound(path);
      const parts = this.#split(path);
      const dir = this.#dirOf(parts.slice(0, -1), true);
      this.#checkName(parts.at(-1)!);
      const f = this.#newFile((mode.mode ?? 0o644) & 0o777);
      dir.entries.set(this.#key(parts.at(-1)!), { name: parts.at(-1)!, node: f });
      n = f;
    }
    // Linux opens a folder read-only (and then fails each read); here the open fails at once.
    if (n.kind === "dir") throw isADirectory(path);
    if (n.kind !== "file") throw new Error(`MemFs: ${path} is not a file`);
    if (mode.truncate) {
      this.#setData(n, new Uint8Array(0));
      n.mtime = this.#clock();
    }
    return new MemHandle(this, n, path, !!mode.write);
  }

  readFileSync(path: string): Uint8Array {
    this.#check("read", path);
    const n = this.#find(path);
    if (!n) throw notFound(path);
    if (n.kind === "dir") throw isADirectory(path);
    if (n.kind !== "file") throw new Error(`MemFs: ${path} is not a file`);
    return n.data.slice(0, n.size);
  }

  async chunkFile(path: string, _sizeHint: number): Promise<Chunked> {
    const data = this.readFileSync(path);
    let at = 0;
    const chunks = [];
    for await (
      const c of chunkStream((buf) => {
        if (at >= data.length) return Promise.resolve(null);
        const n = Math.min(buf.length, data.length - at);
        buf.set(data.subarray(at, at + n));
        at += n;
        return Promise.resolve(n);
      })
    ) chunks.push({ hash: c.hash, size: c.size });
    return { size: data.length, hash: fileHash(chunks), chunks };
  }

  rename(from: string, to: string): Promise<void> {
    return this.#async(() => this.renameSync(from, to));
  }

  renameSync(from: string, to: string): void {
    this.#check("rename", from);
    const src = this.#entry(from);
    if (!src) throw notFound(from);
    const toParts = this.#split(to);
    const dir = this.#dirOf(toParts.slice(0, -1), true);
    const name = toParts.at(-1)!;
    this.#checkName(name);
    const key = this.#key(name);
    const there = dir.entries.get(key);
    if (there && there.node === src.node && there !== src.entry) {
      return; // two names of one inode: POSIX does nothing (Windows would replace `to`)
    }
    if (there && there.node !== src.node) {
      if (there.node.kind === "dir") {
        if (src.node.kind !== "dir") {
          throw new Deno.errors.IsADirectory(
            `Is a directory (os error 21): rename ${from} -> ${to}`,
          );
        }
        if (there.node.entries.size > 0) {
          throw new Error(`Directory not empty (os error 39): rename ${from} -> ${to}`);
        }
      } else if (src.node.kind === "dir") {
        throw new Deno.errors.NotADirectory(
          `Not a directory (os error 20): rename ${from} -> ${to}`,
        );
      }
    }
    if (src.node.kind === "dir" && this.#walk(toParts.slice(0, -1)).includes(src.node)) {
      // A folder into itself would cut it off the tree (Linux: EINVAL, Deno: a TypeError).
      throw new TypeError(`Invalid argument (os error 22): rename ${from} -> ${to}`);
    }
    src.dir.entries.delete(src.key);
    dir.entries.set(key, { name, node: src.node });
  }

  link(from: string, to: string): Promise<void> {
    return this.#async(() => this.linkSync(from, to));
  }

  linkSync(from: string, to: string): void {
    this.#check("link", to);
    const n = this.#find(from);
    if (!n) throw notFound(from);
    if (n.kind !== "file") {
      throw new Deno.errors.PermissionDenied(`Operation not permitted: ${from}`);
    }
    const parts = this.#split(to);
    const dir = this.#dirOf(parts.slice(0, -1), true);
    const key = this.#key(parts.at(-1)!);
    if (dir.entries.has(key)) throw new Deno.errors.AlreadyExists(`File exists: ${to}`);
    this.#checkName(parts.at(-1)!);
    dir.entries.set(key, { name: parts.at(-1)!, node: n });
  }

  remove(path: string): Promise<void> {
    return this.#async(() => this.removeSync(path));
  }

  removeSync(path: string): void {
    this.#check("remove", path);
    const e = this.#entry(path);
    if (!e) throw notFound(path);
    if (e.node.kind === "dir" && e.node.entries.size > 0) {
      throw new Error(`Directory not empty (os error 39): ${path}`);
    }
    e.dir.entries.delete(e.key);
  }

  mkdir(path: string, recursive = false): Promise<void> {
    return this.#async(() => this.mkdirSync(path, recursive));
  }

  mkdirSync(path: string, recursive = false): void {
    this.#check("mkdir", path);
    const parts = this.#split(path);
    if (recursive) {
      this.#mkdirs(parts);
      return;
    }
    const dir = this.#dirOf(parts.slice(0, -1));
    const key = this.#key(parts.at(-1)!);
    if (dir.entries.has(key)) {
      throw new Deno.errors.AlreadyExists(`File exists (os error 17): ${path}`);
    }
    this.#checkName(parts.at(-1)!);
    dir.entries.set(key, { name: parts.at(-1)!, node: this.#newDir() });
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.#async(() => this.chmodSync(path, mode));
  }

  chmodSync(path: string, mode: number): void {
    this.#check("chmod", path);
    const n = this.#find(path);
    if (!n) throw notFound(path);
    if (n.kind === "file" || n.kind === "dir") n.mode = mode & 0o777;
  }

  utime(path: string, mtime: number): Promise<void> {
    return this.#async(() => this.utimeSync(path, mtime));
  }

  utimeSync(path: string, mtime: number): void {
    this.#check("utime", path);
    const n = this.#find(path);
    if (!n) throw notFound(path);
    if (n.kind === "file" || n.kind === "special" || n.kind === "symlink") n.mtime = mtime;
  }

  fsyncDir(path: string): Promise<void> {
    return this.#async(() => this.#check("sync", path));
  }

  copyFile(from: string, to: string): Promise<void> {
    return this.#async(() => {
      const data = this.readFileSync(from);
      const n = this.#find(from) as FileNode;
      const h = this.openSync(to, { write: true, create: true, truncate: true, mode: n.mode });
      try {
        h.writeSync(data);
      } finally {
        h.close();
      }
      this.chmodSync(to, n.mode);
    });
  }

  // ---- internals ----

  /** Runs `fn` with the hook off (test helpers and hooks changing the filesystem). */
  #quiet<T>(fn: () => T): T {
    const was = this.#inHook;
    this.#inHook = true;
    try {
      return fn();
    } finally {
      this.#inHook = was;
    }
  }

  /** Dead? Then throw. Else give the hook its turn. */
  check(op: MemOp, path: string): void {
    this.#check(op, path);
  }

  #check(op: MemOp, path: string): void {
    if (this.dead) throw this.dead;
    if (this.#inHook || !this.before) return;
    this.#quiet(() => this.before!(op, path));
  }

  #async<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #key(name: string): string {
    return this.platform.caseInsensitive ? foldName(name) : name;
  }

  #split(path: string): string[] {
    return path === "" ? [] : path.split("/");
  }

  #checkName(name: string): void {
    if (this.platform.windowsNames && isWindowsUnsafeName(name)) {
      throw new Error(
        `The filename, directory name, or volume label syntax is incorrect. (os error 123): ${name}`,
      );
    }
  }

  #newFile(mode: number): FileNode {
    return {
      kind: "file",
      ino: this.#ino++,
      data: new Uint8Array(0),
      size: 0,
      durable: new Uint8Array(0),
      mode,
      mtime: this.#clock(),
    };
  }

  #newDir(): DirNode {
    return { kind: "dir", ino: this.#ino++, entries: new Map(), mode: 0o755 };
  }

  /** Finds the node at `path`; a symlink on the way is a test failure (nothing may go through one). */
  #find(path: string): Node | null {
    let n: Node = this.#root;
    const parts = this.#split(path);
    for (let i = 0; i < parts.length; i++) {
      if (n.kind !== "dir") {
        if (n.kind === "symlink") throw new Error(`MemFs: ${path} goes through a symlink`);
        return null;
      }
      const e = n.entries.get(this.#key(parts[i]!));
      if (!e) return null;
      n = e.node;
    }
    return n;
  }

  #entry(
    path: string,
  ): { dir: DirNode; key: string; node: Node; entry: { name: string; node: Node } } | null {
    const parts = this.#split(path);
    if (parts.length === 0) return null;
    const parent = this.#find(parts.slice(0, -1).join("/"));
    if (!parent || parent.kind !== "dir") return null;
    const key = this.#key(parts.at(-1)!);
    const e = parent.entries.get(key);
    return e ? { dir: parent, key, node: e.node, entry: e } : null;
  }

  /** The folders from the root along `parts`, as far as they exist. */
  #walk(parts: string[]): Node[] {
    const out: Node[] = [this.#root];
    let n: Node = this.#root;
    for (const p of parts) {
      if (n.kind !== "dir") break;
      const e = n.entries.get(this.#key(p));
      if (!e) break;
      n = e.node;
      out.push(n);
    }
    return out;
  }

  #dirOf(parts: string[], required = true): DirNode {
    const n = this.#find(parts.join("/"));
    if (!n) {
      if (required) throw notFound(parts.join("/"));
      return this.#root;
    }
    if (n.kind !== "dir") {
      throw new Deno.errors.NotADirectory(`Not a directory: ${parts.join("/")}`);
    }
    return n;
  }

  #mkdirs(parts: string[]): void {
    let dir = this.#root;
    for (const [i, p] of parts.entries()) {
      const key = this.#key(p);
      const e = dir.entries.get(key);
      if (e) {
        if (e.node.kind === "symlink") {
          throw new Error(`MemFs: ${parts.join("/")} goes through a symlink`);
        }
        if (e.node.kind !== "dir") {
          // As `mkdir -p`: a file in the last place exists already; on the way, it is no folder.
          if (i === parts.length - 1) {
            throw new Deno.errors.AlreadyExists(`File exists (os error 17): ${parts.join("/")}`);
          }
          throw new Deno.errors.NotADirectory(`Not a directory (os error 20): ${parts.join("/")}`);
        }
        dir = e.node;
        continue;
      }
      this.#checkName(p);
      const d = this.#newDir();
      dir.entries.set(key, { name: p, node: d });
      dir = d;
    }
  }

  #stat(n: Node): ItemStat {
    if (n.kind === "dir") return { kind: "dir", size: 0, mtime: 0, mode: n.mode };
    if (n.kind === "file") {
      return { kind: "file", size: n.size, mtime: n.mtime, mode: n.mode, ino: n.ino };
    }
    return {
      kind: n.kind,
      size: 0,
      mtime: n.mtime,
      mode: 0o777,
      ino: n.ino,
      ...(n.fifo ? { fifo: true } : {}),
    };
  }

  /** Replaces a file's bytes, minding the capacity. */
  #setData(n: FileNode, data: Uint8Array): void {
    const grow = data.length - n.size;
    if (grow > 0 && this.usedBytes() + grow > this.capacity) {
      throw new Error("No space left on device (os error 28)");
    }
    n.data = data;
    n.size = data.length;
  }

  /** For {@link MemHandle}: writes into a file at a position. */
  writeAt(n: FileNode, path: string, pos: number, buf: Uint8Array): number {
    this.#check("write", path);
    const end = pos + buf.length;
    if (end > n.size && this.usedBytes() + (end - n.size) > this.capacity) {
      throw new Error("No space left on device (os error 28)");
    }
    if (end > n.data.length) {
      const bigger = new Uint8Array(Math.max(end, n.data.length * 2));
      bigger.set(n.data.subarray(0, n.size));
      n.data = bigger;
    } else if (pos > n.size) {
      n.data.fill(0, n.size, pos); // a hole reads as zeros, never as bytes cut off earlier
    }
    n.data.set(buf, pos);
    n.size = Math.max(n.size, end);
    n.mtime = this.#clock();
    return buf.length;
  }

  truncateNode(n: FileNode, path: string, len: number): void {
    this.#check("write", path);
    if (len <= n.size) n.size = len;
    else this.writeAt(n, path, n.size, new Uint8Array(len - n.size));
    n.mtime = this.#clock();
  }

  syncNode(n: FileNode, path: string): void {
    this.#check("sync", path);
    n.durable = n.data.slice(0, n.size);
  }

  statNode(n: FileNode): ItemStat {
    if (this.dead) throw this.dead;
    return this.#stat(n);
  }

  setMtime(n: FileNode, path: string, mtime: number): void {
    this.#check("utime", path);
    n.mtime = mtime;
  }
}

/** An open file of a {@link MemFs}. */
class MemHandle implements FsHandle {
  #pos = 0;
  #closed = false;

  constructor(
    readonly fs: MemFs,
    readonly node: FileNode,
    readonly path: string,
    readonly writable: boolean,
  ) {}

  #open(): void {
    if (this.#closed) throw new Deno.errors.BadResource("Bad resource ID");
  }

  read(buf: Uint8Array): Promise<number | null> {
    try {
      return Promise.resolve(this.readSync(buf));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  readSync(buf: Uint8Array): number | null {
    this.#open();
    this.fs.check("read", this.path);
    const n = this.node;
    if (this.#pos >= n.size) return buf.length === 0 ? 0 : null;
    const k = Math.min(buf.length, n.size - this.#pos);
    buf.set(n.data.subarray(this.#pos, this.#pos + k));
    this.#pos += k;
    return k;
  }

  write(buf: Uint8Array): Promise<number> {
    try {
      return Promise.resolve(this.writeSync(buf));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  writeSync(buf: Uint8Array): number {
    this.#open();
    if (!this.writable) throw new Error("Bad file descriptor (os error 9)"); // EBADF, as Deno says
    const k = this.fs.writeAt(this.node, this.path, this.#pos, buf);
    this.#pos += k;
    return k;
  }

  seek(offset: number): Promise<void> {
    this.seekSync(offset);
    return Promise.resolve();
  }

  seekSync(offset: number): void {
    this.#open();
    this.#pos = offset;
  }

  truncate(len: number): Promise<void> {
    try {
      this.#open();
      this.fs.truncateNode(this.node, this.path, len);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  sync(): Promise<void> {
    try {
      this.#open();
      this.fs.syncNode(this.node, this.path);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  stat(): Promise<ItemStat> {
    try {
      return Promise.resolve(this.statSync());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  statSync(): ItemStat {
    this.#open();
    return this.fs.statNode(this.node);
  }

  utimeSync(mtime: number): void {
    this.#open();
    this.fs.setMtime(this.node, this.path, mtime);
  }

  close(): void {
    this.#closed = true;
  }
}
