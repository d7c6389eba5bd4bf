import assert from "node:assert/strict";
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
    const acct = meta.createAccount("serial-hash-1");
    const other = meta.createAccount("serial-hash-2");
    meta.addChunk(acct, H1, 5, 5, false);
    meta.addChunk(acct, H2, 5, 5, false);

    await t.step("a new file is accepted with the next sequence number", () => {
      assert.deepEqual(meta.commit(acct, "A", [file("d/f.txt", H1, 0)]), [{
        ok: true,
        version: 2,
      }]);
      // The parent directory was created first, with version 1.
      assert.deepEqual(meta.changes(acct, 0, 10).map((e) => [e.path, e.kind, e.version]), [
        ["d", "dir", 1],
        ["d/f.txt", "file", 2],
      ]);
    });

    await t.step("a change based on an old version is a conflict", () => {
      const [r] = meta.commit(acct, "B", [file("d/f.txt", H2, 1)]);
      assert.equal(r?.ok, false);
      assert.equal(r?.ok === false && r.reason, "conflict");
    });

    await t.step("the same content is no conflict and writes nothing", () => {
      assert.deepEqual(meta.commit(acct, "B", [file("d/f.txt", H1, 0)]), [{
        ok: true,
        version: 2,
      }]);
      assert.equal(meta.seq(acct), 2);
    });

    await t.step("changes since N returns only what changed after N, tombstones included", () => {
      meta.commit(acct, "A", [file("d/f.txt", H2, 2)]);
      meta.commit(acct, "A", [{ ...file("d/f.txt", "", 3), deleted: true, chunks: [] }]);
      const since2 = meta.changes(acct, 2, 10);
      assert.deepEqual(since2.map((e) => [e.path, e.deleted, e.version]), [["d/f.txt", true, 4]]);
    });

    await t.step("a directory with live children cannot be deleted", () => {
      meta.commit(acct, "A", [file("d/g.txt", H1, 0)]);
      const d = meta.changes(acct, 0, 100).find((e) => e.path === "d")!;
      const [r] = meta.commit(acct, "A", [{
        ...file("d", "", d.version),
        kind: "dir",
        deleted: true,
        chunks: [],
      }]);
      assert.equal(r?.ok, false);
    });

    await t.step("a file may not reference a chunk that was never uploaded", () => {
      const [r] = meta.commit(acct, "A", [file("x.txt", "3".repeat(64), 0)]);
      assert.equal(r?.ok === false && r.reason, "missing");
    });

    await t.step("another account sees none of it and cannot use its chunks", () => {
      assert.deepEqual(meta.changes(other, 0, 100), []);
      assert.deepEqual(meta.missingChunks(other, [H1]), [H1]);
      const [r] = meta.commit(other, "X", [file("steal.txt", H1, 0)]);
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
    meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteMetaStore deletes one account whole and renames devices", {
  sanitizeResources: true,
}, async () => {
  const dir = await Deno.makeTempDir();
  const meta = new SqliteMetaStore(dir);
  try {
    const gone = meta.createAccount("serial-hash-gone");
    const kept = meta.createAccount("serial-hash-kept");
    for (const acct of [gone, kept]) {
      meta.addChunk(acct, H1, 5, 5, false);
      meta.addChunk(acct, H2, 5, 5, false);
      meta.commit(acct, "A", [file("f.txt", H1, 0)]);
      meta.commit(acct, "A", [file("f.txt", H2, meta.seq(acct))]); // keeps a version
    }
    const device = meta.addDevice(gone, "old name", "token-hash");
    meta.addDevice(kept, "other", "token-hash-2");
    assert.equal(meta.renameDevice(kept, device, "wrong account"), false);
    assert.equal(meta.renameDevice(gone, device, "new name"), true);
    assert.equal(meta.devices(gone)[0]?.name, "new name");
    const before = meta.accountFootprint(kept);
    assert.deepEqual(meta.accountFootprint(gone), {
      devices: 1,
      files: 1,
      versions: 1,
      chunks: 2,
      storedBytes: 10,
    });
    assert.equal(meta.deleteAccount(gone), true);
    assert.equal(meta.accountFootprint(gone), null);
    assert.equal(meta.device(device), null);
    assert.equal(meta.deviceRevoked(device), true);
    assert.equal(meta.accountBySerialHash("serial-hash-gone"), null);
    assert.deepEqual(meta.changes(gone, 0, 10), []);
    assert.deepEqual(meta.accountIds(), [kept]);
    assert.deepEqual(meta.accountFootprint(kept), before);
    assert.equal(meta.deleteAccount(gone), false);
  } finally {
    meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});
