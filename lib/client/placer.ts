/**
 * The one step that puts a finished file into the folder. Every download ends here, small or
 * big: the staged file (complete, verified and fsynced) gets exactly its permission bits and
 * modification time, is stat'ed (so an edit right after the rename shows up as a local change,
 * not as our own file), and is renamed into place only if what is there is still what the scan
 * saw and every folder on the way is still a real folder inside the synced folder. The caller
 * makes the folder's entry durable (one fsync per folder for a group of files).
 *
 * RACE: between the last check and the rename a program may still write the path; the rename
 * then replaces that write (microseconds; closing it needs an exchange-rename Deno lacks).
 *
 * @example
 * ```ts
 * const r = place(fs, ".cloudsync/tmp/partial-…", "docs/report.pdf", remote, scanned);
 * if (r.ok) await fs.fsyncDir("docs");
 * ```
 *
 * @module
 */

import type { LocalEntry, RemoteEntry } from "../core/types.ts";
import { baseFrom } from "../core/reconcile.ts";
import { perms } from "../core/metadata.ts";
import { type LocalFs, stillAs } from "./fs/local_fs.ts";
import { statToEntry } from "./scanner.ts";
import type { DownloadResult } from "./transfer.ts";

/** The folder holding `path` ("" for the root). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

/**
 * Moves the staged file `tmp` to `path` (see the module doc). `replace` is what the scan saw at
 * `path` (null: nothing). `madeDirs` remembers folders this group already created; `realDirs`
 * the folders this group already found to be real folders inside the synced folder, by their
 * identity (`dirId`): a file going into one of them costs one `lstat` of its folder instead of
 * resolving every folder on the way (six system calls), and a folder moved, or swapped for a
 * symlink, there or above it since its check has another identity and is checked again.
 */
export function place(
  fs: LocalFs,
  tmp: string,
  path: string,
  remote: RemoteEntry,
  replace: LocalEntry | null,
  madeDirs: Set<string> = new Set(),
  realDirs: Map<string, string> = new Map(),
): DownloadResult {
  fs.chmodSync(tmp, perms(remote));
  fs.utimeSync(tmp, remote.mtime);
  const st = fs.lstat(tmp);
  if (!st) throw new Error(`Cannot download ${path}: its staged copy vanished`);
  const l = statToEntry(path, st, undefined);
  if (!stillAs(fs, path, replace)) return { ok: false, reason: "changed-locally" };
  const parent = parentOf(path);
  const id = realDirs.get(parent);
  if (id === undefined || fs.dirId(parent) !== id) {
    if (!fs.inside(path)) return { ok: false, reason: "blocked" }; // a folder on the way is a symlink
    const now = fs.dirId(parent);
    if (now !== null) realDirs.set(parent, now);
  }
  if (replace?.kind === "dir") {
    try {
      fs.removeSync(path); // only an empty one
    } catch {
      return { ok: false, reason: "blocked" };
    }
  }
  if (parent !== "" && !madeDirs.has(parent)) {
    fs.mkdirSync(parent, true);
    madeDirs.add(parent);
  }
  fs.renameSync(tmp, path);
  return { ok: true, entry: { ...baseFrom(remote, l), path } };
}
