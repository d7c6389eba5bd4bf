/**
 * End to end: the admin revokes a device (`devices`, `revoke-device`) while the server runs;
 * that device's client stops within seconds, the others keep syncing. And the limit flags are
 * checked at start.
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
  waitForContent,
} from "./harness.ts";
import { EXIT } from "../../lib/util/exit_codes.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("revoke-device stops that device at once; the others keep syncing", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  const [a, b, c] = ["a", "b", "c"].map((n) => join(tmp.path, n)) as [string, string, string];
  await put(a, "f.txt", "one");
  const server = await ServerProc.start(data);
  const [ca, serial] = await startFirstClient("A", server.port, a);
  const procs: Proc[] = [server, ca];
  try {
    const cb = startClient("B", server.port, b, { serial });
    const cc = startClient("C", server.port, c, { serial });
    procs.push(cb, cc);
    await waitForContent(b, "f.txt", "one");
    await waitForContent(c, "f.txt", "one");
    const config = JSON.parse(await Deno.readTextFile(join(b, ".cloudsync", "config.json")));

    const list = new Proc("devices", ["server.ts", "devices", config.account, "--data", data]);
    assert.equal((await list.exited()).code, 0, list.output());
    assert.match(list.output(), /^DEVICE\s+NAME\s+ENROLLED\s+LAST SEEN\s+STATUS$/m);
    for (const name of ["A", "B", "C"]) {
      assert.match(list.output(), new RegExp(`^[0-9a-f]{10}\\s+${name}\\s+.*active$`, "m"));
    }
    assert.match(list.output(), new RegExp(`^${config.deviceId}\\s+B\\s`, "m"));

    const revoke = new Proc("revoke", [
      "server.ts",
      "revoke-device",
      config.account,
      config.deviceId,
      "--data",
      data,
    ]);
    assert.equal((await revoke.exited()).code, 0, revoke.output());
    assert.match(revoke.output(), /^Revoked device [0-9a-f]{10} \("B"\)/m);

    // B's open connection is closed by the running server; B reconnects, is refused, exits 3 (refused).
    const t0 = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      cb.exited(),
      new Promise<null>((r) => timer = setTimeout(() => r(null), 15_000)),
    ]);
    clearTimeout(timer);
    assert.ok(status, `B still runs 15 s after revocation:\n${cb.output()}`);
    assert.equal(status.code, EXIT.refused, cb.output());
    assert.match(cb.output(), /revoked/);
    assert.ok(Date.now() - t0 < 15_000);
    assert.match(server.output(), /Closing the connection of revoked device/);

    // A and C are unaffected.
    await put(a, "g.txt", "two");
    await waitForContent(c, "g.txt", "two");

    const again = new Proc("devices", ["server.ts", "devices", config.account, "--data", data]);
    await again.exited();
    assert.match(again.output(), new RegExp(`^${config.deviceId}\\s+B\\s.*revoked$`, "m"));

    // Mistakes give one line and exit 1.
    const wrong = new Proc("revoke", [
      "server.ts",
      "revoke-device",
      config.account,
      "0000000000",
      "--data",
      data,
    ]);
    assert.equal((await wrong.exited()).code, 1);
    assert.match(wrong.output(), /^Cannot revoke device: account [0-9a-f]+ has no device/m);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test("the limit flags are checked at start", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  for (
    const [flag, value, re] of [
      ["--quota", "ten gigs", /^Cannot start: --quota must be a size such as 10GiB/m],
      ["--max-connections-per-ip", "0", /^Cannot start: --max-connections-per-ip must be/m],
      ["--max-connections", "none", /^Cannot start: --max-connections must be/m],
      ["--registration", "maybe", /^Cannot start: --registration must be open or closed/m],
    ] as const
  ) {
    const p = new Proc("server", ["server.ts", "0", "--data", data, flag, value]);
    assert.equal((await p.exited()).code, 2, p.output());
    assert.match(p.output(), re);
  }
  const p = new Proc("server", [
    "server.ts",
    "0",
    "--host",
    "127.0.0.1",
    "--data",
    data,
    "--quota",
    "10GiB",
    "--max-connections-per-ip",
    "8",
    "--registration",
    "closed",
  ]);
  try {
    await p.waitForLine(
      /^Limits: quota 10 GiB per account, 8 connections per address, registration closed$/,
    );
  } finally {
    await p.stop();
  }
});
