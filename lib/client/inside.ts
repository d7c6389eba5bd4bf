/**
 * The last check before anything is created, replaced, moved or deleted in the folder: every
 * folder on the way to the item is still a real folder inside the synced folder, not a symlink a
 * local process swapped in after the scan (a download would then land outside). Called just
 * before each rename, link, mkdir, chmod or unlink, not once per batch.
 *
 * RACE: what remains is the microseconds between this check and the system call itself; closing
 * it needs `openat`-relative calls Deno does not offer. SECURITY.md says so.
 *
 * @example
 * ```ts
 * if (!stillInside(root, join(root, "docs/report.txt"))) return "deferred";
 * ```
 *
 * @module
 */

import { dirname, isAbsolute, join, relative, sep } from "node:path";

const realRoots = new Map<string, string>();
const foldCase = Deno.build.os === "windows" || Deno.build.os === "darwin";

function same(a: string, b: string): boolean {
  return foldCase ? a.toLowerCase() === b.toLowerCase() : a === b;
}

/**
 * True when the folder that holds `full` (or, if it does not exist yet, its nearest existing
 * ancestor) resolves to the same place inside `root` that its path names: no symlink on the way.
 */
export function stillInside(root: string, full: string): boolean {
  let rootReal = realRoots.get(root);
  if (rootReal === undefined) {
    rootReal = Deno.realPathSync(root);
    if (realRoots.size > 100) realRoots.clear();
    realRoots.set(root, rootReal);
  }
  let rel = relative(root, dirname(full));
  if (rel === ".." || rel.startsWith(".." + sep) || isAbsolute(rel)) return false;
  for (;;) {
    try {
      return same(Deno.realPathSync(join(root, rel)), rel === "" ? rootReal : join(rootReal, rel));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || rel === "") return false;
      const up = dirname(rel);
      rel = up === "." ? "" : up; // not created yet: the nearest folder that exists decides
    }
  }
}
