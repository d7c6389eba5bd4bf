/**
 * The product under test: one server and two clients (A and B, B joined with A's serial). Wire
 * bytes per client are the kernel's TCP counters of the client's own sockets (read with `ss`, see
 * `wire.ts`; the clients connect straight to the server), or, if `ss` is not usable, the counts of
 * one {@link CountingRelay} per client in front of the server.
 *
 * @module
 */

import { join } from "node:path";
import { type Cpu, Proc, PRODUCT_PERMS, SERVER_PERMS } from "./procs.ts";
import { CountingRelay, type Counts } from "./relay.ts";
import { log, now, sleep } from "./util.ts";
import { type Leg, SsCounter, type WireChoice } from "./wire.ts";

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
  /**
   * Clients whose connection changed (reconnect) during the workload: their figure may miss the
   * bytes a closed socket carried after its last read. Absent when none did.
   */
  connChanged?: ("A" | "B")[];
}

/** Counter snapshot of both clients. */
export interface WireMark {
  a: Counts;
  b: Counts;
  /** identity of each client's connection(s) at the mark ({@link Leg.conns}) */
  conns: { a: string; b: string };
}

/**
 * Where the server keeps its data when not in its own `--data` folder (`--storage=pg-s3`): the
 * script it runs (instead of `server.ts`), its extra arguments, and the CPU of the services
 * behind it, reported beside the product's own processes.
 */
export interface ServerStorage {
  script: string;
  args: string[];
  cpu(): Promise<Record<string, Cpu>>;
}

/** See the module doc. */
export class Product {
  readonly folderA: string;
  readonly folderB: string;
  server: Proc | null = null;
  a: Proc | null = null;
  b: Proc | null = null;
  /** A third device, started late by {@link joinThird}. */
  c: Proc | null = null;
  /** A's serial code (what the third device joins with). */
  serial = "";
  relayA: CountingRelay | null = null;
  relayB: CountingRelay | null = null;
  ss: SsCounter | null = null;
  serverPort = 0;
  readonly wire: WireChoice;
  readonly #root: string;
  readonly #repo: string;
  readonly #seconds: number;
  #interrupted: () => boolean;
  readonly #storage: ServerStorage | null;

  constructor(
    repo: string,
    root: string,
    seconds: number,
    interrupted: () => boolean,
    wire: WireChoice,
    storage: ServerStorage | null = null,
  ) {
    this.#storage = storage;
    this.#repo = repo;
    this.#root = root;
    this.#seconds = seconds;
    this.#interrupted = interrupted;
    this.wire = wire;
    this.folderA = join(root, "A");
    this.folderB = join(root, "B");
  }

  /** Starts server, (relays,) A (new account) and B (joined with A's serial). */
  async start(): Promise<void> {
    const logs = join(this.#root, "logs");
    await Deno.mkdir(logs, { recursive: true });
    const deno = Deno.execPath();
    this.server = new Proc(
      "server",
      deno,
      [
        "run",
        ...SERVER_PERMS,
        this.#storage?.script ?? "server.ts",
        "0",
        "--host",
        "127.0.0.1",
        "--data",
        join(this.#root, "server-data"),
        ...this.#storage?.args ?? [],
      ],
      this.#repo,
      join(logs, "server.log"),
    );
    const m = await this.server.waitFor(/listening on 127\.0\.0\.1:(\d+)/, 30000);
    this.serverPort = Number(m[1]);
    let portA = this.serverPort;
    let portB = this.serverPort;
    if (this.wire.method === "ss") {
      this.ss = new SsCounter(this.wire.ss, this.serverPort, this.wire.synOffset);
      log(
        `server pid ${this.server.pid} on 127.0.0.1:${this.serverPort}; clients connect directly, wire bytes from the kernel's TCP counters (ss)`,
      );
    } else {
      this.relayA = new CountingRelay(this.serverPort);
      this.relayB = new CountingRelay(this.serverPort);
      portA = this.relayA.port;
      portB = this.relayB.port;
      log(
        `server pid ${this.server.pid} on 127.0.0.1:${this.serverPort}; relays A :${portA}, B :${portB}`,
      );
    }
    try {
      this.a = this.#client("A", portA, this.folderA, null, logs);
      const s = await this.a.waitFor(/Serial code:\s*(\S+)/, 30000);
      await this.a.waitFor(/^Syncing /, 30000);
      this.serial = s[1]!;
      this.b = this.#client("B", portB, this.folderB, s[1]!, logs);
      await this.b.waitFor(/^Syncing /, 30000);
      if (this.ss) await this.#awaitSockets(10000);
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\n${await this.#diagnose()}` +
          `\n  client A says: ${this.a?.tail(3).join(" / ")}\n  server says: ${
            this.server.tail(3).join(" / ")
          }`,
      );
    }
    log(`client A pid ${this.a.pid}, client B pid ${this.b.pid} (joined with A's serial)`);
  }

  /** With ss: waits until ss shows an established connection of each client to the server. */
  async #awaitSockets(timeoutMs: number): Promise<void> {
    const end = now() + timeoutMs;
    for (;;) {
      const r = await this.#read();
      const missing = (["A", "B"] as const).filter((n) => (n === "A" ? r.a : r.b).conns === "");
      if (missing.length === 0) return;
      if (now() > end) {
        throw new Error(
          `ss shows no established connection to 127.0.0.1:${this.serverPort} of client ${
            missing.join(", ")
          } (pids A ${this.a?.pid}, B ${this.b?.pid})`,
        );
      }
      this.check();
      await sleep(200);
    }
  }

  async #diagnose(): Promise<string> {
    if (this.relayA && this.relayB) {
      const r = (x: CountingRelay) =>
        `${x.connections} connections, ${x.counts.up} B up, ${x.counts.down} B down, last error ${x.lastError}`;
      return `  relay A: ${r(this.relayA)}\n  relay B: ${r(this.relayB)}`;
    }
    try {
      const r = await this.#read();
      const d = (l: Leg) => `sockets [${l.conns}], ${l.up} B up, ${l.down} B down`;
      return `  ss, client A: ${d(r.a)}\n  ss, client B: ${d(r.b)}`;
    } catch (e) {
      return `  ss: ${(e as Error).message}`;
    }
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
    return [this.server, this.a, this.b, this.c].filter((p): p is Proc => p !== null);
  }

