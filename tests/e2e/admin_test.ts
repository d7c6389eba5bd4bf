/**
 * End to end: the server's admin subcommands (`accounts`, `reset-serial`, `delete-account`) and
 * `--help`; admin commands create nothing where there is no data, and a failed start leaves
 * nothing behind.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  admin,
  clientCommand,
  exists,
  Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  waitForContent,
} from "./harness.ts";
import { EXIT } from "../../lib/util/exit_codes.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("accounts lists the account and reset-serial replaces the serial", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  const a = join(tmp.path, "a");
  await put(a, "f.txt", "12345");
  const server = await ServerProc.start(data);
  const [ca, oldSerial] = await startFirstClient("A", server.port, a);
  const procs: Proc[] = [server, ca];
  try {
    await ca.waitForLine(/^Synced: 1 sent/);
    const list = new Proc("accounts", ["server.ts", "accounts", "--data", data]);
    assert.equal((await list.exited()).code, 0);
    assert.match(list.output(), /^ACCOUNT\s+DEVICES\s+LAST SEEN\s+FILES\s+BYTES/m);
    assert.match(
      list.output(),
      /^ACCOUNT\s+DEVICES\s+LAST SEEN\s+FILES\s+BYTES\s+VERSIONS\s+KEPT\s+STORED$/m,
    );
    const account = list.output().match(
      /^([0-9a-f]{10})\s+1\s+\S+ \S+\s+1\s+5 B\s+0\s+0 B\s+5 B$/m,
    );
    assert.ok(account, list.output());

    const reset = new Proc("reset", ["server.ts", "reset-serial", account[1]!, "--data", data]);
    assert.equal((await reset.exited()).code, 0);
    const newSerial = reset.output().match(/^Serial code: ([0-9A-Z-]+)$/m)?.[1];
    assert.ok(newSerial && newSerial !== oldSerial);

    const refused = startClient("X", server.port, join(tmp.path, "x"), { serial: oldSerial });
    assert.equal((await refused.exited()).code, EXIT.refused);
    const b = join(tmp.path, "b");
    const cb = startClient("B", server.port, b, { serial: newSerial });
    procs.push(cb);
    await waitForContent(b, "f.txt", "12345");
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test("both commands print usage with --help and exit 0", opts, async () => {
  for (const entry of ["server.ts", "client.ts"]) {
    const p = new Proc(entry, [entry, "--help"]);
    assert.equal((await p.exited()).code, 0);
    assert.match(p.output(), /^Usage:/m);
  }
});

/** Rows of `table` in the SQLite file `db` whose column `account` is `account`. */
function rows(db: string, table: string, account: string, column = "account"): number {
  const d = new DatabaseSync(db, { readOnly: true });
  try {
    return Number(
      (d.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE ${column} = ?`).get(account) as {
        n: number;
      }).n,
    );
  } finally {
    d.close();
  }
}

Deno.test("delete-account removes an account and all its data, only with --yes", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  const big = new Uint8Array(3 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
  await put(a, "small.txt", "version 1\n");
  await put(a, "big.bin", big);
  await put(b, "b.txt", "account B\n");
  const server = await ServerProc.start(data);
  const [ca] = await startFirstClient("A", server.port, a);
  const [cb] = await startFirstClient("B", server.port, b);
  const procs: Proc[] = [server, ca, cb];
  try {
    await ca.waitForLine(/^Synced: 2 sent/);
    await put(a, "small.txt", "version 2, the first one is kept as a version\n");
    await ca.waitForLine(/^Synced: 1 sent/);
    await cb.waitForLine(/^Synced: 1 sent/);
    const account = JSON.parse(await Deno.readTextFile(join(a, ".cloudsync", "config.json")))
      .account as string;
    const other = JSON.parse(await Deno.readTextFile(join(b, ".cloudsync", "config.json")))
      .account as string;
    const meta = join(data, "meta.db");
    const where: [string, string, string?][] = [
      [meta, "accounts", "id"],
      [meta, "devices"],
      [meta, "entries"],
      [meta, "versions"],
      [meta, "chunks"],
      [join(data, "small-chunks.db"), "small"],
      [join(data, "packs.db"), "packed"],
    ];
    for (const [db, table, col] of where) {
      assert.ok(rows(db, table, account, col) > 0, `${table} has rows of the account`);
    }
    assert.ok(await exists(join(data, "packs", account)));

    // Without --yes: says what it would delete, deletes nothing, exit 1.
    const dry = await admin(data, "delete-account", account);
    assert.equal(dry.code, 1, dry.output);
    assert.match(
      dry.output,
      new RegExp(
        `^Would delete account ${account}: 1 device, 2 files, 1 kept version, \\d+ chunks \\(.+ stored\\)\\.$`,
        "m",
      ),
    );
    assert.match(dry.output, new RegExp(`cloud-server delete-account ${account} --yes`));
    assert.ok(rows(meta, "entries", account) > 0);

    const del = await admin(data, "delete-account", account, "--yes");
    assert.equal(del.code, 0, del.output);
    assert.match(del.output, new RegExp(`^Deleted account ${account}`, "m"));
    for (const [db, table, col] of where) {
      assert.equal(rows(db, table, account, col), 0, `${table} still has rows of the account`);
    }
    assert.equal(await exists(join(data, "packs", account)), false);
    assert.equal(await exists(join(data, "blobs", account)), false);
    // Its device is shut out; the other account is untouched and keeps syncing.
    assert.equal(await ca.exitCode(), EXIT.refused, ca.output());
    assert.match(
      ca.output(),
      /^Cannot sign in: (the server does not know this device|this device was revoked)/m,
    );
    // A one-off command on that folder is refused for good too (not worth a retry).
    const history = await clientCommand(["history", a]);
    assert.equal(history.code, EXIT.refused, history.stderr);
    assert.ok(rows(meta, "entries", other) > 0);
    await put(b, "b2.txt", "still syncing\n");
    await cb.waitForLine(/^Synced: 1 sent/);
    const check = await admin(data, "verify");
    assert.equal(check.code, 0, check.output);
    const gone = await admin(data, "delete-account", account, "--yes");
    assert.equal(gone.code, 1);
    assert.match(gone.output, /^Cannot delete account: no account /m);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test("admin commands in a directory without data create nothing", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "no-data-here");
  for (
    const args of [
      ["accounts"],
      ["devices", "0123456789"],
      ["revoke-device", "0123456789", "0123456789"],
      ["reset-serial", "0123456789"],
      ["verify"],
      ["delete-account", "0123456789", "--yes"],
    ]
  ) {
    const p = await admin(data, ...args);
    assert.equal(p.code, 1, p.output);
    assert.equal(
      p.output.trim().split("\n").length,
      1,
      `one line: ${p.output}`,
    );
    assert.match(
      p.output,
      new RegExp(`^Cannot [a-z ]+: no server data in ${data} \\(no meta\\.db\\); check --data$`),
    );
    assert.equal(await exists(data), false, `${args[0]} created ${data}`);
  }
});

Deno.test("a failed server start leaves no data directory or TLS key behind", opts, async () => {
  await using tmp = await tempDir();
  const server = await ServerProc.start(join(tmp.path, "data"));
  try {
    const fresh = join(tmp.path, "fresh");
    const kept = join(tmp.path, "kept");
    await put(kept, "note.txt", "an existing directory\n");
    // Nothing listens on 127.0.0.1:1: the stores named there cannot be reached.
    const unreachableMeta = ["--host", "127.0.0.1", "--meta", "postgres://u:p@127.0.0.1:1/db"];
    const unreachableBlobs = [
      "--host",
      "127.0.0.1",
      "--blobs",
      "s3://cloudsync?endpoint=http://127.0.0.1:1",
    ];
    const s3 = { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s" };
    const starts: [string[], number, Record<string, string>?][] = [
      [[String(server.port), "--host", "127.0.0.1", "--data", fresh], 1], // port in use
      [[String(server.port), "--host", "127.0.0.1", "--data", kept], 1],
      [["0", "--keep-days", "soon", "--data", fresh], 2],
      [[
        "0",
        "--cert",
        join(tmp.path, "no.pem"),
        "--key",
        join(tmp.path, "no.key"),
        "--data",
        fresh,
      ], 1],
      ...[fresh, kept].flatMap((dir): [string[], number, Record<string, string>?][] => [
        [["0", ...unreachableMeta, "--data", dir], 1],
        [["0", ...unreachableBlobs, "--data", dir], 1, s3],
        [["0", ...unreachableBlobs, "--data", dir], 1], // and no credentials
      ]),
      [["0", "--meta", "mysql://x", "--data", fresh], 1],
    ];
    for (const [args, code, env] of starts) {
      const p = new Proc("server2", ["server.ts", ...args], env);
      assert.equal(await p.exitCode(), code, p.output());
      assert.match(p.output(), /^Cannot /m);
      assert.equal(await exists(fresh), false, `${args.join(" ")} left ${fresh}`);
      assert.deepEqual(
        [...Deno.readDirSync(kept)].map((e) => e.name),
        ["note.txt"],
        `${args.join(" ")} wrote into ${kept}`,
      );
    }
  } finally {
    await server.stop();
  }
});
