/**
 * The server's whole decision for one commit batch, as a pure function that every metadata
 * backend applies identically: {@link planCommit} reads the stored state through a small
 * synchronous {@link CommitReader} (the state before the batch, inside the backend's
 * transaction), applies {@link decideCommit} to every item in order, checks chunks and sizes,
 * revives deleted parents, and returns what to write: the new current entry of every path, the
 * replaced entries (tombstones too) to keep as versions, the results and the account's new sequence number.
 * The backend only reads and writes, in one transaction.
 *
 * A backend that cannot answer reads synchronously (PostgreSQL) prefetches into a
 * {@link CommitSnapshot}: {@link commitReads} predicts what the batch reads; whatever the
 * planner asked for that was not prefetched is recorded as missed, the backend fetches it and
 * plans again (planning is deterministic, so the last run is the one that counts).
 *
 * @example
 * ```ts
 * const plan = planCommit(reader, seq, "laptop", items);
 * // write plan.kept to versions, upsert plan.written, set the account's seq to plan.seq
 * ```
 *
 * @module
 */

import type { ChunkRef, Kind, RemoteEntry } from "./types.ts";
import { decideCommit } from "./commit_rules.ts";
import { parentPaths } from "./paths.ts";
import { chunkListProblem } from "./chunk_list.ts";

/** A change proposed by a device. */
export interface CommitItem {
  path: string;
  baseVersion: number;
  kind: Kind;
  deleted: boolean;
  size: number;
  mtime: number;
  exec: boolean;
  /** Permission bits of a file (absent: an older client; `exec` alone). */
  mode?: number;
  hash: string;
  chunks: ChunkRef[];
}

/** What became of one {@link CommitItem}. */
export type CommitResult =
  | { ok: true; version: number }
  | {
    ok: false;
    reason: "conflict" | "missing" | "invalid" | "quota";
    message: string;
    version?: number;
  };

/** The stored state of one account before the batch, as the planner may read it. */
export interface CommitReader {
  /** The stored entry of `path` (tombstones included), or undefined if it never existed. */
  entry(path: string): RemoteEntry | undefined;
  /**
   * Paths of stored live entries strictly below the directory `dir`: all of them if there are
   * fewer than `limit`, else at least `limit` of them.
   */
  liveBelow(dir: string, limit: number): readonly string[];
  /** The plain size the account's chunk index records for `hash`, or undefined if none. */
  chunkSize(hash: string): number | undefined;
}

/** What a batch writes, and its results. */
export interface CommitPlan {
  /** One per item, in order. */
  results: CommitResult[];
  /** Entries replaced by the batch (tombstones too), as they were, to keep as versions (in order). */
  kept: RemoteEntry[];
  /** The new current entry of every path the batch wrote, once per path. */
  written: RemoteEntry[];
  /** The account's sequence number after the batch (the highest version written). */
  seq: number;
}

/** Applies the server's rules to `items` in order against `reader`; `seq`: the account's now. */
export function planCommit(
  reader: CommitReader,
  seq: number,
  device: string,
  items: readonly CommitItem[],
): CommitPlan {
  const stored = new Map<string, RemoteEntry | undefined>();
  const overlay = new Map<string, RemoteEntry>(); // what the batch wrote so far
  const kept: RemoteEntry[] = [];
  const itemPaths = [...new Set(items.map((i) => i.path))];

  const current = (path: string): RemoteEntry | undefined => {
    const mine = overlay.get(path);
    if (mine) return mine;
    if (!stored.has(path)) stored.set(path, reader.entry(path));
    return stored.get(path);
  };

  const hasLiveChildren = (dir: string): boolean => {
    const prefix = dir + "/";
    for (const [p, e] of overlay) if (!e.deleted && p.startsWith(prefix)) return true;
    // The batch can have turned at most this many stored live paths below `dir` into tombstones:
    // one more than that, and at least one of them is still live.
    let touched = 0;
    for (const p of itemPaths) if (p.startsWith(prefix)) touched++;
    for (const p of reader.liveBelow(dir, touched + 1)) if (!overlay.has(p)) return true;
    return false;
  };

  // Every entry replaced is kept as a version, a deletion (tombstone) too: history shows when a
  // file was deleted and recreated, and a restore as of a time in between finds it deleted.
  const write = (entry: Omit<RemoteEntry, "version" | "device">) => {
    const old = current(entry.path);
    if (old) kept.push(old);
    const version = ++seq;
    overlay.delete(entry.path); // re-inserted last: `written` lists paths in order of last write
    overlay.set(entry.path, { ...entry, version, device });
    return version;
  };

  const one = (item: CommitItem): CommitResult => {
    const now = current(item.path);
    const live = now !== undefined && !now.deleted;
    // The rule asks about live children only for a live directory being deleted or replaced by a
    // file at its current version: only then is the (maybe costly) question put to the reader.
    const children = live && now.kind === "dir" && now.version === item.baseVersion &&
      (item.deleted || item.kind !== "dir") && hasLiveChildren(item.path);
    const verdict = decideCommit(now, item, children);
    if (verdict.verdict === "same") return { ok: true, version: verdict.version };
    if (verdict.verdict === "conflict") {
      return {
        ok: false,
        reason: "conflict",
        message: "changed on another device",
        version: verdict.version,
      };
    }
    if (!item.deleted) {
      if (item.kind === "file") {
        // Every chunk stored, with the size the index knows, and the list bounded by the file's
        // size: a list naming one tiny chunk 390,000 times (free metadata) is refused.
        for (const c of item.chunks) {
          const known = reader.chunkSize(c.hash);
          if (known === undefined) {
            return { ok: false, reason: "missing", message: `chunk ${c.hash} was never uploaded` };
          }
          if (known !== c.size) {
            return {
              ok: false,
              reason: "invalid",
              message: `chunk ${c.hash} holds ${known} bytes, not ${c.size}`,
            };
          }
        }
        const problem = chunkListProblem(item.size, item.chunks);
        if (problem) return { ok: false, reason: "invalid", message: problem };
      }
      // Parents must be live directories: revive deleted ones, refuse to nest under a file.
      for (const parent of parentPaths(item.path)) {
        const p = current(parent);
        if (p && !p.deleted && p.kind === "dir") continue;
        if (p && !p.deleted) {
          return {
            ok: false,
            reason: "conflict",
            message: `${parent} is a file`,
            version: p.version,
          };
        }
        write({
          path: parent,
          kind: "dir",
          deleted: false,
          size: 0,
          mtime: item.mtime,
          exec: false,
          hash: "",
          chunks: [],
        });
      }
    }
    const written = item.deleted
      ? {
        path: item.path,
        kind: now?.kind ?? item.kind,
        deleted: true,
        size: 0,
        mtime: item.mtime,
        exec: false,
        hash: "",
        chunks: [],
      }
      : {
        path: item.path,
        kind: item.kind,
        deleted: false,
        size: item.size,
        mtime: item.mtime,
        exec: item.exec,
        // A file's permission bits, when its device sent them (directories carry none).
        ...(item.kind === "file" && item.mode !== undefined ? { mode: item.mode } : {}),
        hash: item.hash,
        chunks: item.chunks,
      };
    return { ok: true, version: write(written) };
  };

  const results = items.map(one);
  return { results, kept, written: [...overlay.values()], seq };
}

