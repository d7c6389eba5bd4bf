/**
 * Reused buffers for big frame bodies. A fresh multi-megabyte `Uint8Array` per frame costs its
 * pages twice (mapped and zeroed on first touch, unmapped when collected): measured 0.42-0.54 CPU
 * s/GiB against 0.04 for a reused buffer (`deno task bench:parts`), in every process that receives
 * or sends a GiB. The server takes request bodies and `getMany` reply bodies from one pool and
 * gives them back when they are provably unused: a request's body once its handler has settled,
 * a reply's body once it has been written completely (a write cut short keeps its buffer out of
 * the pool for good, so no byte of it can reach another connection).
 *
 * Bounded: bodies under {@link MIN_POOLED} are plain allocations, and at most
 * `maxSpareBytes` (16 MiB) wait in the pool; more are left to the garbage collector. A buffer is
 * given back at most once (a second `give` is ignored) and only if this pool made it.
 *
 * @example
 * ```ts
 * const body = pool.take(len); // a view of exactly len bytes
 * // ... fill and use it ...
 * pool.give(body);            // reusable by the next take
 * ```
 *
 * @module
 */

/** Bodies from this size up come from the pool (glibc maps allocations of 256 KiB and more). */
export const MIN_POOLED = 256 * 1024;

/** See the module doc. */
export class BodyPool {
  readonly #spare = new Map<number, ArrayBuffer[]>();
  /** Buffers handed out and not given back yet (weak: a body never given back is collected). */
  readonly #out = new WeakSet<ArrayBuffer>();
  readonly #maxSpare: number;
  #spareBytes = 0;
  /** Takes served from a spare buffer (for tests). */
  reused = 0;

  constructor(maxSpareBytes = 16 * 1024 * 1024) {
    this.#maxSpare = maxSpareBytes;
  }

  /** Bytes of spare buffers held now. */
  get spareBytes(): number {
    return this.#spareBytes;
  }

  /** A buffer of exactly `len` bytes (its old content is to be overwritten by the caller). */
  take(len: number): Uint8Array {
    if (len < MIN_POOLED) return new Uint8Array(len);
    const cap = 2 ** Math.ceil(Math.log2(len));
    const buf = this.#spare.get(cap)?.pop();
    let b: ArrayBuffer;
    if (buf) {
      this.#spareBytes -= cap;
      this.reused++;
      b = buf;
    } else b = new ArrayBuffer(cap);
    this.#out.add(b);
    return new Uint8Array(b, 0, len);
  }

  /** Gives back a body from {@link take} that nothing uses any more; anything else is ignored. */
  give(body: Uint8Array): void {
    const b = body.buffer;
    if (!(b instanceof ArrayBuffer) || !this.#out.delete(b)) return;
    if (this.#spareBytes + b.byteLength > this.#maxSpare) return;
    let list = this.#spare.get(b.byteLength);
    if (!list) this.#spare.set(b.byteLength, list = []);
    list.push(b);
    this.#spareBytes += b.byteLength;
  }
}
