/**
 * The accept loop survives running out of file descriptors (break 3 of issue 12): the real server
 * process, started with a small open-file limit (`ulimit -n`), is flooded with plain TCP
 * connections that never start TLS until accepting fails with EMFILE; it logs that once, backs
 * off, and serves a new client as soon as the flood ends. A second server with the default
 * `--max-connections` (3/4 of the limit) pauses accepting before descriptors run out. And sockets
 * that never complete a TLS handshake are closed and their descriptors freed after 5 s, while the
 * attacker still holds its ends (Deno's own TLS listener could not free them).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir, waitFor } from "./harness.ts";
import { holdSockets } from "./attackers.ts";
import { encodeFrame, FrameReader, FrameType } from "../../lib/protocol/frame.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };
const ROOT = new URL("../../", import.meta.url).pathname;

/** The server under `ulimit -n limit` (bash's ulimit, then exec deno). */
async function limitedServer(data: string, limit: number, extra: string[] = []) {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n ${limit} && exec "$0" run --allow-all server.ts 0 --host 127.0.0.1 --data "$1" ${
        extra.join(" ")
      }`,
      Deno.execPath(),
      data,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const lines: string[] = [];
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    let rest = "";
    for await (const c of s) {
      const parts = (rest + dec.decode(c, { stream: true })).split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
    }
    if (rest) lines.push(rest);
  };
  const pumping = Promise.all([pump(child.stdout), pump(child.stderr)]);
  /** Descriptors the server process holds now (`ls`: reading /proc/PID needs --allow-all). */
  const fds = () => {
    const out = new Deno.Command("ls", { args: [`/proc/${child.pid}/fd`] }).outputSync();
    return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "").length;
  };
  let port = 0;
  await waitFor(
    () => {
      const m = lines.join("\n").match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) port = Number(m[1]);
      return port > 0;
    },
    () => lines.join("\n"),
    20_000,
  );
  return {
    port,
    lines,
    fds,
    /** The descriptor count once it has not changed for 300 ms (start-up work is over). */
    async stableFds(): Promise<number> {
      const seen: number[] = [];
      await waitFor(
        () => {
          seen.push(fds());
          return seen.length >= 4 && seen.slice(-4).every((n) => n === seen.at(-1));
        },
        () => seen.join(" "),
        10_000,
      );
      return seen.at(-1)!;
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await pumping;
    },
  };
}

const helloErrors: string[] = [];

async function helloWorks(port: number, pem: string): Promise<boolean> {
  let conn: Deno.TlsConn | null = null;
  try {
    conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [pem] });
    const hello = encodeFrame({
      type: FrameType.Request,
      id: 1,
      header: { t: "hello", protocol: 1, program: "t", caps: [] },
      body: new Uint8Array(),
    });
    await conn.write(hello);
    const f = await new FrameReader(conn).next();
    return f?.header.protocol === 1;
  } catch (e) {
    helloErrors.push((e as Error).message);
    return false;
  } finally {
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

async function flood(port: number, n: number): Promise<Deno.Conn[]> {
  const out: Deno.Conn[] = [];
  for (let i = 0; i < n; i++) {
    try {
      out.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    } catch { /* the backlog is full: enough */ }
  }
  return out;
}

Deno.test(
  "the accept loop survives descriptor exhaustion and serves again once the flood ends",
  opts,
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const s = await limitedServer(data, 96, ["--max-connections", "1000"]);
    try {
      const pem = await Deno.readTextFile(join(data, "tls", "cert.pem"));
      assert.ok(await helloWorks(s.port, pem));
      const conns = await flood(s.port, 150);
      await waitFor(
        () => s.lines.some((l) => /Cannot accept connections/.test(l)),
        () => s.lines.join("\n"),
        10_000,
      );
      for (const c of conns) c.close();
      await waitFor(
        () => helloWorks(s.port, pem),
        () => `${helloErrors.slice(-3).join("; ")}\n${s.lines.join("\n")}`,
        10_000,
      );
      assert.equal(s.lines.filter((l) => /Cannot accept connections/.test(l)).length, 1);
      assert.ok(s.lines.some((l) => /Accepting connections again/.test(l)), s.lines.join("\n"));
    } finally {
      await s.stop();
    }
    // With the default cap (3/4 of the limit), accepting pauses before descriptors run out.
    const s2 = await limitedServer(data, 96);
    try {
      const pem = await Deno.readTextFile(join(data, "tls", "cert.pem"));
      const conns = await flood(s2.port, 150);
      await waitFor(
        () => s2.lines.some((l) => /Not accepting connections for now/.test(l)),
        () => s2.lines.join("\n"),
        10_000,
      );
      for (const c of conns) c.close();
      await waitFor(() => helloWorks(s2.port, pem), () => s2.lines.join("\n"), 10_000);
      assert.ok(!s2.lines.some((l) => /Cannot accept/.test(l)), s2.lines.join("\n"));
    } finally {
      await s2.stop();
    }
  },
);

Deno.test(
  "sockets that never complete TLS are closed and freed while the attacker holds them",
  opts,
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const s = await limitedServer(data, 4096);
    // The attacker: 100 sockets from 4 addresses of one /24; 80 send nothing, 20 the first byte
    // of a ClientHello and nothing more. Its own process (binding other loopback addresses
    // needs permissions the test runner does not have).
    const pem = await Deno.readTextFile(join(data, "tls", "cert.pem"));
    assert.ok(await helloWorks(s.port, pem));
    const base = await s.stableFds();
    const attacker = holdSockets(
      s.port,
      100,
      ["127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"],
    );
    try {
      await waitFor(() => attacker.connected(), () => attacker.lines.join("\n"), 10_000);
      await waitFor(() => s.fds() >= base + 100, () => `fds ${s.fds()}, base ${base}`, 5_000);
      // Meanwhile another client is served.
      assert.ok(await helloWorks(s.port, pem), helloErrors.slice(-1).join());
      // After the 5 s TLS deadline every socket is closed and freed on the server, although the
      // attacker still holds all of its ends.
      await waitFor(
        () => attacker.closed() === 100,
        () => `the server closed ${attacker.closed()} of 100`,
        10_000,
      );
      await waitFor(() => s.fds() <= base + 2, () => `fds ${s.fds()}, base ${base}`, 5_000);
      assert.ok(s.lines.some((l) => /no TLS handshake within 5 s/.test(l)), s.lines.join("\n"));
    } finally {
      await attacker.stop();
      await s.stop();
    }
  },
);
