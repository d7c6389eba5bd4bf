/**
 * An in-memory connection: two ends, what one writes the other reads, byte for byte, with the
 * `read`/`write`/`close` of a `Deno.Conn` that `Peer` uses. `cut()` drops it like a broken
 * network (both ends' reads end, writes fail).
 *
 * @module
 */

import type { PeerConn } from "../../lib/protocol/peer.ts";

class Half {
  readonly chunks: Uint8Array[] = [];
  waiter: (() => void) | null = null;
  closed = false;

  push(p: Uint8Array): void {
    this.chunks.push(p.slice());
    this.wake();
  }

  wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

class End implements PeerConn {
  constructor(readonly inbox: Half, readonly outbox: Half, readonly pipe: MemPipe) {}

  async read(p: Uint8Array): Promise<number | null> {
    while (this.inbox.chunks.length === 0) {
      if (this.inbox.closed || this.pipe.broken) return null;
      await new Promise<void>((r) => this.inbox.waiter = r);
    }
    const c = this.inbox.chunks[0]!;
    const n = Math.min(p.length, c.length);
    p.set(c.subarray(0, n));
    if (n === c.length) this.inbox.chunks.shift();
    else this.inbox.chunks[0] = c.subarray(n);
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.pipe.broken || this.outbox.closed) {
      return Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
    }
    this.outbox.push(p);
    return Promise.resolve(p.length);
  }

  close(): void {
    this.outbox.closed = true;
    this.inbox.closed = true;
    this.outbox.wake();
    this.inbox.wake();
  }
}

/** Both ends of an in-memory connection. */
export class MemPipe {
  broken = false;
  readonly a: PeerConn;
  readonly b: PeerConn;

  constructor() {
    const ab = new Half();
    const ba = new Half();
    this.a = new End(ba, ab, this);
    this.b = new End(ab, ba, this);
    this.#halves = [ab, ba];
  }

  readonly #halves: Half[];

  /** Breaks the connection (both ends). */
  cut(): void {
    this.broken = true;
    for (const h of this.#halves) h.wake();
  }
}
