/**
 * Helpers for tests that drive a real server (in this process, on 127.0.0.1) over real TLS
 * connections: sign-in as a client would, raw frames as an attacker would.
 *
 * @module
 */

import { join } from "node:path";
import { startServer } from "../../lib/server/server.ts";
import type { ServerLimits } from "../../lib/server/limits.ts";
import { dial } from "../../lib/client/connection.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import { RemoteError } from "../../lib/protocol/peer.ts";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  FrameType,
  HEADER_ZSTD,
} from "../../lib/protocol/frame.ts";
import zlib from "node:zlib";
import { sha256Hex } from "../../lib/chunk/hash.ts";

/** A server in a temporary data directory; `await using` stops it and removes the directory. */
export async function testServer(limits: Partial<ServerLimits> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-server-" });
  const lines: string[] = [];
  const server = await startServer({
    hostname: "127.0.0.1",
    port: 0,
    dataDir: dir,
    limits,
    log: (l) => lines.push(l),
  });
  const pem = await Deno.readTextFile(join(dir, "tls", "cert.pem"));
  const peers: Peer[] = [];
  const raws: Deno.Conn[] = [];
  return {
    server,
    dir,
    lines,
    pem,
    /** TLS + hello, like the client (pinned to this server's certificate). */
    async connect(): Promise<Peer> {
      const peer = await dial({
        host: "127.0.0.1",
        port: server.port,
        expectFingerprint: server.certificate.fingerprint,
      });
      peers.push(peer);
      return peer;
    },
    /** A TLS connection with nothing sent yet. */
    async tls(): Promise<Deno.TlsConn> {
      const c = await Deno.connectTls({ hostname: "127.0.0.1", port: server.port, caCerts: [pem] });
      raws.push(c);
      return c;
    },
    /** A plain TCP connection (no TLS at all). */
    async tcp(): Promise<Deno.Conn> {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      raws.push(c);
      return c;
    },
    async [Symbol.asyncDispose]() {
      for (const p of peers) p.close();
      await Promise.all(peers.map((p) => p.closed));
      for (const c of raws) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await server.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A signed-in device. */
export interface Device {
  peer: Peer;
  account: string;
  deviceId: string;
  token: string;
  serial?: string;
}

/** Registers a new account on a fresh connection. */
export async function register(
  s: { connect(): Promise<Peer> },
  name: string,
): Promise<Device> {
  const peer = await s.connect();
  const h = (await peer.request({ t: "register", device: name })).header;
  return {
    peer,
    account: String(h.account),
    deviceId: String(h.deviceId),
    token: String(h.token),
    serial: String(h.serial),
  };
}

/**
 * A raw TLS connection (frames written and read by the test) signed in as `d`: `hello` and `auth`
 * sent, both answers read.
 */
export async function rawSignedIn(
  s: { tls(): Promise<Deno.TlsConn> },
  d: { account: string; deviceId: string; token: string },
): Promise<{ conn: Deno.TlsConn; reader: FrameReader }> {
  const conn = await s.tls();
  const reader = new FrameReader(conn);
  await writeAllTo(
    conn,
    requestFrame(1, { t: "hello", protocol: 1, program: "test", caps: [] }),
  );
  await reader.next();
  await writeAllTo(
    conn,
    requestFrame(2, { t: "auth", account: d.account, deviceId: d.deviceId, token: d.token }),
  );
  const r = await reader.next();
  if (typeof r?.header.device !== "string") throw new Error("Cannot sign in the raw connection");
  return { conn, reader };
}

/** Enrolls a device with `serial` on a fresh connection. */
export async function enroll(
  s: { connect(): Promise<Peer> },
  serial: string,
  name: string,
): Promise<Device> {
  const peer = await s.connect();
  const h = (await peer.request({ t: "enroll", serial, device: name })).header;
  return {
    peer,
    account: String(h.account),
    deviceId: String(h.deviceId),
    token: String(h.token),
  };
}

/** The error code a request fails with (throws if it succeeds or fails otherwise). */
export async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RemoteError) return e.code;
    throw e;
  }
  throw new Error("the request succeeded");
}

/** The error (code and message) a request fails with. */
export async function remoteError(p: Promise<unknown>): Promise<RemoteError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RemoteError) return e;
    throw e;
  }
  throw new Error("the request succeeded");
}

/** A chunk of content: its bytes, SHA-256 and size. */
export function chunk(data: Uint8Array | string) {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return { data: bytes, hash: sha256Hex(bytes), size: bytes.length };
}

/** Random (incompressible) bytes. */
export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

/** A commit item for a one-chunk file. */
export function fileItem(path: string, c: { hash: string; size: number }, baseVersion = 0) {
  return {
    path,
    baseVersion,
    kind: "file",
    deleted: false,
    size: c.size,
    mtime: 1_700_000_000_000,
    exec: false,
    hash: c.hash,
    chunks: [{ hash: c.hash, size: c.size }],
  };
}

/** Encodes a request frame. */
export function requestFrame(id: number, header: Record<string, unknown>, body?: Uint8Array) {
  return encodeFrame({ type: FrameType.Request, id, header, body: body ?? new Uint8Array() });
}

/** Writes all of `data` to `conn`. */
export async function writeAllTo(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/**
 * Resolves "closed" once the server closes `conn` (end of stream or a reset), after reading
 * and discarding anything it sends, or "open" after `ms`.
 */
export async function closedWithin(conn: Deno.Conn, ms: number): Promise<"closed" | "open"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"open">((r) => timer = setTimeout(() => r("open"), ms));
  const reading = (async () => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while ((await conn.read(buf)) !== null) { /* discard */ }
    } catch { /* reset: closed too */ }
    return "closed" as const;
  })();
  const r = await Promise.race([reading, timeout]);
  clearTimeout(timer);
  if (r === "open") {
    try {
      conn.close();
    } catch { /* already closed */ }
    await reading;
  }
  return r;
}

/** Sends `frame` on a raw connection and reads one frame back. */
export async function rawRequest(
  conn: Deno.Conn,
  reader: FrameReader,
  frame: Uint8Array,
): Promise<Frame | null> {
  await writeAllTo(conn, frame);
  return await reader.next();
}

/** A request frame of a zstd-compressed header `z` and no body (as an attacker would send). */
export function rawHeaderFrame(id: number, z: Uint8Array): Uint8Array {
  const out = new Uint8Array(13 + z.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 9 + z.length);
  v.setUint8(4, 1 | HEADER_ZSTD);
  v.setUint32(5, id);
  v.setUint32(9, z.length);
  out.set(z, 13);
  return out;
}

/**
 * A request frame whose header is `prefix` plus `mib` MiB of `{},`, zstd-compressed (a few KB
 * on the wire: a decompression bomb).
 */
export function bombFrame(id: number, prefix: string, mib: number): Uint8Array {
  const n = Math.floor(mib * 1024 * 1024 / 3);
  const text = new TextEncoder().encode(`${prefix},"x":[${"{},".repeat(n)}{}]}`);
  return rawHeaderFrame(id, new Uint8Array(zlib.zstdCompressSync(text)));
}
