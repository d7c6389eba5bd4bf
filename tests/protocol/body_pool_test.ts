/**
 * Tests for the reused body buffers: the pool itself (bounded, each buffer given back once, only
 * its own), and a real pair of peers on 127.0.0.1 that gives request bodies back once the handler
 * settled and reply bodies once written, with every byte arriving intact across reuses.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BodyPool, MIN_POOLED } from "../../lib/protocol/body_pool.ts";
import { type Message, Peer } from "../../lib/protocol/peer.ts";

Deno.test("BodyPool: reuses given-back buffers, once each, only its own, within its bound", () => {
  const pool = new BodyPool(2 * 1024 * 1024);
  const small = pool.take(1000);
  assert.equal(small.length, 1000);
  pool.give(small); // not pooled: ignored
  assert.equal(pool.spareBytes, 0);
  const a = pool.take(MIN_POOLED + 1);
  assert.equal(a.length, MIN_POOLED + 1);
  pool.give(a);
  pool.give(a); // twice: the second is ignored, so two takers never share it
  assert.equal(pool.spareBytes, 2 * MIN_POOLED);
  const b = pool.take(MIN_POOLED + 5);
  const c = pool.take(MIN_POOLED + 5);
  assert.equal(b.buffer, a.buffer);
  assert.notEqual(c.buffer, a.buffer);
  assert.equal(pool.reused, 1);
  pool.give(new Uint8Array(MIN_POOLED * 2)); // foreign: ignored
  assert.equal(pool.spareBytes, 0);
  // Bounded: 2 MiB of spares at most, the rest is left to the garbage collector.
  const big = [pool.take(1 << 20), pool.take(1 << 20), pool.take(1 << 20)];
  for (const x of big) pool.give(x);
  assert.equal(pool.spareBytes, 2 * 1024 * 1024);
});

async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [c, s] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port }),
    l.accept(),
  ]);
  l.close();
  return [c, s];
}

function patterned(n: number, seed: number): Uint8Array {
  const d = new Uint8Array(n);
  for (let i = 0; i < n; i++) d[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return d;
}

Deno.test("Peer with a BodyPool: bodies reused across requests and replies arrive intact", async () => {
  const pool = new BodyPool();
  const [cc, sc] = await tcpPair();
  const reply = new Map<number, Uint8Array>();
  const server = new Peer(sc, {
    bodyPool: pool,
    onRequest: async (msg: Message) => {
      const seed = msg.header.seed as number;
      // The request body is intact while the handler runs, even after many reuses.
      await new Promise((r) => setTimeout(r, 1));
      assert.deepEqual(msg.body, patterned(msg.body.length, seed));
      const out = pool.take(msg.body.length + 3);
      out.set(patterned(out.length, seed + 1));
      reply.set(seed, out);
      return { header: { ok: true }, body: out };
    },
  });
  const client = new Peer(cc, {});
  try {
    for (let seed = 0; seed < 12; seed++) {
      const n = MIN_POOLED + seed * 4099;
      const r = await client.request({ t: "echo", seed }, patterned(n, seed));
      assert.deepEqual(r.body, patterned(n + 3, seed + 1));
    }
    // Request bodies and reply bodies were given back and taken again.
    assert.ok(pool.reused >= 10, `reused ${pool.reused}`);
  } finally {
    await client.close();
    await server.close();
  }
});
