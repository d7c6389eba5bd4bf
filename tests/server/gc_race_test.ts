/**
 * Garbage collection racing another instance (`gc_race_suite.ts`) on the embedded default:
 * two processes' worth of SQLite and local pack stores on one data directory.
 *
 * @module
 */

import { SqliteMetaStore } from "../../lib/server/meta_store.ts";
import { TieredBlobStore } from "../../lib/server/blob_store.ts";
import { gcRaceSuite } from "./gc_race_suite.ts";

gcRaceSuite({
  name: "SQLite + local packs",
  async fresh() {
    const dir = await Deno.makeTempDir({ prefix: "cloudsync-gc-" });
    const open = () => ({ meta: new SqliteMetaStore(dir), blobs: new TieredBlobStore(dir) });
    const a = open();
    const b = open();
    return {
      a,
      b,
      async close() {
        for (const i of [a, b]) {
          await i.blobs.close();
          await i.meta.close();
        }
        await Deno.remove(dir, { recursive: true });
      },
    };
  },
});
