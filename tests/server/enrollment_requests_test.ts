/**
 * The server's enrollment requests over real connections: `checkSerial` (before sign-in; answers
 * only whether a serial code is a given account's, and is throttled like `enroll`) and
 * `setDeviceName` (after sign-in; renames the signed-in device only).
 *
 * @module
 */

import assert from "node:assert/strict";
import { errorCode, register, testServer } from "./server_helper.ts";
import { IP_THROTTLE } from "../../lib/server/limits.ts";
import { SqliteMetaStore } from "../../lib/server/meta_store.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("checkSerial says whether a serial is an account's, and nothing more", opts, async () => {
  await using s = await testServer({
    ipThrottle: { ...IP_THROTTLE, freeFailures: 2, baseLockoutMs: 60 * 60_000 },
  });
  const a = await register(s, "A");
  const b = await register(s, "B");
  const p = await s.connect();
  const check = async (serial: string, account: string) =>
    (await p.request({ t: "checkSerial", serial, account })).header;
  assert.deepEqual(await check(a.serial!, a.account), { sameAccount: true });
  assert.deepEqual(await check(a.serial!.toLowerCase(), b.account), { sameAccount: false });
  // Unknown serials count as failed attempts, like enroll: then the address is throttled.
  const wrong = "0000-0000-0000-0000-0000-0000-0000-0000";
  for (let i = 0; i < 3; i++) {
    assert.equal(
      await errorCode(p.request({ t: "checkSerial", serial: wrong, account: a.account })),
      "bad-serial",
    );
  }
  assert.equal(
    await errorCode(p.request({ t: "checkSerial", serial: a.serial, account: a.account })),
    "throttled",
  );
  assert.equal(
    await errorCode(p.request({ t: "enroll", serial: a.serial, device: "X" })),
    "throttled",
  );
  // Not after signing in (a signed-in connection has no use for it).
  assert.equal(
    await errorCode(a.peer.request({ t: "checkSerial", serial: a.serial, account: a.account })),
    "bad-request",
  );
});

Deno.test("setDeviceName renames the signed-in device only", opts, async () => {
  await using s = await testServer();
  const a = await register(s, "A");
  const b = await register(s, "B");
  const p = await s.connect();
  assert.equal(
    await errorCode(p.request({ t: "setDeviceName", device: "X" })),
    "unauthenticated",
  );
  assert.equal(await errorCode(a.peer.request({ t: "setDeviceName", device: 7 })), "bad-request");
  await a.peer.request({ t: "setDeviceName", device: "Laptop" });
  const meta = new SqliteMetaStore(s.dir);
  try {
    assert.deepEqual((await meta.devices(a.account)).map((d) => d.name), ["Laptop"]);
    assert.deepEqual((await meta.devices(b.account)).map((d) => d.name), ["B"]);
  } finally {
    await meta.close();
  }
  assert.match(s.lines.join("\n"), /renamed from "A" to "Laptop"/);
});
