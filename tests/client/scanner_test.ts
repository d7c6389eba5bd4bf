/**
 * Tests for the scanner's change detection: an unchanged file is not read again; a file whose size
 * or mtime changed is rehashed; a file replaced by another with the same size and mtime (another
 * inode) is rehashed too, where the OS has inode numbers; a moved file is recognized by its inode.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { diskSpelling, scan, scanTrees, statToEntry } from "../../lib/client/scanner.ts";
import { DenoFs, toItemStat } from "../../lib/client/fs/deno_fs.ts";
import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import type { BaseEntry } from "../../lib/core/types.ts";

Deno.test("scan rehashes only what changed since the base", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "cloudsync-scan-" });
  try {
    const when = new Date(2020, 0, 2, 3, 4, 5);
    const write = async (name: string, text: string) => {
      const tmp = join(root, `.${name}.tmp`);
      await Deno.writeTextFile(tmp, text);
      await Deno.utime(tmp, when, when);
      await Deno.rename(tmp, join(root, name)); // a new inode each time
    };
    await write("same.txt", "aaaa");
    await write("replaced.txt", "bbbb");
    await write("grown.txt", "cccc");
    const first = await scan(new DenoFs(root), new Map());
    const base = new Map<string, BaseEntry>();
    for (const e of first.values()) {
      base.set(e.path, { ...e, version: 1, hash: e.hash!, chunks: e.chunks! });
    }
    await write("replaced.txt", "BBBB"); // same size, same mtime, other inode
    await Deno.writeTextFile(join(root, "grown.txt"), "ccccc");
    const hasInodes = typeof (await Deno.stat(join(root, "same.txt"))).ino === "number";
    // A file changed a moment ago is held back (it may still be being written) ...
    const held = new Map();
    const soon = await scan(new DenoFs(root), base, { held });
    await t.step("a file changed a moment ago is held, not read", () => {
      assert.equal(soon.get("grown.txt"), undefined);
      assert.equal(held.get("grown.txt")?.kind, "settling");
    });
    // ... and read once it has been still for a moment (here: the scan's clock is later).
    const again = await scan(new DenoFs(root), base, { now: Date.now() + 60_000 });
    await t.step("an unchanged file is not read", () => {
      assert.equal(again.get("same.txt")?.hash, undefined);
    });
    await t.step("a file whose size changed is rehashed", () => {
      assert.notEqual(again.get("grown.txt")?.hash, undefined);
    });
    await t.step("a file replaced with the same size and mtime is rehashed (inode)", () => {
      if (!hasInodes) return; // no inode numbers on this OS: size + mtime only
      assert.notEqual(again.get("replaced.txt")?.hash, undefined);
      assert.notEqual(again.get("replaced.txt")?.hash, base.get("replaced.txt")?.hash);
    });
    await t.step("directories carry no inode; files do where the OS has them", async () => {
      const st = await Deno.stat(join(root, "same.txt"));
      assert.equal(statToEntry("same.txt", toItemStat(st), undefined).ino, st.ino ?? undefined);
      assert.equal(statToEntry("", toItemStat(await Deno.stat(root)), undefined).ino, undefined);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("scan recognizes a moved file by its inode and does not read it", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "cloudsync-scan-" });
  try {
    await Deno.writeTextFile(join(root, "a.txt"), "aaaa");
    await Deno.writeTextFile(join(root, "b.txt"), "bbbb");
    const first = await scan(new DenoFs(root), new Map());
    if (first.get("a.txt")?.ino === undefined) return; // no inode numbers on this OS
    // Base hashes no read could produce: a reused one can only have come from the base.
    const base = new Map<string, BaseEntry>();
    for (const e of first.values()) {
      base.set(e.path, { ...e, version: 1, hash: `base-${e.path}`, chunks: [] });
    }
    await Deno.mkdir(join(root, "sub"));
    await Deno.rename(join(root, "a.txt"), join(root, "sub", "moved.txt"));
    await Deno.rename(join(root, "b.txt"), join(root, "b2.txt"));
    await Deno.writeTextFile(join(root, "b2.txt"), "BBBBB"); // moved, then changed
    const again = await scan(new DenoFs(root), base);
    await t.step("a moved file takes the hash of the base file with its inode", () => {
      assert.equal(again.get("sub/moved.txt")?.hash, "base-a.txt");
    });
    await t.step("a moved file that also changed is read", () => {
      const got = again.get("b2.txt");
      assert.notEqual(got?.hash, undefined);
      assert.notEqual(got?.hash, "base-b.txt");
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("where case does not count, a scoped scan reports items under their names on disk", async (t) => {
  const fs = new MemFs({ caseInsensitive: true, windowsNames: true });
  fs.writeText("C.txt/x", "1");
  fs.writeText("D.TXT", "2");
  fs.advance(60_000); // settled
  await t.step("diskSpelling takes each existing segment's name from its folder", async () => {
    assert.deepEqual(await diskSpelling(fs, ["c.TXT/X/z", "", "d.txt", "none/Y"]), [
      "C.txt/x/z",
      "",
      "D.TXT",
      "none/Y",
    ]);
  });
  await t.step("asked in another letter case, an item is scanned once, as spelled", async () => {
    // A watcher report or a recheck may spell a path otherwise than the disk: scanned under
    // that spelling, `C.txt` and everything in it would appear twice (once as a phantom).
    const scanned = await scanTrees(fs, new Map(), ["c.TXT", "d.txt", "none/Y"]);
    assert.deepEqual([...scanned.keys()].sort(), ["C.txt", "C.txt/x", "D.TXT"]);
  });
  await t.step("where case counts, paths are taken as they are", async () => {
    const linux = new MemFs();
    linux.writeText("C.txt", "1");
    assert.deepEqual(await diskSpelling(linux, ["c.TXT"]), ["c.TXT"]);
    assert.deepEqual([...(await scanTrees(linux, new Map(), ["c.TXT"])).keys()], []);
  });
});