/** What a batch will most likely read: every item path and its parents, every chunk named. */
export function commitReads(items: readonly CommitItem[]): { paths: string[]; chunks: string[] } {
  const paths = new Set<string>();
  const chunks = new Set<string>();
  for (const i of items) {
    paths.add(i.path);
    if (i.deleted) continue;
    for (const p of parentPaths(i.path)) paths.add(p);
    if (i.kind === "file") { for (const c of i.chunks) chunks.add(c.hash); }
  }
  return { paths: [...paths], chunks: [...chunks] };
}

/**
 * A {@link CommitReader} over prefetched answers. A question it cannot answer is recorded in
 * `missed` (and answered as "nothing"): fetch those, {@link add} them, and plan again, until
 * nothing is missed.
 */
export class CommitSnapshot implements CommitReader {
  readonly #entries = new Map<string, RemoteEntry | undefined>();
  readonly #chunks = new Map<string, number | undefined>();
  readonly #below = new Map<string, { limit: number; paths: string[] }>();
  /** What the last plan asked for that was not there. */
  missed = {
    paths: new Set<string>(),
    chunks: new Set<string>(),
    below: new Map<string, number>(),
  };

  /** True if the last plan asked for nothing that was missing (its result counts). */
  get complete(): boolean {
    return this.missed.paths.size + this.missed.chunks.size + this.missed.below.size === 0;
  }

  /** Starts a new planning round (forgets what was missed). */
  reset(): void {
    this.missed = { paths: new Set(), chunks: new Set(), below: new Map() };
  }

  /** Records fetched answers: the entries found among `paths` (the others do not exist). */
  addEntries(paths: Iterable<string>, found: Iterable<RemoteEntry>): void {
    for (const p of paths) this.#entries.set(p, undefined);
    for (const e of found) this.#entries.set(e.path, e);
  }

  /** Records fetched answers: the chunk sizes found among `hashes` (the others do not exist). */
  addChunks(hashes: Iterable<string>, found: Iterable<{ hash: string; size: number }>): void {
    for (const h of hashes) this.#chunks.set(h, undefined);
    for (const c of found) this.#chunks.set(c.hash, c.size);
  }

  /** Records the live paths below `dir`, fetched with `limit`. */
  addBelow(dir: string, limit: number, paths: string[]): void {
    this.#below.set(dir, { limit, paths });
  }

  entry(path: string): RemoteEntry | undefined {
    if (!this.#entries.has(path)) this.missed.paths.add(path);
    return this.#entries.get(path);
  }

  chunkSize(hash: string): number | undefined {
    if (!this.#chunks.has(hash)) this.missed.chunks.add(hash);
    return this.#chunks.get(hash);
  }

  liveBelow(dir: string, limit: number): readonly string[] {
    const b = this.#below.get(dir);
    // Enough if fetched with at least this limit, or if the fetch found everything there is.
    if (b && (b.limit >= limit || b.paths.length < b.limit)) return b.paths;
    this.missed.below.set(dir, Math.max(limit, this.missed.below.get(dir) ?? 0));
    return [];
  }
}
