/**
 * The real sync engine with ignore rules, on in-memory devices (`MemFs`) against the real server
 * in this process: the defaults and `.cloudignore` in both directions, a file that becomes
 * ignored kept everywhere, a folder deleted elsewhere kept here for the ignored files in it,
 * ignored folders never entered, a rules change applied at the next (even scoped) pass, a
 * device's own `.cloudsync/ignore` (what other devices edit, delete or move never touches what
 * it ignores), and ignored case twins on a case-insensitive device.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type MemDevice, memPair, WINDOWS } from "../support/mem_device.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** The folder's paths, sorted (`.cloudsync` left out). */
const paths = (d: MemDevice) => [...d.files().keys()].sort();

/** What the server holds live. */
function serverPaths(d: MemDevice): string[] {
  return [...d.state.loadRemote().keys()].sort();
}

Deno.test(
  "defaults and .cloudignore: ignored items are neither sent nor received",
  opts,
  async () => {
    await using w = await memPair();
    const { a, b } = w;
    a.fs.writeText(".cloudignore", "# build output\n*.tmp\n!keep.tmp\nbuild/\n/only-root.txt\n");
    a.fs.writeText("a.txt", "a\n");
    a.fs.writeText(".DS_Store", "litter\n");
    a.fs.writeText("docs/~$report.docx", "office lock\n");
    a.fs.writeText("docs/.~lock.report.odt#", "libreoffice lock\n");
    a.fs.writeText("docs/report.odt", "report\n");
    a.fs.writeText("x.tmp", "temp\n");
    a.fs.writeText("keep.tmp", "kept\n");
    a.fs.writeText("app/build/out.o", "object\n");
    a.fs.writeText("app/build.txt", "not a folder\n");
    a.fs.writeText("only-root.txt", "root\n");
    a.fs.writeText("sub/only-root.txt", "deeper\n");
    a.fs.writeText("web/node_modules/x.js", "js\n");
    a.fs.writeText("web/index.html", "<p>\n");
    await a.sync();
    await b.sync();
    const want = [
      ".cloudignore",
      "a.txt",
      "app",
      "app/build.txt",
      "docs",
      "docs/report.odt",
      "keep.tmp",
      "sub",
      "sub/only-root.txt",
      "web",
      "web/index.html",
      "web/node_modules",
      "web/node_modules/x.js",
    ];
    assert.deepEqual(paths(b), want);
    assert.deepEqual(serverPaths(b), want);
    // The other way round: B's litter stays on B.
    b.fs.writeText("web/Thumbs.db", "thumbs\n");
    b.fs.writeText("y.tmp", "temp\n");
    b.fs.writeText("from-b.txt", "b\n");
    await b.sync();
    await a.sync();
    assert.equal(a.fs.readText("from-b.txt"), "b\n");
    assert.equal(a.fs.readText("web/Thumbs.db"), null);
    assert.equal(a.fs.readText("y.tmp"), null);
    assert.deepEqual(a.warnings, []);
  },
);

Deno.test("an ignored folder is never entered: node_modules costs nothing", opts, async () => {
  await using w = await memPair();
  const { a } = w;
  a.fs.writeText(".cloudignore", "node_modules/\n");
  for (let i = 0; i < 50; i++) a.fs.writeText(`web/node_modules/p${i}/index.js`, `${i}\n`);
  a.fs.writeText("web/index.html", "<p>\n");
  const touched: string[] = [];
  a.fs.before = (op, path) => {
    if (path.includes("node_modules") && (op === "readDir" || op === "read")) {
      touched.push(`${op} ${path}`);
    }
  };
  await a.sync();
  // A scoped pass for a change inside it (what the watcher reports) does not look either.
  a.fs.writeText("web/node_modules/p1/index.js", "changed\n");
  await a.sync(1, ["web/node_modules/p1/index.js"]);
  assert.deepEqual(touched, []);
  assert.deepEqual(serverPaths(a), [".cloudignore", "web", "web/index.html"]);
});

