/**
 * End to end on PostgreSQL and S3 (Swift): a real server process with `--meta` and `--blobs`,
 * two real clients; small files, a big file, edits and deletions converge byte for byte; the
 * server restarts on the same stores and the clients carry on; the admin commands (`accounts`,
 * `devices`, `verify`) work on these backends.
 *
 * @module
 */

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
import { adminQuery, freshSchemaName, servicesEnv } from "./services_env.ts";

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
    } finally {
      for (const p of procs.reverse()) await p.stop();
      await server.stop();
      await adminQuery(v.CLOUDSYNC_TEST_PG_URL, `DROP SCHEMA ${schema} CASCADE`);
    }
  },
});