  /** CPU used so far by each product process, by name (server, A, B), and by the services. */
  async cpu(): Promise<Record<string, Cpu>> {
    const out: Record<string, Cpu> = {};
    for (const p of this.procs()) {
      const c = await p.cpu();
      if (c) out[p.name] = c;
    }
    return { ...out, ...await this.#storage?.cpu() };
  }

  /** CPU each product process used since `mark` (a {@link cpu} result), by name. */
  async cpuSince(mark: Record<string, Cpu>): Promise<Record<string, Cpu>> {
    const out: Record<string, Cpu> = {};
    for (const [name, c] of Object.entries(await this.cpu())) {
      const m = mark[name];
      if (m) out[name] = { user: round2(c.user - m.user), sys: round2(c.sys - m.sys) };
    }
    return out;
  }

  /** Throws if a product process died or the run was interrupted. */
  check(): void {
    if (this.#interrupted()) throw new Error("interrupted");
    for (const p of this.procs()) p.assertAlive();
  }

  /** Current counters of both clients (one ss read, or the relays' counters). */
  async #read(): Promise<{ a: Leg; b: Leg }> {
    const none: Leg = { up: 0, down: 0, conns: "" };
    if (this.ss) {
      const pids = [this.a?.pid, this.b?.pid].filter((p): p is number => p !== undefined);
      const m = await this.ss.read(pids);
      return {
        a: (this.a && m.get(this.a.pid)) || none,
        b: (this.b && m.get(this.b.pid)) || none,
      };
    }
    const leg = (r: CountingRelay | null): Leg =>
      r ? { up: r.counts.up, down: r.counts.down, conns: `${r.connections}` } : none;
    return { a: leg(this.relayA), b: leg(this.relayB) };
  }

  /** Counter snapshot taken before a workload's t0 (after {@link quiet}). */
  async mark(): Promise<WireMark> {
    const { a, b } = await this.#read();
    return {
      a: { up: a.up, down: a.down },
      b: { up: b.up, down: b.down },
      conns: { a: a.conns, b: b.conns },
    };
  }

  /** Bytes since `m` (call after {@link quiet}); notes clients whose connection changed meanwhile. */
  async wireSince(m: WireMark): Promise<Wire> {
    const { a, b } = await this.#read();
    const w = {
      aUp: a.up - m.a.up,
      aDown: a.down - m.a.down,
      bUp: b.up - m.b.up,
      bDown: b.down - m.b.down,
    };
    const changed = (["A", "B"] as const).filter((n) => {
      const [was, is] = n === "A" ? [m.conns.a, a.conns] : [m.conns.b, b.conns];
      return was !== is || was === "" || is === "";
    });
    if (changed.length > 0) {
      log(
        `wire: connection of client ${
          changed.join(", ")
        } changed during the workload; its figure may miss a few bytes`,
      );
    }
    return {
      ...w,
      total: w.aUp + w.aDown + w.bUp + w.bDown,
      ...(changed.length > 0 ? { connChanged: [...changed] } : {}),
    };
  }

  /**
   * Waits until neither client has moved a byte for `quietMs` (at most `capMs`), so that a
   * workload's counters neither miss its trailing traffic nor include the previous one's. Polls every
   * 200 ms with ss (one process spawn per read), every 50 ms with the relays.
   */
  async quiet(quietMs = 1000, capMs = 10000): Promise<void> {
    const every = this.ss ? 200 : 50;
    const end = now() + capMs;
    let last = await this.#sum();
    let since = now();
    while (now() < end) {
      await sleep(every);
      this.check();
      const s = await this.#sum();
      if (s !== last) {
        last = s;
        since = now();
      } else if (now() - since >= quietMs) return;
    }
  }

  async #sum(): Promise<number> {
    const { a, b } = await this.#read();
    return a.up + a.down + b.up + b.down;
  }

  /** Stops clients, then the server, then the relays (if any). Safe to call more than once. */
  /** Starts a third client, C, on `folder` (empty) with A's serial: a device joining. */
  joinThird(folder: string): Proc {
    this.c = this.#client("C", this.serverPort, folder, this.serial, join(this.#root, "logs"));
    return this.c;
  }

  async stop(): Promise<void> {
    await Promise.all([this.a?.stop(), this.b?.stop(), this.c?.stop()]);
    await this.server?.stop();
    await this.relayA?.close();
    await this.relayB?.close();
  }
}

const round2 = (x: number) => Math.round(x * 100) / 100;
