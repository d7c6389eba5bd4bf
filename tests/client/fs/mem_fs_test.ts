/**
 * What the in-memory filesystem has beyond the {@link LocalFs} contract (which
 * `local_fs_test.ts` checks): case-insensitive lookups and case-only renames, Windows' name rules,
 * crash semantics (content not fsynced is lost), a capacity (a full disk), the `before` fault
 * hook, kill/revive, the clock, and symlinks that nothing may go through.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MemFs, type MemOp } from "../../../lib/client/fs/mem_fs.ts";
import { isDiskFullError } from "../../../lib/client/fs/local_fs.ts";
import { put, text } from "./local_fs_suite.ts";

const WINDOWS = { caseInsensitive: true, windowsNames: true };
const enc = new TextEncoder();

function names(fs: MemFs, dir: string): Promise<string[]> {
  return fs.readDir(dir).then((l) => l.map((e) => e.name).sort());
}

Deno.test("MemFs case-insensitive: one name whatever its case, the case as created", async () => {
  const fs = new MemFs(WINDOWS);
  fs.writeText("Docs/Report.txt", "v1");
  assert.equal(fs.lstat("docs/report.TXT")?.kind, "file");
  assert.equal(text(fs, "DOCS/REPORT.TXT"), "v1");
  assert.deepEqual(await names(fs, ""), ["Docs"], "the case as created");
  assert.deepEqual(await names(fs, "docs"), ["Report.txt"]);
  assert.throws(
    () => fs.openSync("docs/REPORT.txt", { write: true, createNew: true }),
    Deno.errors.AlreadyExists,
  );
  assert.throws(() => fs.mkdirSync("DOCS"), Deno.errors.AlreadyExists);
  assert.throws(() => fs.linkSync("Docs/Report.txt", "docs/report.txt"), Deno.errors.AlreadyExists);
  // Writing under another case writes the same file (and keeps the name it has).
  put(fs, "docs/REPORT.TXT", "v2");
  assert.deepEqual(await names(fs, "Docs"), ["Report.txt"]);
  assert.equal(fs.readText("Docs/Report.txt"), "v2");
  // Non-ASCII letters fold too (simple upper-casing, as NTFS).
  fs.writeText("Ärger.txt", "ä");
  assert.equal(fs.readText("äRGER.TXT"), "ä");
});

Deno.test("MemFs case-insensitive: a case-only rename renames, keeping the inode", async () => {
  const fs = new MemFs(WINDOWS);
  fs.writeText("d/readme.md", "text");
  const ino = fs.lstat("d/readme.md")!.ino;
  fs.renameSync("d/readme.md", "d/README.md");
  assert.deepEqual(await names(fs, "d"), ["README.md"]);
  assert.equal(fs.lstat("d/readme.md")!.ino, ino);
  await fs.rename("D", "Dir");
  assert.deepEqual(await names(fs, ""), ["Dir"]);
  assert.equal(fs.readText("dir/readme.MD"), "text");
  // Onto another file whose name differs only in case: that file is the same one here.
  fs.writeText("x.txt", "x");
  fs.renameSync("X.TXT", "x.txt");
  assert.deepEqual(await names(fs, ""), ["Dir", "x.txt"]);
});

Deno.test("MemFs case-sensitive: names that differ in case are different files", async () => {
  const fs = new MemFs();
  fs.writeText("a.txt", "lower");
  fs.writeText("A.txt", "upper");
  assert.deepEqual(await names(fs, ""), ["A.txt", "a.txt"]);
  assert.equal(fs.lstat("A.TXT"), null);
  fs.renameSync("a.txt", "A.txt"); // replaces the other one, as on Linux
  assert.deepEqual(await names(fs, ""), ["A.txt"]);
  assert.equal(fs.readText("A.txt"), "lower");
});

Deno.test("MemFs Windows names: reserved names and characters are refused everywhere", async () => {
  const fs = new MemFs(WINDOWS);
  fs.writeText("ok.txt", "x");
  const refused = (f: () => unknown, what: string) =>
    assert.throws(f, /syntax is incorrect\. \(os error 123\)/, what);
  refused(() => fs.openSync("CON", { write: true, create: true }), "a device name");
  refused(() => fs.openSync("aux.txt", { write: true, create: true }), "a device name + ext");
  refused(() => fs.mkdirSync("a:b"), "a colon");
  refused(() => fs.mkdirSync("fine/trailing.", true), "a trailing dot, below a new folder");
  refused(() => fs.renameSync("ok.txt", "bad?.txt"), "a question mark");
  refused(() => fs.linkSync("ok.txt", "space "), "a trailing space");
  assert.equal(fs.lstat("fine")?.kind, "dir", "mkdir -p made what it could before the bad name");
  assert.equal(fs.readText("ok.txt"), "x", "the rename did not happen");
  assert.deepEqual(await names(fs, ""), ["fine", "ok.txt"]);
  // The same names are ordinary on Linux.
  const linux = new MemFs();
  linux.mkdirSync("a:b");
  put(linux, "CON", "console?");
  linux.renameSync("CON", "bad?.txt");
  assert.deepEqual(await names(linux, ""), ["a:b", "bad?.txt"]);
});

Deno.test("MemFs crash: content not fsynced is lost, fsynced content and folders stay", async () => {
  const fs = new MemFs();
  fs.writeText("user.txt", "saved by the user"); // the helper writes durably
  const h = await fs.open("tmp", { write: true, create: true });
  await h.write(enc.encode("synced"));
  await h.sync();
  await h.write(enc.encode(" and more, not synced"));
  h.close();
  put(fs, "never-synced", "gone after a crash");
  fs.mkdirSync("made/here", true);
  await fs.rename("tmp", "made/here/placed"); // directory operations are durable at once
  fs.crash();
  assert.equal(fs.readText("user.txt"), "saved by the user");
  assert.equal(fs.readText("made/here/placed"), "synced", "the rename kept the fsynced content");
  assert.equal(fs.readText("never-synced"), "", "the file exists, its data is lost");
  assert.equal(fs.lstat("never-synced")!.size, 0);
  // Shrinking is a change too: reverted unless synced.
  const t = fs.openSync("user.txt", { write: true });
  await t.truncate(4);
  t.close();
  fs.crash();
  assert.equal(fs.readText("user.txt"), "saved by the user");
});

Deno.test("MemFs capacity: a full disk fails writes with an error isDiskFullError knows", async () => {
  const fs = new MemFs();
  fs.writeText("a", "12345");
  fs.linkSync("a", "b"); // one inode: counted once
  assert.equal(fs.usedBytes(), 5);
  fs.capacity = 15;
  const h = fs.openSync("c", { write: true, create: true });
  assert.equal(h.writeSync(new Uint8Array(10)), 10, "exactly up to the capacity");
  let err: unknown = null;
  try {
    h.writeSync(new Uint8Array(1));
  } catch (e) {
    err = e;
  }
  assert.ok(isDiskFullError(err), `disk full: ${err}`);
  assert.equal(fs.lstat("c")!.size, 10, "nothing of the failed write landed");
  await assert.rejects(() => h.truncate(11), /No space left on device/);
  h.seekSync(2);
  h.writeSync(new Uint8Array(3)); // overwriting within the file needs no space
  await h.truncate(4); // frees 6 bytes
  assert.equal(fs.usedBytes(), 9);
  h.close();
  fs.capacity = 12;
  await assert.rejects(() => fs.copyFile("a", "d"), /No space left on device \(os error 28\)/);
  fs.capacity = 20;
  await fs.copyFile("a", "d");
  assert.throws(() => fs.writeText("e", "123456789"), /No space left/, "the helper too");
  assert.equal(fs.usedBytes(), 14);
});

Deno.test("MemFs before hook: sees every change, may fail it, may change the filesystem", async () => {
  const fs = new MemFs();
  const seen: string[] = [];
  fs.before = (op: MemOp, path: string) => void seen.push(`${op} ${path}`);
  fs.mkdirSync("d");
  const h = fs.openSync("d/f", { write: true, create: true });
  h.writeSync(enc.encode("x"));
  await h.sync();
  h.utimeSync(1_000);
  h.close();
  fs.chmodSync("d/f", 0o600);
  await fs.utime("d/f", 2_000);
  await fs.link("d/f", "d/g");
  await fs.rename("d/g", "d/h");
  fs.lstat("d/h");
  await fs.readDir("d");
  fs.readFileSync("d/h");
  await fs.remove("d/h");
  await fs.fsyncDir("d");
  assert.deepEqual(seen, [
    "mkdir d",
    "write d/f",
    "write d/f",
    "sync d/f",
    "utime d/f",
    "chmod d/f",
    "utime d/f",
    "link d/g",
    "rename d/g",
    "read d/h",
    "readDir d",
    "read d/h",
    "remove d/h",
    "sync d",
  ]);

  // A failure in the hook: the operation does nothing.
  fs.before = (op, path) => {
    if (op === "rename" || (op === "write" && path === "d/f")) {
      throw new Deno.errors.PermissionDenied(`Permission denied (os error 13): ${path}`);
    }
  };
  fs.writeText("src", "content");
  await assert.rejects(() => fs.rename("src", "dst"), Deno.errors.PermissionDenied);
  assert.equal(fs.readText("src"), "content");
  assert.equal(fs.lstat("dst"), null);
  assert.throws(() => put(fs, "d/f", "new"), Deno.errors.PermissionDenied);
  assert.equal(fs.readText("d/f"), "x");

  // The user edits the file right between a check and the rename over it; the hook is off while
  // it runs (its own changes call no hook).
  const ops: MemOp[] = [];
  fs.before = (op, path) => {
    ops.push(op);
    if (op === "rename") fs.writeText("dst", `edited while ${path} was renamed`);
  };
  fs.writeText("dst", "old");
  const st = fs.lstat("dst")!;
  put(fs, "src", "downloaded");
  fs.renameSync("src", "dst");
  assert.deepEqual(ops, ["read", "write", "write", "rename"], "the hook's own writes call no hook");
  assert.equal(fs.readText("dst"), "downloaded", "a plain rename replaces the edit: the RACE");
  assert.notEqual(fs.lstat("dst")!.ino, st.ino);
  fs.before = null;
});

Deno.test("MemFs kill: every call fails until revive (a process that died mid-step)", async () => {
  const fs = new MemFs();
  fs.writeText("f", "x");
  const h = fs.openSync("f", { read: true, write: true });
  const death = new Error("killed");
  fs.kill(death);
  assert.throws(() => fs.lstat("f"), /killed/);
  await assert.rejects(() => fs.readDir(""), /killed/);
  await assert.rejects(() => fs.mkdir("d"), /killed/);
  assert.throws(() => h.writeSync(enc.encode("y")), /killed/);
  assert.throws(() => h.statSync(), /killed/);
  await assert.rejects(() => h.sync(), /killed/);
  fs.revive();
  assert.equal(fs.dead, null);
  h.writeSync(enc.encode("y"));
  h.close();
  assert.equal(fs.readText("f"), "y");
});

Deno.test("MemFs clock: each change gets a time of its own; advance lets time pass", () => {
  const fs = new MemFs();
  const t0 = fs.now();
  put(fs, "a", "1");
  put(fs, "b", "2");
  const [a, b] = [fs.lstat("a")!.mtime, fs.lstat("b")!.mtime];
  assert.ok(a > t0 && b > a, `${t0} < ${a} < ${b}`);
  fs.advance(10_000);
  assert.ok(fs.now() >= b + 10_000);
  fs.lstat("a");
  const t1 = fs.now();
  fs.lstat("b");
  assert.equal(fs.now(), t1, "reading does not move the clock");
});

Deno.test("MemFs symlinks: nothing goes through one (a test sees any attempt)", () => {
  const fs = new MemFs();
  fs.mkdirSync("d");
  fs.addOther("d/link", "symlink");
  fs.addOther("pipe", "fifo");
  assert.throws(() => fs.lstat("d/link/x"), /goes through a symlink/);
  assert.throws(() => fs.mkdirSync("d/link/x", true), /goes through a symlink/);
  assert.throws(() => fs.openSync("d/link/x", { write: true, create: true }), /symlink/);
  assert.throws(() => fs.openSync("pipe", { read: true }), /is not a file/, "a FIFO is not opened");
  assert.equal(fs.inside("d/link/x"), false);
  assert.deepEqual(
    [...fs.snapshot()],
    [["d", "dir"], ["d/link", "symlink"], ["pipe", "special"]],
  );
  assert.equal(fs.readText("pipe"), null);
});
