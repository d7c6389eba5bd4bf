/**
 * Tests for the RPC peer over real loopback TCP connections: concurrency, out-of-order answers,
 * error propagation, notices, heartbeat and idle timeout, backpressure, close semantics and
 * resilience against garbage input.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  encodeFrame,
  FrameError,
  FrameReader,
  FrameType,
  MAX_FRAME,
} from "../../lib/protocol/frame.ts";
import {
  ConnectionClosedError,
  type Message,
  Peer,
  type PeerConn,
  type PeerOptions,
  ProtocolError,
  RemoteError,
} from "../../lib/protocol/peer.ts";

const enc = new TextEncoder();
const EMPTY = new Uint8Array();

/** A connected loopback TCP pair (client side first). */
async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const [server, client] = await Promise.all([
      listener.accept(),
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    ]);
    return [client, server];
  } finally {
    listener.close();
  }
}

/** Two peers over loopback TCP; disposing closes both and waits until both have fully stopped. */
async function peerPair(clientOpts: PeerOptions = {}, serverOpts: PeerOptions = {}) {
  const [cc, sc] = await tcpPair();
  const client = new Peer(cc, clientOpts);
  const server = new Peer(sc, serverOpts);
  return {
    client,
    server,
    async [Symbol.asyncDispose]() {
      client.close();
      server.close();
      await Promise.all([client.closed, server.closed]);
    },
  };
}

/** A counter whose thresholds can be awaited instead of polled or slept on. */
function counter() {
  let n = 0;
  let waiters: { at: number; resolve: () => void }[] = [];
  return {
    get value() {
      return n;
    },
    inc() {
      n++;
      const ready = waiters.filter((w) => n >= w.at);
      waiters = waiters.filter((w) => n < w.at);
      for (const w of ready) w.resolve();
    },
    reached(at: number): Promise<void> {
      if (n >= at) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ at, resolve }));
    },
  };
}

/** Wraps `conn` so that every byte it reads bumps a {@link counter}. */
function countingConn(
  conn: Deno.TcpConn,
): { received: ReturnType<typeof counter>; conn: PeerConn } {
  const received = counter();
  return {
    received,
    conn: {
      read: async (p) => {
        const n = await conn.read(p);
        for (let i = 0; i < (n ?? 0); i++) received.inc();
        return n;
      },
      write: (p) => conn.write(p),
      close: () => conn.close(),
    },
  };
}

/** Resolves "open" if `p` has not settled after pending microtasks and one macrotask. */
async function settledState(p: Promise<unknown>): Promise<"open" | "closed"> {
  return await Promise.race([
    p.then(() => "closed" as const),
    new Promise<"open">((resolve) => setTimeout(() => resolve("open"), 0)),
  ]);
}

