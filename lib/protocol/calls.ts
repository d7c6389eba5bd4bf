/**
 * The client's side of the protocol as typed calls: one function per request the sync code
 * makes, each building the request from typed arguments and returning a reply that was checked
 * field by field (the server is hostile until checked too). The shapes shared with the server's
 * commit rule (`CommitItem`, `CommitResult`) come from the pure core, so neither side imports the
 * other's code; the limits both sides enforce are in `messages.ts`.
 *
 * @example
 * ```ts
 * const missing = await call.have(peer, hashes); // only hashes that were asked about
 * const results = await call.commit(peer, items); // one CommitResult per item, checked
 * ```
 *
 * @module
 */

import type { Peer } from "./peer.ts";
import type { CommitItem, CommitResult } from "../core/commit_plan.ts";
import type { ChunkRef, RemoteEntry } from "../core/types.ts";
import { MAX_CHANGES, MAX_HAVE, parseRemoteEntry } from "./messages.ts";

export type { CommitItem, CommitResult };

const HEX64 = /^[0-9a-f]{64}$/;

function malformed(what: string): Error {
  return new Error(`Cannot ${what}: the server sent a malformed reply`);
}

/** One page of the journal: entries after `since` (parsed; bad ones reported apart). */
export interface ChangesPage {
  entries: RemoteEntry[];
  /** Entries the client could not accept, with why. */
  rejected: string[];
  seq: number;
  more: boolean;
}

/** `changes`: the journal after `since`, at most `limit` entries. */
export async function changes(
  peer: Peer,
  since: number,
  limit = MAX_CHANGES,
): Promise<ChangesPage> {
  const r = await peer.request({ t: "changes", since, limit });
  const raw = r.header.entries;
  if (!Array.isArray(raw) || raw.length > limit) throw malformed("read changes");
  const entries: RemoteEntry[] = [];
  const rejected: string[] = [];
  for (const v of raw) {
    try {
      entries.push(parseRemoteEntry(v));
    } catch (e) {
      rejected.push((e as Error).message);
    }
  }
  const seq = r.header.seq;
  const more = r.header.more === true;
  // A reply that says "more" must move on: a hostile server cannot keep the client asking.
  if (
    typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < since || (more && seq <= since)
  ) {
    throw malformed("read changes");
  }
  return { entries, rejected, seq, more };
}

/** `have`: which of `hashes` (at most {@link MAX_HAVE}) the server lacks. */
export async function have(peer: Peer, hashes: string[]): Promise<string[]> {
  if (hashes.length > MAX_HAVE) throw new Error(`Cannot ask about ${hashes.length} chunks at once`);
  const r = await peer.request({ t: "have", hashes });
  const missing = r.header.missing;
  if (!Array.isArray(missing) || missing.length > hashes.length) throw malformed("upload");
  const asked = new Set(hashes);
  for (const h of missing) if (typeof h !== "string" || !asked.has(h)) throw malformed("upload");
  return missing as string[];
}

/** `commit`: one checked result per item, in order. */
export async function commit(peer: Peer, items: CommitItem[]): Promise<CommitResult[]> {
  const r = await peer.request({ t: "commit", items });
  const v = r.header.results;
  const bad = () => malformed("commit");
  if (!Array.isArray(v) || v.length !== items.length) throw bad();
  for (const x of v) {
    if (typeof x !== "object" || x === null) throw bad();
    const o = x as Record<string, unknown>;
    if (o.ok === true) {
      if (typeof o.version !== "number" || !Number.isSafeInteger(o.version)) throw bad();
    } else if (o.ok !== false || typeof o.reason !== "string" || typeof o.message !== "string") {
      throw bad();
    }
  }
  return v as CommitResult[];
}

/** What `announce` tells other devices: a big file about to be uploaded. */
export interface Announcement {
  path: string;
  size: number;
  mtime: number;
  exec: boolean;
  mode?: number;
  hash: string;
  chunks: ChunkRef[];
}

/** `announce`: other devices may stream this file while it uploads (best effort). */
export async function announce(peer: Peer, a: Announcement): Promise<void> {
  await peer.request({ t: "announce", ...a });
}

/** `withdraw`: what this connection announced and has not uploaded will not come (for now). */
export async function withdraw(peer: Peer): Promise<void> {
  await peer.request({ t: "withdraw" });
}

/** True for a SHA-256 hex name. */
export function isHash(v: unknown): v is string {
  return typeof v === "string" && HEX64.test(v);
}
