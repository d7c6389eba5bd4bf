/**
 * The settings of the real services (`scripts/services.sh start`) for the tests that need them.
 * Without them those tests are skipped with the reason, except under `deno task test:services`
 * (`CLOUDSYNC_REQUIRE_SERVICES=1`), where missing settings fail at once: there they must run.
 *
 * @module
 */

import pg from "pg";
import * as Minio from "minio";
import { parseS3Url } from "../../lib/server/open_stores.ts";

/** The value of each setting, or why the tests cannot run. */
export function servicesEnv<K extends string>(
  names: readonly K[],
): { values: Record<K, string>; skip?: undefined } | { values?: undefined; skip: string } {
  const missing = names.filter((n) => !Deno.env.get(n));
  if (missing.length === 0) {
    return {
      values: Object.fromEntries(names.map((n) => [n, Deno.env.get(n)!])) as Record<K, string>,
    };
  }
  const skip = `${missing.join(", ")} not set: start the services with scripts/services.sh start ` +
    "and source its env.sh, or run deno task test:services";
  if (Deno.env.get("CLOUDSYNC_REQUIRE_SERVICES") === "1") {
    throw new Error(`Cannot run the services tests: ${skip}`);
  }
  return { skip };
}

/** A schema name nobody else uses (tests of PostgreSQL work in one each). */
export function freshSchemaName(): string {
  return `t_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
}

/** Runs `sql` on a connection of its own. */
export async function adminQuery(url: string, sql: string): Promise<void> {
  await adminRows(url, sql);
}

/** Runs `sql` on a connection of its own and returns its rows. */
export async function adminRows<R>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as R[];
  } finally {
    await client.end();
  }
}

/** A client of the services' S3 store (behind the stores' back) and its bucket. */
export function s3Client(): { client: Minio.Client; bucket: string } {
  const o = s3Options("");
  const client = new Minio.Client({
    endPoint: o.endPoint,
    port: o.port,
    useSSL: o.useSSL,
    region: o.region,
    accessKey: o.accessKey,
    secretKey: o.secretKey,
    pathStyle: true,
  });
  return { client, bucket: o.bucket };
}

/** How many objects the services' bucket holds under `prefix` (listed behind the store's back). */
export async function s3Objects(prefix: string): Promise<number> {
  const { client, bucket } = s3Client();
  let n = 0;
  for await (const _ of client.listObjects(bucket, prefix, true)) n++;
  return n;
}

/** The S3 settings of the services (`scripts/services.sh`), under the key prefix given. */
export function s3Options(prefix: string) {
  const v = servicesEnv(["CLOUDSYNC_TEST_S3_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
    .values!;
  return {
    ...parseS3Url(v.CLOUDSYNC_TEST_S3_URL),
    prefix,
    accessKey: v.AWS_ACCESS_KEY_ID,
    secretKey: v.AWS_SECRET_ACCESS_KEY,
  };
}
