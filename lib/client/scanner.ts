/**
 * The local scan: walks the synced folder (never following symlinks, never entering
 * `.cloudsync/`), stats every item, and hashes only files whose size or mtime differ from the
 * merge base, so an unchanged tree rescans without reading file content.
 *
 * @module
 */

import { join } from "node:path";
import type { BaseEntry, LocalEntry } from "../core/types.ts";
import { hashFile } from "../chunk/fastcdc.ts";
import { STATE_DIR } from "./config.ts";

/** What the scan reports besides the entries. */
export interface ScanNotices {
  /** Called once per skipped item (symlink, special file, non-NFC name) with a reason. */
  skipped?: (path: string, why: string) => void;
}

/** Converts a stat to the local entry fields (exec bit kept from the base where the OS has none). */
export function statToEntry(
  path: string,
  st: Deno.FileInfo,
  base: BaseEntry | undefined,
): LocalEntry {
  const mode = st.mode;
  const exec = mode === null ? (base?.exec ?? false) : (mode & 0o100) !== 0;
  return {
    path,
    kind: st.isDirectory ? "dir" : "file",
    size: st.isDirectory ? 0 : st.size,
    mtime: st.isDirectory ? 0 : Math.floor(st.mtime?.getTime() ?? 0),
    exec: st.isDirectory ? false : exec,
  };
}

/** True when a file's stat still matches the base, so its content need not be read. */
export function unchangedSinceBase(l: LocalEntry, b: BaseEntry | undefined): boolean {
  return b !== undefined && b.kind === "file" && l.kind === "file" && b.size === l.size &&
    b.mtime === l.mtime;
}

/**
 * Scans `root`. Files that changed since `base` (or are new) get `hash` and `chunks`.
 * Throws if `root` itself is missing (the caller must never read that as "everything deleted").
 */
export async function scan(
  root: string,
  base: ReadonlyMap<string, BaseEntry>,
  notices: ScanNotices = {},
): Promise<Map<string, LocalEntry>> {
  const out = new Map<string, LocalEntry>();
  const rootInfo = await Deno.stat(root);
  if (!rootInfo.isDirectory) throw new Error(`Cannot scan ${root}: it is not a directory`);
  const walk = async (dir: string, prefix: string): Promise<void> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (e) {
      // Vanished while we walked (deleted meanwhile): the next scan sees it gone.
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const d of entries) {
      if (prefix === "" && d.name === STATE_DIR) continue;
      const path = prefix + d.name;
      if (d.name !== d.name.normalize("NFC")) {
        notices.skipped?.(path, "its name is not in Unicode NFC form");
        continue;
      }
      if (d.isSymlink) {
        notices.skipped?.(path, "symlinks are not synced");
        continue;
      }
      const full = join(dir, d.name);
      let st: Deno.FileInfo;
      try {
        st = await Deno.lstat(full);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      if (!st.isFile && !st.isDirectory) {
        if (!st.isSymlink) notices.skipped?.(path, "special files are not synced");
        continue;
      }
      const entry = statToEntry(path, st, base.get(path));
      if (entry.kind === "dir") {
        out.set(path, entry);
        await walk(full, path + "/");
        continue;
      }
      if (!unchangedSinceBase(entry, base.get(path))) {
        try {
          const h = await hashFile(full);
          entry.hash = h.hash;
          entry.chunks = h.chunks;
          entry.size = h.size;
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) continue;
          throw e;
        }
      }
      out.set(path, entry);
    }
  };
  await walk(root, "");
  return out;
}
