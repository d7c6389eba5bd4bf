/**
 * The remote phase of an execution: uploads, folders and deletions reach the server in segments
 * of up to 250 actions, each one `commit` (chunks first, only those the server lacks; a few
 * segments prepared ahead, committed strictly in order, so other devices start early). Every item
 * is re-checked against the disk just before its commit and carries the version it is based on;
 * an upload is recorded as pending before the commit is sent (a crash between the server's
 * acceptance and the local record is then recognized as our own version). A move's upload and
 * deletion always travel in the same commit and are told as one move.
 *
 * @example
 * ```ts
 * await pushRemote(phase, remoteActions); // outcomes recorded, bases written
 * ```
 *
 * @module
 */

import { ahead } from "../util/ahead.ts";
import type { Action } from "../core/reconcile.ts";
import { keepMovesTogether, segmentsKeepingPairs } from "../core/local_moves.ts";
import type { BaseEntry, ChunkRef, LocalEntry, RemoteEntry } from "../core/types.ts";
import type { Outcome } from "../core/outcomes.ts";
import * as call from "../protocol/calls.ts";
import type { CommitItem } from "../protocol/calls.ts";
import { debug } from "../util/debug.ts";
import { type LocalFs, stillAs } from "./fs/local_fs.ts";
import type { Peer } from "../protocol/peer.ts";
import { uploadChunks } from "./uploader.ts";
import { commitInBatches, itemBytes, MAX_ITEM_BYTES } from "./commit_batches.ts";
import type { TransferStats } from "./transfer.ts";
import type { BaseWriter } from "./base_writer.ts";

/** An action of the remote phase. */
export type RemoteAction = Extract<Action, { op: "upload" | "mkdirRemote" | "deleteRemote" }>;

/** Files from this size on are announced before upload, so other devices stream them. */
export const STREAM_MIN = 16 * 1024 * 1024;

/** Remote actions are sent in segments: chunks, then one commit, so other devices start early. */
const SEGMENT = 250;
/** Segments prepared (chunks uploaded, items re-checked) ahead of the one being committed. */
const AHEAD = 2;

/** Where pending uploads and confirmed entries are recorded (`StateDb`). */
export interface PushState {
  setPending(entries: BaseEntry[]): void;
  clearPending(paths: Iterable<string>): void;
  setRemoteMany(entries: RemoteEntry[]): void;
}

/** What the remote phase needs. */
export interface PushContext {
  peer: Peer;
  fs: LocalFs;
  state: PushState;
  /** The base the actions were planned on (read-only). */
  base: ReadonlyMap<string, BaseEntry>;
  stats: TransferStats;
  /** Where a wire path lives on disk. */
  toLocal: (wire: string) => string;
  /** Records one step's outcome. */
  record: (o: Outcome) => void;
  /** The one writer of the base. */
  bases: BaseWriter;
  /** Conflict copies of remote files saved by the local phase (a folder may then replace them). */
  copiesSaved: ReadonlySet<string>;
}

const CHANGED = "it changed since it was scanned";

/** Sends `actions` (see the module doc). */
export async function pushRemote(ctx: PushContext, input: RemoteAction[]): Promise<void> {
  // A move's deletion travels in the same commit as its upload: other devices see it whole.
  const together = keepMovesTogether(input, ctx.base);
  const actions = together.actions;
  const chunksOf = (l: LocalEntry) => l.chunks ?? ctx.base.get(l.path)?.chunks ?? [];
  const hashOf = (l: LocalEntry) => l.hash ?? ctx.base.get(l.path)?.hash ?? "";
  // Chunks of the base were confirmed by the server: no need to ask about them (a moved file or
  // an edit asks only about its new chunks). If the server lost one, its commit says "missing"
  // and the item is retried below without this shortcut.
  const known = new Set<string>();
  for (const b of ctx.base.values()) for (const c of b.chunks) known.add(c.hash);
  const segments = segmentsKeepingPairs(actions, together.pairs, SEGMENT);
  const prepared = segments.slice(0, AHEAD).map((seg) =>
    ahead(prepare(ctx, seg, known, hashOf, chunksOf))
  );
  const missing: RemoteAction[] = [];
  for (let i = 0; i < segments.length + 1; i++) {
    let items: Prepared[];
    if (i < segments.length) {
      items = await prepared[i]!;
      if (i + AHEAD < segments.length) {
        prepared.push(ahead(prepare(ctx, segments[i + AHEAD]!, known, hashOf, chunksOf)));
      }
    } else {
      if (missing.length === 0) break;
      // One more try, asking about every chunk.
      items = await prepare(ctx, missing.splice(0), null, hashOf, chunksOf);
    }
    if (items.length === 0) continue;
    await commitSegment(ctx, items, together.pairs, i < segments.length ? missing : null);
  }
}

