import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { type CommitItem, SqliteMetaStore } from "../../lib/server/meta_store.ts";
import { FsBlobStore } from "../../lib/server/blob_store.ts";
import { verify } from "../../lib/server/verify.ts";
import { compressChunk } from "../../lib/chunk/compress.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";
import type { ChunkRef } from "../../lib/core/types.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A store with two accounts, nested files (one compressed chunk), an overwrite and a delete. */
async function fixture(dir: string) {
  const meta = new SqliteMetaStore(dir);
  const blobs = new FsBlobStore(dir);
  const acct = await meta.createAccount("serial-1");
  const other = await meta.createAccount("serial-2");
  const store = async (account: string, data: Uint8Array): Promise<ChunkRef> => {
    const hash = sha256Hex(data);
    const z = compressChunk(data);
    await blobs.put(account, hash, z.data);
    await meta.addChunks(account, [{
      hash,
      size: data.length,
      stored: z.data.length,
      compressed: z.compressed,
    }]);
    return { hash, size: data.length };
  };
  const file = (path: string, chunks: ChunkRef[], baseVersion = 0): CommitItem => ({
    path,
    baseVersion,
    kind: "file",
    deleted: false,
    size: chunks.reduce((s, c) => s + c.size, 0),
    mtime: 1,
    exec: false,
    hash: sha256Hex(new TextEncoder().encode(chunks.map((c) => c.hash).join())),
    chunks,
  });
  const random = await store(acct, bytes(5000, 7)); // stored raw
  const text = await store(acct, new TextEncoder().encode("hello ".repeat(2000))); // compressed
  const old = await store(acct, new TextEncoder().encode("first version\n"));
  const results = await meta.commit(acct, "A", [
    file("docs/deep/a.bin", [random, text]),
    file("docs/b.txt", [old]),
    file("gone.txt", [old]),
  ]);
  assert.ok(results.every((r) => r.ok), JSON.stringify(results));
  const bVersion = (await meta.changes(acct, 0, 100)).find((e) => e.path === "docs/b.txt")!
    .version;
  const goneVersion = (await meta.changes(acct, 0, 100)).find((e) => e.path === "gone.txt")!
    .version;
  assert.ok((await meta.commit(acct, "A", [file("docs/b.txt", [text], bVersion)]))[0]!.ok);
  assert.ok(
    (await meta.commit(acct, "A", [{
      ...file("gone.txt", []),
      baseVersion: goneVersion,
      deleted: true,
    }]))[0]!
      .ok,
  );
  const otherChunk = await store(other, new TextEncoder().encode("other account\n"));
  assert.ok((await meta.commit(other, "X", [file("x.txt", [otherChunk])]))[0]!.ok);
  return { meta, blobs, acct, other, random, text, old };
}

