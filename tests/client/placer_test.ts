/**
 * `place` within a group of small files: a folder checked for the group's first file is trusted
 * for the next ones only while it is the same folder. One moved away and replaced by a symlink to
 * elsewhere (there, or above it) between two files of a group must not take the second file out
 * of the synced folder (found in review: a cache by name did).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DenoFs } from "../../lib/client/fs/deno_fs.ts";
import { place } from "../../lib/client/placer.ts";
import type { RemoteEntry } from "../../lib/core/types.ts";

function remote(path: string): RemoteEntry {
  return {
    path,
    kind: "file",
    deleted: false,
    version: 1,
    size: 1,
    mtime: Date.now(),
    exec: false,
    hash: "",
    chunks: [],
    device: "B",
  };
}

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

for (const swapped of ["docs", "top"]) {
  Deno.test({
    name:
      `a group's folder swapped for a symlink after its first file (${swapped}): the next file stays in`,
    ignore: Deno.build.os === "windows",
    fn: () => {
      const dir = Deno.makeTempDirSync();
      try {
        const root = join(dir, "synced");
        const outside = join(dir, "outside");
        Deno.mkdirSync(join(root, ".cloudsync", "tmp"), { recursive: true });
        Deno.mkdirSync(join(root, "top", "docs"), { recursive: true });
        Deno.mkdirSync(join(outside, "docs"), { recursive: true });
        const fs = new DenoFs(root);
        const stage = (name: string) => {
          const p = `.cloudsync/tmp/${name}`;
          Deno.writeTextFileSync(join(root, p), name);
          return p;
        };
        const made = new Set<string>();
        const real = new Map<string, string>();
        const one = place(
          fs,
          stage("one"),
          "top/docs/one.txt",
          remote("top/docs/one.txt"),
          null,
          made,
          real,
        );
        assert.equal(one.ok, true);
        made.add("top/docs");
        // Another program moves the folder away and leaves a symlink to elsewhere in its place.
        const at = swapped === "docs" ? join(root, "top", "docs") : join(root, "top");
        Deno.renameSync(at, join(dir, "moved"));
        Deno.symlinkSync(swapped === "docs" ? join(outside, "docs") : outside, at);
        const two = place(
          fs,
          stage("two"),
          "top/docs/two.txt",
          remote("top/docs/two.txt"),
          null,
          made,
          real,
        );
        assert.deepEqual(two, { ok: false, reason: "blocked" });
        assert.equal(exists(join(outside, "docs", "two.txt")), false, "nothing outside the folder");
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}
