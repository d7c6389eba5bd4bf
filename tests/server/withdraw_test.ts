/**
 * An announced upload that will not come is withdrawn: a device streaming it is answered "not
 * found" at once (it then downloads the committed file later, or never), instead of waiting a
 * minute per chunk for an upload that its device gave up or that died with its connection. A
 * withdrawal only ever touches what that connection announced.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MemServer } from "../support/mem_server.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import { RemoteError } from "../../lib/protocol/peer.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const bytes = (tag: string) => new TextEncoder().encode(tag.repeat(30_000));

function announce(peer: Peer, path: string, data: Uint8Array[]) {
  const chunks = data.map((d) => ({ hash: sha(d), size: d.length }));
  const size = chunks.reduce((n, c) => n + c.size, 0);
  return peer.request({
    t: "announce",
    path,
    size,
    mtime: 1,
    exec: false,
    hash: sha(new TextEncoder().encode(path)),
    chunks,
  });
}

/** How a `get` with `wait` ended, and in how many milliseconds. */
async function waitedGet(peer: Peer, hash: string): Promise<{ outcome: string; ms: number }> {
  const t0 = performance.now();
  const outcome = await peer.request({ t: "get", hash, wait: true }).then(
    () => "got",
    (e) => e instanceof RemoteError ? e.code : String(e),
  );
  return { outcome, ms: performance.now() - t0 };
}

async function account(s: MemServer) {
  const { peer: a, pipe } = await s.connect();
  const reg = (await a.request({ t: "register", device: "A" })).header;
  const join = async (device: string) => {
    const { peer } = await s.connect();
    await peer.request({ t: "enroll", serial: String(reg.serial), device });
    return peer;
  };
  return { a, pipe, join };
}

Deno.test("a closed connection withdraws what it announced: waiting devices hear at once", async () => {
  const s = await MemServer.start();
  try {
    const { a, pipe, join } = await account(s);
    const b = await join("B");
    const [c1, c2] = [bytes("one"), bytes("two")];
    await announce(a, "big.bin", [c1, c2]);
    const waiting = waitedGet(b, sha(c1));
    await new Promise((r) => setTimeout(r, 50)); // the get is waiting on the server
    pipe.cut();
    const r = await waiting;
    assert.equal(r.outcome, "not-found");
    assert.ok(r.ms < 5000, `answered after ${r.ms} ms`);
    const again = await waitedGet(b, sha(c2)); // no longer announced: no wait at all
    assert.equal(again.outcome, "not-found");
    assert.ok(again.ms < 1000);
  } finally {
    await s.close();
  }
});

Deno.test("withdraw ends waits for this connection's announcements only", async () => {
  const s = await MemServer.start();
  try {
    const { a, join } = await account(s);
    const b = await join("B");
    const c = await join("C");
    const [mine, theirs] = [bytes("mine"), bytes("theirs")];
    await announce(a, "a.bin", [mine]);
    await announce(c, "c.bin", [theirs]);
    const forMine = waitedGet(b, sha(mine));
    const forTheirs = waitedGet(b, sha(theirs));
    await new Promise((r) => setTimeout(r, 50));
    await a.request({ t: "withdraw" });
    assert.equal((await forMine).outcome, "not-found");
    // C's upload still comes, and the device waiting for it gets it.
    await c.request({ t: "put", hash: sha(theirs), size: theirs.length, z: false }, theirs);
    assert.equal((await forTheirs).outcome, "got");
  } finally {
    await s.close();
  }
});
