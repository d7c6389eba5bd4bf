/**
 * A simulated device: speaks the real protocol (`docs/protocol.md`) over a real TLS connection,
 * in-process, with none of the client's folder machinery, so that one process can run thousands
 * of them (`deno task load`) and the scale-out tests can place devices on given instances. It
 * keeps the tree it believes the server has (path -> version, hash) from `changes`, uploads
 * small files (`putMany` + `commit`), downloads them (`getMany`, checked against their hash),
 * and reconnects when its connection drops.
 *
 * @example
 * ```ts
 * const d = new SimDevice({ host: "127.0.0.1", port, ca: certPem });
 * await d.connect(); await d.register("A");
 * const r = await d.commitFile("notes.txt", new TextEncoder().encode("hi"));
 * d.close();
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import { Peer, RemoteError } from "../lib/protocol/peer.ts";
import { CAPABILITIES, PROTOCOL_VERSION } from "../lib/protocol/messages.ts";
import type { CommitItem, CommitResult } from "../lib/core/commit_plan.ts";
import type { RemoteEntry } from "../lib/core/types.ts";
import { CERT_NAME } from "../lib/transport/tls_cert.ts";

/** Where a device connects and what it trusts. */
export interface SimDeviceOptions {
  host: string;
  port: number;
  /** PEM of the certificate (or CA) to trust. */
  ca: string;
  /** Name checked in the certificate (default `cloud-sync`, as the client's pin does). */
  serverName?: string;
  /** A change notice arrived (`performance.now()` when it did). */
  onChanged?: (seq: number, at: number) => void;
  /** An `incoming` notice arrived. */
  onIncoming?: (entry: Record<string, unknown>) => void;
  /** Limit for connecting, TLS and hello (default 15 s). */
  timeoutMs?: number;
}

/** A credential, to sign in as an existing device. */
export interface Credential {
  account: string;
  deviceId: string;
  token: string;
}

/** SHA-256 hex. */
export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The commit item of a one-chunk file with `data`, based on `baseVersion`. */
export function fileItem(path: string, data: Uint8Array, baseVersion: number): CommitItem {
  const hash = sha256(data);
  return {
    path,
    baseVersion,
    kind: "file",
    deleted: false,
    size: data.length,
    mtime: Date.now(),
    exec: false,
    hash,
    chunks: data.length === 0 ? [] : [{ hash, size: data.length }],
  };
}

/** One simulated device. */
export class SimDevice {
  readonly opts: SimDeviceOptions;
  credential: Credential | null = null;
  peer: Peer | null = null;
  /** What this device knows of the account's journal: path -> entry. */
  readonly tree = new Map<string, RemoteEntry>();
  /** The highest sequence number pulled. */
  seq = 0;
  /** The highest sequence number a notice announced. */
  notified = 0;
  #pulling: Promise<void> | null = null;

  constructor(opts: SimDeviceOptions) {
    this.opts = opts;
  }

