/**
 * Moves: a file moved on one device travels as an upload of the new path plus a deletion of the
 * old one, with the same content, and arrives elsewhere as a download plus a local deletion.
 * {@link keepMovesTogether} sends each such deletion right after its upload, so both land in the
 * same commit and the other devices see the move at once; {@link pairLocalMoves} finds the pairs
 * on the receiving side, so the executor moves the local file (no copy, no network) instead of
 * rebuilding a second copy and deleting the first. Pure; the executor still re-checks the disk.
 *
 * @example
 * ```ts
 * const moves = pairLocalMoves(actions, base);
 * moves.get("moved/big.bin"); // "big.bin": move that file instead of downloading
 * ```
 *
 * @module
 */

import type { Action } from "./reconcile.ts";
import type { BaseEntry } from "./types.ts";

type Download = Extract<Action, { op: "download" }>;
type DeleteLocal = Extract<Action, { op: "deleteLocal" }>;

/**
 * Pairs each download of a non-empty file into an empty place (not a conflict copy) with
 * at most one local file deleted in the same actions whose content is the same: the scan's hash
 * when it rehashed the file, else the merge base's (the deletion is only planned for a file
 * unchanged since the base). Returns download path -> deleted path; each deletion is used once,
 * in action order.
 */
export function pairLocalMoves(
  actions: readonly Action[],
  base: ReadonlyMap<string, BaseEntry>,
): Map<string, string> {
  const byContent = new Map<string, DeleteLocal[]>();
  for (const a of actions) {
    if (a.op !== "deleteLocal" || a.expect.kind !== "file") continue;
    const b = base.get(a.path);
    if (!b || b.kind !== "file") continue;
    const hash = a.expect.hash ?? b.hash;
    const size = a.expect.hash !== undefined ? a.expect.size : b.size;
    if (hash === "" || size === 0) continue;
    const key = `${hash}:${size}`;
    const list = byContent.get(key);
    if (list) list.push(a);
    else byContent.set(key, [a]);
  }
  const out = new Map<string, string>();
  if (byContent.size === 0) return out;
  for (const a of actions) {
    if (!isPlainDownload(a)) continue;
    const list = byContent.get(`${a.remote.hash}:${a.remote.size}`);
    const from = list?.shift();
    if (from) out.set(a.path, from.path);
  }
  return out;
}

function isPlainDownload(a: Action): a is Download {
  return a.op === "download" && a.replace === null && a.path === a.remote.path &&
    a.remote.kind === "file" && a.remote.size > 0;
}

type Upload = Extract<Action, { op: "upload" }>;
type DeleteRemote = Extract<Action, { op: "deleteRemote" }>;

/**
 * Reorders remote actions so that the deletion of each file whose merge-base content equals the
 * content of a file being uploaded (a move or rename, seen from the device that made it) comes
 * right after that upload; everything else keeps its order. Deleting a file has no ordering need
 * (folders are deleted after their content, and stay last), so commits cut into segments carry
 * each move whole. `pairs` maps each such upload to its deletion.
 */
export function keepMovesTogether<A extends Action>(
  actions: readonly A[],
  base: ReadonlyMap<string, BaseEntry>,
): { actions: A[]; pairs: Map<A, A> } {
  const byContent = new Map<string, (A & DeleteRemote)[]>();
  for (const a of actions) {
    if (a.op !== "deleteRemote" || a.kind !== "file") continue;
    const b = base.get(a.path);
    if (!b || b.kind !== "file" || b.size === 0) continue;
    const key = `${b.hash}:${b.size}`;
    const list = byContent.get(key);
    if (list) list.push(a as A & DeleteRemote);
    else byContent.set(key, [a as A & DeleteRemote]);
  }
  if (byContent.size === 0) return { actions: [...actions], pairs: new Map() };
  const follows = new Map<A, A>();
  const moved = new Set<A>();
  for (const a of actions) {
    if (a.op !== "upload") continue;
    const u = a as A & Upload;
    const hash = u.local.hash ?? base.get(u.path)?.hash;
    if (hash === undefined) continue;
    const d = byContent.get(`${hash}:${u.local.size}`)?.shift();
    if (d) {
      follows.set(a, d);
      moved.add(d);
    }
  }
  const out: A[] = [];
  for (const a of actions) {
    if (moved.has(a)) continue;
    out.push(a);
    const d = follows.get(a);
    if (d) out.push(d);
  }
  return { actions: out, pairs: follows };
}

/**
 * Cuts `actions` into segments of `size` (one commit each), except that a segment never ends
 * between an upload and its paired deletion (`pairs`, from {@link keepMovesTogether}): that
 * segment takes the deletion too, so no device sees half of a move.
 *
 * @example
 * ```ts
 * segmentsKeepingPairs([up, del, other], new Map([[up, del]]), 1); // [[up, del], [other]]
 * ```
 */
export function segmentsKeepingPairs<A>(
  actions: readonly A[],
  pairs: ReadonlyMap<A, A>,
  size: number,
): A[][] {
  const out: A[][] = [];
  let current: A[] = [];
  for (let i = 0; i < actions.length; i++) {
    const a = actions[i]!;
    current.push(a);
    const pairedNext = pairs.get(a) !== undefined && pairs.get(a) === actions[i + 1];
    if (current.length >= size && !pairedNext) {
      out.push(current);
      current = [];
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}
