/**
 * The local scan: walks the synced folder (never following symlinks, never entering
 * `.cloudsync/`), stats every item, and hashes only files whose size, mtime or inode differ from
 * the merge base, so an unchanged tree rescans without reading file content; a file moved or
 * renamed keeps its inode and is recognized at its new path without being read either.
 *
 * @module
 */

import type { BaseEntry, LocalEntry } from "../core/types.ts";
import { checkWirePath, isPrivateName, parentPaths } from "../core/paths.ts";
import { afterRead, beforeRead } from "../core/stability.ts";
import { isAlwaysIgnored } from "../core/ignore_rules.ts";
import { PERM_MASK } from "../core/metadata.ts";
import type { Chunked, DirItem, ItemStat, LocalFs } from "./fs/local_fs.ts";
import { isGone } from "./fs/local_fs.ts";
import { pool } from "../util/pool.ts";
import { STATE_DIR } from "./config.ts";
import { foldName } from "../core/local_names.ts";

/** Why an item the scan found is left out of this pass, and when to look at it again. */
export interface HeldItem {
  reason: string;
  /** Epoch ms to look again (null: at every scan that covers it). */
  retryAt: number | null;
  /**
   * `unstable`: being written; `settling`: changed a moment ago (looked at again in a moment);
   * `unreadable`: it (or, for a folder, what is in it) cannot be read.
   */
  kind: "unstable" | "settling" | "unreadable";
}

/** What the scan reports besides the entries, and what it needs to know. */
export interface ScanNotices {
  /** Called once per skipped item (symlink, special file, unusable name) with a reason. */
  skipped?: (path: string, why: string) => void;
  /**
   * Filled with the items found but not to be acted on in this pass (being written, unreadable):
   * path -> why. A folder here stands for everything below it. They are neither uploaded nor
   * replaced nor deleted, and never mistaken for deleted.
   */
  held?: Map<string, HeldItem>;
  /** Filled with items that are there but do not sync: path -> what ("symlink", "special file"). */
  blockers?: Map<string, string>;
  /** Whether a file was seen being written lately (it must then be still for a settle time). */
  recentlyUnstable?: (path: string) => boolean;
  /** The current time (epoch ms; default `Date.now()`). */
  now?: number;
}

/** A short reason for an error on an item (`permission denied`, `input/output error`). */
function shortReason(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/ \(os error \d+\).*$/, "").replace(/:.*$/, "").trim().toLowerCase() ||
    "unknown error";
}

/**
 * Converts a stat to the local entry fields (permission bits kept from the base where the OS has
 * none).
 */
export function statToEntry(
  path: string,
  st: ItemStat,
  base: BaseEntry | undefined,
): LocalEntry {
  const dir = st.kind === "dir";
  const entry: LocalEntry = {
    path,
    kind: dir ? "dir" : "file",
    size: dir ? 0 : st.size,
    mtime: dir ? 0 : st.mtime,
    exec: false,
  };
  if (dir) return entry;
  // Where the OS has no POSIX modes (Windows), a file keeps the permissions of its base.
  if (st.mode !== null) {
    entry.mode = st.mode & PERM_MASK;
    entry.exec = (st.mode & 0o100) !== 0;
  } else if (base) {
    entry.exec = base.exec;
    if (base.mode !== undefined) entry.mode = base.mode;
  }
  if (st.ino !== undefined) entry.ino = st.ino;
  return entry;
}

/**
 * Whether two stats of a file agree: same size and mtime, and the same inode where both have one
 * (a file replaced by another with the same size and mtime, as `cp -p` or some editors do, is a
 * change). ctime is not compared: our own rename into place changes it.
 */
export function sameFileStat(
  a: { size: number; mtime: number; ino?: number },
  b: { size: number; mtime: number; ino?: number },
): boolean {
  return a.size === b.size && a.mtime === b.mtime &&
    (a.ino === undefined || b.ino === undefined || a.ino === b.ino);
}

/** True when a file's stat still matches the base, so its content need not be read. */
export function unchangedSinceBase(l: LocalEntry, b: BaseEntry | undefined): boolean {
  return b !== undefined && b.kind === "file" && l.kind === "file" && sameFileStat(l, b);
}

/**
 * Scans the folder. Files that changed since `base` (or are new) get `hash` and `chunks`.
 * Throws if the folder itself is missing (the caller must never read that as "everything
 * deleted").
 */
export async function scan(
  fs: LocalFs,
  base: ReadonlyMap<string, BaseEntry>,
  notices: ScanNotices = {},
): Promise<Map<string, LocalEntry>> {
  return await scanTrees(fs, base, [""], notices);
}

