/**
 * The metadata conformance suite (`meta_suite.ts`) on SQLite, the embedded default.
 *
 * @module
 */

import { SqliteMetaStore } from "../../lib/server/meta_store.ts";
import { metaSuite } from "./meta_suite.ts";

metaSuite({
  name: "SQLite",
  async fresh() {
    const dir = await Deno.makeTempDir({ prefix: "cloudsync-meta-" });
    return {
      store: new SqliteMetaStore(dir),
      again: () => Promise.resolve(new SqliteMetaStore(dir)),
      cleanup: () => Deno.remove(dir, { recursive: true }),
    };
  },
});
