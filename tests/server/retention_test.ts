/**
 * Retention in small steps (break 5 of issue 12: retention loaded an account's whole journal
 * into memory at start and every 6 hours, 3.9 GB at peak): the chunk sweep of a big account
 * runs in steps of a few milliseconds, and chunks referenced by a commit made between two steps
 * (a new entry, or an entry replaced before the sweep reached it) are never collected.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type CommitItem, SqliteMetaStore } from "../../lib/server/meta_store.ts";
import { FsBlobStore } from "../../lib/server/blob_store.ts";
import { collect } from "../../lib/server/retention.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };
const DAY = 24 * 3600 * 1000;

function h(n: number): string {
  return n.toString(16).padStart(64, "0");
}

function file(path: string, hashes: string[], baseVersion = 0): CommitItem {
  return {
    path,
    baseVersion,
    kind: "file",
    deleted: false,
    size: hashes.length * 20_000,
    mtime: 1,
    exec: false,
    hash: hashes[0]!,
    chunks: hashes.map((hash) => ({ hash, size: 20_000 })),
  };
}

Deno.test("the chunk sweep of a big account runs in short steps", opts, async () => {
  const dir = await Deno.makeTempDir();
  const meta = new SqliteMetaStore(dir);
  try {
    const acct = await meta.createAccount("s1");
    // 5,000 files of 20 chunks (100,000 references), plus 20,000 garbage chunks.
    const items: { hash: string; size: number; stored: number; compressed: boolean }[] = [];
    for (let i = 0; i < 120_000; i++) {
      items.push({ hash: h(i), size: 20_000, stored: 20_000, compressed: false });
    }
    await meta.addChunks(acct, items);
    for (let f = 0; f < 5000; f += 500) {
      await meta.commit(
        acct,
        "A",
        Array.from(
          { length: 500 },
          (_, i) => file(`f${f + i}`, Array.from({ length: 20 }, (_, k) => h((f + i) * 20 + k))),
        ),
      );
    }
    const sweep = meta.chunkSweep(acct);
    const start = performance.now();
    let longest = 0;
    let steps = 0;
    const gone: string[] = [];
    try {
      for (;;) {
        const t0 = performance.now();
        const more = sweep.mark();
        longest = Math.max(longest, performance.now() - t0);
        steps++;
        if (!more) break;
      }
      for (;;) {
        const t0 = performance.now();
        const page = sweep.take(Date.now() + DAY);
        longest = Math.max(longest, performance.now() - t0);
        steps++;
        if (page === null) break;
        gone.push(...page);
      }
    } finally {
      sweep.close();
    }
    const total = performance.now() - start;
    assert.equal(gone.length, 20_000);
    assert.ok(gone.every((x) => parseInt(x, 16) >= 100_000), "only garbage is collected");
    // Many steps, none holding a large part of the work (wall time on a busy machine includes
    // fsyncs and other processes: on an idle one the longest step takes about 13 ms).
    assert.ok(steps > 50, `${steps} steps`);
    assert.ok(
      longest < Math.max(50, total / 4),
      `the longest step took ${longest.toFixed(0)} of ${total.toFixed(0)} ms`,
    );
  } finally {
    await meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a commit between two steps of the sweep keeps its chunks", opts, async () => {
  const dir = await Deno.makeTempDir();
  const meta = new SqliteMetaStore(dir);
  try {
    const acct = await meta.createAccount("s1");
    const all = Array.from({ length: 1000 }, (_, i) => i);
    await meta.addChunks(
      acct,
      all.map((i) => ({ hash: h(i), size: 20_000, stored: 20_000, compressed: false })),
    );
    // Files z000..z499 use chunks 0..499; chunks 500..999 are garbage so far.
    for (let f = 0; f < 500; f += 250) {
      await meta.commit(
        acct,
        "A",
        Array.from(
          { length: 250 },
          (_, i) => file(`z${String(f + i).padStart(3, "0")}`, [h(f + i)]),
        ),
      );
    }
    const sweep = meta.chunkSweep(acct);
    try {
      assert.equal(sweep.mark(), true); // the first rows are marked (z000...)
      // Meanwhile: a new file uses garbage chunk 700, and z499 (not marked yet) is replaced by
      // a version using chunk 800 (its old chunk 499 is now only in a kept version).
      await meta.commit(acct, "A", [file("new.bin", [h(700)])]);
      const z499 = (await meta.changes(acct, 0, 1000)).find((e) => e.path === "z499")!;
      await meta.commit(acct, "A", [file("z499", [h(800)], z499.version)]);
      while (sweep.mark()) { /* all rows */ }
      const gone = new Set<string>();
      for (let page = sweep.take(Date.now() + DAY); page; page = sweep.take(Date.now() + DAY)) {
        for (const x of page) gone.add(x);
      }
      for (const kept of [h(0), h(499), h(700), h(800)]) assert.ok(!gone.has(kept), kept);
      assert.equal(gone.size, 500 - 2);
    } finally {
      sweep.close();
    }
  } finally {
    await meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("collect prunes versions and chunks in steps, letting others run", opts, async () => {
  const dir = await Deno.makeTempDir();
  const meta = new SqliteMetaStore(dir);
  const blobs = new FsBlobStore(dir);
  try {
    const acct = await meta.createAccount("s1");
    await meta.addChunks(
      acct,
      Array.from({ length: 30 }, (_, i) => ({
        hash: h(i),
        size: 20_000,
        stored: 20_000,
        compressed: false,
      })),
    );
    for (let i = 0; i < 30; i++) await blobs.put(acct, h(i), new Uint8Array([i]));
    await meta.commit(acct, "A", [file("a", [h(0)])]);
    // 10 versions of "b" (chunks 1..10), kept; the last one stays.
    for (let v = 1; v <= 10; v++) {
      const cur = (await meta.changes(acct, 0, 100)).find((e) => e.path === "b");
      await meta.commit(acct, "A", [file("b", [h(v)], cur?.version ?? 0)]);
    }
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 0);
    const r = await collect(meta, blobs, 0, Date.now() + 2 * DAY);
    clearInterval(ticker);
    assert.equal(r.versions, 9);
    assert.equal(r.chunks, 30 - 2); // a: chunk 0, b: chunk 10
    assert.notEqual(await blobs.get(acct, h(0)), null);
    assert.notEqual(await blobs.get(acct, h(10)), null);
    assert.equal(await blobs.get(acct, h(5)), null);
    assert.ok(ticks > 0, "the event loop ran during the collection");
  } finally {
    await meta.close();
    await Deno.remove(dir, { recursive: true });
  }
});
