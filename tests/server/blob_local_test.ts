/**
 * The chunk-store conformance suite (`blob_suite.ts`) on the local stores: the server's default
 * (SQLite for small chunks, pack files for the others), the pack store alone, the single-file
 * store of older versions, and the S3 packing policy (bounded uploads that merge waiting chunks)
 * over an in-memory object store, so that its logic runs here without S3.
 *
 * @module
 */

import { join } from "node:path";
import { FsBlobStore, TieredBlobStore } from "../../lib/server/blob_store.ts";
import { PackBlobStore } from "../../lib/server/pack_store.ts";
import { PackedStore } from "../../lib/server/packed_store.ts";
import { SqlitePackIndex } from "../../lib/server/pack_index.ts";
import type { BlobStore } from "../../lib/server/stores.ts";
import { blobSuite } from "./blob_suite.ts";
import { MemoryObjects } from "./memory_objects.ts";
import { localLeftovers } from "./leftovers.ts";

function inDir(name: string, open: (dir: string) => BlobStore) {
  blobSuite({
    name,
    async fresh() {
      const dir = await Deno.makeTempDir({ prefix: "cloudsync-blobs-" });
      return {
        store: open(dir),
        again: () => Promise.resolve(open(dir)),
        leftovers: (account) => localLeftovers(dir, account),
        cleanup: () => Deno.remove(dir, { recursive: true }),
      };
    },
  });
}

inDir("local default (SQLite + packs)", (dir) => new TieredBlobStore(dir));
inDir("local packs", (dir) => new PackBlobStore(dir));
inDir("local single files", (dir) => new FsBlobStore(dir));

blobSuite({
  name: "packed, S3 policy, in memory",
  async fresh() {
    const dir = await Deno.makeTempDir({ prefix: "cloudsync-blobs-" });
    const objects = new MemoryObjects();
    const open = () =>
      new PackedStore(new SqlitePackIndex(join(dir, "index.db")), objects, {
        maxWrites: 2,
        packBytes: 256 * 1024,
        maxReads: 3,
      });
    return {
      store: open(),
      again: () => Promise.resolve(open()),
      leftovers: async (account) =>
        [...objects.objects.keys()].filter((k) => k.startsWith(`${account}/`)).length +
        await localLeftovers(dir, account),
      cleanup: () => Deno.remove(dir, { recursive: true }),
    };
  },
});
