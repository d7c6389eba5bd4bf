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

/**
 * The content id of a file, from its chunk list: the SHA-256 of its content when it has at most
 * one chunk (so small files are named by their plain SHA-256), otherwise the SHA-256 of the
 * domain-separated chunk list. Equal content always gives an equal id (chunking is
 * deterministic), and computing it needs no extra pass over the data.
 *
 * @example
 * ```ts
 * fileHash([]); // EMPTY_SHA256
 * fileHash([{ hash: h, size: 5 }]); // h
 * ```
 */
export function fileHash(chunks: readonly { hash: string; size: number }[]): string {
  if (chunks.length === 0) return EMPTY_SHA256;
  if (chunks.length === 1) return chunks[0]!.hash;
  const h = createHash("sha256").update("cloudsync-file-v1\n");
  for (const c of chunks) h.update(`${c.hash} ${c.size}\n`);
  return h.digest("hex");
}

/** Reports whether `s` looks like a SHA-256 hex digest (64 lowercase hex characters). */
export function isSha256Hex(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
