/**
 * An in-memory {@link ObjectStore} for tests of the packing layer without S3: counts requests
 * and the most in flight at once, can answer slowly, and can fail calls on purpose (transiently,
 * like a dropped connection or a 503, or for good).
 *
 * @module
 */

import type { ObjectStore } from "../../lib/server/object_store.ts";

/** A failure {@link MemoryObjects} injects; `code` is what `isTransientS3Error` looks at. */
export class InjectedError extends Error {
  code: string;
  constructor(code: string) {
    super(`injected failure (${code})`);
    this.code = code;
  }
}

export class MemoryObjects implements ObjectStore {
  readonly objects = new Map<string, Uint8Array>();
  puts = 0;
  reads = 0;
  removes = 0;
  bytesRead = 0;
  inFlight = 0;
  maxInFlight = 0;
  /** Milliseconds each call takes. */
  delayMs = 0;
  /** The next this-many calls fail with `failCode`. */
  failNext = 0;
  failCode = "ServiceUnavailable";

  async #call<T>(fn: () => T): Promise<T> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      else await Promise.resolve();
      if (this.failNext > 0) {
        this.failNext--;
        throw new InjectedError(this.failCode);
      }
      return fn();
    } finally {
      this.inFlight--;
    }
  }

  put(key: string, parts: readonly Uint8Array[]): Promise<void> {
    return this.#call(() => {
      this.puts++;
      const size = parts.reduce((n, p) => n + p.length, 0);
      const data = new Uint8Array(size);
      let at = 0;
      for (const p of parts) {
        data.set(p, at);
        at += p.length;
      }
      this.objects.set(key, data);
    });
  }

  read(key: string, offset: number, into: readonly Uint8Array[]): Promise<boolean> {
    return this.#call(() => {
      this.reads++;
      const data = this.objects.get(key);
      const length = into.reduce((n, b) => n + b.length, 0);
      if (!data || offset + length > data.length) return false;
      let at = offset;
      for (const b of into) {
        b.set(data.subarray(at, at + b.length));
        at += b.length;
      }
      this.bytesRead += length;
      return true;
    });
  }

  remove(key: string): Promise<void> {
    return this.#call(() => {
      this.removes++;
      this.objects.delete(key);
    });
  }

  removeAll(prefix: string): Promise<void> {
    return this.#call(() => {
      for (const key of [...this.objects.keys()]) {
        if (!key.startsWith(prefix)) continue;
        this.removes++;
        this.objects.delete(key);
      }
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