function patterned(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

Deno.test("Peer request/response round trips", async (t) => {
  await using p = await peerPair({}, {
    onRequest: (m) => ({ header: { echo: m.header, size: m.body.length }, body: m.body }),
  });
  const cases: { name: string; header: Record<string, unknown>; body?: Uint8Array }[] = [
    { name: "header only", header: { op: "ping" } },
    { name: "small body", header: { op: "put", path: "ä/b" }, body: patterned(10) },
    { name: "4 MiB body", header: { op: "chunk" }, body: patterned(4 * 1024 * 1024, 3) },
  ];
  for (const { name, header, body } of cases) {
    await t.step(name, async () => {
      const res = await p.client.request(header, body);
      assert.deepEqual(res.header, { echo: header, size: body?.length ?? 0 });
      assert.deepEqual(res.body, body ?? EMPTY);
    });
  }
  await t.step("oversize request fails locally and leaves the link usable", async () => {
    await assert.rejects(
      p.client.request({}, new Uint8Array(MAX_FRAME)),
      (e) => e instanceof FrameError && /Cannot encode frame/.test(e.message),
    );
    assert.deepEqual((await p.client.request({ again: 1 })).header.echo, { again: 1 });
  });
});

Deno.test("Peer handles many concurrent requests answered out of order, both ways", async () => {
  const N = 40;
  const arrived = counter();
  const held: { msg: Message; resolve: (m: Message) => void }[] = [];
  const onRequest = (msg: Message) =>
    new Promise<Message>((resolve) => {
      held.push({ msg, resolve });
      arrived.inc();
    });
  await using p = await peerPair({ onRequest }, { onRequest });
  // Bodies around 64 KiB exercise both the copied and the separately written body paths.
  const body = (i: number) => patterned(60_000 + i * 300, i);
  const calls = [];
  for (let i = 0; i < N; i++) {
    const from = i % 2 === 0 ? p.client : p.server;
    calls.push(from.request({ i }, body(i)));
  }
  await arrived.reached(N);
  // Answer in reverse arrival order, each with the request's own number and body echoed.
  for (const { msg, resolve } of held.reverse()) {
    resolve({ header: { i: msg.header.i, doubled: (msg.header.i as number) * 2 }, body: msg.body });
  }
  const results = await Promise.all(calls);
  results.forEach((res, i) => {
    assert.deepEqual(res.header, { i, doubled: i * 2 });
    assert.deepEqual(res.body, body(i));
  });
});

Deno.test("Peer propagates handler errors as RemoteError", async (t) => {
  const cases: {
    name: string;
    handler?: PeerOptions["onRequest"];
    maxFrame?: number;
    code: string;
    message: RegExp;
  }[] = [
    {
      name: "ProtocolError keeps its code",
      handler: () => {
        throw new ProtocolError("not_found", "Cannot find file: a.txt");
      },
      code: "not_found",
      message: /^Cannot find file: a\.txt$/,
    },
    {
      name: "async ProtocolError",
      handler: () => Promise.reject(new ProtocolError("conflict", "Cannot write: stale base")),
      code: "conflict",
      message: /^Cannot write: stale base$/,
    },
    {
      name: "other Error becomes internal",
      handler: () => {
        throw new TypeError("boom");
      },
      code: "internal",
      message: /^boom$/,
    },
    {
      name: "non-Error throw becomes internal",
      handler: () => {
        throw "just a string";
      },
      code: "internal",
      message: /just a string/,
    },
    { name: "no handler answers unsupported", code: "unsupported", message: /no request handler/ },
    {
      name: "unencodable response becomes internal",
      handler: () => ({ header: {}, body: new Uint8Array(2000) }),
      maxFrame: 1000,
      code: "internal",
      message: /exceeds limit 1000/,
    },
  ];
  for (const { name, handler, maxFrame, code, message } of cases) {
    await t.step(name, async () => {
      const serverOpts: PeerOptions = {};
      if (handler) serverOpts.onRequest = handler;
      if (maxFrame) serverOpts.maxFrame = maxFrame;
      await using p = await peerPair({}, serverOpts);
      for (let round = 0; round < 2; round++) { // the link stays usable after an error
        await assert.rejects(p.client.request({ op: "x" }), (e) => {
          assert.ok(e instanceof RemoteError, `expected RemoteError, got ${e}`);
          assert.equal(e.code, code);
          assert.match(e.message, message);
          return true;
        });
      }
      assert.equal(await settledState(p.client.closed), "open");
    });
  }
});

Deno.test("Peer delivers notices", async (t) => {
  const got: Message[] = [];
  const seen = counter();
  await using p = await peerPair({}, {
    onNotice: (m) => {
      got.push(m);
      seen.inc();
      if (m.header.t === "throw") throw new Error("faulty notice handler");
    },
  });
  await t.step("in order, with bodies", async () => {
    await p.client.notify({ t: "changed", path: "a" }, patterned(5));
    await p.client.notify({ t: "throw" });
    await p.client.notify({ t: "changed", path: "b" });
    await seen.reached(3);
    assert.deepEqual(got.map((m) => m.header), [
      { t: "changed", path: "a" },
      { t: "throw" },
      { t: "changed", path: "b" },
    ]);
    assert.deepEqual(got[0]?.body, patterned(5));
  });
  await t.step("a throwing onNotice does not close the link", async () => {
    assert.equal(await settledState(p.server.closed), "open");
  });
  await t.step("notices without onNotice are dropped", async () => {
    await p.server.notify({ t: "to-client" });
    await assert.rejects(p.client.request({}), (e) => e instanceof RemoteError);
  });
});

Deno.test("Peer heartbeat keeps an idle link alive", async () => {
  const [cc, sc] = await tcpPair();
  // Count bytes the server receives so we can await "enough heartbeats" instead of sleeping.
  const { received, conn: countingServerConn } = countingConn(sc);
  const notices: Message[] = [];
  const opts: PeerOptions = {
    heartbeatMs: 15,
    idleTimeoutMs: 100,
    onNotice: (m) => notices.push(m),
  };
  const client = new Peer(cc, opts);
  const server = new Peer(countingServerConn, opts);
  try {
    // A ping frame is 13 + 12 bytes; 12 pings span well past twice the idle timeout.
    await received.reached(12 * 25);
    assert.equal(await settledState(client.closed), "open");
    assert.equal(await settledState(server.closed), "open");
    assert.deepEqual(notices, [], "heartbeats must not reach onNotice");
  } finally {
    client.close();
    server.close();
  }
  assert.equal(await client.closed, null);
  assert.equal(await server.closed, null);
});

Deno.test("Peer idle timeout closes a silent link", async (t) => {
  const expected = "Cannot keep connection: no data from peer for 0.06 s";
  await t.step("silent raw socket; pending requests are rejected", async () => {
    const [raw, sc] = await tcpPair();
    const server = new Peer(sc, { heartbeatMs: 0, idleTimeoutMs: 60 });
    const rejected = assert.rejects(server.request({ op: "never answered" }), (e) => {
      assert.ok(e instanceof ConnectionClosedError);
      assert.match(e.message, /^Cannot complete request: connection closed \(Cannot keep/);
      assert.ok(e.cause instanceof Error && e.cause.message === expected);
      return true;
    });
    const reason = await server.closed;
    assert.ok(reason instanceof Error);
    assert.equal(reason.message, expected);
    await rejected;
    // The silent side sees the request, then end of stream.
    const buf = new Uint8Array(1024);
    let n: number | null;
    do n = await raw.read(buf); while (n !== null);
    raw.close();
  });
  await t.step("peer without heartbeat; the other side sees a clean close", async () => {
    const [cc, sc] = await tcpPair();
    const client = new Peer(cc, { heartbeatMs: 0, idleTimeoutMs: 0 });
    const server = new Peer(sc, { heartbeatMs: 0, idleTimeoutMs: 60 });
    assert.equal((await server.closed)?.message, expected);
    assert.equal(await client.closed, null);
  });
});

Deno.test("Peer close rejects pending requests and is idempotent", async (t) => {
  for (const closer of ["local", "remote"] as const) {
    await t.step(`${closer} close`, async () => {
      const arrived = counter();
      const releases: (() => void)[] = [];
      await using p = await peerPair({}, {
        onRequest: () =>
          new Promise<Message>((resolve) => {
            releases.push(() => resolve({ header: {}, body: EMPTY }));
            arrived.inc();
          }),
      });
      const calls = Array.from({ length: 5 }, (_, i) => p.client.request({ i }));
      await arrived.reached(5);
      if (closer === "local") p.client.close();
      else p.server.close();
      for (const call of calls) {
        await assert.rejects(call, (e) => e instanceof ConnectionClosedError);
      }
      assert.equal(await p.client.closed, null);
      assert.equal(await p.server.closed, null);
      p.client.close(); // idempotent
      p.client.close();
      await assert.rejects(p.client.request({}), /^ConnectionClosedError: Cannot send request/);
      await assert.rejects(p.client.notify({}), /^ConnectionClosedError: Cannot send notice/);
      for (const release of releases) release(); // late answers are dropped quietly
    });
  }
});

Deno.test("Peer applies backpressure to incoming requests", async () => {
  const running = counter();
  let active = 0;
  let maxActive = 0;
  const gates: (() => void)[] = [];
  await using p = await peerPair({}, {
    maxIncomingInFlight: 2,
    onRequest: (m) =>
      new Promise<Message>((resolve) => {
        active++;
        maxActive = Math.max(maxActive, active);
        gates.push(() => {
          active--;
          resolve({ header: { i: m.header.i }, body: EMPTY });
        });
        running.inc();
      }),
  });
  const calls = Array.from({ length: 6 }, (_, i) => p.client.request({ i }));
  await running.reached(2);
  // Negative check: nothing else may start while both slots are busy. This cannot be awaited as a
  // condition, so give the reader a short chance to misbehave.
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(running.value, 2);
  for (let started = 2; started < 6; started++) {
    gates.shift()!();
    await running.reached(started + 1);
  }
  while (gates.length > 0) gates.shift()!();
  const results = await Promise.all(calls);
  assert.deepEqual(results.map((r) => r.header.i), [0, 1, 2, 3, 4, 5]);
  assert.equal(maxActive, 2);
});

Deno.test("Peer closes a connection that sends garbage without harming others", async (t) => {
  const badType = new Uint8Array([0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
  const truncated = new Uint8Array([0, 0, 0, 50, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0x7b]);
  const cases: { name: string; bytes: Uint8Array; endAfter: boolean; match: RegExp }[] = [
    {
      name: "HTTP request",
      bytes: enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      endAfter: false,
      match: /exceeds limit/,
    },
    { name: "unknown frame type", bytes: badType, endAfter: false, match: /unknown type 7/ },
    { name: "truncated frame then EOF", bytes: truncated, endAfter: true, match: /mid-frame/ },
    {
      name: "non-object header",
      bytes: new Uint8Array([0, 0, 0, 11, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0x5b, 0x5d]),
      endAfter: false,
      match: /not a JSON object/,
    },
  ];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const onRequest = (m: Message) => ({ header: { ok: m.header.n }, body: EMPTY });
  try {
    for (const { name, bytes, endAfter, match } of cases) {
      await t.step(name, async () => {
        const [bad, badServerConn] = await Promise.all([
          Deno.connect({ hostname: "127.0.0.1", port }),
          listener.accept(),
        ]);
        const [good, goodServerConn] = await Promise.all([
          Deno.connect({ hostname: "127.0.0.1", port }),
          listener.accept(),
        ]);
        const victim = new Peer(badServerConn, { onRequest });
        const goodServer = new Peer(goodServerConn, { onRequest });
        const goodClient = new Peer(good, {});
        await bad.write(bytes);
        if (endAfter) await bad.closeWrite();
        const reason = await victim.closed;
        assert.ok(reason instanceof FrameError, `expected FrameError, got ${reason}`);
        assert.match(reason.message, match);
        // The garbage sender sees its connection end (EOF, or a reset if bytes were unread).
        const sink = new Uint8Array(64);
        try {
          while ((await bad.read(sink)) !== null) { /* drain */ }
        } catch (err) {
          assert.ok(err instanceof Deno.errors.ConnectionReset, String(err));
        }
        bad.close();
        // Other connections are unaffected.
        assert.deepEqual((await goodClient.request({ n: 1 })).header, { ok: 1 });
        goodClient.close();
        assert.equal(await goodClient.closed, null);
        assert.equal(await goodServer.closed, null);
      });
    }
  } finally {
    listener.close();
  }
});

Deno.test("Peer with ackEagerly answers each frame it receives with a ping when idle", async (t) => {
  for (const eager of [true, false]) {
    await t.step(`ackEagerly: ${eager}`, async () => {
      const [cc, sc] = await tcpPair();
      // Count bytes the server receives: a response must be followed by one ping (25 bytes).
      const { received, conn: countingServerConn } = countingConn(sc);
      const client = new Peer(cc, { ackEagerly: eager, heartbeatMs: 0 });
      const server = new Peer(countingServerConn, {
        heartbeatMs: 0,
        onRequest: () => ({ header: {}, body: new Uint8Array(0) }),
      });
      try {
        await client.request({ t: "x" });
        const requestBytes = received.value;
        // The ping goes out one macrotask after the response arrived; give it a few.
        for (let i = 0; i < 20 && received.value === requestBytes; i++) {
          await new Promise((r) => setTimeout(r, 5));
        }
        assert.equal(received.value - requestBytes, eager ? 25 : 0);
      } finally {
        client.close();
        server.close();
      }
      await Promise.all([client.closed, server.closed]);
    });
  }
});

Deno.test("Peer with ackEagerly pings when only the tail of a big response is missing", async (t) => {
  // The sender's Nagle algorithm may hold the last piece of a big reply until this side
  // acknowledges; a ping carries the acknowledgement. Here the "server" delivers all but the last
  // 1,000 bytes, then waits for a ping (or 300 ms) before delivering the rest.
  for (const eager of [true, false]) {
    await t.step(`ackEagerly: ${eager}`, async () => {
      const written: Uint8Array[] = [];
      let wrote = () => {};
      const incoming: Uint8Array[] = [];
      let arrived = () => {};
      let closed = false;
      const conn: PeerConn = {
        read: async (p) => {
          while (incoming.length === 0 && !closed) await new Promise<void>((r) => arrived = r);
          if (closed) return null;
          const next = incoming[0]!;
          const n = Math.min(p.length, next.length, 16_384);
          p.set(next.subarray(0, n));
          if (n === next.length) incoming.shift();
          else incoming[0] = next.subarray(n);
          return n;
        },
        write: (p) => {
          written.push(p.slice());
          wrote();
          return Promise.resolve(p.length);
        },
        close: () => {
          closed = true;
          arrived();
        },
      };
      const client = new Peer(conn, { ackEagerly: eager, heartbeatMs: 0, idleTimeoutMs: 0 });
      const reply = client.request({ t: "get" });
      const frames = async () => {
        const all = new Uint8Array(written.reduce((n, w) => n + w.length, 0));
        let off = 0;
        for (const w of written) {
          all.set(w, off);
          off += w.length;
        }
        let at = 0;
        const reader = new FrameReader({
          read: (p) => {
            if (at >= all.length) return Promise.resolve(null);
            const n = Math.min(p.length, all.length - at);
            p.set(all.subarray(at, at + n));
            at += n;
            return Promise.resolve(n);
          },
        });
        const out = [];
        for (let f = await reader.next(); f; f = await reader.next()) out.push(f);
        return out;
      };
      while (written.length === 0) await new Promise<void>((r) => wrote = r);
      const request = (await frames())[0]!;
      const response = encodeFrame({
        type: FrameType.Response,
        id: request.id,
        header: {},
        body: new Uint8Array(300_000).fill(1),
      });
      incoming.push(response.subarray(0, response.length - 1_000));
      arrived();
      const deadline = Date.now() + 300;
      while ((await frames()).length < 2 && Date.now() < deadline) {
        await new Promise<void>((r) => {
          wrote = r;
          setTimeout(r, 20);
        });
      }
      const sent = await frames();
      if (eager) {
        assert.equal(sent.length, 2, "no ping before the tail arrived");
        assert.equal(sent[1]!.header.t, "ping");
      } else assert.equal(sent.length, 1, "unexpected frame");
      incoming.push(response.subarray(response.length - 1_000));
      arrived();
      assert.equal((await reply).body.length, 300_000);
      client.close();
      await client.closed;
    });
  }
});

Deno.test("Peer drops a connection whose peer does not read", async () => {
  const [cc, sc] = await tcpPair();
  // The client side never reads: once the socket buffers are full, the server's writes wait.
  const server = new Peer(sc, {
    maxQueuedBytes: 4 * 1024 * 1024,
    heartbeatMs: 0,
    idleTimeoutMs: 0,
  });
  // One frame, encoded once, queued many times (as the hub does for many watchers).
  const pad = Array.from(crypto.getRandomValues(new Uint8Array(60_000)), (b) => b.toString(16))
    .join("");
  const frame = encodeFrame({
    type: FrameType.Notice,
    id: 0,
    header: { t: "x", pad },
    body: EMPTY,
  });
  let closed = false;
  const ended = server.closed.then((why) => {
    closed = true;
    return why;
  });
  for (let i = 0; i < 2000 && !closed; i++) {
    server.notifyEncoded(frame).catch(() => {});
    if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  const why = await ended;
  assert.match(String(why?.message), /the peer does not read/);
  cc.close();
});
