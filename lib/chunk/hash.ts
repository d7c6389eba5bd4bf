/**
 * SHA-256 helpers shared by the chunker, the chunk store and the protocol. All hashes in Cloud
 * Sync are lowercase hex SHA-256 digests (64 characters).
 *
 * @module
 */

import { createHash } from "node:crypto";

/** The SHA-256 of the empty input, lowercase hex: the hash of every empty file. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Returns the SHA-256 of `data` as 64 lowercase hex characters. */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Reports whether `s` looks like a SHA-256 hex digest (64 lowercase hex characters). */
export function isSha256Hex(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
