/**
 * The metadata conformance suite (`tests/server/meta_suite.ts`) on PostgreSQL: each case in a
 * schema of its own, dropped afterwards; `again()` is a second pool, as another instance has.
 *
 * @module
 */

import { PgMetaStore } from "../../lib/server/pg_meta.ts";
import { metaSuite } from "../server/meta_suite.ts";
import { adminQuery, freshSchemaName, servicesEnv } from "./services_env.ts";

const env = servicesEnv(["CLOUDSYNC_TEST_PG_URL"]);

metaSuite({
  name: "PostgreSQL",
  ...(env.skip !== undefined ? { skip: env.skip } : {}),
  async fresh() {
    const url = env.values!.CLOUDSYNC_TEST_PG_URL;
    const schema = freshSchemaName();
    await adminQuery(url, `CREATE SCHEMA ${schema}`);
    return {
      store: await PgMetaStore.open(url, { schema }),
      again: () => PgMetaStore.open(url, { schema }),
      cleanup: () => adminQuery(url, `DROP SCHEMA ${schema} CASCADE`),
    };
  },
});
