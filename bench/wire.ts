/**
 * Wire bytes per client, counted by the kernel: the clients connect straight to the server and the
 * benchmark reads the TCP counters of each client's sockets with `ss -tinpH` (iproute2) — nothing is
 * copied through the benchmark's own process. `up` (client -> server) is `bytes_acked` (less the 1
 * the kernel counts for the SYN), `down` (server -> client) is `bytes_received`: payload bytes of
 * the TCP stream (TLS and protocol framing included, TCP/IP headers not), as the counting relay of
 * `relay.ts` counted them. The relay is the fallback when `ss` is missing or does not work here.
 *
 * ss is read only when asked (before t0, after B matched, while waiting for quiet), never during a
 * timed interval. Each socket (client pid + local address) keeps the last counters seen; a client's
 * cumulative counts are the sum over all its sockets ever seen, so a socket that goes away keeps
 * what it had at the last read (the bytes after that read are missed — reported as a changed
 * connection, see {@link Leg.conns}).
 *
 * @module
 */

import type { Counts } from "./relay.ts";
import { run, sleep, which } from "./util.ts";

/** How wire bytes are counted. */
export type WireMethod = "ss" | "relay";

/** The method chosen for this run, and why. */
export type WireChoice =
  | { method: "ss"; ss: string; synOffset: number; detail: string }
  | { method: "relay"; detail: string };

/** One client's counters and the identity of its live connection(s) at the moment. */
export interface Leg extends Counts {
  /**
   * The client's live sockets (or, with the relay, the number of connections accepted so far); if
   * this differs between two reads, the client's connection changed in between. "" = none.
   */
  conns: string;
}

/** One TCP socket as `ss -tinpH` shows it. */
export interface SsSocket {
  local: string;
  peerHost: string;
  peerPort: number;
  pids: number[];
  /** `bytes_acked` (includes 1 for the SYN); absent = 0 */
  acked: number;
  /** `bytes_received`; absent = 0 */
  received: number;
  /** `bytes_sent`; absent = 0 */
  sent: number;
}

/** ss arguments: established TCP sockets whose peer port is `port`, with info and processes. */
const ssArgs = (port: number): string[] => [
  "-tinpH",
  "state",
  "established",
  `( dport = :${port} )`,
];

/**
 * Parses `ss -tinpH` output. A socket is one line (addresses, `users:(...)`) followed by indented
 * info lines; counters ss leaves out (it prints them only when non-zero) are 0.
 */
export function parseSs(text: string): SsSocket[] {
  const records: string[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (/^\s/.test(line) && records.length > 0) records[records.length - 1] += " " + line;
    else records.push(line);
  }
  const out: SsSocket[] = [];
  for (const r of records) {
    const m = r.match(/(\S+):(\d+)\s+(\S+):(\d+)/);
    if (!m) continue;
    const num = (k: string) => Number(r.match(new RegExp(`\\b${k}:(\\d+)`))?.[1] ?? 0);
    out.push({
      local: `${m[1]}:${m[2]}`,
      peerHost: m[3]!,
      peerPort: Number(m[4]),
      pids: [...r.matchAll(/\bpid=(\d+)/g)].map((x) => Number(x[1])),
      acked: num("bytes_acked"),
      received: num("bytes_received"),
      sent: num("bytes_sent"),
    });
  }
  return out;
}

async function readSs(ss: string, port: number): Promise<SsSocket[]> {
  const r = await run(ss, ssArgs(port));
  if (r.code !== 0) throw new Error(`${ss} exited with ${r.code}: ${r.stderr.trim().slice(-300)}`);
  return parseSs(r.stdout).filter((s) => s.peerHost === "127.0.0.1" && s.peerPort === port);
}

/** Per-socket state kept by {@link SsCounter}. */
interface Seen {
  pid: number;
  up: number;
  down: number;
  /** bumped when the same key turns out to be a new socket (its counters went down) */
  gen: number;
}

/** Cumulative wire counts of some client processes from the kernel's per-socket TCP counters. */
export class SsCounter {
  readonly #ss: string;
  readonly #port: number;
  readonly #synOffset: number;
  readonly #seen = new Map<string, Seen>();
  /** per pid: counts of sockets whose key was later reused by a new socket */
  readonly #retired = new Map<number, Counts>();
  /** Number of ss reads so far (diagnostics). */
  reads = 0;

