/**
 * The local pack store: every batch of chunks an upload sends (`putMany`, up to 4 MiB) becomes
 * one file `DATA/packs/ACCOUNT/ID.pack`, written atomically (temporary file, fsync, rename,
 * directory fsync), and one SQLite transaction (`DATA/packs.db`) records where each chunk sits.
 * A 1 GiB upload then costs a few hundred fsyncs instead of two per chunk. A pack file is deleted
 * when its last chunk is; until then space of collected chunks inside it is not reclaimed.
 *
 * It is {@link PackedStore} over {@link FsObjects} and {@link SqlitePackIndex}, with every batch
 * written at once ({@link LOCAL_PACKS}).
 *
 * @example
 * ```ts
 * const packs = new PackBlobStore("./cloud-data");
 * await packs.putMany("acct", [{ hash, data }]);
 * const data = await packs.get("acct", hash);
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { FsObjects } from "./object_store.ts";
import { SqlitePackIndex } from "./pack_index.ts";
import { LOCAL_PACKS, PackedStore } from "./packed_store.ts";

/** A {@link PackedStore} in `DATA/packs/` with its index in `DATA/packs.db`. */
export class PackBlobStore extends PackedStore {
  constructor(dataDir: string) {
    Deno.mkdirSync(dataDir, { recursive: true });
    super(
      new SqlitePackIndex(join(dataDir, "packs.db")),
      new FsObjects(join(dataDir, "packs"), join(dataDir, "tmp")),
      LOCAL_PACKS,
    );
  }
}
