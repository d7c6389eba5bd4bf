/**
 * The PostgreSQL schema, as numbered migrations applied in order and recorded in
 * `schema_migrations`. {@link migrate} runs the missing ones, each in its own transaction, under
 * an advisory lock, so that instances starting together migrate once; a database migrated by a
 * newer server is refused rather than misread. A migration, once released, is never edited:
 * changes are new migrations at the end.
 *
 * Paths use the "C" collation (byte order), so that "everything below `dir/`" is the index range
 * `(dir/, dir0)` as in SQLite.
 *
 * @module
 */

import type { Pool } from "./pg_pool.ts";

/** One schema change. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The entry columns as migration 1 made them (frozen; `mode` is migration 2's). */
const ENTRY = `path text COLLATE "C" NOT NULL, kind text NOT NULL, deleted boolean NOT NULL,
  version bigint NOT NULL, size bigint NOT NULL, mtime bigint NOT NULL, exec boolean NOT NULL,
  hash text NOT NULL, chunks jsonb NOT NULL, device text NOT NULL`;

/** Every migration, in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "accounts, devices, journal, versions, chunk index, pack index",
    sql: `
CREATE TABLE accounts(
  id text PRIMARY KEY, serial_hash text NOT NULL UNIQUE, seq bigint NOT NULL DEFAULT 0,
  created bigint NOT NULL);
CREATE TABLE devices(
  id text PRIMARY KEY, account text NOT NULL, name text NOT NULL, token_hash text NOT NULL,
  created bigint NOT NULL, last_seen bigint, revoked boolean NOT NULL DEFAULT false);
CREATE INDEX devices_by_account ON devices(account, created, id);
CREATE TABLE entries(account text NOT NULL, ${ENTRY}, PRIMARY KEY(account, path));
CREATE INDEX entries_by_version ON entries(account, version);
CREATE TABLE versions(account text NOT NULL, ${ENTRY}, replaced bigint NOT NULL);
CREATE INDEX versions_by_path ON versions(account, path, version);
CREATE INDEX versions_by_replaced ON versions(replaced);
CREATE TABLE chunks(
  account text NOT NULL, hash text NOT NULL, size bigint NOT NULL, stored bigint NOT NULL,
  compressed boolean NOT NULL, created bigint NOT NULL, PRIMARY KEY(account, hash));
CREATE TABLE packed(
  account text NOT NULL, hash text NOT NULL, pack text NOT NULL, "offset" bigint NOT NULL,
  length bigint NOT NULL, created bigint NOT NULL, PRIMARY KEY(account, hash));
CREATE INDEX packed_by_pack ON packed(account, pack);
`,
  },
  {
    version: 2,
    name: "permission bits of files (entries.mode, versions.mode)",
    // NULL: the device sent none (an older client) or not a file; `exec` then says it all.
    sql: `
ALTER TABLE entries ADD COLUMN mode integer;
ALTER TABLE versions ADD COLUMN mode integer;
`,
  },
  {
    version: 3,
    name: "invite codes (cloud-server invite)",
    sql: `
CREATE TABLE invites(hash text PRIMARY KEY, created bigint NOT NULL, used bigint);
`,
  },
  {
    version: 4,
    name: "when each version was made (entries.made, versions.made), history by version",
    // Rows of older servers are dated as well as can be: a version was made when the one before
    // it was replaced (else at its modification time).
    sql: `
ALTER TABLE entries ADD COLUMN made bigint;
ALTER TABLE versions ADD COLUMN made bigint;
UPDATE versions SET made = LEAST(replaced, COALESCE((SELECT MAX(p.replaced) FROM versions p
  WHERE p.account = versions.account AND p.path = versions.path
  AND p.version < versions.version), mtime));
UPDATE entries SET made = COALESCE((SELECT MAX(v.replaced) FROM versions v
  WHERE v.account = entries.account AND v.path = entries.path), mtime);
ALTER TABLE entries ALTER COLUMN made SET NOT NULL;
ALTER TABLE versions ALTER COLUMN made SET NOT NULL;
CREATE INDEX versions_by_version ON versions(account, version);
`,
  },
];

/** Any constant: the advisory lock that serializes migrations across instances. */
const MIGRATION_LOCK = 0x636c6f75;

/**
 * Applies the missing migrations; returns the schema version now. `create: false` (admin
 * commands) refuses a database that holds no Cloud Sync schema yet instead of creating one.
 */
export async function migrate(
  pool: Pool,
  migrations = MIGRATIONS,
  opts: { create?: boolean } = {},
): Promise<number> {
  const latest = migrations.at(-1)?.version ?? 0;
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      if (opts.create === false) {
        const r = await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS ok");
        const has = r.rows[0].ok === true &&
          Number((await client.query("SELECT COUNT(*) AS n FROM schema_migrations")).rows[0].n) > 0;
        if (!has) {
          throw new Error(
            "Cannot start: the --meta database holds no Cloud Sync data (no schema); check --meta",
          );
        }
      }
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations(
        version integer PRIMARY KEY, name text NOT NULL, applied bigint NOT NULL)`);
      const r = await client.query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations");
      const current = Number(r.rows[0].v);
      if (current > latest) {
        throw new Error(
          `Cannot use this database: its schema is version ${current}, newer than this server knows (${latest}); upgrade the server`,
        );
      }
      for (const m of migrations) {
        if (m.version <= current) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query(
            "INSERT INTO schema_migrations(version, name, applied) VALUES ($1, $2, $3)",
            [m.version, m.name, Date.now()],
          );
          await client.query("COMMIT");
        } catch (e) {
          await client.query("ROLLBACK").catch(() => {});
          throw new Error(
            `Cannot migrate the database to schema version ${m.version} (${m.name}): ${
              (e as Error).message
            }`,
          );
        }
      }
      return Math.max(current, latest);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
    }
  } finally {
    client.release();
  }
}
