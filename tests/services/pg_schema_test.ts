/**
 * The PostgreSQL schema's migrations on a real database: a database made by an older server
 * (schema version 1, before permission bits) is upgraded at the next start and its data reads as
 * before; an admin command (`create: false`) refuses an empty database and creates nothing in
 * it; a database newer than this server is refused.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PgMetaStore } from "../../lib/server/pg_meta.ts";
import { createPool } from "../../lib/server/pg_pool.ts";
import { migrate, MIGRATIONS } from "../../lib/server/pg_schema.ts";
import { adminQuery, adminRows, freshSchemaName, servicesEnv } from "./services_env.ts";

const env = servicesEnv(["CLOUDSYNC_TEST_PG_URL"]);
const opts = {
  ignore: env.skip !== undefined,
  sanitizeResources: true,
  sanitizeOps: true,
};

/** Runs `fn` in a schema of its own, dropped afterwards. */
async function inSchema(fn: (url: string, schema: string) => Promise<void>): Promise<void> {
  const url = env.values!.CLOUDSYNC_TEST_PG_URL;
  const schema = freshSchemaName();
  await adminQuery(url, `CREATE SCHEMA ${schema}`);
  try {
    await fn(url, schema);
  } finally {
    await adminQuery(url, `DROP SCHEMA ${schema} CASCADE`);
  }
}

const H = (n: number) => n.toString(16).padStart(64, "0");

Deno.test(
  "PostgreSQL: a version-2 database dates its versions at the next start",
  opts,
  () =>
    inSchema(async (url, schema) => {
      // Before `made`: f.txt written at mtime 100, replaced at 5000 and at 9000; a deletion now.
      const pool = createPool(url, { schema });
      try {
        assert.equal(await migrate(pool, MIGRATIONS.slice(0, 2)), 2);
        await pool.query(`INSERT INTO accounts(id, serial_hash, seq, created)
          VALUES ('acct', 'serial', 3, 1)`);
        const cols =
          "account, path, kind, deleted, version, size, mtime, exec, hash, chunks, device";
        await pool.query(
          `INSERT INTO entries(${cols}) VALUES ('acct', 'f.txt', 'file', true, 3, 0, 0, false, '',
            '[]', 'A')`,
        );
        for (const [v, mtime, replaced] of [[1, 100, 5000], [2, 4000, 9000]]) {
          await pool.query(
            `INSERT INTO versions(${cols}, replaced) VALUES ('acct', 'f.txt', 'file', false, $1, 5,
              $2, false, $3, $4, 'A', $5)`,
            [v, mtime, H(v!), JSON.stringify([{ hash: H(v!), size: 5 }]), replaced],
          );
        }
      } finally {
        await pool.end();
      }
      const meta = await PgMetaStore.open(url, { schema });
      try {
        const h = await meta.history("acct", { path: "f.txt", limit: 10 });
        assert.deepEqual(
          h.rows.map((v) => [v.version, v.deleted, v.made, v.replaced]),
          [[3, true, 9000, null], [2, false, 5000, 9000], [1, false, 100, 5000]],
        );
        const at = async (t: number) =>
          (await meta.listAt("acct", { path: "", at: t, limit: 10 })).rows.map((e) => e.version);
        assert.deepEqual(await at(99), []);
        assert.deepEqual(await at(4999), [1]);
        assert.deepEqual(await at(5000), [2]);
        assert.deepEqual(await at(9000), [3]);
      } finally {
        await meta.close();
      }
    }),
);

