/**
 * Account isolation over real connections: account B, signed in as itself, cannot read, probe,
 * reference or watch anything of account A, whatever it sends; and nothing works before
 * signing in.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  chunk,
  enroll,
  errorCode,
  fileItem,
  randomBytes,
  register,
  testServer,
} from "./server_helper.ts";
import { SqliteMetaStore } from "../../lib/server/meta_store.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("account B reaches nothing of account A", opts, async () => {
  await using s = await testServer();
  const a = await register(s, "A");
  const x = chunk(randomBytes(1000)); // A's secret chunk, put alone
  const y = chunk(randomBytes(2000)); // and one put in a batch
  await a.peer.request({ t: "put", hash: x.hash, size: x.size, z: false }, x.data);
  const body = new Uint8Array(y.size);
  body.set(y.data);
  await a.peer.request({
    t: "putMany",
    chunks: [{ hash: y.hash, size: y.size, z: false, len: y.size }],
  }, body);
  const ra = await a.peer.request({ t: "commit", items: [fileItem("secret/a.bin", x)] });
  assert.equal((ra.header.results as { ok: boolean }[])[0]!.ok, true);

  const b = await register(s, "B");
  assert.notEqual(b.account, a.account);
  const own = chunk(randomBytes(500));
  await b.peer.request({ t: "put", hash: own.hash, size: own.size, z: false }, own.data);

  // have: A's chunks are missing for B.
  const have = await b.peer.request({ t: "have", hashes: [x.hash, y.hash, own.hash] });
  assert.deepEqual(have.header.missing, [x.hash, y.hash]);
  // get / getMany: not found, and no partial data when mixed with B's own chunk.
  assert.equal(await errorCode(b.peer.request({ t: "get", hash: x.hash })), "not-found");
  assert.equal(await errorCode(b.peer.request({ t: "get", hash: y.hash })), "not-found");
  assert.equal(
    await errorCode(b.peer.request({ t: "getMany", hashes: [own.hash, x.hash] })),
    "not-found",
  );
  assert.equal(await errorCode(b.peer.request({ t: "getMany", hashes: [y.hash] })), "not-found");
  // commit: an entry referencing A's chunk is refused as missing, whole or among B's chunks.
  const rb = await b.peer.request({
    t: "commit",
    items: [
      fileItem("stolen.bin", x),
      {
        ...fileItem("mixed.bin", own),
        size: own.size + x.size,
        chunks: [{ hash: own.hash, size: own.size }, { hash: x.hash, size: x.size }],
      },
      fileItem("secret/a.bin", y), // A's path: B's namespace is separate, but y is A's
    ],
  });
  const results = rb.header.results as { ok: boolean; reason?: string }[];
  assert.deepEqual(results.map((r) => r.reason), ["missing", "missing", "missing"]);
  // changes: B's journal holds nothing of A's.
  const ch = await b.peer.request({ t: "changes", since: 0, limit: 2000 });
  assert.deepEqual(ch.header.entries, []);
  assert.equal(ch.header.seq, 0);

  // The same content put by B is B's own copy: now B may use it, A is unaffected.
  await b.peer.request({ t: "put", hash: x.hash, size: x.size, z: false }, x.data);
  const rb2 = await b.peer.request({ t: "commit", items: [fileItem("mine.bin", x)] });
  assert.equal((rb2.header.results as { ok: boolean }[])[0]!.ok, true);
  const chA = await a.peer.request({ t: "changes", since: 0, limit: 2000 });
  const pathsA = (chA.header.entries as { path: string }[]).map((e) => e.path).sort();
  assert.deepEqual(pathsA, ["secret", "secret/a.bin"]);
  const chB = await b.peer.request({ t: "changes", since: 0, limit: 2000 });
  const pathsB = (chB.header.entries as { path: string }[]).map((e) => e.path).sort();
  assert.deepEqual(pathsB, ["mine.bin"]);
});

Deno.test("change notices reach only the account's own devices", opts, async () => {
  await using s = await testServer();
  const a = await register(s, "A");
  const a2 = await enroll(s, a.serial!, "A2");
  assert.equal(a2.account, a.account);
  const b = await register(s, "B");
  const noticesA2: unknown[] = [];
  const noticesB: unknown[] = [];
  // Watch with peers that record notices: fresh connections signed in with the credentials.
  const watch = async (d: typeof a, into: unknown[]) => {
    const { dial } = await import("../../lib/client/connection.ts");
    const peer = await dial({
      host: "127.0.0.1",
      port: s.server.port,
      expectFingerprint: s.server.certificate.fingerprint,
      onNotice: (h) => into.push(h),
    });
    await peer.request({ t: "auth", account: d.account, deviceId: d.deviceId, token: d.token });
    await peer.request({ t: "watch" });
    return peer;
  };
  const wa2 = await watch(a2, noticesA2);
  const wb = await watch(b, noticesB);
  try {
    const c = chunk("hello");
    await a.peer.request({ t: "put", hash: c.hash, size: c.size, z: false }, c.data);
    await a.peer.request({ t: "commit", items: [fileItem("h.txt", c)] });
    const end = Date.now() + 5000;
    while (noticesA2.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.ok(noticesA2.length > 0, "A's other device got the notice");
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(noticesB, [], "B got nothing");
  } finally {
    wa2.close();
    wb.close();
    await Promise.all([wa2.closed, wb.closed]);
  }
});

Deno.test("credentials: only the device's own token, for its own account", opts, async () => {
  await using s = await testServer();
  const a = await register(s, "A");
  const b = await register(s, "B");
  const attempts = [
    { account: a.account, deviceId: b.deviceId, token: b.token }, // B's device claiming A
    { account: a.account, deviceId: a.deviceId, token: b.token }, // A's device, B's token
    { account: b.account, deviceId: a.deviceId, token: a.token }, // A's device claiming B
    // The last character changed (to one that is still valid base64url, never the same one).
    {
      account: a.account,
      deviceId: a.deviceId,
      token: a.token.slice(0, -1) + (a.token.endsWith("A") ? "E" : "A"),
    },
    { account: a.account, deviceId: a.deviceId, token: "" },
  ];
  for (const cred of attempts) {
    const p = await s.connect();
    assert.equal(await errorCode(p.request({ t: "auth", ...cred })), "bad-credentials");
    // Still not signed in: every account request is refused.
    assert.equal(
      await errorCode(p.request({ t: "changes", since: 0, limit: 10 })),
      "unauthenticated",
    );
    p.close();
  }
  const ok = await s.connect();
  await ok.request({ t: "auth", account: a.account, deviceId: a.deviceId, token: a.token });
  // One sign-in per connection: it cannot switch to another account (or register a new one).
  assert.equal(
    await errorCode(
      ok.request({ t: "auth", account: b.account, deviceId: b.deviceId, token: b.token }),
    ),
    "bad-request",
  );
  assert.equal(await errorCode(ok.request({ t: "register", device: "X" })), "bad-request");
  assert.equal(
    await errorCode(ok.request({ t: "enroll", serial: b.serial, device: "X" })),
    "bad-request",
  );
  // Secrets are stored only as hashes.
  const meta = new SqliteMetaStore(s.dir);
  try {
    const d = (await meta.device(a.deviceId))!;
    assert.notEqual(d.tokenHash, a.token);
    assert.match(d.tokenHash, /^[0-9a-f]{64}$/);
    assert.equal(
      await meta.accountBySerialHash(a.serial!),
      null,
      "the serial is not stored as is",
    );
  } finally {
    await meta.close();
  }
});

Deno.test("nothing works before hello and sign-in", opts, async () => {
  await using s = await testServer();
  const p = await s.connect();
  const requests: Record<string, unknown>[] = [
    { t: "changes", since: 0, limit: 10 },
    { t: "have", hashes: [] },
    { t: "get", hash: "0".repeat(64) },
    { t: "getMany", hashes: [] },
    { t: "put", hash: "0".repeat(64), size: 0, z: false },
    { t: "putMany", chunks: [] },
    { t: "commit", items: [] },
    { t: "watch" },
  ];
  for (const r of requests) {
    assert.equal(await errorCode(p.request(r)), "unauthenticated", String(r.t));
  }
});

Deno.test("commit refuses paths outside the account's folder", opts, async () => {
  await using s = await testServer();
  const a = await register(s, "A");
  const c = chunk("x");
  await a.peer.request({ t: "put", hash: c.hash, size: c.size, z: false }, c.data);
  for (
    const path of [
      "../x",
      "/etc/passwd",
      "a/../../x",
      ".cloudsync/config.json",
      "a\u0000b",
      "",
      "a//b",
      "./a",
      "C:\\x",
      "x".repeat(5000),
    ]
  ) {
    // Refused either as a whole request (bad-path / bad-request) or as that item ("invalid").
    let outcome: string;
    try {
      const r = await a.peer.request({ t: "commit", items: [fileItem(path, c)] });
      const res = (r.header.results as { ok: boolean; reason?: string }[])[0]!;
      outcome = res.ok ? "accepted" : String(res.reason);
    } catch (e) {
      outcome = await errorCode(Promise.reject(e));
    }
    assert.ok(
      ["bad-path", "bad-request", "invalid"].includes(outcome),
      `${JSON.stringify(path)}: ${outcome}`,
    );
  }
  const ch = await a.peer.request({ t: "changes", since: 0, limit: 10 });
  assert.deepEqual(ch.header.entries, []);
});
