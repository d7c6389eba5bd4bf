import assert from "node:assert/strict";
import { join } from "node:path";
import { PackBlobStore } from "../../lib/server/pack_store.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";

function chunk(n: number, fill: number) {
  const data = new Uint8Array(n).fill(fill);
  return { hash: sha256Hex(data), data };
}

Deno.test(
  "PackBlobStore keeps a batch in one pack file",
  { sanitizeResources: true },
  async (t) => {
    const dir = await Deno.makeTempDir();
    const store = new PackBlobStore(dir);
    try {
      const a = chunk(100_000, 1);
      const b = chunk(200_000, 2);
      const c = chunk(150_000, 3);
      await t.step("a batch becomes one pack; each chunk reads back exactly", async () => {
        await store.putMany("acct1", [a, b, c]);
        assert.equal([...Deno.readDirSync(join(dir, "packs", "acct1"))].length, 1);
        assert.deepEqual(await store.get("acct1", b.hash), b.data);
        assert.deepEqual(await store.get("acct1", a.hash), a.data);
        assert.deepEqual(await store.get("acct1", c.hash), c.data);
      });
      await t.step("another account does not see them", async () => {
        assert.equal(await store.get("acct2", a.hash), null);
      });
      await t.step("storing a chunk again writes nothing new", async () => {
        await store.putMany("acct1", [a]);
        assert.equal([...Deno.readDirSync(join(dir, "packs", "acct1"))].length, 1);
      });
      await t.step("the pack file goes with its last chunk", async () => {
        await store.sweep("acct1", [a.hash], Infinity);
        await store.sweep("acct1", [b.hash], Infinity);
        assert.equal([...Deno.readDirSync(join(dir, "packs", "acct1"))].length, 1);
        assert.deepEqual(await store.get("acct1", c.hash), c.data);
        await store.sweep("acct1", [c.hash], Infinity);
        assert.equal([...Deno.readDirSync(join(dir, "packs", "acct1"))].length, 0);
        assert.equal(await store.get("acct1", c.hash), null);
      });
      await t.step("a bad hash or account is refused", async () => {
        await assert.rejects(store.get("../x", a.hash), /Cannot address chunk/);
        await assert.rejects(
          store.putMany("acct1", [{ hash: "zz", data: a.data }]),
          /Cannot address chunk/,
        );
      });
    } finally {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "PackBlobStore reads many packs at once correctly while its open handles are recycled",
  { sanitizeResources: true, sanitizeOps: true },
  async () => {
    const dir = await Deno.makeTempDir();
    const store = new PackBlobStore(dir);
    try {
      // 40 packs of 3 chunks: more packs than handles kept open (16), read all at once, shuffled.
      const all: { hash: string; data: Uint8Array }[] = [];
      for (let p = 0; p < 40; p++) {
        const batch = [0, 1, 2].map((k) => chunk(70_000 + 1000 * k + p, (p * 3 + k) % 251));
        await store.putMany("acct1", batch);
        all.push(...batch);
      }
      const order = all.map((_, i) => i).sort((x, y) => ((x * 7919) % 113) - ((y * 7919) % 113));
      const got = await Promise.all(
        order.map((i) =>
          i % 2 === 0
            ? store.get("acct1", all[i]!.hash)
            : store.get("acct1", all[i]!.hash, new Uint8Array(all[i]!.data.length))
        ),
      );
      order.forEach((i, k) => assert.deepEqual(got[k], all[i]!.data, `chunk ${i}`));
      // Deleting whole packs while reads are queued on them: the others still read back.
      const reads = Promise.all(all.map((c) => store.get("acct1", c.hash)));
      for (let i = 0; i < 6; i++) await store.sweep("acct1", [all[i]!.hash], Infinity);
      const after = await reads;
      for (let i = 0; i < all.length; i++) {
        // A chunk deleted meanwhile reads back whole or not at all (null), never in pieces.
        if (i < 6 && after[i] === null) continue;
        assert.deepEqual(after[i], all[i]!.data, `chunk ${i}`);
      }
    } finally {
      await store.close();
      await new Promise((r) => setTimeout(r, 0)); // handles close once their reads are done
      await Deno.remove(dir, { recursive: true });
    }
  },
);
