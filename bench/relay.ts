/**
 * A counting TCP relay on 127.0.0.1: clients connect to the relay, which connects on to the server
 * and copies bytes both ways, counting them. One relay per client, so the benchmark knows the bytes
 * each client sent (`up`) and received (`down`) — measured, not estimated.
 *
 * Fast path: one fixed 256 KiB buffer per direction per connection, TCP_NODELAY on both legs, no
 * copies besides the kernel's.
 *
 * @module
 */

const BUF = 256 * 1024;

/** Byte counters, cumulative since the relay started. */
export interface Counts {
  /** client -> server */
  up: number;
  /** server -> client */
  down: number;
}

/** See the module doc. */
export class CountingRelay {
  readonly counts: Counts = { up: 0, down: 0 };
  readonly #listener: Deno.TcpListener;
  readonly #targetPort: number;
  readonly #conns = new Set<Deno.TcpConn>();
  #closed = false;
  #accepting: Promise<void>;
  connections = 0;
  /** Last failure to reach the server or to copy, for diagnostics. */
  lastError: string | null = null;

  constructor(targetPort: number) {
    this.#targetPort = targetPort;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#acceptLoop();
  }

  /** The relay's own port (give this to the client). */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** A copy of the counters. */
  snapshot(): Counts {
    return { ...this.counts };
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        if (this.#closed) {
          conn.close();
          break;
        }
        this.connections++;
        this.#handle(conn).catch(() => {});
      }
    } catch {
      // listener closed
    }
  }

  async #handle(client: Deno.TcpConn): Promise<void> {
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
    } catch (e) {
      this.lastError = `connect to server :${this.#targetPort}: ${(e as Error).message}`;
      closeQuietly(client);
      return;
    }
    this.#conns.add(client);
    this.#conns.add(server);
    client.setNoDelay(true);
    server.setNoDelay(true);
    const abort = () => {
      closeQuietly(client);
      closeQuietly(server);
    };
    await Promise.all([
      pump(client, server, this.counts, "up", abort),
      pump(server, client, this.counts, "down", abort),
    ]);
    abort();
    this.#conns.delete(client);
    this.#conns.delete(server);
  }

  /** Stops accepting and cuts all relayed connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const c of this.#conns) closeQuietly(c);
    this.#conns.clear();
    await this.#accepting;
  }
}

async function pump(
  from: Deno.TcpConn,
  to: Deno.TcpConn,
  counts: Counts,
  dir: keyof Counts,
  abort: () => void,
): Promise<void> {
  const buf = new Uint8Array(BUF);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      counts[dir] += n;
      let off = await to.write(n === BUF ? buf : buf.subarray(0, n));
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
    try {
      await to.closeWrite();
    } catch {
      abort();
    }
  } catch {
    abort();
  }
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}
