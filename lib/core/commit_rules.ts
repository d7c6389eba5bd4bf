/**
 * The server's optimistic-concurrency rule for one proposed change, as a pure function.
 *
 * A device sends each change with the server version it was based on. The change is accepted only
 * if that is still the current version; otherwise the device must merge first (see
 * `reconcile.ts`). Three exceptions keep sync simple and safe:
 * - a change that leaves the path exactly as it already is (content, modification time and
 *   permission bits) is "same", never a conflict;
 * - creating over nothing or over a tombstone is always accepted (an edit beats a delete);
 * - a directory that still has live children on the server cannot be deleted or replaced.
 *
 * @example
 * ```ts
 * decideCommit(undefined, { deleted: false, kind: "file", hash: "ab…", exec: false, baseVersion: 0 }, false);
 * // => { verdict: "accept" }
 * ```
 *
 * @module
 */

import type { Kind, RemoteEntry } from "./types.ts";
import { sameMeta } from "./metadata.ts";

/** The fields of a proposed change that the rule looks at. */
export interface ProposedChange {
  deleted: boolean;
  kind: Kind;
  hash: string;
  exec: boolean;
  /** Permission bits (absent: what `exec` implies). */
  mode?: number;
  /** Modification time (ms); a file's metadata is part of what "the same" means. */
  mtime: number;
  baseVersion: number;
}

/** The verdict: accept (write a new version), same (nothing to write) or conflict. */
export type CommitVerdict =
  | { verdict: "accept" }
  | { verdict: "same"; version: number }
  | { verdict: "conflict"; version: number };

/** Decides a proposed change against the current entry (undefined: never existed). */
export function decideCommit(
  current: RemoteEntry | undefined,
  change: ProposedChange,
  hasLiveChildren: boolean,
): CommitVerdict {
  const live = current !== undefined && !current.deleted;
  if (change.deleted) {
    if (!live) return { verdict: "same", version: current?.version ?? 0 };
    if (current.version !== change.baseVersion) {
      return { verdict: "conflict", version: current.version };
    }
    if (current.kind === "dir" && hasLiveChildren) {
      return { verdict: "conflict", version: current.version };
    }
    return { verdict: "accept" };
  }
  if (!live) return { verdict: "accept" };
  const same = current.kind === change.kind &&
    (change.kind === "dir" || (current.hash === change.hash && sameMeta(current, change)));
  if (same) return { verdict: "same", version: current.version };
  if (current.version !== change.baseVersion) {
    return { verdict: "conflict", version: current.version };
  }
  if (current.kind === "dir" && hasLiveChildren) {
    return { verdict: "conflict", version: current.version };
  }
  return { verdict: "accept" };
}