Deno.test("a file that becomes ignored stops syncing and is kept everywhere", opts, async () => {
  await using w = await memPair();
  const { a, b } = w;
  a.fs.writeText("notes.log", "v1\n");
  a.fs.writeText("cache/big.bin", "cached\n");
  a.fs.writeText("a.txt", "a\n");
  await a.sync();
  await b.sync();
  assert.equal(b.fs.readText("notes.log"), "v1\n");
  // Most of the synced files become ignored at once: no mass-delete guard, no deletion.
  for (let i = 0; i < 150; i++) a.fs.writeText(`cache/f${i}`, `${i}\n`);
  await a.sync();
  await b.sync();
  a.fs.writeText(".cloudignore", "*.log\ncache/\n");
  await a.sync();
  await b.sync();
  assert.equal(b.fs.readText(".cloudignore"), "*.log\ncache/\n");
  // Each side edits or deletes its copy: nothing moves any more, nothing is deleted.
  a.fs.writeText("notes.log", "v2 on A\n");
  b.fs.writeText("notes.log", "v2 on B\n");
  a.fs.removeSync("cache/big.bin");
  await a.sync();
  await b.sync();
  await a.sync();
  assert.equal(a.fs.readText("notes.log"), "v2 on A\n");
  assert.equal(b.fs.readText("notes.log"), "v2 on B\n");
  assert.equal(b.fs.readText("cache/big.bin"), "cached\n");
  assert.equal(b.fs.readText("cache/f149"), "149\n");
  assert.ok(serverPaths(a).includes("notes.log"));
  assert.ok(serverPaths(a).includes("cache/big.bin"));
  assert.equal(paths(a).filter((p) => p.includes("conflict")).length, 0);
  for (const d of [a, b]) {
    assert.equal(d.warnings.filter((l) => /mass|Cannot/i.test(l)).length, 0, d.warnings.join());
  }
  // Re-included: merged as new on both sides, nothing lost (two contents: a conflict copy).
  a.fs.writeText(".cloudignore", "cache/\n");
  await a.sync();
  await b.sync();
  await a.sync();
  const logs = (d: MemDevice) =>
    paths(d).filter((p) => p.startsWith("notes")).map((p) => d.fs.readText(p)).sort();
  assert.deepEqual(logs(a), ["v2 on A\n", "v2 on B\n"]);
  assert.deepEqual(logs(b), ["v2 on A\n", "v2 on B\n"]);
  assert.equal(a.fs.readText("notes.log"), "v2 on A\n"); // an edit, not a conflict, on A
  // A deletion made while ignored is not sent: the file comes back from the server.
  a.fs.writeText(".cloudignore", "");
  await a.sync();
  await b.sync();
  assert.equal(a.fs.readText("cache/big.bin"), "cached\n");
  assert.equal(b.fs.readText("cache/big.bin"), "cached\n");
  assert.equal(a.fs.readText("cache/f149"), "149\n");
});

Deno.test("a folder deleted elsewhere stays here while it holds ignored files", opts, async () => {
  await using w = await memPair();
  const { a, b } = w;
  a.fs.writeText("D/a.txt", "a\n");
  a.fs.writeText("E/b.txt", "b\n");
  await a.sync();
  await b.sync();
  b.fs.writeText("D/.DS_Store", "litter\n");
  b.fs.writeText("E/sub/~$x.docx", "lock\n");
  await b.sync();
  a.fs.removeSync("D/a.txt");
  a.fs.removeSync("D");
  a.fs.removeSync("E/b.txt");
  a.fs.removeSync("E");
  await a.sync();
  // A server push: passes with no scan (the folders are taken as the base has them).
  const r = await b.sync(1, []);
  assert.equal(r?.deferred, 0, JSON.stringify(r));
  assert.equal(r?.deletedHere, 2, JSON.stringify(r));
  assert.equal(b.fs.readText("D/a.txt"), null);
  assert.equal(b.fs.readText("E/b.txt"), null);
  assert.equal(b.fs.readText("D/.DS_Store"), "litter\n");
  assert.equal(b.fs.readText("E/sub/~$x.docx"), "lock\n");
  // Nothing left to do on either side, and the folders are not created again on A.
  assert.equal(await b.sync(2), null);
  await a.sync();
  assert.deepEqual(paths(a), []);
  assert.deepEqual(serverPaths(a), []);
});

Deno.test(
  "a folder deleted here is not deleted on the server while it holds ignored files",
  opts,
  async () => {
    await using w = await memPair();
    const { a, b } = w;
    a.fs.writeText("D/old.log", "log\n");
    a.fs.writeText("D/a.txt", "a\n");
    await a.sync();
    await b.sync();
    a.fs.writeText(".cloudignore", "*.log\n");
    await a.sync();
    await b.sync();
    b.fs.removeSync("D/old.log");
    b.fs.removeSync("D/a.txt");
    b.fs.removeSync("D");
    const r = await b.sync();
    assert.equal(r?.refused ?? 0, 0);
    assert.equal(await b.sync(2), null);
    await a.sync();
    assert.equal(a.fs.readText("D/a.txt"), null);
    assert.equal(a.fs.readText("D/old.log"), "log\n");
    assert.deepEqual(serverPaths(a), [".cloudignore", "D", "D/old.log"]);
  },
);

