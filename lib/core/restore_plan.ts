/**
 * What a restore does, as pure functions (the client's `restore` command and the server's
 * `restore` request both use them):
 *
 * - {@link decideRestore}: one path's state at TIME against its state now: files deleted since
 *   come back, files changed since go back, files created since (absent or deleted at TIME) are
 *   left alone: a restore never deletes;
 * - {@link DefaultTime}: the TIME used without `--at`: a deleted path comes back as it was just
 *   before it was deleted (a deleted folder with the files deleted together with it), a live file
 *   goes back to the version before its current one;
 * - {@link restoreCommitItem}: the server's side: an old version as the commit item that makes it
 *   current again, checked against the current version like any commit, with no content sent;
 * - {@link restoreSummary}: `Restored 1,204 files (3.2 GiB) as of 2026-12-01 09:00 +01:00`.
 *
 * @module
 */

import type { CommitItem, CommitResult } from "./commit_plan.ts";
import type { ChunkRef, RemoteEntry } from "./types.ts";
import { sameMeta } from "./metadata.ts";
import { formatBytes } from "../util/cli.ts";

/** A version as history lists it: an entry without its chunk list, with when it was current. */
export interface VersionInfo extends Omit<RemoteEntry, "chunks" | "made"> {
  /** When the server wrote it (ms). */
  made: number;
  /** When it stopped being the current version (ms); null: it is the current one. */
  replaced: number | null;
}

/** What a path is now, beside its state at TIME. */
export type CurrentState = Pick<
  RemoteEntry,
  "kind" | "deleted" | "version" | "size" | "mtime" | "exec" | "mode" | "hash"
>;

/** One path's state at TIME (live or a deletion), with its chunks and its state now. */
export interface PointInTime extends VersionInfo {
  chunks: ChunkRef[];
  current: CurrentState;
}

/** What becomes of one path of a restore. */
export type RestoreDecision =
  | { action: "restore"; why: "deleted" | "changed" }
  | { action: "unchanged" }
  | { action: "skip"; why: "absent" | "kind" };

/** Decides one path: see the module doc. */
export function decideRestore(row: PointInTime): RestoreDecision {
  if (row.deleted) return { action: "skip", why: "absent" }; // did not exist at TIME
  const now = row.current;
  if (now.deleted) return { action: "restore", why: "deleted" };
  if (now.version === row.version) return { action: "unchanged" };
  if (now.kind !== row.kind) return { action: "skip", why: "kind" };
  if (row.kind === "dir") return { action: "unchanged" };
  if (now.hash === row.hash && sameMeta(now, row)) return { action: "unchanged" };
  return { action: "restore", why: "changed" };
}

/** How far apart two deletions may be and still count as one (a tree deleted in several commits). */
export const DELETION_RUN_GAP_MS = 15 * 60 * 1000;

/**
 * Finds the TIME a restore without `--at` uses for one path, from its history read newest first
 * ({@link add} each version until it returns false, then {@link result}):
 *
 * - a deleted path: just before the run of deletions that ended with its own (everything below it
 *   deleted, no two deletions more than {@link DELETION_RUN_GAP_MS} apart, no live write in
 *   between): the files deleted together with a folder come back with it, files deleted there
 *   earlier stay deleted;
 * - a live file: the last moment of the newest earlier version that is not a deletion.
 */
export class DefaultTime {
  #current: VersionInfo | null = null;
  #runStart = 0;
  #at: number | null = null;
  #done = false;
  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  /** Feeds the next version (newest first); false once the answer is known. */
  add(v: VersionInfo): boolean {
    if (this.#done) return false;
    if (this.#current === null) {
      // The newest version below the path: the path's own, as nothing is written below a
      // deleted folder, and a live file has nothing below it.
      if (v.path !== this.path) return this.#finish(null);
      this.#current = v;
      this.#runStart = v.made;
      if (v.replaced !== null) return this.#finish(null); // not current: a bad history
      if (!v.deleted && v.kind === "dir") return this.#finish(null); // a live folder
      return true;
    }
    const cur = this.#current;
    if (cur.deleted) {
      if (v.deleted && this.#runStart - v.made <= DELETION_RUN_GAP_MS) {
        this.#runStart = Math.min(this.#runStart, v.made);
        return true;
      }
      return this.#finish(this.#runStart - 1);
    }
    // A live file: the newest earlier version that was current for a while and is no deletion.
    if (v.path !== this.path || v.deleted || v.replaced === null || v.replaced <= v.made) {
      return true;
    }
    return this.#finish(v.replaced - 1);
  }

  #finish(at: number | null): false {
    this.#at = at;
    this.#done = true;
    return false;
  }