  /** `port`: the server's port on 127.0.0.1; `synOffset`: what bytes_acked counts beyond data. */
  constructor(ss: string, port: number, synOffset: number) {
    this.#ss = ss;
    this.#port = port;
    this.#synOffset = synOffset;
  }

  /** Reads ss once; returns the cumulative counts and live sockets of each of `pids`. */
  async read(pids: number[]): Promise<Map<number, Leg>> {
    const socks = await readSs(this.#ss, this.#port);
    this.reads++;
    const live = new Map<number, string[]>(pids.map((p) => [p, []]));
    for (const s of socks) {
      const pid = s.pids.find((p) => live.has(p));
      if (pid === undefined) continue;
      const key = `${pid} ${s.local}`;
      const up = Math.max(0, s.acked - this.#synOffset);
      const down = s.received;
      let seen = this.#seen.get(key);
      if (!seen) {
        seen = { pid, up, down, gen: 0 };
        this.#seen.set(key, seen);
      } else if (up < seen.up || down < seen.down) {
        // counters never go down: a new socket on the same local address
        const r = this.#retired.get(pid) ?? { up: 0, down: 0 };
        this.#retired.set(pid, { up: r.up + seen.up, down: r.down + seen.down });
        seen.up = up;
        seen.down = down;
        seen.gen++;
      } else {
        seen.up = up;
        seen.down = down;
      }
      live.get(pid)!.push(`${s.local}#${seen.gen}`);
    }
    const out = new Map<number, Leg>();
    for (const pid of pids) {
      const r = this.#retired.get(pid) ?? { up: 0, down: 0 };
      let up = r.up;
      let down = r.down;
      for (const s of this.#seen.values()) {
        if (s.pid !== pid) continue;
        up += s.up;
        down += s.down;
      }
      out.set(pid, { up, down, conns: live.get(pid)!.sort().join(",") });
    }
    return out;
  }
}

/**
 * Picks the counting method: kernel counters via ss if ss exists and, on a test connection of this
 * process on 127.0.0.1, reports exactly the bytes sent and received; otherwise the relay.
 */
export async function chooseWireMethod(): Promise<WireChoice> {
  const ss = await which("ss");
  if (!ss) return { method: "relay", detail: "counting relay (ss not found)" };
  try {
    const synOffset = await selfTest(ss);
    return {
      method: "ss",
      ss,
      synOffset,
      detail: `kernel TCP counters read with ${ss} (bytes_acked / bytes_received), no relay`,
    };
  } catch (e) {
    return { method: "relay", detail: `counting relay (ss unusable: ${(e as Error).message})` };
  }
}

/** Sends 1000 bytes one way and 10 back on 127.0.0.1; returns bytes_acked - 1000 (the SYN: 1). */
async function selfTest(ss: string): Promise<number> {
  const UP = 1000;
  const DOWN = 10;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const conns: Deno.TcpConn[] = [];
  try {
    const accepted = listener.accept();
    const cli = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(cli);
    const srv = await accepted;
    conns.push(srv);
    await writeAll(cli, new Uint8Array(UP));
    await readN(srv, UP);
    await writeAll(srv, new Uint8Array(DOWN));
    await readN(cli, DOWN); // the reply carries the ACK of the UP bytes
    let last = "no socket of this process";
    for (let i = 0; i < 20; i++) {
      const s = (await readSs(ss, port)).find((x) => x.pids.includes(Deno.pid));
      if (s) {
        const off = s.acked - UP;
        if (s.received === DOWN && (off === 0 || off === 1)) return off;
        last = `bytes_acked ${s.acked}, bytes_received ${s.received}`;
      }
      await sleep(50);
    }
    throw new Error(
      `test connection: expected bytes_acked ${UP}(+1), bytes_received ${DOWN}; ${last}`,
    );
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    listener.close();
  }
}

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await c.write(b.subarray(off));
}

async function readN(c: Deno.Conn, n: number): Promise<void> {
  const buf = new Uint8Array(4096);
  let got = 0;
  while (got < n) {
    const r = await c.read(buf);
    if (r === null) throw new Error("test connection closed early");
    got += r;
  }
}
