/**
 * Closed registration with real processes (issue 12): `cloud-server --registration closed`
 * refuses a new client's registration with one clear line (exit 3: refused, do not restart); `cloud-server invite`
 * prints a one-time code with which a client registers a new account in place of a serial code,
 * once; the account it made syncs like any other.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Proc, put, startClient, tempDir, waitForContent } from "./harness.ts";
import { EXIT } from "../../lib/util/exit_codes.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("closed registration: only an invite code starts an account, once", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  const server = new Proc("server", [
    "server.ts",
    "0",
    "--host",
    "127.0.0.1",
    "--data",
    data,
    "--registration",
    "closed",
  ]);
  const procs: Proc[] = [server];
  try {
    const port = Number((await server.waitForLine(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    await server.waitForLine(/registration closed/);
    // Without an invite: refused, one line, exit code 3 (refused).
    const a = startClient("A", port, join(tmp.path, "a"));
    procs.push(a);
    assert.equal((await a.exited()).code, EXIT.refused, a.output());
    assert.match(a.output(), /Cannot register: this server does not accept new accounts/);
    // The admin makes an invite; the client registers with it.
    const inv = new Proc("invite", ["server.ts", "invite", "--data", data]);
    procs.push(inv);
    assert.equal((await inv.exited()).code, 0, inv.output());
    const code = inv.output().match(/^Invite code: ([0-9A-Z-]+)$/m)![1]!;
    await put(join(tmp.path, "b"), "hello.txt", "from B");
    const b = startClient("B", port, join(tmp.path, "b"), { serial: code });
    procs.push(b);
    const serial = (await b.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
    assert.notEqual(serial, code, "the new account has its own serial code");
    // Its serial enrolls another device, which gets B's file.
    const c = startClient("C", port, join(tmp.path, "c"), { serial });
    procs.push(c);
    await waitForContent(join(tmp.path, "c"), "hello.txt", "from B");
    // The invite code works once.
    const d = startClient("D", port, join(tmp.path, "d"), { serial: code });
    procs.push(d);
    assert.equal((await d.exited()).code, EXIT.refused, d.output());
    assert.match(d.output(), /serial code is not known/);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});
