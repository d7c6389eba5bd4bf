/**
 * Test content: deterministic, incompressible bytes (xorshift32), which the chunker cuts into
 * pieces of varied sizes; the same `seed` always gives the same bytes.
 *
 * @module
 */

/** `size` bytes of noise from `seed`. */
export function noise(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
