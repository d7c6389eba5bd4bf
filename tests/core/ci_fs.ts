/**
 * An in-memory file system double for tests of local naming: case-insensitive (like NTFS or
 * APFS by default) or case-sensitive, case-preserving. Entries are keyed by the folded path
 * (`foldName`) and keep the case they were created with; opening `REPORT.TXT` finds
 * `Report.txt`, and creating a name that folds like an existing one fails, as on Windows.
 *
 * A file's content is a string; its hash is `h:` + content (one chunk, none when empty).
 *
 * @module
 */

import { foldName } from "../../lib/core/local_names.ts";
import type { ChunkRef, Kind, LocalEntry } from "../../lib/core/types.ts";

export const hashOf = (content: string): string => `h:${content}`;
export const chunksOf = (content: string): ChunkRef[] =>
  content === "" ? [] : [{ hash: hashOf(content), size: content.length }];

interface Item {
  /** The path with the case it was created with. */
  path: string;
  kind: Kind;
  content: string;
  mtime: number;
}

const parentOf = (p: string) => (p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "");
const nameOf = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/** The double. Paths are relative, `/`-separated. */
export class CiFs {
  readonly #items = new Map<string, Item>();
  readonly #key: (p: string) => string;
  #clock = 1000;

  constructor(readonly caseInsensitive = true) {
    this.#key = caseInsensitive ? foldName : (p) => p;
  }

  /** The entry at `p` in any letter case (on a case-insensitive double), or undefined. */
  get(p: string): Item | undefined {
    return this.#items.get(this.#key(p));
  }

  exists(p: string): boolean {
    return this.get(p) !== undefined;
  }

  /** The path as stored (display case), or undefined. */
  realPath(p: string): string | undefined {
    return this.get(p)?.path;
  }

  #parentPath(p: string): string {
    const parent = parentOf(p);
    if (parent === "") return "";
    const it = this.get(parent);
    if (!it) throw new Error(`ENOENT: no directory ${parent}`);
    if (it.kind !== "dir") throw new Error(`ENOTDIR: ${parent}`);
    return it.path;
  }

  /** Creates directories (and missing parents); an existing one keeps its case. */
  mkdir(p: string): void {
    const parent = parentOf(p);
    if (parent !== "" && !this.exists(parent)) this.mkdir(parent);
    const there = this.get(p);
    if (there) {
      if (there.kind !== "dir") throw new Error(`EEXIST: ${p} is a file`);
      return;
    }
    const path = this.#join(this.#parentPath(p), nameOf(p));
    this.#items.set(this.#key(path), { path, kind: "dir", content: "", mtime: 0 });
  }

  #join(dir: string, name: string): string {
    return dir === "" ? name : `${dir}/${name}`;
  }

  /**
   * Writes a file. `replace`: an existing file is overwritten in place and keeps its stored
   * case (what a replacing rename does on some file systems); otherwise it must not exist.
   * `mtime`: the modification time to give it (a download's), else the fake clock's next tick.
   */
  writeFile(p: string, content: string, replace = false, mtime?: number): void {
    const there = this.get(p);
    if (there && !(replace && there.kind === "file")) throw new Error(`EEXIST: ${p}`);
    const parent = parentOf(p);
    if (parent !== "" && !this.exists(parent)) this.mkdir(parent);
    const path = there ? there.path : this.#join(this.#parentPath(p), nameOf(p));
    this.#items.set(this.#key(path), {
      path,
      kind: "file",
      content,
      mtime: mtime ?? ++this.#clock,
    });
  }

  /** Removes a file or an empty directory. */
  remove(p: string): void {
    const it = this.get(p);
    if (!it) throw new Error(`ENOENT: ${p}`);
    if (it.kind === "dir" && this.list().some((c) => parentOf(c.path) === it.path)) {
      throw new Error(`ENOTEMPTY: ${p}`);
    }
    this.#items.delete(this.#key(it.path));
  }

  /**
   * Renames `from` to `to` (with everything below it). The target must not exist, except that a
   * case-only rename of the same item is allowed; as the executor must, it goes through a
   * temporary name.
   */
  rename(from: string, to: string): void {
    const it = this.get(from);
    if (!it) throw new Error(`ENOENT: ${from}`);
    const target = this.get(to);
    if (target && target !== it) throw new Error(`EEXIST: ${to}`);
    if (target === it) {
      const tmp = `${parentOf(it.path) === "" ? "" : parentOf(it.path) + "/"}.cs-tmp-${nameOf(to)}`;
      this.rename(it.path, tmp);
      this.rename(tmp, to);
      return;
    }
    const dest = this.#join(this.#parentPath(to), nameOf(to));
    const moving = this.list().filter((c) =>
      c.path === it.path || c.path.startsWith(it.path + "/")
    );
    for (const c of moving) this.#items.delete(this.#key(c.path));
    for (const c of moving) {
      const path = dest + c.path.slice(it.path.length);
      this.#items.set(this.#key(path), { ...c, path });
    }
  }

  /** Everything, sorted by stored path. */
  list(): Item[] {
    return [...this.#items.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /** Stored paths, sorted. */
  paths(): string[] {
    return this.list().map((i) => i.path);
  }

  /** A scan in local path space: every item, files hashed. */
  scan(): Map<string, LocalEntry> {
    const out = new Map<string, LocalEntry>();
    for (const it of this.list()) {
      out.set(
        it.path,
        it.kind === "dir" ? { path: it.path, kind: "dir", size: 0, mtime: 0, exec: false } : {
          path: it.path,
          kind: "file",
          size: it.content.length,
          mtime: it.mtime,
          exec: false,
          hash: hashOf(it.content),
          chunks: chunksOf(it.content),
        },
      );
    }
    return out;
  }
}
