/**
 * A device for in-process tests of the client's disk-writing code: the real engine
 * (`syncUntilStable`, so scanner, reconcile, executor, staging, placer, uploader) on a
 * {@link MemFs}, against a {@link MemServer} over an in-memory connection. Each request the server
 * handles is counted by type (`requests`), and a test may cut the connection right after one
 * (`cutAfter`: the server did the work, the reply never comes).
 *
 * @example
 * ```ts
 * const server = await MemServer.start();
 * const [a, b] = await MemClient.pair(server);
 * a.fs.writeText("x.txt", "hi");
 * await a.sync();
 * await b.sync(); // b.fs.readText("x.txt") === "hi"
 * ```
 *
 * @module
 */

import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import { Staging } from "../../lib/client/staging.ts";
import { newStats, type TransferStats } from "../../lib/client/transfer.ts";
import { type EngineContext, syncPass, syncUntilStable } from "../../lib/client/engine.ts";
import type { ExecutionReport } from "../../lib/client/executor.ts";
import { Attention } from "../../lib/core/attention.ts";
import type { PlatformTraits } from "../../lib/core/local_names.ts";
import type { Tally } from "../../lib/core/outcomes.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import type { MemPipe } from "./mem_pipe.ts";
import { MemServer } from "./mem_server.ts";

/** The folder's own staging area. */
export const TMP = ".cloudsync/tmp";

/** One in-process device (see the module doc). */
export class MemClient {
  readonly fs: MemFs;
  state: StateDb;
  staging: Staging;
  attention = new Attention();
  stats: TransferStats = newStats();
  peer!: Peer;
  pipe!: MemPipe;
  readonly warnings: string[] = [];
  /** Requests the server handled for this device, by type (since the last {@link resetCounts}). */
  requests = new Map<string, number>();
  /** Cut the connection right after the server handles the `n`-th request of `type`. */
  cutAfter: { type: string; n: number } | null = null;
  allowMassDelete = false;
  /** Capabilities this client announces (default: all of this build's). */
  caps: string[] | undefined;
  #creds: { account: string; deviceId: string; token: string } | null = null;

  private constructor(
    readonly server: MemServer,
    readonly name: string,
    readonly stateDir: string,
    platform: PlatformTraits,
  ) {
    this.fs = new MemFs(platform);
    this.fs.mkdirSync(TMP, true);
    this.state = new StateDb(stateDir, { durable: false });
    this.staging = new Staging(this.fs, TMP);
  }

  /** A first device (registers an account) and `more` others enrolled in it. */
  static async pair(
    server: MemServer,
    opts: { more?: number; platforms?: PlatformTraits[]; caps?: string[] } = {},
  ): Promise<MemClient[]> {
    const n = 1 + (opts.more ?? 1);
    const out: MemClient[] = [];
    let serial: string | null = null;
    for (let i = 0; i < n; i++) {
      const name = String.fromCharCode(97 + i); // a, b, c, ...
      const dir = await Deno.makeTempDir({ prefix: `state-${name}-`, dir: server.dir });
      const platform = opts.platforms?.[i] ?? { caseInsensitive: false, windowsNames: false };
      const c = new MemClient(server, name, dir, platform);
      c.caps = opts.caps;
      await c.#connect();
      const h: Record<string, unknown> = serial
        ? (await c.peer.request({ t: "enroll", serial, device: name })).header
        : (await c.peer.request({ t: "register", device: name })).header;
      serial ??= String(h.serial);
      c.#creds = {
        account: String(h.account),
        deviceId: String(h.deviceId),
        token: String(h.token),
      };
      out.push(c);
    }
    return out;
  }

  async #connect(): Promise<void> {
    const { peer, pipe } = await this.server.connect({
      ...(this.caps ? { caps: this.caps } : {}),
      afterHandle: (type, p) => {
        const n = (this.requests.get(type) ?? 0) + 1;
        this.requests.set(type, n);
        if (this.cutAfter?.type === type && this.cutAfter.n === n) {
          this.cutAfter = null;
          p.cut();
        }
      },
    });
    this.peer = peer;
    this.pipe = pipe;
    if (this.#creds) await peer.request({ t: "auth", ...this.#creds });
  }

  /** A new connection if the current one is broken (as the client reconnects). */
  async reconnect(): Promise<void> {
    if (!this.pipe.broken) return;
    this.peer.close();
    await this.#connect();
  }

  resetCounts(): void {
    this.requests = new Map();
  }

  /** How many requests of `type` the server handled since the last {@link resetCounts}. */
  count(type: string): number {
    return this.requests.get(type) ?? 0;
  }

  /** The engine's context, as the client's app builds it. */
  ctx(): EngineContext {
    return {
      peer: this.peer,
      fs: this.fs,
      staging: this.staging,
      state: this.state,
      device: this.name,
      stats: this.stats,
      log: () => {},
      warn: (l) => this.warnings.push(l),
      allowMassDelete: this.allowMassDelete,
      attention: this.attention,
    };
  }

  /**
   * Passes until stable (full, or scoped to `scopes`), after letting `settleMs` pass on this
   * device's clock (what was just written has settled; holds may run out).
   */
  async sync(scopes: string[] | null = null, settleMs = 5_000): Promise<Tally | null> {
    this.fs.advance(settleMs);
    await this.reconnect();
    return await syncUntilStable(this.ctx(), scopes);
  }

  /** One pass (see {@link sync}), with every step's outcome. */
  async pass(scopes: string[] | null = null, settleMs = 5_000): Promise<ExecutionReport | null> {
    this.fs.advance(settleMs);
    await this.reconnect();
    return await syncPass(this.ctx(), scopes);
  }

  /** {@link sync}, for a pass expected to fail: returns its error (or fails the test). */
  async syncFails(): Promise<Error> {
    try {
      await this.sync();
    } catch (e) {
      return e as Error;
    }
    throw new Error(`${this.name}: the pass was expected to fail`);
  }

  /** The names in the staging area. */
  async tmpNames(): Promise<string[]> {
    return (await this.fs.readDir(TMP)).map((e) => e.name).sort();
  }

  /** The folder without `.cloudsync`: `path -> "dir"` or `"file:CONTENT"`. */
  files(): Map<string, string> {
    return this.fs.snapshot({ skip: (p) => p === ".cloudsync" || p.startsWith(".cloudsync/") });
  }

  /** After a crash: the state database reopened, caches and connection gone. */
  async restart(): Promise<void> {
    this.fs.revive();
    this.fs.crash();
    this.state.close();
    this.state = new StateDb(this.stateDir, { durable: false });
    this.staging = new Staging(this.fs, TMP);
    this.attention = new Attention();
    this.peer.close();
    this.pipe.cut();
    await this.reconnect();
  }

  close(): void {
    this.peer.close();
    this.state.close();
  }
}

/** Runs `fn` with a fresh server and `1 + more` devices, closing everything after. */
export async function withClients(
  opts: { more?: number; platforms?: PlatformTraits[]; caps?: string[] },
  fn: (clients: [MemClient, MemClient, ...MemClient[]], server: MemServer) => Promise<void>,
): Promise<void> {
  const server = await MemServer.start();
  const clients = await MemClient.pair(server, opts);
  try {
    await fn(clients as [MemClient, MemClient, ...MemClient[]], server);
  } finally {
    for (const c of clients) c.close();
    await server.close();
  }
}