  /** TCP, TLS (the real handshake) and `hello`; closes whatever it opened if a step fails. */
  async connect(): Promise<void> {
    const timeout = this.opts.timeoutMs ?? 15_000;
    const tcp = await Deno.connect({ hostname: this.opts.host, port: this.opts.port });
    let tls: Deno.TlsConn | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          try {
            (tls ?? tcp).close();
          } catch { /* closed */ }
          reject(new Error(`no TLS and hello within ${timeout} ms`));
        }, timeout);
      });
      tls = await Deno.startTls(tcp, {
        hostname: this.opts.serverName ?? CERT_NAME,
        caCerts: [this.opts.ca],
      });
      await Promise.race([tls.handshake(), late]);
      const peer = new Peer(tls, {
        ackEagerly: true,
        onNotice: (m) => {
          const h = m.header;
          if (h.t === "changed" && typeof h.seq === "number") {
            this.notified = Math.max(this.notified, h.seq);
            this.opts.onChanged?.(h.seq, performance.now());
          } else if (h.t === "incoming" && typeof h.entry === "object" && h.entry) {
            this.opts.onIncoming?.(h.entry as Record<string, unknown>);
          }
        },
      });
      this.peer = peer;
      await Promise.race([
        peer.request({
          t: "hello",
          protocol: PROTOCOL_VERSION,
          program: "sim",
          caps: CAPABILITIES,
        }),
        late,
      ]);
    } catch (e) {
      this.peer?.close();
      this.peer = null;
      try {
        (tls ?? tcp).close();
      } catch { /* closed */ }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  #peer(): Peer {
    if (!this.peer) throw new Error("Cannot send: not connected");
    return this.peer;
  }

  /** Registers a new account; returns its serial code. */
  async register(name: string): Promise<string> {
    const r = await this.#peer().request({ t: "register", device: name });
    const h = r.header as { account: string; deviceId: string; token: string; serial: string };
    this.credential = { account: h.account, deviceId: h.deviceId, token: h.token };
    return h.serial;
  }

  /** Joins the account of `serial`. */
  async enroll(serial: string, name: string): Promise<void> {
    const r = await this.#peer().request({ t: "enroll", serial, device: name });
    const h = r.header as { account: string; deviceId: string; token: string };
    this.credential = { account: h.account, deviceId: h.deviceId, token: h.token };
  }

  /** Signs in with {@link credential}. */
  async auth(): Promise<void> {
    if (!this.credential) throw new Error("Cannot sign in: no credential");
    await this.#peer().request({ t: "auth", ...this.credential });
  }

  /** Asks for change notices; returns the journal's sequence number. */
  async watch(): Promise<number> {
    const r = await this.#peer().request({ t: "watch" });
    return r.header.seq as number;
  }

  /** Connects, signs in and watches (what a device does at every (re)connection). */
  async start(): Promise<void> {
    await this.connect();
    try {
      await this.auth();
      await this.watch();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Uploads chunks (their plain bytes) in one `putMany`. */
  async put(datas: Uint8Array[]): Promise<void> {
    if (datas.length === 0) return;
    const total = datas.reduce((n, d) => n + d.length, 0);
    const body = new Uint8Array(total);
    const chunks = [];
    let at = 0;
    for (const d of datas) {
      body.set(d, at);
      at += d.length;
      chunks.push({ hash: sha256(d), size: d.length, z: false, len: d.length });
    }
    await this.#peer().request({ t: "putMany", chunks }, body);
  }

  /** Commits items; accepted ones enter {@link tree}. */
  async commit(items: CommitItem[]): Promise<CommitResult[]> {
    const r = await this.#peer().request({ t: "commit", items });
    const results = r.header.results as CommitResult[];
    results.forEach((res, i) => {
      const it = items[i]!;
      // A pull answered meanwhile may already hold a newer version of the path.
      if (res.ok && res.version >= (this.tree.get(it.path)?.version ?? 0)) {
        const { baseVersion: _, ...rest } = it;
        this.tree.set(it.path, { ...rest, version: res.version, device: "self" });
      }
    });
    return results;
  }

  /** Uploads `data` and commits it at `path` against the version this device knows. */
  async commitFile(path: string, data: Uint8Array): Promise<CommitResult> {
    if (data.length > 0) await this.put([data]);
    const [r] = await this.commit([fileItem(path, data, this.tree.get(path)?.version ?? 0)]);
    return r!;
  }

  /**
   * Pulls the journal since {@link seq} into {@link tree}: one pull at a time, each started after
   * this call (so it sees every change made before it).
   */
  async pull(): Promise<void> {
    while (this.#pulling) await this.#pulling.catch(() => {});
    const run = (async () => {
      for (;;) {
        const r = await this.#peer().request({ t: "changes", since: this.seq, limit: 2000 });
        for (const e of r.header.entries as RemoteEntry[]) {
          // A commit of this device answered meanwhile may be newer than the page.
          const known = this.tree.get(e.path);
          if (!known || e.version >= known.version) this.tree.set(e.path, e);
        }
        this.seq = Math.max(this.seq, r.header.seq as number);
        if (!r.header.more) break;
      }
    })().finally(() => this.#pulling = null);
    this.#pulling = run;
    await run;
  }

  /** Downloads chunks in one `getMany`; throws if one does not match its hash. */
  async download(hashes: string[]): Promise<number> {
    if (hashes.length === 0) return 0;
    const r = await this.#peer().request({ t: "getMany", hashes });
    const chunks = r.header.chunks as { hash: string; len: number; z: boolean }[];
    let at = 0;
    for (const c of chunks) {
      const data = r.body.subarray(at, at += c.len);
      if (!c.z && sha256(data) !== c.hash) {
        throw new Error(`Cannot download: chunk ${c.hash} does not match its hash`);
      }
    }
    return r.body.length;
  }

  /** Sends a request as is (tests of single requests). */
  request(header: Record<string, unknown>, body?: Uint8Array) {
    return this.#peer().request(header, body);
  }

  /** Closes the connection (the device can {@link start} again). */
  close(): void {
    this.peer?.close();
    this.peer = null;
  }
}

/** True for an error that means "the connection is gone; reconnect". */
export function isDisconnect(e: unknown): boolean {
  return !(e instanceof RemoteError);
}
