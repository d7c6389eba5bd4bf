/**
 * A TCP relay on 127.0.0.1 for e2e tests, between clients and a server: it can record every byte
 * in both directions (to look for plaintext on the wire) and hold what clients send (to keep a
 * transfer in progress while a test looks at it).
 *
 * @module
 */

/** A running relay (see {@link startRelay}). */
export interface Relay {
  /** The port clients connect to. */
  port: number;
  /** Everything seen so far, both directions, as one latin1 string (with `record`). */
  bytes(): string;
  /** How many bytes were seen so far (with `record`). */
  count(): number;
  /** Lets `bytes` more through from clients, then holds; resolves once it holds. */
  holdAfter(bytes: number): Promise<void>;
  /** Lets everything through again. */
  release(): void;
  close(): Promise<void>;
}

/** Starts a relay to `target` on 127.0.0.1; `record`: keep every byte (see {@link Relay}). */
export function startRelay(target: number, opts: { record?: boolean } = {}): Relay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const captured: Uint8Array[] = [];
  let budget = Infinity;
  let gate: Promise<void> | null = null;
  let open = () => {};
  let engaged = () => {};
  const pipe = async (from: Deno.Conn, to: Deno.Conn, up: boolean) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        if (opts.record) captured.push(buf.slice(0, n));
        if (up) {
          budget -= n;
          if (budget < 0 && gate) {
            engaged();
            await gate;
          }
        }
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* one side went away */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
  const pipes: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const client of listener) {
      let server: Deno.Conn;
      try {
        server = await Deno.connect({ hostname: "127.0.0.1", port: target });
      } catch {
        client.close();
        continue;
      }
      conns.add(client).add(server);
      pipes.push(pipe(client, server, true), pipe(server, client, false));
    }
  })().catch(() => {/* listener closed */});
  const relay: Relay = {
    port: (listener.addr as Deno.NetAddr).port,
    bytes: () => captured.map((c) => new TextDecoder("latin1").decode(c)).join(""),
    count: () => captured.reduce((n, c) => n + c.length, 0),
    holdAfter(bytes: number): Promise<void> {
      budget = bytes;
      gate = new Promise((r) => open = r);
      return new Promise((r) => engaged = r);
    },
    release() {
      budget = Infinity;
      gate = null;
      open();
    },
    async close() {
      relay.release();
      listener.close();
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await Promise.all(pipes);
    },
  };
  return relay;
}