/**
 * The paths as the folder spells them. Where letter case does not count (Windows, macOS), a
 * lookup by name finds an item whose name differs in case (`lstat("C.TXT")` finds `C.txt`), so a
 * path a scan is asked about (a watcher report, a recheck) must first take the spelling on disk:
 * scanned under the asked spelling, one item would appear twice (`C.txt` and `C.TXT`, the second
 * a phantom that then syncs as a new item, and a deleted one when it is gone). Each existing
 * segment takes its name from a listing of its folder (one per folder); the rest stays as asked
 * (nothing is there). Identity where case counts.
 */
export async function diskSpelling(fs: LocalFs, paths: readonly string[]): Promise<string[]> {
  if (!fs.platform.caseInsensitive) return [...paths];
  const listings = new Map<string, Map<string, string> | null>();
  const names = async (dir: string): Promise<Map<string, string> | null> => {
    if (listings.has(dir)) return listings.get(dir)!;
    let out: Map<string, string> | null = null;
    try {
      out = new Map((await fs.readDir(dir)).map((d) => [foldName(d.name), d.name]));
    } catch { /* not a folder, gone or unreadable: the scan itself finds out */ }
    listings.set(dir, out);
    return out;
  };
  const out: string[] = [];
  for (const path of paths) {
    if (path === "") {
      out.push(path);
      continue;
    }
    const segs = path.split("/");
    let dir = "";
    let i = 0;
    for (; i < segs.length; i++) {
      const real = (await names(dir))?.get(foldName(segs[i]!));
      if (real === undefined) break;
      dir = dir === "" ? real : `${dir}/${real}`;
    }
    const rest = segs.slice(i).join("/");
    out.push(rest === "" ? dir : dir === "" ? rest : `${dir}/${rest}`);
  }
  return out;
}

/**
 * Scans only the subtrees under `scopes` (relative paths; "" is the whole folder), plus each
 * scope's ancestors as single entries. Used for watcher-driven passes, so a change costs work in
 * proportion to what changed, not to the size of the folder. Scopes are taken as spelled on disk
 * (see {@link diskSpelling}), as every scan reports items under their names on disk.
 */
