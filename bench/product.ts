/**
 * The product under test: one server and two clients (A and B, B joined with A's serial), each
 * client talking to the server through its own {@link CountingRelay}.
 *
 * @module
 */

import { join } from "node:path";
import { Proc, PRODUCT_PERMS } from "./procs.ts";
import { CountingRelay, type Counts } from "./relay.ts";
import { log, now, sleep } from "./util.ts";

/** Bytes on the wire during one workload, per client leg and direction. */
export interface Wire {
  /** A -> server */
  aUp: number;
  /** server -> A */
  aDown: number;
  /** B -> server */
  bUp: number;
  /** server -> B */
  bDown: number;
  /** all four */
  total: number;
}

/** Counter snapshot of both relays. */
export interface WireMark {
  a: Counts;
  b: Counts;
}

/** See the module doc. */
export class Product {
  readonly folderA: string;
  readonly folderB: string;
  server: Proc | null = null;
  a: Proc | null = null;
  b: Proc | null = null;
  relayA: CountingRelay | null = null;
  relayB: CountingRelay | null = null;
  serverPort = 0;
  readonly #root: string;
  readonly #repo: string;
  readonly #seconds: number;
  #interrupted: () => boolean;

  constructor(repo: string, root: string, seconds: number, interrupted: () => boolean) {
    this.#repo = repo;
    this.#root = root;
    this.#seconds = seconds;
    this.#interrupted = interrupted;
    this.folderA = join(root, "A");
    this.folderB = join(root, "B");
  }

  /** Starts server, relays, A (new account) and B (joined with A's serial). */
  async start(): Promise<void> {
    const logs = join(this.#root, "logs");
    await Deno.mkdir(logs, { recursive: true });
    const deno = Deno.execPath();
    this.server = new Proc(
      "server",
      deno,
      [
        "run",
        ...PRODUCT_PERMS,
        "server.ts",
        "0",
        "--host",
        "127.0.0.1",
        "--data",
        join(this.#root, "server-data"),
      ],
      this.#repo,
      join(logs, "server.log"),
    );
    const m = await this.server.waitFor(/listening on 127\.0\.0\.1:(\d+)/, 30000);
    this.serverPort = Number(m[1]);
    this.relayA = new CountingRelay(this.serverPort);
    this.relayB = new CountingRelay(this.serverPort);
    log(
      `server pid ${this.server.pid} on 127.0.0.1:${this.serverPort}; relays A :${this.relayA.port}, B :${this.relayB.port}`,
    );
    try {
      this.a = this.#client("A", this.relayA.port, this.folderA, null, logs);
      const s = await this.a.waitFor(/Serial code:\s*(\S+)/, 30000);
      await this.a.waitFor(/^Syncing /, 30000);
      this.b = this.#client("B", this.relayB.port, this.folderB, s[1]!, logs);
      await this.b.waitFor(/^Syncing /, 30000);
    } catch (e) {
      const r = (x: CountingRelay) =>
        `${x.connections} connections, ${x.counts.up} B up, ${x.counts.down} B down, last error ${x.lastError}`;
      throw new Error(
        `${(e as Error).message}\n  relay A: ${r(this.relayA)}\n  relay B: ${r(this.relayB)}` +
          `\n  client A says: ${this.a?.tail(3).join(" / ")}\n  server says: ${
            this.server.tail(3).join(" / ")
          }`,
      );
    }
    log(`client A pid ${this.a.pid}, client B pid ${this.b.pid} (joined with A's serial)`);
  }

  #client(
    name: string,
    port: number,
    folder: string,
    serial: string | null,
    logs: string,
  ): Proc {
    const args = [
      "run",
      ...PRODUCT_PERMS,
      "client.ts",
      "127.0.0.1",
      String(port),
      folder,
      String(this.#seconds),
      ...(serial ? [serial] : []),
      "--name",
      name,
    ];
    return new Proc(name, Deno.execPath(), args, this.#repo, join(logs, `client-${name}.log`));
  }

  /** The three product processes (for memory sampling). */
  procs(): Proc[] {
    return [this.server, this.a, this.b].filter((p): p is Proc => p !== null);
  }

  /** Throws if a product process died or the run was interrupted. */
  check(): void {
    if (this.#interrupted()) throw new Error("interrupted");
    for (const p of this.procs()) p.assertAlive();
  }

  mark(): WireMark {
    return { a: this.relayA!.snapshot(), b: this.relayB!.snapshot() };
  }

  wireSince(m: WireMark): Wire {
    const a = this.relayA!.snapshot();
    const b = this.relayB!.snapshot();
    const w = {
      aUp: a.up - m.a.up,
      aDown: a.down - m.a.down,
      bUp: b.up - m.b.up,
      bDown: b.down - m.b.down,
    };
    return { ...w, total: w.aUp + w.aDown + w.bUp + w.bDown };
  }

  /**
   * Waits until neither relay has moved a byte for `quietMs` (at most `capMs`), so that a workload's
   * counters neither miss its trailing traffic nor include the previous one's.
   */
  async quiet(quietMs = 1000, capMs = 10000): Promise<void> {
    const end = now() + capMs;
    let last = this.#sum();
    let since = now();
    while (now() < end) {
      await sleep(50);
      this.check();
      const s = this.#sum();
      if (s !== last) {
        last = s;
        since = now();
      } else if (now() - since >= quietMs) return;
    }
  }

  #sum(): number {
    const a = this.relayA!.counts;
    const b = this.relayB!.counts;
    return a.up + a.down + b.up + b.down;
  }

  /** Stops clients, then the server, then the relays. Safe to call more than once. */
  async stop(): Promise<void> {
    await Promise.all([this.a?.stop(), this.b?.stop()]);
    await this.server?.stop();
    await this.relayA?.close();
    await this.relayB?.close();
  }
}
