/**
 * The protocol's vocabulary: version, capabilities, limits, and validation of the JSON headers
 * that carry control messages. Every field read from the network goes through these checks, so
 * the rest of the code can trust the shapes it gets. See `docs/protocol.md`.
 *
 * @module
 */

import type { ChunkRef, Kind, RemoteEntry } from "../core/types.ts";
import { chunkListProblem, maxChunksFor } from "../core/chunk_list.ts";
import { ProtocolError } from "./peer.ts";
import { unsafeTextProblem } from "../util/log_text.ts";

/** Wire protocol version; a peer with another major version is refused at `hello`. */
export const PROTOCOL_VERSION = 1;
/** Program version, reported in the handshake. */
export const PROGRAM_VERSION = "0.1.0";
/**
 * Capabilities this build offers; each side reads the other's at `hello`: `chunks-sha256` (content
 * named by SHA-256: required), `zstd` (chunks may travel compressed), `push` (`changed` notices),
 * `stream` (`announce`/`incoming`: big files stream while they upload), `mode` (permission bits),
 * `history` (`history`, `listAt`, `restore`).
 */
export const CAPABILITIES = ["chunks-sha256", "zstd", "push", "stream", "mode", "history"];

/** Reads a peer's capability list (at most 64 short names; anything else is dropped). */
export function readCapabilities(v: unknown): Set<string> {
  const out = new Set<string>();
  if (!Array.isArray(v)) return out;
  for (const c of v.slice(0, 64)) if (typeof c === "string" && c.length <= 64) out.add(c);
  return out;
}

/** Most chunks in one `putMany` / `getMany` (both sides enforce it). */
export const MAX_BATCH = 1024;
/** Most chunk bytes in one `getMany` reply. */
export const MAX_BATCH_BYTES = 6 * 1024 * 1024;

/** Most entries in one `changes` reply. */
export const MAX_CHANGES = 2000;
/** Most hashes in one `have` request. */
export const MAX_HAVE = 4096;
/** Most items in one `commit` request. */
export const MAX_COMMIT = 1000;
/** Most versions in one `history` reply. */
export const MAX_HISTORY = 1000;
/** Most entries in one `listAt` reply. */
export const MAX_LIST = 1000;
/**
 * Most bytes of rows in one `history` or `listAt` reply, as `changes` counts them (path, chunk
 * list, a fixed 200): a page ends early rather than pass it, so it always fits in a frame.
 */
export const MAX_LIST_BYTES = 2 * 1024 * 1024;
/** Most items in one `restore` request. */
export const MAX_RESTORE = 1000;
export { chunkListProblem, MAX_CHUNK, maxChunksFor, MIN_CHUNK } from "../core/chunk_list.ts";
/** Longest device name, in characters. */
export const MAX_DEVICE_NAME = 100;

const HEX64 = /^[0-9a-f]{64}$/;

/** Throws a `bad-request` error naming the field. */
export function bad(field: string, why = "is missing or malformed"): never {
  throw new ProtocolError("bad-request", `Cannot read request: field "${field}" ${why}`);
}

/** Reads a string field. */
export function str(h: Record<string, unknown>, k: string, max = 4096): string {
  const v = h[k];
  if (typeof v !== "string" || v.length > max) bad(k);
  return v;
}

/** Reads a non-negative safe integer field. */
export function int(h: Record<string, unknown>, k: string): number {
  const v = h[k];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) bad(k);
  return v;
}

/** Reads a boolean field. */
export function bool(h: Record<string, unknown>, k: string): boolean {
  const v = h[k];
  if (typeof v !== "boolean") bad(k);
  return v;
}

/** Reads a SHA-256 hex field. */
export function hash(h: Record<string, unknown>, k: string): string {
  const v = h[k];
  if (typeof v !== "string" || !HEX64.test(v)) bad(k);
  return v;
}

/** Reads a list of SHA-256 hex strings. */
export function hashList(h: Record<string, unknown>, k: string, max: number): string[] {
  const v = h[k];
  if (!Array.isArray(v) || v.length > max) bad(k);
  for (const x of v) if (typeof x !== "string" || !HEX64.test(x)) bad(k, "holds a malformed hash");
  return v as string[];
}

/** Reads a chunk list. */
export function chunkList(v: unknown, field: string): ChunkRef[] {
  if (!Array.isArray(v) || v.length > 1_000_000) bad(field);
  return v.map((c) => {
    if (typeof c !== "object" || c === null) bad(field);
    const o = c as Record<string, unknown>;
    return { hash: hash(o, "hash"), size: int(o, "size") };
  });
}

/** Reads a device name: 1 to MAX_DEVICE_NAME characters, no control or bidirectional characters. */
export function deviceName(h: Record<string, unknown>, k: string): string {
  const v = str(h, k, MAX_DEVICE_NAME);
  if (v.trim() === "") bad(k, "is empty");
  const problem = unsafeTextProblem(v);
  if (problem) bad(k, problem);
  return v;
}

/** Reads a kind field. */
export function kind(h: Record<string, unknown>, k: string): Kind {
  const v = h[k];
  if (v !== "file" && v !== "dir") bad(k);
  return v;
}

/**
 * Reads the optional permission bits of a file (`mode`, at most 0o777) and the `exec` bit, which
 * must agree with them; without `mode` (an older peer), `exec` alone.
 */
export function modeFields(o: Record<string, unknown>): { exec: boolean; mode?: number } {
  const exec = bool(o, "exec");
  if (o.mode === undefined || o.mode === null) return { exec };
  const mode = int(o, "mode");
  if (mode > 0o777) bad("mode", "holds bits other than rwx for user, group and other");
  if (((mode & 0o100) !== 0) !== exec) bad("mode", "disagrees with exec");
  return { exec, mode };
}

/** Reads an object field. */
export function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(field);
  return v as Record<string, unknown>;
}

/**
 * Parses an entry received from the server (the client side trusts nothing either): a live
 * file's chunks must be possible (1 byte to MAX_CHUNK each, adding up to its size, at most
 * `maxChunksFor(size)`), so that a hostile server cannot make the client allocate more than one
 * chunk's worth or write a file larger than the entry says.
 *
 * @throws {ProtocolError} `bad-request` naming the field.
 */
export function parseRemoteEntry(v: unknown): RemoteEntry {
  const o = obj(v, "entry");
  const size = int(o, "size");
  if (Array.isArray(o.chunks) && o.chunks.length > maxChunksFor(size)) {
    bad("chunks", `holds ${o.chunks.length} chunks, too many for ${size} bytes`);
  }
  const e: RemoteEntry = {
    path: str(o, "path"),
    kind: kind(o, "kind"),
    deleted: bool(o, "deleted"),
    version: int(o, "version"),
    size,
    mtime: int(o, "mtime"),
    ...modeFields(o),
    hash: o.hash === "" ? "" : hash(o, "hash"),
    chunks: chunkList(o.chunks, "chunks"),
    device: str(o, "device", 200),
  };
  if (e.kind === "file" && !e.deleted) {
    const problem = chunkListProblem(e.size, e.chunks);
    if (problem) bad("chunks", problem);
  }
  return e;
}
