/**
 * Tests for selective sync (`client/selective.ts`) with the real engine on in-memory devices:
 * `exclude` removes only what the server holds (a changed, new, ignored, unsynced or odd item is
 * kept and listed), frees the space, and leaves the server and the other device untouched; an
 * exclude cut short by a fault loses nothing and a second run finishes it; `include` brings the
 * path back, merged with what was kept. Also the parsing of paths and rule lines.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type MemDevice, memPair } from "../support/mem_device.ts";
import {
  excludePath,
  excludesExactly,
  includePath,
  selectivePath,
} from "../../lib/client/selective.ts";
import { CommandError } from "../../lib/client/folder_session.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

const serverPaths = (d: MemDevice) => [...d.state.loadRemote().keys()].sort();

Deno.test(
  "exclude removes what the server holds, keeps the rest; include brings it back",
  opts,
  async () => {
    await using w = await memPair();
    const { a, b } = w;
    a.fs.writeText("Archive/2019/a.jpg", "jpeg a\n");
    a.fs.writeText("Archive/2019/b.jpg", "jpeg b\n");
    a.fs.writeText("Archive/notes.txt", "v1\n");
    a.fs.writeText("Archive/empty/.keep", "");
    a.fs.writeText("Docs/x.txt", "x\n");
    await a.sync();
    await b.sync();
    const before = serverPaths(a);
    // Not on the server: an edit, a new file, an ignored file, a new folder, a symlink.
    a.fs.writeText("Archive/notes.txt", "v2, only here\n");
    a.fs.writeText("Archive/new.txt", "new\n");
    a.fs.writeText("Archive/2019/.DS_Store", "litter\n");
    a.fs.mkdirSync("Archive/fresh", true);
    a.fs.addOther("Archive/link", "symlink");
    a.fs.advance(5_000); // nothing is being written any more
    const r = await excludePath(a.fs, a.state, a.peer, "Archive");
    assert.equal(r.removedFiles, 3); // a.jpg, b.jpg, empty/.keep
    assert.equal(r.removedFolders, 1); // Archive/empty
    assert.equal(r.freed, "jpeg a\n".length + "jpeg b\n".length);
    assert.deepEqual(r.kept.map((k) => k.path), [
      "Archive/2019/.DS_Store",
      "Archive/fresh",
      "Archive/link",
      "Archive/new.txt",
      "Archive/notes.txt",
    ]);
    const why = new Map(r.kept.map((k) => [k.path, k.why]));
    assert.match(why.get("Archive/notes.txt")!, /changed here/);
    assert.match(why.get("Archive/new.txt")!, /never synced/);
    assert.match(why.get("Archive/2019/.DS_Store")!, /ignored by the rule ".DS_Store"/);
    assert.match(why.get("Archive/link")!, /symlink/);
    assert.equal(a.fs.readText("Archive/2019/a.jpg"), null);
    assert.equal(a.fs.readText("Archive/notes.txt"), "v2, only here\n");
    assert.equal(a.fs.readText(".cloudsync/ignore"), "/Archive\n");
    // The client runs again: nothing is deleted or sent, here or anywhere.
    await a.sync();
    await b.sync();
    assert.deepEqual(serverPaths(a), before);
    assert.equal(b.fs.readText("Archive/2019/a.jpg"), "jpeg a\n");
    assert.equal(b.fs.readText("Archive/new.txt"), null);
    assert.equal(a.fs.readText("Archive/2019/a.jpg"), null);
    // Include: the removed files come back, the kept edit is sent as an edit.
    const inc = await includePath(a.fs, "Archive");
    assert.deepEqual(inc, { path: "Archive", removed: 1, still: null });
    assert.equal(a.fs.readText(".cloudsync/ignore"), "");
    await a.sync();
    await b.sync();
    assert.equal(a.fs.readText("Archive/2019/a.jpg"), "jpeg a\n");
    assert.equal(a.fs.readText("Archive/empty/.keep"), "");
    assert.equal(b.fs.readText("Archive/notes.txt"), "v2, only here\n");
    assert.equal(b.fs.readText("Archive/new.txt"), "new\n");
    assert.equal(a.fs.readText("Archive/2019/.DS_Store"), "litter\n");
    const conflicts = [...a.files().keys()].filter((p) => p.includes("conflict"));
    assert.deepEqual(conflicts, []);
  },
);

Deno.test(
  "an exclude cut short loses nothing, and running it again finishes it",
  opts,
  async () => {
    await using w = await memPair();
    const { a, b } = w;
    for (let i = 0; i < 5; i++) a.fs.writeText(`Big/f${i}.bin`, `content ${i}\n`);
    await a.sync();
    await b.sync();
    let removes = 0;
    a.fs.before = (op) => {
      if (op === "remove" && ++removes === 3) throw new Error("killed");
    };
    await assert.rejects(excludePath(a.fs, a.state, a.peer, "Big"), /killed/);
    a.fs.before = null;
    assert.equal([...a.files().keys()].filter((p) => p.startsWith("Big/")).length, 3);
    // A client started now deletes nothing anywhere.
    await a.sync();
    await b.sync();
    assert.equal(serverPaths(b).filter((p) => p.startsWith("Big/")).length, 5);
    assert.equal([...b.files().keys()].filter((p) => p.startsWith("Big/")).length, 5);
    const r = await excludePath(a.fs, a.state, a.peer, "Big");
    assert.equal(r.removedFiles, 3);
    assert.deepEqual(r.kept, []);
    assert.equal(a.fs.readText(".cloudsync/ignore"), "/Big\n"); // written once
    assert.equal(a.fs.lstat("Big"), null);
    await includePath(a.fs, "Big");
    await a.sync();
    for (let i = 0; i < 5; i++) assert.equal(a.fs.readText(`Big/f${i}.bin`), `content ${i}\n`);
  },
);

Deno.test(
  "exclude asks the server: a file changed or deleted there since the last sync is kept",
  opts,
  async () => {
    await using w = await memPair();
    const { a, b } = w;
    a.fs.writeText("Archive/edited.txt", "v1\n");
    a.fs.writeText("Archive/deleted.txt", "d\n");
    a.fs.writeText("Archive/same.txt", "same\n");
    a.fs.writeText("Archive/gone/x.txt", "x\n");
    await a.sync();
    await b.sync();
    // B changes the server; A (stopped) does not know: its state.db says all is synced.
    b.fs.writeText("Archive/edited.txt", "v2 from B\n");
    b.fs.removeSync("Archive/deleted.txt");
    b.fs.removeSync("Archive/gone/x.txt");
    b.fs.removeSync("Archive/gone");
    await b.sync();
    const r = await excludePath(a.fs, a.state, a.peer, "Archive");
    assert.equal(r.removedFiles, 1); // same.txt only
    assert.deepEqual(r.kept.map((k) => k.path), [
      "Archive/deleted.txt",
      "Archive/edited.txt",
      "Archive/gone/x.txt",
    ]);
    assert.equal(a.fs.lstat("Archive/gone")?.kind, "dir"); // what it holds is kept
    for (const k of r.kept) {
      assert.match(k.why, /the server has another version of it now/);
    }
    assert.equal(a.fs.readText("Archive/edited.txt"), "v1\n");
    assert.equal(a.fs.readText("Archive/deleted.txt"), "d\n");
    assert.equal(a.fs.readText("Archive/same.txt"), null);
  },
);

Deno.test(
  "excluding many files trips no mass-delete guard and deletes nothing on the server",
  opts,
  async () => {
    await using w = await memPair();
    const { a, b } = w;
    for (let i = 0; i < 150; i++) a.fs.writeText(`Photos/p${i}.jpg`, `photo ${i}\n`);
    for (let i = 0; i < 10; i++) a.fs.writeText(`Docs/d${i}.txt`, `doc ${i}\n`);
    await a.sync();
    await b.sync();
    const r = await excludePath(a.fs, a.state, a.peer, "Photos");
    assert.equal(r.removedFiles, 150);
    await a.sync();
    assert.deepEqual(a.warnings.filter((l) => /vanished|propagate/.test(l)), []);
    await b.sync();
    assert.equal(serverPaths(b).filter((p) => p.startsWith("Photos/")).length, 150);
    assert.equal([...b.files().keys()].filter((p) => p.startsWith("Photos/")).length, 150);
    // The same by hand: a rule in .cloudsync/ignore, then the files deleted here.
    b.fs.writeText(".cloudsync/ignore", "/Photos/\n");
    await b.sync();
    for (let i = 0; i < 150; i++) b.fs.removeSync(`Photos/p${i}.jpg`);
    await b.sync();
    assert.deepEqual(b.warnings.filter((l) => /vanished|propagate/.test(l)), []);
    assert.equal(serverPaths(a).filter((p) => p.startsWith("Photos/")).length, 150);
    await includePath(a.fs, "Photos");
    await a.sync();
    assert.equal([...a.files().keys()].filter((p) => p.startsWith("Photos/")).length, 150);
  },
);

Deno.test("exclude of a path that is nowhere changes nothing", opts, async () => {
  await using w = await memPair();
  const { a } = w;
  a.fs.writeText("a.txt", "a\n");
  await a.sync();
  await assert.rejects(
    excludePath(a.fs, a.state, a.peer, "nothing/here"),
    /^Error: Cannot exclude nothing\/here: there is no such file or folder/,
  );
  assert.equal(a.fs.readText(".cloudsync/ignore"), null);
});

Deno.test("include says which rule still ignores a path", opts, async () => {
  await using w = await memPair();
  const { a } = w;
  a.fs.writeText(".cloudignore", "*.iso\n");
  a.fs.writeText(".cloudsync/ignore", "# mine\n/Archive\n");
  const shared = await includePath(a.fs, "disk.iso");
  assert.equal(shared.removed, 0);
  assert.deepEqual(shared.still, { origin: ".cloudignore", line: 1, pattern: "*.iso" });
  const inner = await includePath(a.fs, "Archive/2019");
  assert.equal(inner.removed, 0);
  assert.deepEqual(inner.still, { origin: ".cloudsync/ignore", line: 2, pattern: "/Archive" });
  const plain = await includePath(a.fs, "Docs");
  assert.deepEqual(plain, { path: "Docs", removed: 0, still: null });
  assert.equal(a.fs.readText(".cloudsync/ignore"), "# mine\n/Archive\n");
});

Deno.test("rule lines and paths", async (t) => {
  await t.step("excludesExactly: exclude's own lines and the same by hand, no wildcard", () => {
    const yes: [string, string][] = [
      ["/Archive", "Archive"],
      ["/Archive/", "Archive"],
      ["Archive/", "Archive"],
      ["/a b/c", "a b/c"],
      ["/star\\*", "star*"],
      ["/trail\\ ", "trail "],
      ["/Archive\r", "Archive"],
    ];
    for (const [line, wire] of yes) assert.equal(excludesExactly(line, wire), true, line);
    const no: [string, string][] = [
      ["!/Archive", "Archive"],
      ["# /Archive", "Archive"],
      ["/Arch*", "Archive"],
      ["/Archive/2019", "Archive"],
      ["/Archive", "Archive/2019"],
    ];
    for (const [line, wire] of no) assert.equal(excludesExactly(line, wire), false, line);
  });
  await t.step("selectivePath: relative to the folder or absolute inside it", () => {
    const root = "/home/me/Sync";
    assert.equal(selectivePath(root, "Archive/", "exclude"), "Archive");
    assert.equal(selectivePath(root, "/home/me/Sync/Photos/2019", "exclude"), "Photos/2019");
    assert.equal(selectivePath(root, "./a/../b", "exclude"), "b");
    const errors: [string, RegExp][] = [
      [".", /^Cannot exclude the whole folder/],
      ["/home/me/Other", /^Cannot exclude \/home\/me\/Other: it is not inside/],
      ["../x", /is not inside/],
      [".cloudsync/ignore", /^Cannot exclude .cloudsync\/ignore: .*\.cloudsync/],
      [".cloudignore", /^Cannot exclude .cloudignore: it holds the rules/],
    ];
    for (const [given, re] of errors) {
      assert.throws(() => selectivePath(root, given, "exclude"), (e: Error) => {
        assert.ok(e instanceof CommandError, given);
        assert.equal(e.code, 2);
        assert.match(e.message, re);
        return true;
      });
    }
    // Only the root's .cloudignore holds rules.
    assert.equal(selectivePath(root, "Sub/.cloudignore", "exclude"), "Sub/.cloudignore");
  });
});