/** An action ready to commit, with its item. */
interface Prepared {
  action: RemoteAction;
  item: CommitItem;
}

/**
 * Prepares a segment: announces its big files, uploads the chunks the server lacks (`known`:
 * chunks it is trusted to have; null asks about all), then re-checks each item against the disk.
 */
async function prepare(
  ctx: PushContext,
  segment: RemoteAction[],
  known: ReadonlySet<string> | null,
  hashOf: (l: LocalEntry) => string,
  chunksOf: (l: LocalEntry) => ChunkRef[],
): Promise<Prepared[]> {
  const t0 = performance.now();
  // A file whose chunk list no request can carry (about 50 GB) is neither announced nor
  // uploaded: its commit item is refused with a message (commit_batches.ts).
  const uploads = segment.filter((a): a is Extract<RemoteAction, { op: "upload" }> =>
    a.op === "upload" && itemBytes({ path: a.path, chunks: chunksOf(a.local) }) <= MAX_ITEM_BYTES
  );
  // Big uploads are announced first, so other devices can stream them while they upload: files
  // with at least STREAM_MIN bytes of chunks the server may lack. Not a moved or copied file (the
  // server has every chunk) nor a small edit of a big one (a few new chunks): announcing sends the
  // whole chunk list once more each way, for nothing to stream (the 1 MiB edit of a 1 GiB file:
  // 117 KiB a hop).
  let announced = 0;
  for (const a of ctx.peer.caps.has("stream") ? uploads : []) {
    if (a.local.size < STREAM_MIN) continue;
    const fresh = chunksOf(a.local).reduce((n, c) => known?.has(c.hash) ? n : n + c.size, 0);
    if (fresh < STREAM_MIN) continue;
    announced++;
    await call.announce(ctx.peer, {
      path: a.path,
      size: a.local.size,
      mtime: a.local.mtime,
      exec: a.local.exec,
      ...(a.local.mode !== undefined ? { mode: a.local.mode } : {}),
      hash: hashOf(a.local),
      chunks: chunksOf(a.local),
    }).catch(() => {}); // a refused announcement: the file just uploads
  }
  // What was announced and then not uploaded (a file changed while read, a failed read) is
  // withdrawn, so that devices streaming it stop waiting for it now.
  let changed: Set<string>;
  try {
    changed = await uploadChunks(
      ctx.peer,
      ctx.fs,
      uploads.map((a) => ({ path: ctx.toLocal(a.path), chunks: chunksOf(a.local) })),
      ctx.stats,
      known ?? undefined,
      known !== null, // a retry's files were counted the first time
    );
  } catch (e) {
    if (announced > 0) await call.withdraw(ctx.peer).catch(() => {});
    throw e;
  }
  if (announced > 0 && changed.size > 0) await call.withdraw(ctx.peer).catch(() => {});
  debug(() => `prepare ${segment.length}: chunks ${(performance.now() - t0).toFixed(0)} ms`);
  // Re-check each item against the disk just before committing it.
  const out: Prepared[] = [];
  for (const a of segment) {
    const local = ctx.toLocal(a.path);
    let why: string | null = null;
    if (a.op === "upload") {
      if (changed.has(local) || !stillAs(ctx.fs, local, a.local)) why = CHANGED;
    } else if (a.op === "mkdirRemote") {
      // A remote file replaced by this directory must first be saved as a local copy.
      if (a.after !== undefined && !ctx.copiesSaved.has(a.after)) {
        why = "the server's file at its place is not saved here yet";
      } else if ((await ctx.fs.lstatAsync(local))?.kind !== "dir") why = CHANGED;
    }
    if (why !== null) ctx.record({ path: a.path, kind: "deferred", reason: why });
    else out.push({ action: a, item: commitItem(a, hashOf, chunksOf) });
  }
  return out;
}

