/**
 * Tests for the scanner's change detection: an unchanged file is not read again; a file whose size
 * or mtime changed is rehashed; a file replaced by another with the same size and mtime (another
 * inode) is rehashed too, where the OS has inode numbers; a moved file is recognized by its inode.
 * What it skips (symlinks, FIFOs, unusable names, nested state folders) and what it holds
 * (unreadable, being written), on MemFs with its fault hook.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  diskSpelling,
  type HeldItem,
  scan,
  scanTrees,
  statToEntry,
} from "../../lib/client/scanner.ts";
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

/** A scan of `fs` after its clock moved on (nothing is "written a moment ago"). */
async function scanLater(fs: MemFs, base = new Map<string, BaseEntry>(), scopes = [""]) {
  fs.advance(60_000);
  const skipped = new Map<string, string>();
  const held = new Map<string, HeldItem>();
  const blockers = new Map<string, string>();
  const found = await scanTrees(fs, base, scopes, {
    skipped: (p, why) => skipped.set(p, why),
    held,
    blockers,
  });
  return { found, skipped, held, blockers };
}

Deno.test("scan skips what it does not sync, says why, and notes what blocks a name", async (t) => {
  const fs = new MemFs();
  fs.writeText("ok.txt", "fine");
  fs.addOther("link", "symlink");
  fs.addOther("d/pipe", "fifo");
  fs.writeText("e\u0301.txt", "not NFC"); // "é" as e + combining accent
  fs.writeText("back\\slash.txt", "no backslashes on the wire");
  fs.writeText("proj/.git/index.lock", "git's lock");
  fs.writeText("proj/.git/HEAD", "ref: main");
  fs.writeText("sub/.cloudsync/state", "another client's folder");
  const { found, skipped, blockers } = await scanLater(fs);
  await t.step("what syncs is found", () => {
    assert.deepEqual([...found.keys()].sort(), [
      "d",
      "ok.txt",
      "proj",
      "proj/.git",
      "proj/.git/HEAD",
      "sub",
    ]);
  });
  await t.step("each skipped item with its reason", () => {
    assert.match(skipped.get("link")!, /symlinks are not synced/);
    assert.match(skipped.get("d/pipe")!, /named pipes are not synced/);
    assert.match(skipped.get("e\u0301.txt")!, /not in Unicode NFC form/);
    assert.match(skipped.get("back\\slash.txt")!, /backslash/);
    assert.match(skipped.get("sub/.cloudsync")!, /never synced/);
    assert.equal(skipped.has("proj/.git/index.lock"), false, "ignored silently");
  });
  await t.step("a symlink or a FIFO blocks its name for a remote file", () => {
    assert.deepEqual(Object.fromEntries(blockers), { "link": "symlink", "d/pipe": "special file" });
  });
  await t.step("scoped to the items themselves: the same decisions", async () => {
    const s = await scanLater(fs, new Map(), ["link", "d/pipe", "sub/.cloudsync", "gone/x"]);
    assert.deepEqual([...s.found.keys()].sort(), ["d", "sub"]);
    assert.match(s.skipped.get("link")!, /symlinks/);
    assert.match(s.skipped.get("d/pipe")!, /named pipes/);
    assert.equal(s.blockers.get("d/pipe"), "special file");
  });
});

Deno.test("scan holds what it cannot read, and never takes it as deleted", async (t) => {
  const fs = new MemFs();
  fs.writeText("locked/inside.txt", "x");
  fs.writeText("secret.txt", "y");
  fs.writeText("unreadable.bin", "z");
  fs.writeText("vanishing.txt", "v");
  fs.writeText("growing.log", "line 1\n");
  fs.mkdirSync("gone-dir");
  fs.writeText("bad\uFFFDname", "what Deno gives for a name that is not UTF-8");
  const reads = new Map<string, number>();
  fs.before = (op, path) => {
    const n = (reads.get(`${op} ${path}`) ?? 0) + 1;
    reads.set(`${op} ${path}`, n);
    const denied = () =>
      new Deno.errors.PermissionDenied(`Permission denied (os error 13): ${path}`);
    if (op === "readDir" && path === "locked") throw denied();
    if (op === "readDir" && path === "gone-dir") fs.removeSync("gone-dir"); // deleted meanwhile
    if (op === "read" && path === "secret.txt") throw denied(); // even its stat
    if (op === "read" && path === "unreadable.bin" && n === 2) throw denied(); // its content
    if (op === "read" && path === "vanishing.txt" && n === 2) fs.removeSync(path);
    if (op === "read" && path === "growing.log" && n === 2) fs.writeText(path, "line 1\nline 2\n");
    // A name the OS lists but cannot open (lossy UTF-8): it is not there when looked up.
    if (op === "read" && path === "bad\uFFFDname") fs.removeSync(path);
  };
  const { found, held, skipped } = await scanLater(fs);
  fs.before = null;
  await t.step("an unlistable folder and unreadable files are held as unreadable", () => {
    assert.equal(held.get("locked")?.kind, "unreadable");
    assert.match(held.get("locked")!.reason, /cannot be read \(permission denied\)/);
    assert.equal(held.get("secret.txt")?.kind, "unreadable");
    assert.equal(held.get("unreadable.bin")?.kind, "unreadable");
    assert.equal(found.has("unreadable.bin"), false);
  });
  await t.step("a file written while it was read is held as unstable", () => {
    assert.equal(held.get("growing.log")?.kind, "unstable");
    assert.equal(found.has("growing.log"), false);
  });
  await t.step("what vanished meanwhile is simply not there", () => {
    assert.equal(found.has("vanishing.txt"), false);
    assert.equal(held.has("vanishing.txt"), false);
    assert.equal(found.has("gone-dir"), true, "listed before it went");
    assert.equal(held.has("gone-dir"), false);
  });
  await t.step("a name that cannot be opened is skipped with a reason", () => {
    assert.match(skipped.get("bad\uFFFDname")!, /not valid UTF-8/);
  });
});

Deno.test("scan: a root that is not a folder is an error, never an empty folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-scan-" });
  try {
    await Deno.writeTextFile(join(dir, "file"), "x");
    await assert.rejects(
      () => scan(new DenoFs(join(dir, "file")), new Map()),
      /Cannot scan .*: it is not a directory/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("statToEntry: where the OS has no permission bits, the base's are kept", () => {
  const st = { kind: "file" as const, size: 3, mtime: 5, mode: null };
  const base: BaseEntry = {
    path: "x",
    kind: "file",
    version: 1,
    size: 3,
    mtime: 5,
    exec: true,
    mode: 0o750,
    hash: "",
    chunks: [],
  };
  assert.deepEqual(statToEntry("x", st, base), {
    path: "x",
    kind: "file",
    size: 3,
    mtime: 5,
    exec: true,
    mode: 0o750,
  });
  assert.deepEqual(statToEntry("x", st, undefined), {
    path: "x",
    kind: "file",
    size: 3,
    mtime: 5,
    exec: false,
  });
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
