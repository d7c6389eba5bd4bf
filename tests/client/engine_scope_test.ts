/**
 * Tests for completing a scoped scan from the merge base (`addUnscanned`): items outside the
 * scopes count as unchanged, except below a scope ancestor the scan found gone — the case of a tree
 * deleted while a watcher-driven pass ran, which used to bring the deleted folder back.
 *
 * @module
 */

import assert from "node:assert/strict";
import { addUnscanned, passScopes } from "../../lib/client/engine.ts";
import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import type { BaseEntry, LocalEntry } from "../../lib/core/types.ts";

const dir = (path: string): BaseEntry => ({
  path,
  kind: "dir",
  version: 1,
  size: 0,
  mtime: 0,
  exec: false,
  hash: "",
  chunks: [],
});
const file = (path: string): BaseEntry => ({ ...dir(path), kind: "file", size: 1, mtime: 5 });
const seen = (b: BaseEntry): LocalEntry => ({
  path: b.path,
  kind: b.kind,
  size: b.size,
  mtime: b.mtime,
  exec: b.exec,
});

Deno.test("addUnscanned completes a scoped scan from the base", async (t) => {
  const base = new Map(
    [dir("new"), dir("new/a"), file("new/a/f"), dir("new/moved"), file("new/moved/x"), file("top")]
      .map((b) => [b.path, b]),
  );
  const rows: { name: string; scopes: string[]; found: BaseEntry[]; want: string[] }[] = [
    {
      name: "scope gone, its folder still there: siblings are kept",
      scopes: ["new/moved"],
      found: [dir("new")],
      want: ["new", "new/a", "new/a/f", "top"],
    },
    {
      name: "the scope's ancestor gone too (tree deleted meanwhile): nothing below it is kept",
      scopes: ["new/moved"],
      found: [],
      want: ["top"],
    },
    {
      name: "the ancestor replaced by a file: nothing below it is kept",
      scopes: ["new/moved"],
      found: [{ ...file("new") }],
      want: ["new", "top"],
    },
    {
      name: "a changed file elsewhere: everything else is kept",
      scopes: ["top"],
      found: [file("top")],
      want: ["new", "new/a", "new/a/f", "new/moved", "new/moved/x", "top"],
    },
    {
      name: "no scopes (remote changes only): the base as it is",
      scopes: [],
      found: [],
      want: ["new", "new/a", "new/a/f", "new/moved", "new/moved/x", "top"],
    },
  ];
  for (const r of rows) {
    await t.step(r.name, () => {
      const scanned = new Map(r.found.map((b) => [b.path, seen(b)]));
      addUnscanned(scanned, base, r.scopes);
      assert.deepEqual([...scanned.keys()].sort(), r.want);
    });
  }
});

Deno.test("passScopes: rechecks are wire paths, looked at under their local names", async () => {
  // On a case-insensitive disk, wire `c.txt` lives as `c (case conflict).txt` (its alias) beside
  // `C.txt`. A recheck of `c.txt` scanned literally would look at `C.txt`, another item, and
  // never at the one that needs a look; a watcher report is a local path, spelled as on disk.
  const fs = new MemFs({ caseInsensitive: true, windowsNames: true });
  fs.writeText("C.txt", "upper");
  fs.writeText("c (case conflict).txt", "lower");
  fs.writeText("Docs/a.txt", "a");
  const aliases = new Map([["c.txt", "c (case conflict).txt"]]);
  assert.deepEqual(await passScopes(fs, ["docs/A.TXT"], ["c.txt"], aliases), [
    "Docs/a.txt",
    "c (case conflict).txt",
  ]);
  assert.deepEqual(await passScopes(fs, ["C.TXT", "docs"], ["Docs/a.txt"], new Map()), [
    "C.txt",
    "Docs",
  ]);
});
