/**
 * The server's limits over real connections (server in this process, on 127.0.0.1, with short
 * timeouts): throttled sign-in, registration rate, quota, connections per address, handshake
 * timeout, slow frames, large frames before sign-in, and revocation of a connected device.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  chunk,
  closedWithin,
  enroll,
  errorCode,
  fileItem,
  randomBytes,
  rawRequest,
  register,
  remoteError,
  requestFrame,
  testServer,
  writeAllTo,
} from "./server_helper.ts";
import { SqliteMetaStore } from "../../lib/server/meta_store.ts";
import { TieredBlobStore } from "../../lib/server/blob_store.ts";
import { verify } from "../../lib/server/verify.ts";
import { IP_THROTTLE, THROTTLED_MESSAGE } from "../../lib/server/limits.ts";
import { FrameReader } from "../../lib/protocol/frame.ts";
import { PROTOCOL_VERSION } from "../../lib/protocol/messages.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };
const LONG = 60 * 60_000;

Deno.test(
  "failed sign-ins lock the address group; the right credential still signs in (break 7)",
  opts,
  async () => {
    await using s = await testServer({
      ipThrottle: { ...IP_THROTTLE, freeFailures: 3, baseLockoutMs: LONG, maxLockoutMs: LONG },
    });
    const a = await register(s, "A");
    const bad = { t: "auth", account: a.account, deviceId: a.deviceId, token: "wrong" };
    for (let i = 0; i < 4; i++) {
      const p = await s.connect();
      assert.equal(await errorCode(p.request(bad)), "bad-credentials");
      p.close();
    }
    // Locked: further failures are answered "throttled" (and not counted)...
    const p = await s.connect();
    const e = await remoteError(p.request(bad));
    assert.equal(e.code, "throttled");
    assert.ok(e.message.startsWith(THROTTLED_MESSAGE), e.message);
    // ...but the good device, behind the same address, signs in at once.
    const good = await s.connect();
    const r = await good.request({
      t: "auth",
      account: a.account,
      deviceId: a.deviceId,
      token: a.token,
    });
    assert.equal(r.header.device, "A");
    // Enrollment from the same address is refused unchecked (serials are what is guessed).
    assert.equal(
      await errorCode(p.request({ t: "enroll", serial: a.serial, device: "X" })),
      "throttled",
    );
    // An open session is not affected.
    await a.peer.request({ t: "changes", since: 0, limit: 10 });
    const log = s.lines.join("\n");
    assert.match(
      log,
      /Refused authentication of device .* from 127\.0\.0\.1:\d+ \(\d+ recent failures/,
    );
    assert.match(log, /Throttling sign-in from 127\.0\.0\.0\/24 for 60 min/);
    assert.match(log, /Refused authentication .*: too many failed attempts from 127\.0\.0\.0\/24/);
  },
);

Deno.test(
  "a revoked device that keeps failing never locks out the account's good devices",
  opts,
  async () => {
    await using s = await testServer({
      deviceThrottle: { ...IP_THROTTLE, freeFailures: 2, baseLockoutMs: LONG, maxLockoutMs: LONG },
    });
    const a = await register(s, "A");
    const b = await enroll(s, a.serial!, "B");
    const admin = new SqliteMetaStore(s.dir);
    try {
      admin.revokeDevice(a.account, b.deviceId);
    } finally {
      admin.close();
    }
    // The revoked device retries many times (same address as A's restarts).
    for (let i = 0; i < 15; i++) {
      const p = await s.connect();
      const code = await errorCode(
        p.request({ t: "auth", account: b.account, deviceId: b.deviceId, token: b.token }),
      );
      assert.ok(code === "revoked", code);
      p.close();
    }
    // Wrong credentials for an unknown device of the account lock that key, not the account.
    for (let i = 0; i < 4; i++) {
      const p = await s.connect();
      await errorCode(
        p.request({ t: "auth", account: a.account, deviceId: "nosuchdevice", token: "x" }),
      );
      p.close();
    }
    // A (restarted) signs in at once.
    const p = await s.connect();
    const r = await p.request({
      t: "auth",
      account: a.account,
      deviceId: a.deviceId,
      token: a.token,
    });
    assert.equal(r.header.device, "A");
    // Unknown account ids are not remembered (an attacker cannot fill memory with them).
    const q = await s.connect();
    assert.equal(
      await errorCode(
        q.request({ t: "auth", account: "nosuchaccount", deviceId: "x", token: "x" }),
      ),
      "bad-credentials",
    );
    assert.match(
      s.lines.join("\n"),
      /Throttling sign-in of device \? of account [0-9a-f]+ for 60 min/,
    );
  },
);

Deno.test("failed enrollments are throttled per address", opts, async () => {
  await using s = await testServer({
    ipThrottle: { ...IP_THROTTLE, freeFailures: 2, baseLockoutMs: LONG },
  });
  const a = await register(s, "A");
  const p = await s.connect();
  const wrong = "0000-0000-0000-0000-0000-0000-0000-0000";
  for (let i = 0; i < 3; i++) {
    assert.equal(
      await errorCode(p.request({ t: "enroll", serial: wrong, device: "X" })),
      "bad-serial",
    );
  }
  assert.equal(
    await errorCode(p.request({ t: "enroll", serial: a.serial, device: "X" })),
    "throttled",
  );
});

Deno.test("new accounts per address are rate-limited", opts, async () => {
  await using s = await testServer({ registerBurst: 2, registerPerHour: 1 });
  await register(s, "A");
  await register(s, "B");
  const p = await s.connect();
  const e = await remoteError(p.request({ t: "register", device: "C" }));
  assert.equal(e.code, "throttled");
  assert.ok(e.message.startsWith(THROTTLED_MESSAGE), e.message);
});

Deno.test(
  "quota: chunks nothing references (uploads given up) stop counting when the quota is reached",
  opts,
  async () => {
    // orphanGraceMs 0: every unreferenced chunk is old enough to go (the default is an hour).
    await using s = await testServer({ quotaBytes: 200_000, orphanGraceMs: 0 });
    const a = await register(s, "A");
    const put = (c: ReturnType<typeof chunk>) =>
      a.peer.request({ t: "put", hash: c.hash, size: c.size, z: false }, c.data);
    const [kept, abandoned, next, more] = [0, 1, 2, 3].map(() => chunk(randomBytes(90_000)));
    await put(kept!);
    const r = await a.peer.request({ t: "commit", items: [fileItem("kept.bin", kept!)] });
    assert.equal((r.header.results as { ok: boolean }[])[0]!.ok, true);
    await put(abandoned!); // never committed
    const t = Date.now();
    while (Date.now() <= t + 1) await new Promise((r) => setTimeout(r, 1)); // stored "before now"
    await put(next!); // would exceed the quota: the abandoned upload is collected first
    const have = await a.peer.request({
      t: "have",
      hashes: [kept!.hash, abandoned!.hash, next!.hash],
    });
    assert.deepEqual(have.header.missing, [abandoned!.hash]);
    // Reclaiming runs at most every 10 minutes per account: now the quota holds.
    assert.equal((await remoteError(put(more!))).code, "quota");
    // A commit naming the collected chunk is "missing": its device uploads it again.
    const r2 = await a.peer.request({ t: "commit", items: [fileItem("late.bin", abandoned!)] });
    assert.equal((r2.header.results as { reason?: string }[])[0]!.reason, "missing");
    const meta = new SqliteMetaStore(s.dir);
    const blobs = new TieredBlobStore(s.dir);
    try {
      const v = await verify(meta, blobs, {});
      assert.deepEqual(v.problems, []);
    } finally {
      await blobs.close();
      await meta.close();
    }
  },
);

Deno.test(
  "quota: puts beyond it are refused, all or nothing, and nothing is corrupted",
  opts,
  async () => {
    await using s = await testServer({ quotaBytes: 200_000 });
    const a = await register(s, "A");
    const put = (c: ReturnType<typeof chunk>) =>
      a.peer.request({ t: "put", hash: c.hash, size: c.size, z: false }, c.data);
    const c1 = chunk(randomBytes(90_000));
    const c2 = chunk(randomBytes(90_000));
    const c3 = chunk(randomBytes(90_000));
    await put(c1);
    await put(c2);
    const e = await remoteError(put(c3));
    assert.equal(e.code, "quota");
    assert.match(
      e.message,
      /^Cannot store: the account's quota of 200 KB is used up; delete files or ask the admin for more/,
    );
    // Content already stored costs nothing: putting it again and committing it work.
    await put(c1);
    const r = await a.peer.request({
      t: "commit",
      items: [fileItem("one.bin", c1), fileItem("two.bin", c2)],
    });
    assert.deepEqual((r.header.results as { ok: boolean }[]).map((x) => x.ok), [true, true]);
    // A batch that does not fit stores nothing of itself.
    const small = chunk(randomBytes(10_000));
    const body = new Uint8Array(small.size + c3.size);
    body.set(small.data);
    body.set(c3.data, small.size);
    const e2 = await remoteError(a.peer.request({
      t: "putMany",
      chunks: [
        { hash: small.hash, size: small.size, z: false, len: small.size },
        { hash: c3.hash, size: c3.size, z: false, len: c3.size },
      ],
    }, body));
    assert.equal(e2.code, "quota");
    const have = await a.peer.request({ t: "have", hashes: [small.hash, c3.hash] });
    assert.deepEqual(have.header.missing, [small.hash, c3.hash]);
    // A commit referencing the refused chunk is "missing", as for any chunk never put.
    const r2 = await a.peer.request({ t: "commit", items: [fileItem("three.bin", c3)] });
    assert.equal((r2.header.results as { reason?: string }[])[0]!.reason, "missing");
    // Deleting still works when the quota is used up.
    const r3 = await a.peer.request({
      t: "commit",
      items: [{ ...fileItem("two.bin", c2, 2), deleted: true }],
    });
    assert.equal((r3.header.results as { ok: boolean }[])[0]!.ok, true);
    // Another account has its own quota.
    const b = await register(s, "B");
    await b.peer.request({ t: "put", hash: c3.hash, size: c3.size, z: false }, c3.data);
    // The data verifies.
    const meta = new SqliteMetaStore(s.dir);
    const blobs = new TieredBlobStore(s.dir);
    try {
      const v = await verify(meta, blobs, {});
      assert.deepEqual(v.problems, []);
      assert.equal(await meta.storedBytes(a.account), 180_000);
    } finally {
      await blobs.close();
      await meta.close();
    }
  },
);

Deno.test("connections per address are capped", opts, async () => {
  await using s = await testServer({ maxConnectionsPerIp: 3 });
  const conns = [await s.tls(), await s.tls(), await s.tls()];
  for (const c of conns) await c.handshake();
  const fourth = await s.tls();
  assert.equal(await closedWithin(fourth, 3000), "closed");
  assert.match(s.lines.join("\n"), /Refused connection from 127\.0\.0\.1:\d+: 3 connections/);
  // Once one closes, a new one is accepted (and served).
  conns[0]!.close();
  const end = Date.now() + 3000;
  for (;;) {
    const p = await s.connect().catch(() => null);
    if (p) {
      await p.request({ t: "register", device: "ok" });
      break;
    }
    assert.ok(Date.now() < end, "no connection accepted after one closed");
    await new Promise((r) => setTimeout(r, 50));
  }
});

Deno.test("a connection that does not sign in in time is dropped", opts, async () => {
  await using s = await testServer({
    handshakeTimeoutMs: 300,
    tlsHandshakeTimeoutMs: 300,
    tickMs: 50,
  });
  // No TLS at all: closed (and freed) at the TLS deadline although it never sends anything.
  const tcp = await s.tcp();
  // TLS, then nothing.
  const tls = await s.tls();
  await tls.handshake();
  // hello, then nothing.
  const hello = await s.tls();
  const reader = new FrameReader(hello);
  const r = await rawRequest(
    hello,
    reader,
    requestFrame(1, { t: "hello", protocol: PROTOCOL_VERSION, program: "t", caps: [] }),
  );
  assert.equal(r?.header.protocol, PROTOCOL_VERSION);
  // Signed in: stays.
  const a = await register(s, "A");
  const results = await Promise.all([tls, hello].map((c) => closedWithin(c, 5000)));
  assert.deepEqual(results, ["closed", "closed"]);
  assert.equal(await closedWithin(tcp, 5000), "closed");
  await a.peer.request({ t: "changes", since: 0, limit: 1 });
  assert.match(s.lines.join("\n"), /did not sign in within 0\.3 s/);
});

Deno.test("a frame larger than 64 KiB before sign-in closes the connection", opts, async () => {
  await using s = await testServer();
  const c = await s.tls();
  const reader = new FrameReader(c);
  await rawRequest(
    c,
    reader,
    requestFrame(1, { t: "hello", protocol: PROTOCOL_VERSION, program: "t", caps: [] }),
  );
  const head = new Uint8Array([0, 0x10, 0, 0, 1, 0, 0, 0, 2]); // declares 1 MiB
  await writeAllTo(c, head);
  assert.equal(await closedWithin(c, 3000), "closed");
});

Deno.test("a frame trickling in too slowly (slow-loris) closes the connection", opts, async () => {
  await using s = await testServer({
    frameTimeoutMs: 400,
    minFrameBytesPerSecond: 1024 * 1024,
    tickMs: 50,
  });
  const c = await s.tls();
  const reader = new FrameReader(c);
  await rawRequest(
    c,
    reader,
    requestFrame(1, { t: "hello", protocol: PROTOCOL_VERSION, program: "t", caps: [] }),
  );
  const reg = await rawRequest(c, reader, requestFrame(2, { t: "register", device: "slow" }));
  assert.equal(typeof reg?.header.token, "string");
  // A whole frame, one byte every 100 ms: each byte is "activity", but the frame takes too long.
  const frame = requestFrame(3, { t: "changes", since: 0, limit: 10 });
  let closed = false;
  const watching = closedWithin(c, 5000).then((r) => closed = r === "closed");
  for (let i = 0; i < frame.length && !closed; i++) {
    try {
      await writeAllTo(c, frame.subarray(i, i + 1));
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await watching;
  assert.ok(closed, "the slow connection was not closed");
  assert.match(s.lines.join("\n"), /took more than 0 s to arrive|took more than 1 s to arrive/);
});

Deno.test("a revoked device is disconnected within seconds; others are not", opts, async () => {
  await using s = await testServer({ tickMs: 100 });
  const a = await register(s, "A");
  const b = await enroll(s, a.serial!, "B");
  await b.peer.request({ t: "watch" });
  // The admin command runs in another process: it only shares the database.
  const admin = new SqliteMetaStore(s.dir);
  try {
    assert.deepEqual((await admin.devices(a.account)).map((d) => d.name), ["A", "B"]);
    assert.equal(await admin.revokeDevice(a.account, "nosuchdevice"), false);
    assert.equal(await admin.revokeDevice("otheraccount", b.deviceId), false);
    assert.equal(await admin.revokeDevice(a.account, b.deviceId), true);
  } finally {
    await admin.close();
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const reason = await Promise.race([
    b.peer.closed.then(() => "closed"),
    new Promise((r) => timer = setTimeout(() => r("still open"), 3000)),
  ]);
  clearTimeout(timer);
  assert.equal(reason, "closed");
  // It cannot sign in again.
  const p = await s.connect();
  assert.equal(
    await errorCode(
      p.request({ t: "auth", account: b.account, deviceId: b.deviceId, token: b.token }),
    ),
    "revoked",
  );
  // The other device is unaffected.
  const c = chunk("still here");
  await a.peer.request({ t: "put", hash: c.hash, size: c.size, z: false }, c.data);
  const r = await a.peer.request({ t: "commit", items: [fileItem("f.txt", c)] });
  assert.equal((r.header.results as { ok: boolean }[])[0]!.ok, true);
  assert.match(s.lines.join("\n"), /Closing the connection of revoked device/);
});

Deno.test("a request of a revoked device is refused at once", opts, async () => {
  await using s = await testServer({ tickMs: 60_000 }); // the watchdog would be too late
  const a = await register(s, "A");
  const admin = new SqliteMetaStore(s.dir);
  try {
    await admin.revokeDevice(a.account, a.deviceId);
  } finally {
    await admin.close();
  }
  assert.equal(await errorCode(a.peer.request({ t: "changes", since: 0, limit: 1 })), "revoked");
});
