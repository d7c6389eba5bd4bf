/**
 * The history and restore requests of a signed-in session (`history`, `listAt`, `restore`; see
 * `docs/protocol.md`): every field checked, every page bounded, everything scoped to the
 * session's account, and all of it through {@link MetaStore}. `session.ts` routes to these.
 *
 * @module
 */

import { ProtocolError } from "../protocol/peer.ts";
import {
  bad,
  bool,
  int,
  MAX_HISTORY,
  MAX_LIST,
  MAX_LIST_BYTES,
  MAX_RESTORE,
  obj,
  str,
} from "../protocol/messages.ts";
import { checkWirePath } from "../core/paths.ts";
import type { CommitResult, MetaStore, PointInTime, RestoreItem } from "./stores.ts";
import { rowBytes } from "./session.ts";

/** A path field: "" (the whole account) or a valid wire path. */
function pathField(h: Record<string, unknown>, k: string): string {
  const p = str(h, k);
  if (p === "") return p;
  const problem = checkWirePath(p);
  if (problem) throw new ProtocolError("bad-path", problem);
  return p;
}

/** An optional non-negative integer field. */
function optInt(h: Record<string, unknown>, k: string): number | undefined {
  return h[k] === undefined || h[k] === null ? undefined : int(h, k);
}

/** The page size asked for, within 1 and `max`. */
function limitOf(h: Record<string, unknown>, max: number): number {
  return Math.min(Math.max(1, int(h, "limit")), max);
}

/** The first rows of a page that weigh at most {@link MAX_LIST_BYTES} (at least one). */
function withinBudget<T>(rows: T[], more: boolean, weight: (row: T) => number) {
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    bytes += weight(rows[i]!);
    if (bytes > MAX_LIST_BYTES && i > 0) return { rows: rows.slice(0, i), more: true };
  }
  return { rows, more };
}

/**
 * `history`: the versions of `path` and below, newest first (`deleted: true`: the deleted paths
 * still kept, with the version a restore brings back); `before` and `since` narrow it. A page
 * ends early rather than weigh more than {@link MAX_LIST_BYTES}.
 */
export async function historyRequest(
  meta: MetaStore,
  account: string,
  h: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const path = pathField(h, "path");
  const deleted = h.deleted === undefined ? false : bool(h, "deleted");
  const before = optInt(h, "before");
  const since = optInt(h, "since");
  const q = {
    path,
    limit: limitOf(h, MAX_HISTORY),
    ...(before !== undefined ? { before } : {}),
    ...(since !== undefined ? { since } : {}),
  };
  const page = deleted ? await meta.deletedPaths(account, q) : await meta.history(account, q);
  const weight = (v: { path: string }) => (deleted ? 2 : 1) * rowBytes(v.path, 0);
  const { rows, more } = withinBudget(page.rows, page.more, weight);
  const last = rows[rows.length - 1];
  return { versions: rows, more, ...(more && last ? { next: last.version } : {}) };
}

/**
 * `listAt`: the state of `path` and below at the instant `at`, in path order, after `after`.
 * A page also ends before its entries weigh more than {@link MAX_LIST_BYTES} (as `changes` counts
 * them: path, chunk list, a fixed overhead). An empty
 * first page says when the oldest kept version there was made (`oldest`, null: none).
 */
export async function listAtRequest(
  meta: MetaStore,
  account: string,
  h: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const path = pathField(h, "path");
  const at = int(h, "at");
  let after: string | undefined;
  if (h.after !== undefined && h.after !== null) {
    after = str(h, "after");
    const problem = checkWirePath(after);
    if (problem) throw new ProtocolError("bad-path", problem);
  }
  const page = await meta.listAt(account, {
    path,
    at,
    limit: limitOf(h, MAX_LIST),
    ...(after !== undefined ? { after } : {}),
  });
  const { rows, more } = withinBudget(
    page.rows,
    page.more,
    (e: PointInTime) => rowBytes(e.path, e.chunks.length),
  );
  const last = rows[rows.length - 1];
  const empty = rows.length === 0 && after === undefined;
  return {
    entries: rows,
    more,
    ...(more && last ? { next: last.path } : {}),
    ...(empty ? { oldest: await meta.oldestKept(account, path) } : {}),
  };
}

/** The quota's part in a restore (see `QuotaTracker`). */
export interface RestoreQuota {
  reserve(account: string, bytes: number): Promise<void>;
  release(account: string, bytes: number): void;
  recount(account: string): void;
}

/**
 * `restore`: makes kept versions current again (`items`: path, version, baseVersion), as a
 * commit by `device`. A bad path refuses that item only. Like a commit, it counts toward the
 * quota: a new row and the one it keeps, each reserved at its path's cost before (over the quota:
 * every item refused as `quota`), the usage read again from the store after (the chunk lists,
 * which only the store knows). Returns one result per item.
 */
export async function restoreRequest(
  meta: MetaStore,
  account: string,
  device: string,
  h: Record<string, unknown>,
  quota: RestoreQuota | null = null,
): Promise<CommitResult[]> {
  const raw = h.items;
  if (!Array.isArray(raw) || raw.length > MAX_RESTORE) bad("items");
  const parsed: (RestoreItem | string)[] = raw.map((v) => {
    const o = obj(v, "items[]");
    const path = str(o, "path");
    const problem = checkWirePath(path);
    if (problem) return problem;
    return { path, version: int(o, "version"), baseVersion: int(o, "baseVersion") };
  });
  const valid = parsed.filter((p): p is RestoreItem => typeof p !== "string");
  const cost = valid.reduce((n, p) => n + 2 * rowBytes(p.path, 0), 0);
  if (quota && valid.length > 0) {
    try {
      await quota.reserve(account, cost);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      return parsed.map((p) =>
        typeof p === "string"
          ? { ok: false, reason: "invalid", message: p }
          : { ok: false, reason: "quota", message: e.message }
      );
    }
  }
  let done: CommitResult[];
  try {
    done = valid.length > 0 ? await meta.restore(account, device, valid) : [];
  } finally {
    if (quota && valid.length > 0) {
      quota.release(account, cost);
      quota.recount(account);
    }
  }
  let next = 0;
  return parsed.map((p) =>
    typeof p === "string" ? { ok: false, reason: "invalid", message: p } : done[next++]!
  );
}
