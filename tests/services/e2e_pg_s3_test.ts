/**
 * End to end on PostgreSQL and S3 (Swift): a real server process with `--meta` and `--blobs`,
 * two real clients; small files, a big file, edits and deletions converge byte for byte; the
 * server restarts on the same stores and the clients carry on; the admin commands (`accounts`,
 * `devices`, `verify`, `delete-account`) work on these backends, and create nothing where there
 * is no data (an empty database, a missing bucket).
 *
 * @module
 */

import { EXIT } from "../../lib/util/exit_codes.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  waitConverged,
} from "../e2e/harness.ts";
import {
  adminQuery,
  adminRows,
  freshSchemaName,
  s3Client,
  s3Objects,
  servicesEnv,
} from "./services_env.ts";

const env = servicesEnv([
  "CLOUDSYNC_TEST_PG_URL",
  "CLOUDSYNC_TEST_S3_URL",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
]);

Deno.test({
  name: "e2e on PostgreSQL + S3: sync, restart, admin commands",
  ignore: env.skip !== undefined,
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const v = env.values!;
    const schema = freshSchemaName();
    await adminQuery(v.CLOUDSYNC_TEST_PG_URL, `CREATE SCHEMA ${schema}`);
    const meta = `${v.CLOUDSYNC_TEST_PG_URL}?options=${
      encodeURIComponent(`-c search_path=${schema}`)
    }`;
    const blobs = `${v.CLOUDSYNC_TEST_S3_URL}&prefix=${schema}/`;
    const flags = ["--meta", meta, "--blobs", blobs];
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    for (let i = 0; i < 300; i++) {
      await put(a, `small/${i % 10}/f${i}.txt`, `file ${i}\n`.repeat(i));
    }
    const big = crypto.getRandomValues(new Uint8Array(65536));
    const bigFile = new Uint8Array(20 * 1024 * 1024);
    for (let i = 0; i < bigFile.length; i += big.length) bigFile.set(big.map((x) => x ^ i), i);
    await put(a, "big.bin", bigFile);
    let server = await ServerProc.start(data, 0, flags);
    const procs: Proc[] = [];
    try {
      await server.waitForLine(/^TLS certificate fingerprint:/); // after the stores' lines
      assert.match(server.output(), /Metadata: PostgreSQL postgres:\/\/cloudsync@127\.0\.0\.1/);
      assert.doesNotMatch(server.output(), /cloudsync:[^@]+@/, "no password in the log");
      assert.match(server.output(), /Content: S3 bucket cloudsync-test/);
      const [ca, serial] = await startFirstClient("A", server.port, a);
      procs.push(ca);
      const cb = startClient("B", server.port, b, { serial });
      procs.push(cb);
      await waitConverged([a, b], 60_000, [server, ca, cb]);

      await put(b, "small/0/f0.txt", "edited on B\n");
      await Deno.remove(join(b, "small/1"), { recursive: true });
      await waitConverged([a, b], 30_000, [server, ca, cb]);

      // The server restarts on the same stores (another port: a new instance); clients move.
      const port = server.port;
      await server.stop();
      server = await ServerProc.start(data, port, flags);
      await put(a, "after-restart.txt", "still here\n");
      await waitConverged([a, b], 60_000, [server, ca, cb]);
      assert.equal(await Deno.readTextFile(join(b, "after-restart.txt")), "still here\n");

      const admin = (args: string[]) =>
        new Proc("admin", ["server.ts", ...args, "--data", data, ...flags]);
      const accounts = admin(["accounts"]);
      assert.equal((await accounts.exited()).code, 0, accounts.output());
      const id = accounts.output().match(/^([0-9a-f]{10})\s+2\s/m)?.[1];
      assert.ok(id, accounts.output());
      const devices = admin(["devices", id]);
      assert.equal((await devices.exited()).code, 0, devices.output());
      assert.match(devices.output(), /\sA\s.*active/);
      assert.match(devices.output(), /\sB\s.*active/);
      const check = admin(["verify"]);
      assert.equal((await check.exited()).code, 0, check.output());
      assert.match(check.output(), /^OK: 1 accounts, \d+ entries, \d+ chunks verified$/m);
      assert.ok(await s3Objects(`${schema}/${id}/`) > 0);

      // delete-account on these backends: a dry run deletes nothing; then all of it goes.
      const dry = admin(["delete-account", id]);
      assert.equal((await dry.exited()).code, 1, dry.output());
      assert.match(
        dry.output(),
        new RegExp(`^Would delete account ${id}: 2 devices, 272 files, \\d+ kept versions?, `, "m"),
      );
      const del = admin(["delete-account", id, "--yes"]);
      assert.equal((await del.exited()).code, 0, del.output());
      assert.match(del.output(), new RegExp(`^Deleted account ${id}: 2 devices`, "m"));
      // Both devices are shut out by the running server, which reads the shared database.
      for (const c of [ca, cb]) {
        assert.equal(await c.exitCode(), EXIT.refused, c.output()); // permanent: no restart
        assert.match(
          c.output(),
          /^Cannot (sign in|sync): (the server does not know this device|this device was revoked)/m,
        );
      }
      for (
        const [table, col] of [
          ["accounts", "id"],
          ...["devices", "entries", "versions", "chunks", "packed"].map((t) => [t, "account"]),
        ]
      ) {
        const rows: { n: number }[] = await adminRows<{ n: number }>(
          v.CLOUDSYNC_TEST_PG_URL,
          `SELECT COUNT(*)::int AS n FROM ${schema}.${table} WHERE ${col} = $1`,
          [id],
        );
        assert.equal(rows[0]!.n, 0, `${table} still has rows of the account`);
      }
      assert.equal(await s3Objects(`${schema}/${id}/`), 0, "objects of the account are left");
      const none = admin(["accounts"]);
      assert.equal((await none.exited()).code, 0, none.output());
      assert.match(none.output(), /^No accounts yet in the --meta database$/m);
      const again = admin(["delete-account", id, "--yes"]);
      assert.equal((await again.exited()).code, 1, again.output());
      assert.match(again.output(), /^Cannot delete account: no account /m);

      // Admin commands create nothing where there is no data: an empty database, a missing bucket.
      const empty = freshSchemaName();
      await adminQuery(v.CLOUDSYNC_TEST_PG_URL, `CREATE SCHEMA ${empty}`);
      try {
        const emptyMeta = `${v.CLOUDSYNC_TEST_PG_URL}?options=${
          encodeURIComponent(`-c search_path=${empty}`)
        }`;
        const nowhere = join(tmp.path, "nowhere");
        const missingBucket = `cloudsync-missing-${empty.replaceAll("_", "-")}`;
        const cases: [string[], RegExp][] = [
          [
            ["accounts", "--data", nowhere, "--meta", emptyMeta],
            /^Cannot list accounts: the --meta database holds no Cloud Sync data \(no schema\); check --meta$/,
          ],
          [
            [
              "delete-account",
              "0123456789",
              "--yes",
              "--data",
              nowhere,
              "--meta",
              emptyMeta,
              "--blobs",
              blobs,
            ],
            /^Cannot delete account: the --meta database holds no Cloud Sync data/,
          ],
          [
            [
              "verify",
              "--data",
              nowhere,
              "--meta",
              meta,
              "--blobs",
              v.CLOUDSYNC_TEST_S3_URL.replace(/^s3:\/\/[^?]+/, `s3://${missingBucket}`),
            ],
            new RegExp(`^Cannot verify: the object store at .* has no bucket ${missingBucket}`),
          ],
        ];
        for (const [args, want] of cases) {
          const p = new Proc("admin", ["server.ts", ...args]);
          assert.equal((await p.exited()).code, 1, p.output());
          assert.match(p.output().trim(), want);
        }
        const tables = await adminRows(
          v.CLOUDSYNC_TEST_PG_URL,
          `SELECT table_name FROM information_schema.tables WHERE table_schema = '${empty}'`,
        );
        assert.deepEqual(tables, [], "no tables were created");
        const { client } = s3Client();
        assert.equal(await client.bucketExists(missingBucket), false, "no bucket was created");
        assert.equal(await Deno.stat(nowhere).then(() => true, () => false), false);
      } finally {
        await adminQuery(v.CLOUDSYNC_TEST_PG_URL, `DROP SCHEMA ${empty} CASCADE`);
      }
    } finally {
      for (const p of procs.reverse()) await p.stop();
      await server.stop();
      await adminQuery(v.CLOUDSYNC_TEST_PG_URL, `DROP SCHEMA ${schema} CASCADE`);
    }
  },
});
