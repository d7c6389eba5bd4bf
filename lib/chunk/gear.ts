/**
 * FastCDC's gear table: the 256 32-bit values the rolling hash adds per byte. Shared by the
 * TypeScript reference loop (lib/chunk/fastcdc.ts) and the WebAssembly one
 * (lib/chunk/fastcdc_scanner.ts), which copies it into its memory.
 *
 * **Compatibility:** the table determines every chunk boundary stored on servers and in client
 * merge bases; it must never change (the test suite pins it).
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Seed of the gear table. Part of the on-disk/on-wire format: never change it. */
const GEAR_SEED = "cloudsync-fastcdc-gear-v1";

/**
 * The 256-entry gear table: entry `i` is the first four bytes (big-endian) of
 * `SHA-256("cloudsync-fastcdc-gear-v1:" + i)`. Fixed forever (see the module doc); do not mutate.
 */
export const GEAR: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    const d = createHash("sha256").update(`${GEAR_SEED}:${i}`).digest();
    table[i] = ((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0;
  }
  return table;
})();
