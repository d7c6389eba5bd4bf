/**
 * End to end: what the client says when it cannot connect. A port that does not speak Cloud Sync
 * (plain TCP echo, HTTP, TLS with another protocol) is named as such, in words, and retried with
 * backoff; a server that stops reads `Cannot connect to HOST:PORT: …` without any TLS library
 * text, and sync resumes when it is back.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { createSelfSigned } from "../../lib/transport/tls_cert.ts";
import { put, ServerProc, startClient, startFirstClient, tempDir } from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

type Behaviour = "echo" | "http";

/** A server on 127.0.0.1 that is not Cloud Sync; counts the connections it accepts. */
async function fakeServer(behaviour: Behaviour, tls: boolean) {
  const cert = tls ? await createSelfSigned(1) : null;
  const listener: Deno.Listener = cert
    ? Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: cert.cert, key: cert.key })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const handlers: Promise<void>[] = [];
  let accepted = 0;
  const handle = async (c: Deno.Conn) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await c.read(buf);
        if (n === null) break;
        if (behaviour === "echo") {
          await c.write(buf.subarray(0, n));
        } else {
          await c.write(
            new TextEncoder().encode(
              "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
          );
          break;
        }
      }
    } catch { /* the client went away */ }
    try {
      c.close();
    } catch { /* already closed */ }
    conns.delete(c);
  };
  const accepting = (async () => {
    for await (const c of listener) {
      accepted++;
      conns.add(c);
      handlers.push(handle(c));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return accepted;
    },
    async close() {
      listener.close();
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await Promise.all(handlers);
    },
  };
}

const NOISE =
  /rustls|docs\.rs|InvalidContentType|corrupt message|os error|ERR_SSL|Cannot read frame/;

for (
  const [name, behaviour, tls, said] of [
    ["a plain TCP echo server", "echo", false, /it does not speak TLS, so it is not a Cloud Sync/],
    ["an HTTP server", "http", false, /it does not speak TLS, so it is not a Cloud Sync/],
    ["an HTTPS server", "http", true, /it speaks TLS but not the Cloud Sync protocol/],
    ["a TLS echo server", "echo", true, /it speaks TLS but not the Cloud Sync protocol/],
  ] as const
) {
  Deno.test(`${name} is named as not Cloud Sync and retried with backoff`, opts, async () => {
    await using tmp = await tempDir();
    const fake = await fakeServer(behaviour, tls);
    const folder = join(tmp.path, "x");
    const c = startClient("X", fake.port, folder, { seconds: 4 });
    try {
      const line = await c.waitForLine(/^Cannot connect to /);
      assert.match(
        line.input!,
        new RegExp(
          `^Cannot connect to 127\\.0\\.0\\.1:${fake.port}: ${said.source}.*; check the port \\(cloud-server prints it at start\\); retrying every 4 s at most$`,
        ),
      );
      // Backoff: 1, 2, 4, 4 s between attempts (each attempt may open two connections).
      const first = fake.accepted;
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 3500));
      const attempts = fake.accepted - first;
      assert.ok(attempts <= 6, `${attempts} connections in ${Date.now() - t0} ms`);
      assert.ok(attempts >= 1, "the client kept trying");
    } finally {
      await c.stop();
      await fake.close();
    }
    assert.doesNotMatch(c.output(), NOISE);
    assert.equal(c.lines.filter((l) => l.startsWith("Cannot connect")).length, 1, c.output());
    await assert.rejects(
      Deno.stat(folder),
      Deno.errors.NotFound,
      "a stopped first start leaves nothing",
    );
  });
}

Deno.test("a server that stops is reported in words and sync resumes", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  const a = join(tmp.path, "a");
  let server = await ServerProc.start(data);
  const port = server.port;
  const [ca] = await startFirstClient("A", port, a);
  try {
    await ca.waitForLine(/^Syncing /);
    await server.stop("SIGKILL"); // no TLS close: the case that printed a rustls message
    const line = await ca.waitForLine(/^Cannot connect to /);
    assert.equal(
      line.input,
      `Cannot connect to 127.0.0.1:${port}: the server closed the connection; retrying every 2 s at most`,
    );
    await ca.waitForLine(/^Cannot connect to .*: nothing is listening on that port/);
    server = await ServerProc.start(data, port);
    await ca.waitForLine(/^Connected to 127\.0\.0\.1:\d+ again$/);
    await put(a, "after.txt", "after the restart\n");
    await ca.waitForLine(/^Synced: 1 sent/);
    assert.doesNotMatch(ca.output(), NOISE);
  } finally {
    await ca.stop();
    await server.stop();
  }
});