Deno.test("a change of the rules applies at the next pass, even a scoped one", opts, async () => {
  await using w = await memPair();
  const { a, b } = w;
  a.fs.writeText(".cloudignore", "private/\n");
  a.fs.writeText("private/diary.txt", "secret\n");
  a.fs.writeText("a.txt", "a\n");
  await a.sync();
  assert.deepEqual(serverPaths(a), [".cloudignore", "a.txt"]);
  // The watcher reports only the rule file; the pass must still find what it lets through.
  a.fs.writeText(".cloudignore", "# nothing\n");
  await a.sync(1, [".cloudignore"]);
  assert.ok(serverPaths(a).includes("private/diary.txt"), serverPaths(a).join());
  await b.sync();
  assert.equal(b.fs.readText("private/diary.txt"), "secret\n");
});

Deno.test(".cloudsync/ignore: this device skips a folder the others keep", opts, async () => {
  await using w = await memPair();
  const { a, b } = w;
  b.fs.writeText(".cloudsync/ignore", "/Archive\n");
  a.fs.writeText("Archive/2019/a.jpg", "jpg\n");
  a.fs.writeText("Docs/x.txt", "x\n");
  await a.sync();
  await b.sync();
  assert.deepEqual(paths(b), ["Docs", "Docs/x.txt"]);
  b.fs.writeText("Archive/mine.txt", "only on B\n");
  await b.sync();
  await a.sync();
  assert.equal(a.fs.readText("Archive/mine.txt"), null);
  assert.equal(a.fs.readText("Archive/2019/a.jpg"), "jpg\n");
  // Removing the rule brings the folder back, merged: nothing is lost on either side.
  b.fs.removeSync(".cloudsync/ignore");
  await b.sync();
  await a.sync();
  assert.equal(b.fs.readText("Archive/2019/a.jpg"), "jpg\n");
  assert.equal(a.fs.readText("Archive/mine.txt"), "only on B\n");
});

Deno.test("a case-insensitive device ignores case twins the rules name", opts, async () => {
  await using w = await memPair(WINDOWS);
  const { a, b } = w;
  a.fs.writeText(".cloudignore", "*.tmp\n");
  a.fs.writeText("Cache.TMP", "one\n");
  a.fs.writeText("cache.tmp", "two\n");
  a.fs.writeText("Report.txt", "upper\n");
  a.fs.writeText("report.txt", "lower\n");
  await a.sync();
  b.fs.writeText("thumbs.db", "litter\n");
  await b.sync();
  const got = paths(b);
  assert.equal(got.filter((p) => /tmp$/i.test(p)).length, 0, got.join());
  assert.equal(got.filter((p) => /^report/i.test(p)).length, 2, got.join());
  await a.sync();
  assert.equal(a.fs.readText("thumbs.db"), null);
  assert.equal(a.fs.readText("cache.tmp"), "two\n");
});

Deno.test(
  "what other devices change, move or delete never touches a file this device ignores",
  opts,
  async () => {
    await using w = await memPair();
    const { a, b } = w;
    for (let i = 0; i < 120; i++) a.fs.writeText(`Archive/f${i}.txt`, `v1 ${i}\n`);
    a.fs.writeText("Archive/moved.txt", "moved\n");
    a.fs.writeText("Docs/x.txt", "x\n");
    await a.sync();
    await b.sync();
    // B ignores Archive/ from now on, and keeps its copies.
    b.fs.writeText(".cloudsync/ignore", "/Archive/\n");
    await b.sync();
    // A edits, deletes, moves out of and into Archive/.
    a.fs.writeText("Archive/f0.txt", "v2 on A\n");
    for (let i = 1; i < 60; i++) a.fs.removeSync(`Archive/f${i}.txt`);
    a.fs.renameSync("Archive/moved.txt", "Docs/moved.txt");
    a.fs.renameSync("Docs/x.txt", "Archive/x.txt");
    a.fs.writeText("Archive/new.txt", "new on A\n");
    await a.sync();
    assert.equal(serverPaths(a).filter((p) => p.startsWith("Archive/")).length, 63);
    await b.sync();
    assert.equal(b.fs.readText("Archive/f0.txt"), "v1 0\n");
    for (let i = 1; i < 120; i++) assert.equal(b.fs.readText(`Archive/f${i}.txt`), `v1 ${i}\n`);
    assert.equal(b.fs.readText("Archive/moved.txt"), "moved\n"); // kept here
    assert.equal(b.fs.readText("Docs/moved.txt"), "moved\n"); // and received where it went
    assert.equal(b.fs.readText("Archive/x.txt"), null); // moved into what B ignores: not received
    assert.equal(b.fs.readText("Docs/x.txt"), null); // its old place follows A
    assert.equal(b.fs.readText("Archive/new.txt"), null);
    assert.deepEqual(b.warnings.filter((l) => /vanished|propagate/.test(l)), []);
  },
);
