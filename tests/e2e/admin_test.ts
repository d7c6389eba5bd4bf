/**
 * End to end: the server's admin subcommands (`accounts`, `reset-serial`) and `--help`.
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
    const account = list.output().match(/^([0-9a-f]{10})\s+1\s+\S+ \S+\s+1\s+5 B$/m);
    assert.ok(account, list.output());

    const reset = new Proc("reset", ["server.ts", "reset-serial", account[1]!, "--data", data]);
    assert.equal((await reset.exited()).code, 0);
    const newSerial = reset.output().match(/^Serial code: ([0-9A-Z-]+)$/m)?.[1];
    assert.ok(newSerial && newSerial !== oldSerial);

    const refused = startClient("X", server.port, join(tmp.path, "x"), { serial: oldSerial });
    assert.equal((await refused.exited()).code, 1);
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
