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
  MAX_LIST_CHUNKS,
  MAX_RESTORE,
  obj,
  str,
} from "../protocol/messages.ts";
import { checkWirePath } from "../core/paths.ts";
import type { CommitResult, MetaStore, PointInTime, RestoreItem } from "./stores.ts";

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

/**
 * `history`: the versions of `path` and below, newest first (`deleted: true`: the deleted paths
 * still kept, with the version a restore brings back); `before` and `since` narrow it.
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
  const last = page.rows[page.rows.length - 1];
  return {
    versions: page.rows,
    more: page.more,
    ...(page.more && last ? { next: last.version } : {}),
  };
}

/**
 * `listAt`: the state of `path` and below at the instant `at`, in path order, after `after`.
 * A page also ends before it carries more than {@link MAX_LIST_CHUNKS} chunk references. An empty
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
  let rows: PointInTime[] = page.rows;
  let more = page.more;
  let chunks = 0;
  for (let i = 0; i < rows.length; i++) {
    chunks += rows[i]!.chunks.length;
    if (chunks > MAX_LIST_CHUNKS && i > 0) {
      rows = rows.slice(0, i);
      more = true;
      break;
    }
  }
  const last = rows[rows.length - 1];
  const empty = rows.length === 0 && after === undefined;
  return {
    entries: rows,
    more,
    ...(more && last ? { next: last.path } : {}),
    ...(empty ? { oldest: await meta.oldestKept(account, path) } : {}),
  };
}

/**
 * `restore`: makes kept versions current again (`items`: path, version, baseVersion), as a
 * commit by `device`. A bad path refuses that item only. Returns one result per item.
 */
export async function restoreRequest(
  meta: MetaStore,
  account: string,
  device: string,
  h: Record<string, unknown>,
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
  const done = valid.length > 0 ? await meta.restore(account, device, valid) : [];
  let next = 0;
  return parsed.map((p) =>
    typeof p === "string" ? { ok: false, reason: "invalid", message: p } : done[next++]!
  );
}
