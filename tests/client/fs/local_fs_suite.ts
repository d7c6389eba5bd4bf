/**
 * The conformance suite every {@link LocalFs} implementation passes (after restic's
 * `internal/backend/test/suite.go`): one list of contracts, each a test step on a fresh, empty
 * filesystem, run against the real disk (`DenoFs`) and the in-memory double (`MemFs`, both name
 * rules) by `local_fs_test.ts`. The reference is the real OS (DenoFs on Linux): where MemFs
 * behaved otherwise, MemFs was fixed; where the interface promises more than the OS call gives
 * (a stat of a path below a file is "nothing there", not an error), DenoFs was. Windows
 * differences are noted where they matter.
 *
 * @example
 * ```ts
 * Deno.test("MemFs conforms", (t) => localFsSuite(t, () => Promise.resolve(memFixture())));
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { chunkStream } from "../../../lib/chunk/fastcdc.ts";
import { EMPTY_SHA256, fileHash, sha256Hex } from "../../../lib/chunk/hash.ts";
import {
  type FsHandle,
  isGone,
  type ItemStat,
  type LocalFs,
  statMatches,
  stillAs,
} from "../../../lib/client/fs/local_fs.ts";
import { statToEntry } from "../../../lib/client/scanner.ts";
import { noise } from "../../support/noise.ts";
import type { LocalEntry } from "../../../lib/core/types.ts";

/** A fresh, empty filesystem under test, and what the interface itself cannot make. */
export interface LocalFsFixture {
  fs: LocalFs;
  /** Puts at `path` a symlink to a folder outside the synced folder. */
  symlinkOut(path: string): Promise<void>;
  /** Puts a named pipe (FIFO) at `path`. */
  fifo(path: string): Promise<void>;
  /** Removes everything the fixture made. */
  close(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Writes a whole file through the interface (created or truncated). */
export function put(fs: LocalFs, path: string, text: string | Uint8Array, mode = 0o644): void {
  const h = fs.openSync(path, { write: true, create: true, truncate: true, mode });
  try {
    const data = typeof text === "string" ? enc.encode(text) : text;
    let off = 0;
    while (off < data.length) off += h.writeSync(data.subarray(off));
  } finally {
    h.close();
  }
}

/** A file's whole content as text. */
export function text(fs: LocalFs, path: string): string {
  return dec.decode(fs.readFileSync(path));
}

/** What a scan would record for `path` now. */
function scanned(fs: LocalFs, path: string): LocalEntry {
  const st = fs.lstat(path);
  assert.ok(st, `${path} exists`);
  return statToEntry(path, st, undefined);
}

/** Asserts that `fn` rejects or throws an error `check` accepts; returns it. */
async function fails(
  fn: () => unknown,
  check: (e: unknown) => boolean,
  what: string,
): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    assert.ok(check(e), `${what}: unexpected error ${(e as Error)?.constructor?.name}: ${e}`);
    return e;
  }
  assert.fail(`${what}: expected an error`);
}

const is = (cls: new (...a: never[]) => Error) => (e: unknown) => e instanceof cls;
const says = (re: RegExp) => (e: unknown) => e instanceof Error && re.test(e.message);

