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
