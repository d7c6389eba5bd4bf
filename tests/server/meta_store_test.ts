import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { SqliteMetaStore } from "../../lib/server/meta_store.ts";
import { FsBlobStore } from "../../lib/server/blob_store.ts";
import { collect } from "../../lib/server/retention.ts";
import type { CommitItem } from "../../lib/server/meta_store.ts";

const H1 = "1".repeat(64);
const H2 = "2".repeat(64);

function file(path: string, hash: string, baseVersion: number): CommitItem {
  return {
    path,
    baseVersion,
    kind: "file",
    deleted: false,
    size: 5,
    mtime: 1,
    exec: false,
    hash,
    chunks: [{ hash, size: 5 }],
  };
}

Deno.test("SqliteMetaStore keeps a journal, kept versions and per-account isolation", {
  sanitizeResources: true,
}, async (t) => {
  const dir = await Deno.makeTempDir();
  const meta = new SqliteMetaStore(dir);
  try {
    const acct = await meta.createAccount("serial-hash-1");
    const other = await meta.createAccount("serial-hash-2");
    await meta.addChunks(acct, [{ hash: H1, size: 5, stored: 5, compressed: false }]);
    await meta.addChunks(acct, [{ hash: H2, size: 5, stored: 5, compressed: false }]);

    await t.step("a new file is accepted with the next sequence number", async () => {
      assert.deepEqual(await meta.commit(acct, "A", [file("d/f.txt", H1, 0)]), [{
        ok: true,
        version: 2,
      }]);
      // The parent directory was created first, with version 1.
      assert.deepEqual((await meta.changes(acct, 0, 10)).map((e) => [e.path, e.kind, e.version]), [
        ["d", "dir", 1],
        ["d/f.txt", "file", 2],
      ]);
    });

    await t.step("a change based on an old version is a conflict", async () => {
      const [r] = await meta.commit(acct, "B", [file("d/f.txt", H2, 1)]);
      assert.equal(r?.ok, false);
      assert.equal(r?.ok === false && r.reason, "conflict");
    });

    await t.step("the same content is no conflict and writes nothing", async () => {
      assert.deepEqual(await meta.commit(acct, "B", [file("d/f.txt", H1, 0)]), [{
        ok: true,
        version: 2,
      }]);
      assert.equal(await meta.seq(acct), 2);
    });

    await t.step(
      "changes since N returns only what changed after N, tombstones included",
      async () => {
        await meta.commit(acct, "A", [file("d/f.txt", H2, 2)]);
        await meta.commit(acct, "A", [{ ...file("d/f.txt", "", 3), deleted: true, chunks: [] }]);
        const since2 = await meta.changes(acct, 2, 10);
        assert.deepEqual(since2.map((e) => [e.path, e.deleted, e.version]), [[
          "d/f.txt",
          true,
          4,
        ]]);
      },
    );

    await t.step("a directory with live children cannot be deleted", async () => {
      await meta.commit(acct, "A", [file("d/g.txt", H1, 0)]);
      const d = (await meta.changes(acct, 0, 100)).find((e) => e.path === "d")!;
      const [r] = await meta.commit(acct, "A", [{
        ...file("d", "", d.version),
        kind: "dir",
        deleted: true,
        chunks: [],
      }]);
      assert.equal(r?.ok, false);
    });

    await t.step("a file may not reference a chunk that was never uploaded", async () => {
      const [r] = await meta.commit(acct, "A", [file("x.txt", "3".repeat(64), 0)]);
      assert.equal(r?.ok === false && r.reason, "missing");
    });

    await t.step("another account sees none of it and cannot use its chunks", async () => {
      assert.deepEqual(await meta.changes(other, 0, 100), []);
      assert.deepEqual(await meta.missingChunks(other, [H1]), [H1]);
      const [r] = await meta.commit(other, "X", [file("steal.txt", H1, 0)]);
      assert.equal(r?.ok === false && r.reason, "missing");
    });

    await t.step("retention forgets old versions, then collects chunks nothing uses", async () => {
      const blobs = new FsBlobStore(dir);
      await blobs.put(acct, H1, new TextEncoder().encode("one!!"));
      await blobs.put(acct, H2, new TextEncoder().encode("two!!"));
      const later = Date.now() + 2 * 24 * 3600 * 1000;
      // d/g.txt still uses H1; H2 is only in kept versions of d/f.txt.
      let r = await collect(meta, blobs, 30, later);
      assert.deepEqual(r, { versions: 0, chunks: 0 });
      r = await collect(meta, blobs, 0, later);
      assert.equal(r.chunks, 1);
      assert.equal(await blobs.get(acct, H2), null);
      assert.notEqual(await blobs.get(acct, H1), null);
    });
  } finally {
    await meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteMetaStore adds the mode column to a database made by an older server", {
  sanitizeResources: true,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The tables as servers before permission bits made them, with a file and a kept version.
    const old = new DatabaseSync(join(dir, "meta.db"));
    old.exec(`
      CREATE TABLE accounts(id TEXT PRIMARY KEY, serial_hash TEXT NOT NULL UNIQUE,
        seq INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
      CREATE TABLE entries(account TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
        deleted INTEGER NOT NULL, version INTEGER NOT NULL, size INTEGER NOT NULL,
        mtime INTEGER NOT NULL, exec INTEGER NOT NULL, hash TEXT NOT NULL, chunks TEXT NOT NULL,
        device TEXT NOT NULL, PRIMARY KEY(account, path)) WITHOUT ROWID;
      CREATE TABLE versions(account TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
        deleted INTEGER NOT NULL, version INTEGER NOT NULL, size INTEGER NOT NULL,
        mtime INTEGER NOT NULL, exec INTEGER NOT NULL, hash TEXT NOT NULL, chunks TEXT NOT NULL,
        device TEXT NOT NULL, replaced INTEGER NOT NULL);
      INSERT INTO accounts VALUES ('acct', 'serial', 2, 1);
      INSERT INTO entries VALUES ('acct', 'f.txt', 'file', 0, 2, 5, 1, 1, '${H2}',
        '[{"hash":"${H2}","size":5}]', 'A');
      INSERT INTO versions VALUES ('acct', 'f.txt', 'file', 0, 1, 5, 1, 1, '${H1}',
        '[{"hash":"${H1}","size":5}]', 'A', 1);`);
    old.close();
    const meta = new SqliteMetaStore(dir);
    try {
      const [e] = await meta.changes("acct", 0, 10);
      assert.deepEqual([e?.path, e?.exec, "mode" in e!], ["f.txt", true, false]);
      await meta.addChunks("acct", [{ hash: H2, size: 5, stored: 5, compressed: false }]);
      assert.deepEqual(
        await meta.commit("acct", "A", [{ ...file("f.txt", H2, 2), exec: true, mode: 0o750 }]),
        [{ ok: true, version: 3 }],
      );
      assert.equal((await meta.changes("acct", 2, 10))[0]?.mode, 0o750);
      const kept = [];
      for await (const v of meta.verifyKeptVersions("acct")) kept.push([v.version, v.mode]);
      assert.deepEqual(kept, [[1, undefined], [2, undefined]]);
    } finally {
      await meta.close();
    }
    // Opening it again (the column exists now) changes nothing.
    const again = new SqliteMetaStore(dir);
    assert.equal((await again.changes("acct", 2, 10))[0]?.mode, 0o750);
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteMetaStore dates the versions of a database made by an older server", {
  sanitizeResources: true,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Before `made`: f.txt written at mtime 100, replaced at 5000 and at 9000; a deletion now.
    const old = new DatabaseSync(join(dir, "meta.db"));
    const cols = `account TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
        deleted INTEGER NOT NULL, version INTEGER NOT NULL, size INTEGER NOT NULL,
        mtime INTEGER NOT NULL, exec INTEGER NOT NULL, hash TEXT NOT NULL, chunks TEXT NOT NULL,
        device TEXT NOT NULL, mode INTEGER`;
    old.exec(`
      CREATE TABLE accounts(id TEXT PRIMARY KEY, serial_hash TEXT NOT NULL UNIQUE,
        seq INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
      CREATE TABLE entries(${cols}, PRIMARY KEY(account, path)) WITHOUT ROWID;
      CREATE TABLE versions(${cols}, replaced INTEGER NOT NULL);
      INSERT INTO accounts VALUES ('acct', 'serial', 3, 1);
      INSERT INTO entries VALUES ('acct', 'f.txt', 'file', 1, 3, 0, 0, 0, '', '[]', 'A', NULL);
      INSERT INTO versions VALUES ('acct', 'f.txt', 'file', 0, 1, 5, 100, 0, '${H1}',
        '[{"hash":"${H1}","size":5}]', 'A', NULL, 5000);
      INSERT INTO versions VALUES ('acct', 'f.txt', 'file', 0, 2, 5, 4000, 0, '${H2}',
        '[{"hash":"${H2}","size":5}]', 'A', NULL, 9000);`);
    old.close();
    const meta = new SqliteMetaStore(dir);
    try {
      const h = await meta.history("acct", { path: "f.txt", limit: 10 });
      assert.deepEqual(
        h.rows.map((v) => [v.version, v.deleted, v.made, v.replaced]),
        [[3, true, 9000, null], [2, false, 5000, 9000], [1, false, 100, 5000]],
      );
      // At any instant, one version: the listing as of then agrees.
      const at = async (t: number) =>
        (await meta.listAt("acct", { path: "", at: t, limit: 10 })).rows.map((e) => e.version);
      assert.deepEqual(await at(99), []);
      assert.deepEqual(await at(4999), [1]);
      assert.deepEqual(await at(5000), [2]);
      assert.deepEqual(await at(9000), [3]);
    } finally {
      await meta.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("retention thins each file's old versions by the policy, deleted files too", {
  sanitizeResources: true,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const meta = new SqliteMetaStore(dir);
    const blobs = new FsBlobStore(dir);
    try {
      const acct = await meta.createAccount("s");
      await meta.addChunks(acct, [{ hash: H1, size: 5, stored: 5, compressed: false }]);
      // Two files with 6 versions each (metadata changes), then one of them deleted.
      for (const path of ["a.txt", "gone.txt"]) {
        let base = 0;
        for (let i = 0; i < 6; i++) {
          const [r] = await meta.commit(acct, "A", [{ ...file(path, H1, base), mtime: i + 1 }]);
          base = r!.ok ? r!.version : base;
        }
        if (path === "gone.txt") {
          await meta.commit(acct, "A", [{ ...file(path, H1, base), deleted: true }]);
        }
      }
      // Date them: version k of each made on day k of October 2026, at noon UTC.
      const db = new DatabaseSync(join(dir, "meta.db"));
      const day = (k: number) => Date.UTC(2026, 9, k, 12);
      for (const path of ["a.txt", "gone.txt"]) {
        const rows = db.prepare("SELECT version FROM versions WHERE path = ? ORDER BY version")
          .all(path) as { version: number }[];
        rows.forEach((r, k) => {
          db.prepare("UPDATE versions SET made = ?, replaced = ? WHERE path = ? AND version = ?")
            .run(day(k + 1), day(k + 2), path, r.version);
        });
        db.prepare("UPDATE entries SET made = ? WHERE path = ?").run(day(rows.length + 1), path);
      }
      db.close();
      const now = Date.UTC(2026, 11, 31);
      const r = await collect(meta, blobs, { keepDays: 30, daily: 2, weekly: 0, monthly: 0 }, now);
      // a.txt: 5 kept versions, the 2 most recent days kept; gone.txt: 6, the same.
      assert.equal(r.versions, 3 + 4);
      const left = new Map<string, number[]>();
      for await (const v of meta.verifyKeptVersions(acct)) {
        left.set(v.path, [...(left.get(v.path) ?? []), v.mtime]);
      }
      assert.deepEqual(Object.fromEntries(left), { "a.txt": [4, 5], "gone.txt": [5, 6] });
    } finally {
      await meta.close();
      await blobs.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
