/**
 * Garbage collection racing another instance (`tests/server/gc_race_suite.ts`) on PostgreSQL
 * and S3 (Swift): two instances, each with its own pool and S3 client, on one schema and one
 * key prefix.
 *
 * @module
 */

import { PgMetaStore } from "../../lib/server/pg_meta.ts";
import { PackedStore } from "../../lib/server/packed_store.ts";
import { S3_PACKS, S3Objects } from "../../lib/server/s3_objects.ts";
import { gcRaceSuite, type Instance } from "../server/gc_race_suite.ts";
import { adminQuery, freshSchemaName, s3Options, servicesEnv } from "./services_env.ts";

const env = servicesEnv([
  "CLOUDSYNC_TEST_PG_URL",
  "CLOUDSYNC_TEST_S3_URL",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
]);

gcRaceSuite({
  name: "PostgreSQL + S3",
  ...(env.skip !== undefined ? { skip: env.skip } : {}),
  async fresh() {
    const url = env.values!.CLOUDSYNC_TEST_PG_URL;
    const schema = freshSchemaName();
    await adminQuery(url, `CREATE SCHEMA ${schema}`);
    const prefix = `gc${crypto.randomUUID()}/`;
    const open = async (): Promise<Instance> => {
      const meta = await PgMetaStore.open(url, { schema, max: 4 });
      const blobs = new PackedStore(
        meta.packIndex(),
        await S3Objects.open(s3Options(prefix)),
        S3_PACKS,
      );
      return { meta, blobs };
    };
    const a = await open();
    const b = await open();
    return {
      a,
      b,
      async close() {
        for (const i of [a, b]) {
          await i.blobs.close();
          await i.meta.close();
        }
        await adminQuery(url, `DROP SCHEMA ${schema} CASCADE`);
      },
    };
  },
});