/** The chunk list the chunker makes of `data` (the reference for {@link LocalFs.chunkFile}). */
async function referenceChunks(data: Uint8Array): Promise<{ hash: string; size: number }[]> {
  let at = 0;
  const out = [];
  for await (
    const c of chunkStream((buf) => {
      if (at >= data.length) return Promise.resolve(null);
      const n = Math.min(buf.length, data.length - at);
      buf.set(data.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    })
  ) out.push({ hash: c.hash, size: c.size });
  return out;
}

function inoOf(fs: LocalFs, path: string): number | undefined {
  return fs.lstat(path)?.ino;
}

/** Registers the suite's steps on `t`; each runs on a filesystem `fresh` makes. */
export async function localFsSuite(
  t: Deno.TestContext,
  fresh: () => Promise<LocalFsFixture>,
): Promise<void> {
  const step = (name: string, fn: (x: LocalFsFixture, fs: LocalFs) => Promise<void> | void) =>
    t.step(name, async () => {
      const x = await fresh();
      try {
        await fn(x, x.fs);
      } finally {
        await x.close();
      }
    });

  await step("platform and where describe the filesystem", (_x, fs) => {
    assert.equal(typeof fs.platform.caseInsensitive, "boolean");
    assert.equal(typeof fs.platform.windowsNames, "boolean");
    assert.equal(typeof fs.where, "string");
  });

  // ---- lstat ----

  await step("lstat: null for nothing there, also below a file (no error)", async (_x, fs) => {
    assert.equal(fs.lstat("nope"), null);
    assert.equal(fs.lstat("nope/deeper"), null);
    put(fs, "f", "x");
    // The OS says ENOTDIR here; the interface says: nothing is there.
    assert.equal(fs.lstat("f/x"), null);
    assert.equal(await fs.lstatAsync("nope"), null);
    assert.equal(await fs.lstatAsync("f/x"), null);
  });

  await step(
    "lstat: a file's kind, size, modification time, permissions, inode",
    async (_x, fs) => {
      put(fs, "f.txt", "hello", 0o600);
      const t0 = Date.UTC(2021, 4, 6, 7, 8, 9, 123);
      fs.utimeSync("f.txt", t0);
      const st = fs.lstat("f.txt")!;
      assert.equal(st.kind, "file");
      assert.equal(st.size, 5);
      assert.equal(st.mtime, t0, "whole milliseconds, exactly as set");
      if (st.mode !== null) assert.equal(st.mode, 0o600); // null on Windows
      assert.equal(typeof st.ino, "number");
      assert.equal(st.fifo, undefined);
      assert.deepEqual(await fs.lstatAsync("f.txt"), st);
      put(fs, "g.txt", "");
      assert.equal(fs.lstat("g.txt")!.size, 0);
      assert.notEqual(fs.lstat("g.txt")!.ino, st.ino, "a new file has an inode of its own");
    },
  );

  await step("lstat: a folder is kind dir, size 0, mtime 0, no inode", async (_x, fs) => {
    await fs.mkdir("d");
    put(fs, "d/inner", "makes the folder bigger");
    for (const p of ["", "d"]) {
      const st = fs.lstat(p)!;
      assert.equal(st.kind, "dir", p);
      assert.equal(st.size, 0);
      assert.equal(st.mtime, 0, "folder times are not synced");
      assert.equal(st.ino, undefined);
    }
  });

  await step("lstat: a symlink and a FIFO exist but are not files", async (x, fs) => {
    await x.symlinkOut("link");
    await x.fifo("pipe");
    const l = fs.lstat("link")!;
    assert.equal(l.kind, "symlink", "not followed");
    assert.equal(l.fifo, undefined);
    const p = fs.lstat("pipe")!;
    assert.equal(p.kind, "special");
    assert.equal(p.fifo, true);
    assert.deepEqual(await fs.lstatAsync("pipe"), p);
  });

  // ---- readDir ----

  await step(
    "readDir: every entry's name and kind; errors for a missing folder or a file",
    async (x, fs) => {
      put(fs, "f", "1");
      await fs.mkdir("d");
      put(fs, "d/inner", "2");
      await x.symlinkOut("link");
      await x.fifo("pipe");
      const got = (await fs.readDir("")).sort((a, b) => a.name < b.name ? -1 : 1);
      assert.deepEqual(got, [
        { name: "d", kind: "dir" },
        { name: "f", kind: "file" },
        { name: "link", kind: "symlink" },
        { name: "pipe", kind: "special" },
      ]);
      assert.deepEqual(await fs.readDir("d"), [{ name: "inner", kind: "file" }]);
      await fs.mkdir("empty");
      assert.deepEqual(await fs.readDir("empty"), []);
      await fails(() => fs.readDir("nope"), is(Deno.errors.NotFound), "readDir of nothing");
      await fails(() => fs.readDir("f"), is(Deno.errors.NotADirectory), "readDir of a file");
      await fails(() => fs.readDir("f"), isGone, "readDir of a file: gone, for the scanner");
    },
  );

  // ---- inside ----

  await step("inside: true along real folders, also below ones not created yet", async (_x, fs) => {
    assert.equal(fs.inside("top.txt"), true);
    assert.equal(fs.inside(""), true);
    await fs.mkdir("a/b", true);
    assert.equal(fs.inside("a/b/c.txt"), true);
    assert.equal(fs.inside("a/b/new/deeper/c.txt"), true, "the nearest existing folder decides");
    assert.equal(fs.inside("nothing/yet/here.txt"), true);
  });

  await step(
    "inside: false through a symlinked folder, or with a file on the way",
    async (x, fs) => {
      await fs.mkdir("a");
      await x.symlinkOut("a/out");
      assert.equal(fs.inside("a/out/f.txt"), false, "the parent is a symlink to elsewhere");
      assert.equal(fs.inside("a/out/new/f.txt"), false, "below it, not created yet");
      assert.equal(fs.inside("a/out"), true, "the link itself sits in a real folder");
      put(fs, "file", "x");
      assert.equal(fs.inside("file/f.txt"), false, "a file is not a folder");
      assert.equal(fs.inside("file/new/f.txt"), false);
    },
  );

  await step(
    "dirId: the same folder keeps it; another folder, a file, a symlink: not",
    async (x, fs) => {
      await fs.mkdir("a/b", true);
      const id = fs.dirId("a/b");
      assert.notEqual(id, null);
      assert.equal(fs.dirId("a/b"), id);
      assert.notEqual(fs.dirId(""), null);
      await fs.rename("a/b", "a/c");
      assert.equal(fs.dirId("a/c"), id, "a moved folder is the same folder");
      await fs.mkdir("a/b");
      assert.notEqual(fs.dirId("a/b"), id, "a new folder in its place is another");
      assert.equal(fs.dirId("nothing"), null);
      put(fs, "f", "x");
      assert.equal(fs.dirId("f"), null, "a file is no folder");
      await x.symlinkOut("a/out");
      assert.equal(fs.dirId("a/out"), null, "a symlink is no folder");
    },
  );

  // ---- open and handles ----

  await step("open: missing without create, existing with createNew, modes", async (_x, fs) => {
    await fails(() => fs.open("nope", { read: true }), is(Deno.errors.NotFound), "open nothing");
    assert.throws(() => fs.openSync("nope", { read: true }), Deno.errors.NotFound);
    assert.throws(
      () => fs.openSync("no/such/dir/f", { write: true, create: true }),
      Deno.errors.NotFound,
    );
    const h = fs.openSync("new", { write: true, createNew: true, mode: 0o600 });
    h.close();
    const mode = fs.lstat("new")!.mode;
    if (mode !== null) assert.equal(mode, 0o600);
    await fails(
      () => fs.open("new", { write: true, createNew: true }),
      is(Deno.errors.AlreadyExists),
      "createNew over a file",
    );
    put(fs, "f", "x");
    assert.throws(
      () => fs.openSync("f/g", { write: true, create: true }),
      Deno.errors.NotADirectory,
    );
  });

  await step("open: a folder is not a file", async (_x, fs) => {
    await fs.mkdir("d");
    await fails(
      () => fs.open("d", { write: true }),
      is(Deno.errors.IsADirectory),
      "open a folder to write",
    );
    assert.throws(() => fs.readFileSync("d"), Deno.errors.IsADirectory);
  });

  await step("open: create and truncate need write (as Deno's own open says)", (_x, fs) => {
    put(fs, "f", "keep");
    assert.throws(() => fs.openSync("f", { read: true, truncate: true }), /requires 'write'/);
    assert.throws(() => fs.openSync("g", { read: true, create: true }), /require 'write'/);
    assert.equal(text(fs, "f"), "keep");
    assert.equal(fs.lstat("g"), null);
  });

  await step("handles: write, seek, read, end of file", async (_x, fs) => {
    const h = await fs.open("f", { read: true, write: true, create: true });
    try {
      assert.equal(await h.write(enc.encode("hello world")), 11);
      await h.seek(6);
      const buf = new Uint8Array(10);
      assert.equal(await h.read(buf), 5);
      assert.equal(dec.decode(buf.subarray(0, 5)), "world");
      assert.equal(await h.read(buf), null, "at the end");
      assert.equal(h.readSync(new Uint8Array(0)), 0, "an empty read is 0, not the end");
      h.seekSync(0);
      assert.equal(h.writeSync(enc.encode("J")), 1);
      h.seekSync(0);
      const all = new Uint8Array(11);
      assert.equal(h.readSync(all), 11);
      assert.equal(dec.decode(all), "Jello world");
      assert.equal(h.readSync(all), null);
    } finally {
      h.close();
    }
    assert.equal(text(fs, "f"), "Jello world");
  });

  await step(
    "handles: truncate shrinks and extends with zeros; a gap reads as zeros",
    async (_x, fs) => {
      put(fs, "f", "abcdefghij");
      const h = await fs.open("f", { read: true, write: true });
      try {
        await h.truncate(2);
        assert.equal(text(fs, "f"), "ab");
        await h.truncate(4);
        assert.deepEqual([...fs.readFileSync("f")], [97, 98, 0, 0], "extended with zeros");
        await h.truncate(2);
        // Writing past the end leaves a hole, which reads as zeros (never the old bytes).
        await h.seek(5);
        await h.write(enc.encode("X"));
        assert.deepEqual([...fs.readFileSync("f")], [97, 98, 0, 0, 0, 88]);
        assert.equal((await h.stat()).size, 6);
      } finally {
        h.close();
      }
      const t = fs.openSync("f", { write: true, truncate: true });
      t.close();
      assert.equal(fs.lstat("f")!.size, 0, "opened with truncate: empty");
    },
  );

  await step("handles: stat, sync and utime on the open file", async (_x, fs) => {
    const h = fs.openSync("f", { read: true, write: true, create: true, mode: 0o600 });
    try {
      h.writeSync(enc.encode("12345"));
      await h.sync();
      const st: ItemStat = await h.stat();
      assert.equal(st.kind, "file");
      assert.equal(st.size, 5);
      assert.equal(st.ino, inoOf(fs, "f"));
      assert.deepEqual(h.statSync(), st);
      const t0 = Date.UTC(2019, 1, 2, 3, 4, 5, 678);
      h.utimeSync(t0);
      assert.equal(h.statSync().mtime, t0);
    } finally {
      h.close();
    }
    assert.equal(fs.lstat("f")!.mtime, Date.UTC(2019, 1, 2, 3, 4, 5, 678));
  });

  await step(
    "handles: a read-only handle refuses writes; a closed one everything",
    async (_x, fs) => {
      put(fs, "f", "same");
      const h: FsHandle = fs.openSync("f", { read: true });
      assert.throws(() => h.writeSync(enc.encode("no")), /Bad file descriptor/);
      await fails(() => h.write(enc.encode("no")), says(/Bad file descriptor/), "write read-only");
      h.close();
      assert.equal(text(fs, "f"), "same");
      assert.throws(() => h.readSync(new Uint8Array(1)), Deno.errors.BadResource);
      await fails(() => h.read(new Uint8Array(1)), is(Deno.errors.BadResource), "read closed");
      assert.throws(() => h.statSync(), Deno.errors.BadResource);
    },
  );

  // ---- readFileSync, chunkFile ----

  await step("readFileSync: the whole content; NotFound for nothing", (_x, fs) => {
    put(fs, "f", "content");
    assert.equal(text(fs, "f"), "content");
    put(fs, "e", "");
    assert.equal(fs.readFileSync("e").length, 0);
    assert.throws(() => fs.readFileSync("nope"), Deno.errors.NotFound);
  });

  await step(
    "chunkFile: empty, small and multi-chunk files as the chunker cuts them",
    async (_x, fs) => {
      put(fs, "empty", "");
      assert.deepEqual(await fs.chunkFile("empty", 0), { size: 0, hash: EMPTY_SHA256, chunks: [] });
      put(fs, "small", "small content");
      const small = await fs.chunkFile("small", 13);
      const h = sha256Hex(enc.encode("small content"));
      assert.deepEqual(small, { size: 13, hash: h, chunks: [{ hash: h, size: 13 }] });
      const big = noise(3 * 1024 * 1024 + 17);
      put(fs, "big", big);
      const want = await referenceChunks(big);
      assert.ok(want.length > 3, "several chunks");
      const got = await fs.chunkFile("big", big.length);
      assert.deepEqual(got, { size: big.length, hash: fileHash(want), chunks: want });
      // A wrong size hint (the file changed since its stat) still gives the content's chunks.
      assert.deepEqual(await fs.chunkFile("big", 10), got);
      await fails(() => fs.chunkFile("nope", 10), is(Deno.errors.NotFound), "chunk nothing");
    },
  );

  // ---- rename ----

  await step("rename: to a new name keeps the inode and content", async (_x, fs) => {
    put(fs, "a", "content a");
    const ino = inoOf(fs, "a");
    await fs.rename("a", "b");
    assert.equal(fs.lstat("a"), null);
    assert.equal(inoOf(fs, "b"), ino);
    assert.equal(text(fs, "b"), "content a");
    await fs.mkdir("d");
    fs.renameSync("b", "d/c");
    assert.equal(inoOf(fs, "d/c"), ino);
    assert.equal(fs.lstat("b"), null);
  });

  await step("rename: over an existing file replaces it (the source's inode)", async (_x, fs) => {
    put(fs, "new", "the new version");
    put(fs, "old", "old");
    const ino = inoOf(fs, "new");
    await fs.rename("new", "old");
    assert.equal(text(fs, "old"), "the new version");
    assert.equal(inoOf(fs, "old"), ino);
    assert.equal(fs.lstat("new"), null);
    put(fs, "x", "x");
    fs.renameSync("x", "old");
    assert.equal(text(fs, "old"), "x");
  });

  await step("rename: a missing source fails so that isGone recognizes it", async (_x, fs) => {
    await fails(() => fs.rename("nope", "b"), isGone, "rename nothing");
    assert.throws(() => fs.renameSync("nope", "b"), (e) => isGone(e));
    put(fs, "f", "x");
    await fails(() => fs.rename("f/below", "b"), isGone, "rename below a file");
    assert.equal(fs.lstat("b"), null);
    await fails(
      () => fs.rename("f", "no/such/dir/f"),
      is(Deno.errors.NotFound),
      "rename into a missing folder",
    );
    assert.equal(text(fs, "f"), "x", "nothing moved");
  });

  await step(
    "rename: folders, over empty and non-empty folders, files and into themselves",
    async (_x, fs) => {
      await fs.mkdir("d/sub", true);
      put(fs, "d/sub/f", "inside");
      await fs.rename("d", "e");
      assert.equal(text(fs, "e/sub/f"), "inside");
      await fs.mkdir("empty");
      await fs.rename("e", "empty");
      assert.equal(text(fs, "empty/sub/f"), "inside", "a folder replaces an empty folder");
      await fs.mkdir("other");
      put(fs, "other/x", "x");
      await fails(
        () => fs.rename("other", "empty"),
        says(/Directory not empty \(os error 39\)/),
        "a folder over a non-empty folder",
      );
      put(fs, "file", "f");
      await fails(
        () => fs.rename("file", "other"),
        is(Deno.errors.IsADirectory),
        "file over folder",
      );
      await fails(
        () => fs.rename("other", "file"),
        is(Deno.errors.NotADirectory),
        "folder over file",
      );
      await fails(
        () => fs.rename("empty", "empty/sub/inner"),
        says(/Invalid argument \(os error 22\)/),
        "a folder into itself",
      );
      assert.equal(text(fs, "empty/sub/f"), "inside");
      assert.equal(text(fs, "other/x"), "x");
      assert.equal(text(fs, "file"), "f");
    },
  );

  await step("rename: between two names of one inode does nothing (POSIX)", async (_x, fs) => {
    put(fs, "a", "shared");
    await fs.link("a", "b");
    await fs.rename("a", "b");
    // On Windows, MoveFileEx replaces b and a is gone; the client never renames a hard link
    // onto its twin.
    assert.equal(text(fs, "a"), "shared");
    assert.equal(text(fs, "b"), "shared");
  });

  // ---- link ----

  await step("link: a second name for the same inode, never replacing anything", async (_x, fs) => {
    put(fs, "a", "content");
    await fs.mkdir("d");
    await fs.link("a", "d/b");
    assert.equal(inoOf(fs, "d/b"), inoOf(fs, "a"));
    const h = fs.openSync("d/b", { write: true });
    h.writeSync(enc.encode("C"));
    h.close();
    assert.equal(text(fs, "a"), "Content", "one file, two names");
    put(fs, "c", "other");
    await fails(() => fs.link("a", "c"), is(Deno.errors.AlreadyExists), "link over a file");
    assert.throws(() => fs.linkSync("a", "c"), Deno.errors.AlreadyExists);
    assert.equal(text(fs, "c"), "other");
    await fails(() => fs.link("nope", "x"), is(Deno.errors.NotFound), "link nothing");
    await fails(() => fs.link("d", "d2"), is(Deno.errors.PermissionDenied), "link a folder");
    assert.throws(() => fs.linkSync("a", "no/such/x"), Deno.errors.NotFound);
  });

  // ---- remove ----

  await step(
    "remove: a file, an empty folder, one name of a linked file, a symlink",
    async (x, fs) => {
      put(fs, "f", "x");
      await fs.remove("f");
      assert.equal(fs.lstat("f"), null);
      await fs.mkdir("d");
      fs.removeSync("d");
      assert.equal(fs.lstat("d"), null);
      put(fs, "a", "linked");
      fs.linkSync("a", "b");
      await fs.remove("a");
      assert.equal(text(fs, "b"), "linked");
      await x.symlinkOut("link");
      await fs.remove("link");
      assert.equal(fs.lstat("link"), null);
      await fails(() => fs.remove("nope"), isGone, "remove nothing");
      assert.throws(() => fs.removeSync("nope"), Deno.errors.NotFound);
    },
  );

  await step(
    "remove: a non-empty folder is refused and kept whole (never recursive)",
    async (_x, fs) => {
      await fs.mkdir("d/sub", true);
      put(fs, "d/sub/f", "precious");
      await fails(() => fs.remove("d"), says(/Directory not empty \(os error 39\)/), "remove d");
      assert.throws(() => fs.removeSync("d/sub"), /Directory not empty/);
      assert.equal(text(fs, "d/sub/f"), "precious");
    },
  );

  // ---- mkdir ----

  await step(
    "mkdir: one level, recursive, existing, missing parent, over and below a file",
    async (_x, fs) => {
      await fs.mkdir("a");
      assert.equal(fs.lstat("a")?.kind, "dir");
      await fails(() => fs.mkdir("a"), is(Deno.errors.AlreadyExists), "mkdir existing");
      await fails(() => fs.mkdir("x/y"), is(Deno.errors.NotFound), "mkdir with no parent");
      await fs.mkdir("a/b/c", true);
      assert.equal(fs.lstat("a/b/c")?.kind, "dir");
      await fs.mkdir("a/b/c", true); // existing: fine
      fs.mkdirSync("s/t", true);
      fs.mkdirSync("s/t/u");
      assert.equal(fs.lstat("s/t/u")?.kind, "dir");
      put(fs, "f", "x");
      await fails(() => fs.mkdir("f", true), is(Deno.errors.AlreadyExists), "mkdir -p over a file");
      assert.throws(() => fs.mkdirSync("f"), Deno.errors.AlreadyExists);
      await fails(
        () => fs.mkdir("f/g/h", true),
        is(Deno.errors.NotADirectory),
        "mkdir -p below a file",
      );
      assert.equal(text(fs, "f"), "x");
    },
  );

  // ---- chmod, utime ----

  await step("chmod: permission bits of files and folders", async (_x, fs) => {
    put(fs, "f", "x", 0o644);
    await fs.mkdir("d");
    await fs.chmod("f", 0o755);
    fs.chmodSync("d", 0o700);
    const f = fs.lstat("f")!;
    if (f.mode !== null) { // Windows has no permission bits: chmod does nothing there
      assert.equal(f.mode, 0o755);
      assert.equal(fs.lstat("d")!.mode, 0o700);
      fs.chmodSync("f", 0o600);
      assert.equal(fs.lstat("f")!.mode, 0o600);
      await fails(() => fs.chmod("nope", 0o644), is(Deno.errors.NotFound), "chmod nothing");
    }
    fs.chmodSync("d", 0o755);
  });

  await step("utime: exact milliseconds; NotFound for nothing", async (_x, fs) => {
    put(fs, "f", "x");
    const t1 = Date.UTC(2020, 0, 2, 3, 4, 5, 6);
    await fs.utime("f", t1);
    assert.equal(fs.lstat("f")!.mtime, t1);
    const t2 = Date.UTC(1999, 11, 31, 23, 59, 59, 999);
    fs.utimeSync("f", t2);
    assert.equal(fs.lstat("f")!.mtime, t2);
    await fails(() => fs.utime("nope", t1), is(Deno.errors.NotFound), "utime nothing");
    assert.throws(() => fs.utimeSync("nope", t1), Deno.errors.NotFound);
  });

  // ---- fsyncDir, copyFile, now ----

  await step("fsyncDir: the root and a folder", async (_x, fs) => {
    await fs.mkdir("d");
    put(fs, "d/f", "x");
    await fs.fsyncDir("");
    await fs.fsyncDir("d");
    assert.equal(text(fs, "d/f"), "x");
  });

  await step(
    "copyFile: content and permissions, a new inode, over an existing file",
    async (_x, fs) => {
      put(fs, "a", "the content", 0o600);
      await fs.copyFile("a", "b");
      assert.equal(text(fs, "b"), "the content");
      assert.notEqual(inoOf(fs, "b"), inoOf(fs, "a"));
      const mode = fs.lstat("b")!.mode;
      if (mode !== null) assert.equal(mode, 0o600);
      put(fs, "c", "longer old content of c");
      await fs.copyFile("a", "c");
      assert.equal(text(fs, "c"), "the content");
      assert.equal(text(fs, "a"), "the content", "the source is untouched");
      await fails(() => fs.copyFile("nope", "x"), is(Deno.errors.NotFound), "copy nothing");
      await fs.mkdir("d");
      await fails(() => fs.copyFile("a", "d"), is(Deno.errors.IsADirectory), "copy over a folder");
    },
  );

  await step(
    "now: milliseconds since the epoch, by the clock that stamps writes",
    async (_x, fs) => {
      const a = fs.now();
      assert.ok(Number.isInteger(a));
      assert.ok(a > Date.UTC(2020, 0, 1) && a < Date.UTC(2100, 0, 1));
      put(fs, "f", "x");
      const m = fs.lstat("f")!.mtime;
      assert.ok(Math.abs(m - a) < 60_000, `a write is stamped near now(): ${m} vs ${a}`);
      await fs.fsyncDir("");
      assert.ok(fs.now() >= a, "never goes back");
    },
  );

  // ---- the helpers ----

  await step("stillAs: what the scan saw, by size, time and inode", async (x, fs) => {
    assert.equal(stillAs(fs, "f", null), true, "nothing, as expected");
    put(fs, "f", "12345");
    fs.utimeSync("f", Date.UTC(2020, 0, 1));
    const seen = scanned(fs, "f");
    assert.equal(stillAs(fs, "f", null), false, "something appeared");
    assert.equal(stillAs(fs, "f", seen), true);
    fs.utimeSync("f", Date.UTC(2020, 0, 2));
    assert.equal(stillAs(fs, "f", seen), false, "touched");
    fs.utimeSync("f", seen.mtime);
    assert.equal(stillAs(fs, "f", seen), true);
    put(fs, "f", "123456");
    fs.utimeSync("f", seen.mtime);
    assert.equal(stillAs(fs, "f", seen), false, "another size");
    // Another file of the same size and time in its place: the inode tells.
    put(fs, "g", "abcde");
    fs.utimeSync("g", seen.mtime);
    await fs.rename("g", "f");
    assert.equal(stillAs(fs, "f", seen), false, "replaced by another inode");
    const { ino: _, ...noIno } = seen;
    assert.equal(stillAs(fs, "f", noIno), true, "without a recorded inode, size and time decide");
    await fs.remove("f");
    assert.equal(stillAs(fs, "f", seen), false, "gone");
    await fs.mkdir("f");
    assert.equal(stillAs(fs, "f", seen), false, "a folder where the file was");
    assert.equal(stillAs(fs, "f", scanned(fs, "f")), true, "a folder stays a folder");
    await x.symlinkOut("l");
    assert.equal(stillAs(fs, "l", { ...seen, path: "l" }), false, "a symlink is never a file");
  });

  await step("statMatches: a stat taken already, and the nothing cases", (_x, fs) => {
    put(fs, "f", "x");
    const st = fs.lstat("f");
    const seen = scanned(fs, "f");
    assert.equal(statMatches(st, seen), true);
    assert.equal(statMatches(null, null), true);
    assert.equal(statMatches(null, seen), false);
    assert.equal(statMatches(st, null), false);
  });

  await step(
    "isGone: what the filesystem throws for nothing there, and only that",
    async (_x, fs) => {
      put(fs, "f", "x");
      const missing = await fails(() => fs.remove("nope"), () => true, "remove nothing");
      assert.equal(isGone(missing), true);
      const belowFile = await fails(() => fs.readDir("f"), () => true, "readDir of a file");
      assert.equal(isGone(belowFile), true);
      const exists = await fails(() => fs.mkdir("f"), () => true, "mkdir over a file");
      assert.equal(isGone(exists), false);
      const denied = await fails(() => fs.link("", "x"), () => true, "link the root");
      assert.equal(isGone(denied), false);
      assert.equal(isGone(new Error("No such file")), false, "only the error classes count");
    },
  );
}
