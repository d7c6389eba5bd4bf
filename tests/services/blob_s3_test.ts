/**
 * The chunk-store conformance suite (`tests/server/blob_suite.ts`) on S3 (OpenStack Swift's
 * `s3api` from `scripts/services.sh`): packs as objects, with the pack index in SQLite (one
 * instance) and in PostgreSQL (shared by instances; `again()` is another instance with its own
 * pool and client). Each case works under a key prefix and a schema of its own.
 *
 * @module
 */

import { join } from "node:path";
import { PackedStore } from "../../lib/server/packed_store.ts";
import { SqlitePackIndex } from "../../lib/server/pack_index.ts";
import { PgPackIndex } from "../../lib/server/pg_pack_index.ts";
import { createPool } from "../../lib/server/pg_pool.ts";
import { migrate } from "../../lib/server/pg_schema.ts";
import { S3_PACKS, S3Objects } from "../../lib/server/s3_objects.ts";
import type { BlobStore } from "../../lib/server/stores.ts";
import { blobSuite } from "../server/blob_suite.ts";
import { localLeftovers } from "../server/leftovers.ts";
import {
  adminQuery,
  adminRows,
  freshSchemaName,
  s3Objects,
  s3Options,
  servicesEnv,
} from "./services_env.ts";

const s3env = servicesEnv(["CLOUDSYNC_TEST_S3_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
const pgenv = servicesEnv(["CLOUDSYNC_TEST_PG_URL"]);

blobSuite({
  name: "S3 (Swift), SQLite pack index",
  ...(s3env.skip !== undefined ? { skip: s3env.skip } : {}),
  async fresh() {
    const dir = await Deno.makeTempDir({ prefix: "cloudsync-s3-" });
    const prefix = `t${crypto.randomUUID()}/`;
    const open = async (): Promise<BlobStore> =>
      new PackedStore(
        new SqlitePackIndex(join(dir, "s3-packs.db")),
        await S3Objects.open(s3Options(prefix)),
        S3_PACKS,
      );
    return {
      store: await open(),
      again: open,
      leftovers: async (account) =>
        await s3Objects(prefix + account + "/") + await localLeftovers(dir, account),
      cleanup: () => Deno.remove(dir, { recursive: true }),
    };
  },
});

const both = s3env.skip ?? pgenv.skip;
blobSuite({
  name: "S3 (Swift), PostgreSQL pack index",
  ...(both !== undefined ? { skip: both } : {}),
  async fresh() {
    const url = pgenv.values!.CLOUDSYNC_TEST_PG_URL;
    const schema = freshSchemaName();
    await adminQuery(url, `CREATE SCHEMA ${schema}`);
    const prefix = `t${crypto.randomUUID()}/`;
    const open = async (): Promise<BlobStore> => {
      const pool = createPool(url, { schema, max: 4 });
      await migrate(pool);
      const store = new PackedStore(
        new PgPackIndex(pool),
        await S3Objects.open(s3Options(prefix)),
        S3_PACKS,
      );
      return {
        put: store.put.bind(store),
        putMany: store.putMany.bind(store),
        get: store.get.bind(store),
        getMany: store.getMany.bind(store),
        sweep: store.sweep.bind(store),
        deleteAccount: store.deleteAccount.bind(store),
        close: async () => {
          await store.close();
          await pool.end();
        },
      };
    };
    return {
      store: await open(),
      again: open,
      leftovers: async (account) => {
        const [r] = await adminRows<{ n: number }>(
          url,
          `SELECT COUNT(*)::int AS n FROM ${schema}.packed WHERE account = $1`,
          [account],
        );
        return await s3Objects(prefix + account + "/") + r!.n;
      },
      cleanup: () => adminQuery(url, `DROP SCHEMA ${schema} CASCADE`),
    };
  },
});