Deno.test(
  "PostgreSQL: a version-1 database gains permission bits at the next start",
  opts,
  () =>
    inSchema(async (url, schema) => {
      // An older server's database: migration 1 only, with a file and a kept version in it.
      const pool = createPool(url, { schema });
      try {
        assert.equal(await migrate(pool, MIGRATIONS.slice(0, 1)), 1);
        await pool.query(`INSERT INTO accounts(id, serial_hash, seq, created)
        VALUES ('acct', 'serial', 2, 1)`);
        const row = (v: number, h: string) => [
          "acct",
          "f.txt",
          "file",
          false,
          v,
          10,
          1,
          true,
          h,
          JSON.stringify([{ hash: h, size: 10 }]),
          "A",
        ];
        await pool.query(
          `INSERT INTO entries(account, path, kind, deleted, version, size, mtime, exec, hash,
          chunks, device) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
          row(2, H(2)),
        );
        await pool.query(
          `INSERT INTO versions(account, path, kind, deleted, version, size, mtime, exec, hash,
          chunks, device, replaced) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11, 1)`,
          row(1, H(1)),
        );
      } finally {
        await pool.end();
      }
      const meta = await PgMetaStore.open(url, { schema });
      try {
        const applied = await adminRows<{ version: number }>(
          url,
          `SELECT version FROM ${schema}.schema_migrations ORDER BY version`,
        );
        assert.deepEqual(applied.map((r) => r.version), MIGRATIONS.map((m) => m.version));
        assert.ok(MIGRATIONS.length >= 2);
        const [e] = await meta.changes("acct", 0, 10);
        assert.deepEqual([e?.path, e?.exec, "mode" in e!], ["f.txt", true, false]);
        await meta.addChunks("acct", [{ hash: H(2), size: 10, stored: 10, compressed: false }]);
        const item = {
          path: "f.txt",
          baseVersion: 2,
          kind: "file" as const,
          deleted: false,
          size: 10,
          mtime: 1,
          exec: true,
          hash: H(2),
          chunks: [{ hash: H(2), size: 10 }],
        };
        // The bits an old entry's exec implies: the same file. Others: a new version.
        assert.deepEqual(await meta.commit("acct", "B", [{ ...item, mode: 0o755 }]), [{
          ok: true,
          version: 2,
        }]);
        assert.deepEqual(await meta.commit("acct", "B", [{ ...item, mode: 0o700 }]), [{
          ok: true,
          version: 3,
        }]);
        assert.equal((await meta.changes("acct", 2, 10))[0]?.mode, 0o700);
        const kept = [];
        for await (const v of meta.verifyKeptVersions("acct")) kept.push([v.version, v.mode]);
        assert.deepEqual(kept, [[1, undefined], [2, undefined]]);
      } finally {
        await meta.close();
      }
      // Opened again (another instance starting): nothing left to migrate, data unchanged.
      const again = await PgMetaStore.open(url, { schema });
      assert.equal((await again.changes("acct", 2, 10))[0]?.mode, 0o700);
      await again.close();
    }),
);

Deno.test(
  "PostgreSQL: an admin command on an empty database creates nothing",
  opts,
  () =>
    inSchema(async (url, schema) => {
      await assert.rejects(
        PgMetaStore.open(url, { schema, create: false }),
        /^Error: Cannot start: the --meta database holds no Cloud Sync data \(no schema\); check --meta$/,
      );
      const tables = await adminRows(
        url,
        `SELECT table_name FROM information_schema.tables WHERE table_schema = '${schema}'`,
      );
      assert.deepEqual(tables, []);
      // Once a server set it up, admin commands open it.
      await (await PgMetaStore.open(url, { schema })).close();
      await (await PgMetaStore.open(url, { schema, create: false })).close();
    }),
);

Deno.test(
  "PostgreSQL: a database migrated by a newer server is refused",
  opts,
  () =>
    inSchema(async (url, schema) => {
      await (await PgMetaStore.open(url, { schema })).close();
      await adminQuery(
        url,
        `INSERT INTO ${schema}.schema_migrations(version, name, applied) VALUES (999, 'future', 0)`,
      );
      await assert.rejects(
        PgMetaStore.open(url, { schema }),
        /schema is version 999, newer than this server knows/,
      );
    }),
);