Deno.test("verify: a clean store has no problems", opts, async () => {
  const dir = await Deno.makeTempDir();
  const f = await fixture(dir);
  try {
    const r = await verify(f.meta, f.blobs, {});
    assert.deepEqual(r.problems, []);
    // docs, docs/deep, 2 files + tombstone in acct; x.txt in other.
    assert.deepEqual({ accounts: r.accounts, entries: r.entries, chunks: r.chunks }, {
      accounts: 2,
      entries: 6,
      chunks: 4, // random, text, old (kept versions) + the other account's chunk
    });
    const one = await verify(f.meta, f.blobs, { account: f.other });
    assert.deepEqual([one.problems, one.accounts, one.entries, one.chunks], [[], 1, 1, 1]);
    const none = await verify(f.meta, f.blobs, { account: "nosuchacct" });
    assert.deepEqual(none.problems, ["account nosuchacct: no such account"]);
  } finally {
    await f.meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verify: a deleted blob file is reported", opts, async () => {
  const dir = await Deno.makeTempDir();
  const f = await fixture(dir);
  try {
    await Deno.remove(join(dir, "blobs", f.acct, f.random.hash.slice(0, 2), f.random.hash));
    const r = await verify(f.meta, f.blobs, {});
    assert.equal(r.problems.length, 1, r.problems.join("\n"));
    assert.match(
      r.problems[0]!,
      new RegExp(
        `^account ${f.acct}: chunk ${f.random.hash} \\(used by path "docs/deep/a\\.bin"\\): missing from the blob store$`,
      ),
    );
  } finally {
    await f.meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verify: corrupted blob files are reported (raw and compressed)", opts, async () => {
  const dir = await Deno.makeTempDir();
  const f = await fixture(dir);
  try {
    const rawPath = join(dir, "blobs", f.acct, f.random.hash.slice(0, 2), f.random.hash);
    const data = await Deno.readFile(rawPath);
    data[100]! ^= 0xff; // one flipped byte: same size, wrong hash
    await Deno.writeFile(rawPath, data);
    const zPath = join(dir, "blobs", f.acct, f.text.hash.slice(0, 2), f.text.hash);
    await Deno.writeFile(zPath, (await Deno.readFile(zPath)).subarray(0, 10)); // truncated zstd
    const r = await verify(f.meta, f.blobs, {});
    assert.equal(r.problems.length, 2, r.problems.join("\n"));
    const all = r.problems.join("\n");
    assert.match(
      all,
      new RegExp(`^account ${f.acct}: chunk ${f.random.hash} .*content does not match`, "m"),
    );
    assert.match(
      all,
      new RegExp(`^account ${f.acct}: chunk ${f.text.hash} .*Cannot decompress chunk`, "m"),
    );
  } finally {
    await f.meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verify: a missing chunk index row is reported", opts, async () => {
  const dir = await Deno.makeTempDir();
  const f = await fixture(dir);
  try {
    // The old version of docs/b.txt is only in the kept versions.
    const db = new DatabaseSync(join(dir, "meta.db"));
    db.prepare("DELETE FROM chunks WHERE account = ? AND hash = ?").run(f.acct, f.old.hash);
    db.close();
    const r = await verify(f.meta, f.blobs, { account: f.acct });
    assert.deepEqual(r.problems, [
      `account ${f.acct}: chunk ${f.old.hash} (used by kept version 4 of "docs/b.txt"): missing from the chunk index`,
    ]);
  } finally {
    await f.meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verify: journal, size, parent and path problems are reported", opts, async () => {
  const dir = await Deno.makeTempDir();
  const f = await fixture(dir);
  await f.meta.close();
  // Damage the metadata behind the store's back, as a bug or a bad restore could.
  const db = new DatabaseSync(join(dir, "meta.db"));
  try {
    db.prepare("UPDATE entries SET size = size + 1 WHERE account = ? AND path = ?").run(
      f.acct,
      "docs/b.txt",
    );
    db.prepare("UPDATE entries SET deleted = 1 WHERE account = ? AND path = ?").run(
      f.acct,
      "docs/deep",
    );
    db.prepare("UPDATE entries SET version = 99, path = ? WHERE account = ? AND path = ?").run(
      "../x.txt",
      f.other,
      "x.txt",
    );
    db.prepare("UPDATE entries SET version = 1 WHERE account = ? AND path = ?").run(
      f.acct,
      "docs/b.txt",
    );
  } finally {
    db.close();
  }
  const meta = new SqliteMetaStore(dir);
  try {
    const all = (await verify(meta, f.blobs, {})).problems.join("\n");
    assert.match(all, /^account \w+: path "docs\/b\.txt": chunk sizes add up to \d+ bytes/m);
    assert.match(all, /^account \w+: path "docs\/b\.txt": version 1 is used twice$/m);
    assert.match(all, /path "docs\/deep\/a\.bin": parent "docs\/deep" is not a live directory$/m);
    assert.match(all, /path "\.\.\/x\.txt": Cannot use path/m);
    assert.match(all, /path "\.\.\/x\.txt": version 99 is outside the journal \(seq 1\)$/m);
  } finally {
    await meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});
