/**
 * The history, point-in-time listing and restore requests over real connections to a real
 * server: every field checked, every page bounded, nothing of another account reachable, a
 * restore pushed to the account's other devices and sending no content.
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
  remoteError,
  testServer,
} from "./server_helper.ts";
import {
  MAX_HISTORY,
  MAX_LIST,
  MAX_LIST_BYTES,
  MAX_RESTORE,
  MIN_CHUNK,
} from "../../lib/protocol/messages.ts";
import { rowBytes } from "../../lib/server/session.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

type Results = { ok: boolean; version?: number; reason?: string; message?: string }[];

Deno.test("history, listAt and restore: the account's own, checked and bounded", opts, async () => {
  await using s = await testServer();
  const a = await register(s, "A");
  const phone = await enroll(s, a.serial!, "phone");
  const one = chunk(randomBytes(100));
  const two = chunk(randomBytes(200));
  for (const c of [one, two]) {
    await a.peer.request({ t: "put", hash: c.hash, size: c.size, z: false }, c.data);
  }
  const commit = async (items: unknown[]) =>
    (await a.peer.request({ t: "commit", items })).header.results as Results;
  const [f1] = await commit([fileItem("d/f", one)]); // d 1, d/f 2
  await new Promise((r) => setTimeout(r, 5));
  const at = Date.now();
  await new Promise((r) => setTimeout(r, 5));
  const [f2] = await commit([fileItem("d/f", two, f1!.version!)]); // 3

  // history: newest first, with when and who; paged by version.
  const h = (await a.peer.request({ t: "history", path: "d/f", limit: 1 })).header;
  const v = h.versions as { version: number; device: string; made: number; replaced: null }[];
  assert.deepEqual(v.map((x) => [x.version, x.device, x.replaced]), [[3, "A", null]]);
  assert.deepEqual([h.more, h.next], [true, 3]);
  const h2 = (await a.peer.request({ t: "history", path: "d/f", limit: 5, before: 3 })).header;
  assert.deepEqual((h2.versions as { version: number }[]).map((x) => x.version), [2]);
  assert.equal(h2.more, false);
  // The limit is capped; a zero limit still returns a page.
  const big = await a.peer.request({ t: "history", path: "", limit: 1_000_000 });
  assert.equal((big.header.versions as unknown[]).length, 3);
  assert.ok(MAX_HISTORY <= 1000 && MAX_LIST <= 1000 && MAX_RESTORE <= 1000);

  // listAt: the state at an instant, with the state now; an empty first page says the oldest.
  const l = (await a.peer.request({ t: "listAt", path: "d", at, limit: 10 })).header;
  const e = l.entries as {
    path: string;
    version: number;
    chunks: unknown[];
    current: { version: number };
  }[];
  assert.deepEqual(e.map((x) => [x.path, x.version, x.current.version]), [["d", 1, 1], [
    "d/f",
    2,
    3,
  ]]);
  assert.equal(e[1]!.chunks.length, 1);
  const empty = (await a.peer.request({ t: "listAt", path: "d", at: 0, limit: 10 })).header;
  assert.deepEqual(empty.entries, []);
  assert.ok(typeof empty.oldest === "number" && empty.oldest <= at);
  const nothing = (await a.peer.request({ t: "listAt", path: "nope", at, limit: 10 })).header;
  assert.equal(nothing.oldest, null);

  // restore: a new version, pushed to the account's other device, no content sent.
  await phone.peer.request({ t: "watch" });
  const heard = new Promise<void>((resolve) => {
    const off = setInterval(async () => {
      const c = await phone.peer.request({ t: "changes", since: 3, limit: 10 });
      if ((c.header.entries as unknown[]).length > 0) {
        clearInterval(off);
        resolve();
      }
    }, 20);
  });
  const r = await a.peer.request({
    t: "restore",
    items: [
      { path: "d/f", version: 2, baseVersion: f2!.version },
      { path: "../etc/passwd", version: 1, baseVersion: 0 },
      { path: "d/f", version: 77, baseVersion: 4 },
    ],
  });
  const results = r.header.results as Results;
  assert.deepEqual(results.map((x) => x.ok ? "ok" : x.reason), ["ok", "invalid", "missing"]);
  assert.equal(results[0]!.version, 4);
  await heard;
  const now = (await phone.peer.request({ t: "changes", since: 3, limit: 10 })).header;
  const restored = (now.entries as { path: string; hash: string; device: string }[])[0]!;
  assert.deepEqual([restored.path, restored.hash, restored.device], ["d/f", one.hash, "A"]);

  // Another account sees none of it, and restores none of it.
  const b = await register(s, "B");
  const hb = await b.peer.request({ t: "history", path: "", limit: 100 });
  assert.deepEqual(hb.header.versions, []);
  const lb = await b.peer.request({ t: "listAt", path: "", at: Date.now(), limit: 100 });
  assert.deepEqual(lb.header.entries, []);
  const rb = await b.peer.request({
    t: "restore",
    items: [{ path: "d/f", version: 2, baseVersion: 0 }],
  });
  assert.equal((rb.header.results as Results)[0]!.reason, "missing");
  assert.deepEqual(
    (await b.peer.request({ t: "changes", since: 0, limit: 10 })).header.entries,
    [],
  );

  // Every field is checked.
  const bad = async (header: Record<string, unknown>) => await errorCode(a.peer.request(header));
  assert.equal(await bad({ t: "history", path: "/abs", limit: 10 }), "bad-path");
  assert.equal(await bad({ t: "history", path: ".cloudsync/x", limit: 10 }), "bad-path");
  assert.equal(await bad({ t: "history", path: "d", limit: -1 }), "bad-request");
  assert.equal(await bad({ t: "history", path: "d", limit: 10, before: "x" }), "bad-request");
  assert.equal(await bad({ t: "history", path: "d", limit: 10, deleted: "yes" }), "bad-request");
  assert.equal(await bad({ t: "history", path: 5, limit: 10 }), "bad-request");
  assert.equal(await bad({ t: "listAt", path: "d", limit: 10 }), "bad-request");
  assert.equal(await bad({ t: "listAt", path: "d", at: 1.5, limit: 10 }), "bad-request");
  assert.equal(
    await bad({ t: "listAt", path: "d", at: 1, limit: 10, after: "a/../b" }),
    "bad-path",
  );
  assert.equal(await bad({ t: "restore", items: "x" }), "bad-request");
  assert.equal(
    await bad({ t: "restore", items: [{ path: "d/f", version: -1, baseVersion: 0 }] }),
    "bad-request",
  );
  const tooMany = Array.from({ length: MAX_RESTORE + 1 }, () => ({
    path: "d/f",
    version: 2,
    baseVersion: 0,
  }));
  assert.equal(await bad({ t: "restore", items: tooMany }), "bad-request");
  // Nothing before signing in.
  const anon = await s.connect();
  const msg = await remoteError(anon.request({ t: "history", path: "", limit: 10 }));
  assert.equal(msg.code, "unauthenticated");
});

Deno.test("listAt pages end before they weigh too much (chunk lists)", opts, async () => {
  await using s = await testServer();
  const a = await register(s, "A");
  // 30 files of 2,000 chunks each, every one the same 16 KiB chunk (a list may name a chunk
  // again; every chunk but a file's last holds at least MIN_CHUNK): 60,000 references in all.
  const one = chunk(randomBytes(MIN_CHUNK));
  await a.peer.request({
    t: "putMany",
    chunks: [{ hash: one.hash, size: one.size, z: false, len: one.size }],
  }, one.data);
  const items = Array.from({ length: 30 }, (_, i) => ({
    ...fileItem(`big/f${i}`, one),
    size: 2000 * one.size,
    hash: "e".repeat(64),
    chunks: Array.from({ length: 2000 }, () => ({ hash: one.hash, size: one.size })),
  }));
  for (let i = 0; i < items.length; i += 5) {
    const r = await a.peer.request({ t: "commit", items: items.slice(i, i + 5) });
    assert.ok((r.header.results as Results).every((x) => x.ok));
  }
  let after: string | undefined;
  let pages = 0;
  let seen = 0;
  for (;;) {
    const h = (await a.peer.request({
      t: "listAt",
      path: "big",
      at: Date.now() + 1000,
      limit: 1000,
      ...(after ? { after } : {}),
    })).header;
    const e = h.entries as { path: string; chunks: unknown[] }[];
    pages++;
    seen += e.length;
    const weight = e.reduce((n, x) => n + rowBytes(x.path, x.chunks.length), 0);
    assert.ok(weight <= MAX_LIST_BYTES, `page ${pages}: ${weight} bytes`);
    if (h.more !== true) break;
    after = h.next as string;
  }
  assert.equal(seen, 31);
  assert.ok(pages >= 2);
});