  /**
   * The TIME found (ms), or why there is none: `none` (nothing kept), `folder` (a live folder:
   * say which TIME), `first` (a live file with no earlier version kept).
   */
  result(): { at: number } | { none: "none" | "folder" | "first" } {
    const cur = this.#current;
    if (this.#at !== null) return { at: this.#at };
    if (!cur) return { none: "none" };
    if (cur.deleted) return this.#done ? { none: "none" } : { at: this.#runStart - 1 };
    return { none: cur.kind === "dir" ? "folder" : "first" };
  }
}

/** A restore request item: make `version` of `path` current again, based on `baseVersion`. */
export interface RestoreItem {
  path: string;
  /** The kept version to bring back. */
  version: number;
  /** The current version the client saw (the commit rule checks it). */
  baseVersion: number;
}

/**
 * The commit item that makes kept version `old` current again (server side): its content
 * (chunks already stored), modification time and permission bits, based on `baseVersion`.
 */
export function restoreCommitItem(
  old: VersionInfo & { chunks: ChunkRef[] },
  baseVersion: number,
): CommitItem {
  return {
    path: old.path,
    baseVersion,
    kind: old.kind,
    deleted: false,
    size: old.kind === "file" ? old.size : 0,
    mtime: old.mtime,
    exec: old.kind === "file" ? old.exec : false,
    ...(old.kind === "file" && old.mode !== undefined ? { mode: old.mode } : {}),
    hash: old.kind === "file" ? old.hash : "",
    chunks: old.kind === "file" ? old.chunks : [],
  };
}

/**
 * A restore request as a commit: each item's kept version (`found`, null where it is no longer
 * kept) becomes a commit item; `results(done)` merges the commit's results of `valid` (in order)
 * with the refusals of the items that could not be committed (not kept: `missing`; a deletion:
 * `invalid`).
 */
export function restoreCommit(
  items: readonly RestoreItem[],
  found: readonly ((VersionInfo & { chunks: ChunkRef[] }) | null)[],
): { valid: CommitItem[]; results: (done: readonly CommitResult[]) => CommitResult[] } {
  const refusals: (CommitResult | null)[] = items.map((i, k) => {
    const v = found[k];
    if (!v) {
      return {
        ok: false,
        reason: "missing",
        message: `version ${i.version} of ${i.path} is no longer kept`,
      };
    }
    if (v.deleted) {
      return { ok: false, reason: "invalid", message: `version ${i.version} is a deletion` };
    }
    return null;
  });
  const valid = items.flatMap((i, k) =>
    refusals[k] ? [] : [restoreCommitItem(found[k]!, i.baseVersion)]
  );
  return {
    valid,
    results: (done) => {
      let next = 0;
      return refusals.map((r) => r ?? done[next++]!);
    },
  };
}

/** `1,204` (thousands separated by commas). */
export function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Counts of a restore, for its summary. */
export interface RestoreCounts {
  files: number;
  folders: number;
  bytes: number;
}

/**
 * `Restored 1,204 files (3.2 GiB) as of 2026-12-01 09:00 +01:00` (`verb` "Would restore" for a
 * dry run, "Copied" for `--to`), folders named when there were any.
 */
export function restoreSummary(verb: string, c: RestoreCounts, asOf: string): string {
  const files = `${formatCount(c.files)} ${c.files === 1 ? "file" : "files"}`;
  const folders = c.folders > 0
    ? ` and ${formatCount(c.folders)} ${c.folders === 1 ? "folder" : "folders"}`
    : "";
  return `${verb} ${files}${folders} (${formatBytes(c.bytes)}) as of ${asOf}`;
}