export async function scanTrees(
  fs: LocalFs,
  base: ReadonlyMap<string, BaseEntry>,
  scopes: readonly string[],
  notices: ScanNotices = {},
): Promise<Map<string, LocalEntry>> {
  scopes = await diskSpelling(fs, scopes);
  const out = new Map<string, LocalEntry>();
  const rootInfo = await fs.lstatAsync("");
  if (rootInfo?.kind !== "dir") {
    throw new Error(`Cannot scan ${fs.where}: it is not a directory`);
  }
  const now = notices.now ?? fs.now();
  const held = notices.held ?? new Map<string, HeldItem>();
  const hold = (path: string, reason: string, kind: HeldItem["kind"], retryAt: number | null) => {
    held.set(path, { reason, kind, retryAt });
  };
  const unreadable = (path: string, e: unknown) => {
    hold(path, `it cannot be read (${shortReason(e)})`, "unreadable", null);
  };
  /** Skips an item; `blocks` says what it is when it holds a name a remote file may want. */
  const skip = (path: string, why: string, blocks: string | null) => {
    notices.skipped?.(path, why);
    if (blocks !== null) notices.blockers?.set(path, blocks);
  };
  const toHash: { entry: LocalEntry }[] = [];
  let dirs: string[] = [];
  /** Decides what to do with one stat'ed item. */
  const take = (path: string, st: ItemStat, walk: boolean) => {
    if (st.kind === "symlink") return skip(path, "symlinks are not synced", "symlink");
    if (st.fifo) {
      // Deno's file watcher opens every path it reports, and opening a FIFO waits for a writer.
      return skip(
        path,
        "named pipes are not synced, and a named pipe inside the folder stops live change detection (Deno's file watcher waits on it); changes are then found by the periodic full pass only. Move it out of the folder to get live sync back",
        "special file",
      );
    }
    if (st.kind === "special") return skip(path, "special files are not synced", "special file");
    const b = base.get(path);
    const entry = statToEntry(path, st, b);
    if (entry.kind === "dir") {
      if (isPrivateName(nameOf(path))) {
        return skip(
          path,
          `${STATE_DIR} folders are never synced (is a client running here?)`,
          null,
        );
      }
      if (walk) dirs.push(path);
    } else if (!unchangedSinceBase(entry, b)) {
      const ready = beforeRead(entry, b?.size, notices.recentlyUnstable?.(path) ?? false, now);
      if (!ready.stable) {
        return hold(path, ready.reason, ready.writing ? "unstable" : "settling", ready.retryAt);
      }
      toHash.push({ entry });
      return;
    }
    out.set(path, entry);
  };
  // Each scope and its ancestors are looked at one by one; directories among them are walked.
  const single = new Map<string, boolean>(); // path -> walk its subtree
  for (const scope of scopes) {
    if (scope === "") {
      dirs.push("");
      continue;
    }
    for (const p of parentPaths(scope)) if (!single.has(p)) single.set(p, false);
    single.set(scope, true);
  }
  await pool([...single], 16, async ([path, walk]) => {
    if (path.split("/").some(isPrivateName)) return;
    let st: ItemStat | null;
    try {
      st = await fs.lstatAsync(path);
    } catch (e) {
      if (isGone(e)) return;
      return unreadable(path, e);
    }
    if (st) take(path, st, walk);
  });
  // Breadth first, many directories and many lstat calls in flight at once.
  while (dirs.length > 0) {
    const level = dirs;
    dirs = [];
    await pool(level, 8, async (dir) => {
      const prefix = dir === "" ? "" : dir + "/";
      let entries: DirItem[];
      try {
        entries = await fs.readDir(dir);
      } catch (e) {
        // Vanished while we walked (deleted meanwhile): the next scan sees it gone.
        if (isGone(e)) return;
        // Cannot be listed: nothing below it may be taken as deleted.
        return unreadable(dir, e);
      }
      for (const d of entries) {
        if (prefix === "" && d.name === STATE_DIR) continue;
        const path = prefix + d.name;
        if (d.name !== d.name.normalize("NFC")) {
          skip(path, "its name is not in Unicode NFC form", null);
          continue;
        }
        if (isAlwaysIgnored(path)) continue;
        if (isPrivateName(d.name)) {
          skip(path, `${STATE_DIR} folders are never synced (is a client running here?)`, null);
          continue;
        }
        const problem = checkWirePath(path);
        if (problem) {
          skip(path, problem.replace(/^Cannot use path .*?: /, ""), null);
          continue;
        }
        if (d.kind === "symlink") {
          skip(path, "symlinks are not synced", "symlink");
          continue;
        }
        let st: ItemStat | null;
        try {
          // Synchronous: a few microseconds each, where an async call costs a thread hand-off.
          st = fs.lstat(path);
        } catch (e) {
          unreadable(path, e);
          continue;
        }
        if (!st) {
          // A name that is not valid UTF-8 reaches us with U+FFFD in it, and cannot be opened.
          if (d.name.includes("\uFFFD")) {
            skip(path, "its name is not valid UTF-8 (rename it to sync it)", null);
          }
          continue;
        }
        take(path, st, true);
      }
    });
  }
  const unread = reuseMoved(toHash.map((t) => t.entry), base);
  for (const entry of unread) out.set(entry.path, entry);
  await pool(toHash.filter((t) => !unread.has(t.entry)), 8, async ({ entry }) => {
    let h: Chunked;
    try {
      h = await fs.chunkFile(entry.path, entry.size);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return; // deleted meanwhile: the next scan sees it
      return unreadable(entry.path, e);
    }
    // A file a program is still writing must not be taken half written.
    let after: ItemStat | null = null;
    try {
      after = fs.lstat(entry.path);
    } catch { /* gone: unstable */ }
    const sample = after?.kind === "file" ? statToEntry(entry.path, after, undefined) : null;
    const ready = afterRead(entry, sample, h.size, fs.now());
    if (!ready.stable) return hold(entry.path, ready.reason, "unstable", ready.retryAt);
    entry.hash = h.hash;
    entry.chunks = h.chunks;
    out.set(entry.path, entry);
  });
  return out;
}

function nameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * Files at a path new to the base whose inode, size and mtime are those of a base file elsewhere
 * were moved or renamed (or hard-linked): they take that base file's hash and chunks instead of
 * being read again, as an unchanged file at its own path does. Returns the entries so completed.
 */
export function reuseMoved(
  entries: readonly LocalEntry[],
  base: ReadonlyMap<string, BaseEntry>,
): Set<LocalEntry> {
  const done = new Set<LocalEntry>();
  const fresh = entries.filter((e) => e.ino !== undefined && !base.has(e.path));
  if (fresh.length === 0) return done;
  const byIno = new Map<number, BaseEntry>();
  for (const b of base.values()) {
    if (b.kind === "file" && b.ino !== undefined) byIno.set(b.ino, b);
  }
  for (const e of fresh) {
    const b = byIno.get(e.ino!);
    if (!b || !sameFileStat(e, b)) continue;
    e.hash = b.hash;
    e.chunks = b.chunks;
    done.add(e);
  }
  return done;
}
