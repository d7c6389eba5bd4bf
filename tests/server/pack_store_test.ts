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
        await store.delete("acct1", a.hash);
        await store.delete("acct1", b.hash);
        assert.equal([...Deno.readDirSync(join(dir, "packs", "acct1"))].length, 1);
        assert.deepEqual(await store.get("acct1", c.hash), c.data);
        await store.delete("acct1", c.hash);
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
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