/** The commit item of an action. */
function commitItem(
  a: RemoteAction,
  hashOf: (l: LocalEntry) => string,
  chunksOf: (l: LocalEntry) => ChunkRef[],
): CommitItem {
  const none = { size: 0, mtime: 0, exec: false, hash: "", chunks: [] };
  if (a.op === "upload") {
    return {
      path: a.path,
      baseVersion: a.baseVersion,
      kind: "file",
      deleted: false,
      size: a.local.size,
      mtime: a.local.mtime,
      exec: a.local.exec,
      ...(a.local.mode !== undefined ? { mode: a.local.mode } : {}),
      hash: hashOf(a.local),
      chunks: chunksOf(a.local),
    };
  }
  if (a.op === "mkdirRemote") {
    return { path: a.path, baseVersion: a.baseVersion, kind: "dir", deleted: false, ...none };
  }
  return { path: a.path, baseVersion: a.baseVersion, kind: a.kind, deleted: true, ...none };
}

/**
 * Commits one prepared segment and records what became of each item. Items the server lacks a
 * chunk for go to `retry` (null: no more retries; they fail).
 */
async function commitSegment(
  ctx: PushContext,
  items: Prepared[],
  pairs: ReadonlyMap<RemoteAction, RemoteAction>,
  retry: RemoteAction[] | null,
): Promise<void> {
  const intents: BaseEntry[] = [];
  for (const { item, action } of items) {
    if (action.op === "upload") {
      intents.push({
        ...baseFields(action.local),
        version: 0,
        hash: item.hash,
        chunks: item.chunks,
      });
    }
  }
  const tPending = performance.now();
  if (intents.length > 0) ctx.state.setPending(intents);
  const tRequest = performance.now();
  const results = await commitInBatches(
    ctx.peer,
    items.map((b) => b.item),
    (j) => pairs.get(items[j]!.action) === items[j + 1]?.action,
  );
  const tReply = performance.now();
  const confirmed: RemoteEntry[] = [];
  /** This commit's outcomes, by action: a move's two halves are told as one move below. */
  const done = new Map<RemoteAction, Outcome>();
  items.forEach(({ item, action }, j) => {
    const res = results[j]!;
    if (!res.ok) {
      debug(() => `server refused ${item.path}: ${res.reason} (${res.message})`);
      if (res.reason === "conflict") {
        done.set(action, { path: item.path, kind: "refused", reason: res.message });
      } else if (res.reason === "missing" && retry) retry.push(action);
      else done.set(action, { path: item.path, kind: "failed", reason: res.message });
      return;
    }
    confirmed.push({ ...item, version: res.version, device: "" });
    if (item.deleted) {
      done.set(action, { path: item.path, kind: "deletedThere" });
      ctx.bases.set(item.path, null);
    } else if (action.op === "upload") {
      // Only the modification time or permissions changed: nothing but metadata was sent.
      const metaOnly = item.hash === ctx.base.get(item.path)?.hash;
      done.set(action, { path: item.path, kind: metaOnly ? "sentMeta" : "sent" });
      ctx.bases.set(item.path, {
        ...baseFields(action.local),
        version: res.version,
        hash: item.hash,
        chunks: item.chunks,
      });
    } else {
      done.set(action, { path: item.path, kind: "dir" });
      ctx.bases.set(item.path, dirBase(item.path, res.version));
    }
  });
  // Moves as moves, not as a file sent plus one deleted (both halves are in this commit).
  for (const [action, o] of done) {
    const deletion = pairs.get(action);
    const d = deletion && done.get(deletion);
    if (o.kind === "sent" && d?.kind === "deletedThere") {
      done.set(action, { path: o.path, kind: "movedThere", from: d.path });
      done.delete(deletion!);
    }
  }
  for (const o of done.values()) ctx.record(o);
  ctx.state.setRemoteMany(confirmed);
  ctx.bases.flush();
  if (intents.length > 0) ctx.state.clearPending(intents.map((i) => i.path));
  const tDone = performance.now();
  debug(() =>
    `commit ${items.length}: pending ${(tRequest - tPending).toFixed(0)} request ${
      (tReply - tRequest).toFixed(0)
    } after ${(tDone - tReply).toFixed(0)} ms`
  );
}

/** The base of a directory at `version`. */
export function dirBase(path: string, version: number): BaseEntry {
  return { path, kind: "dir", version, size: 0, mtime: 0, exec: false, hash: "", chunks: [] };
}

/** The stat fields of a local entry, as a base records them. */
function baseFields(l: LocalEntry): Omit<BaseEntry, "version" | "hash" | "chunks"> {
  const b: Omit<BaseEntry, "version" | "hash" | "chunks"> = {
    path: l.path,
    kind: l.kind,
    size: l.size,
    mtime: l.mtime,
    exec: l.exec,
  };
  if (l.mode !== undefined) b.mode = l.mode;
  if (l.ino !== undefined) b.ino = l.ino;
  return b;
}
