/**
 * Carries out the actions decided by `core/reconcile.ts`: local changes first (conflict copies
 * set aside, directories, downloads, deletions), then remote ones (chunks, then batched commits).
 * Each step re-checks the disk just before it acts, so a change made meanwhile is never
 * overwritten: the step is skipped and the next pass sees the change. The merge base is updated
 * only after a step really happened on both sides.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { debug } from "../util/debug.ts";
import type { Peer } from "../protocol/peer.ts";
import { type Action, baseFrom } from "../core/reconcile.ts";
import { keepMovesTogether, pairLocalMoves, segmentsKeepingPairs } from "../core/local_moves.ts";
import type { BaseEntry, ChunkRef, LocalEntry, RemoteEntry } from "../core/types.ts";
import type { CommitItem } from "../server/meta_store.ts";
import type { Outcome } from "../core/outcomes.ts";
import { perms } from "../core/metadata.ts";
import { fsyncDir } from "../util/atomic.ts";
import { commitInBatches, itemBytes, MAX_ITEM_BYTES } from "./commit_batches.ts";
import { pool } from "../util/pool.ts";
import { statToEntry } from "./scanner.ts";
import { stillInside } from "./inside.ts";
import type { StateDb } from "./state_db.ts";
import {
  downloadMany,
  indexLocalChunks,
  stillAsScanned,
  stillAsScannedSync,
  type TransferStats,
  uploadChunks,
} from "./transfer.ts";

/** What one execution did, for the user and for deciding what the next pass must look at. */
export interface ExecutionReport {
  /** One outcome per step that did something or could not (see `core/outcomes.ts`). */
  outcomes: Outcome[];
  /**
   * Paths the next pass must look at again: those of actions that did not end with a new base
   * (deferred, failed, refused), copies set aside (to upload), and the folders of deleted items
   * (a folder being deleted by someone else may be empty by now). Settled paths need no look:
   * the watcher reports later changes.
   */
  touched: string[];
  /** Paths whose merge base this execution recorded (they are in sync now). */
  settled: string[];
}

/** Everything the executor needs. */
export interface ExecutorContext {
  peer: Peer;
  root: string;
  tmpDir: string;
  state: StateDb;
  base: Map<string, BaseEntry>;
  stats: TransferStats;
  /** Where a wire path lives on disk (relative to `root`); identity when absent. */
  toLocal?: (wire: string) => string;
}

/**
 * Refuses to touch anything whose parent folders are not plain directories inside the root (a
 * symlinked folder could lead outside it). `cache` memoizes per directory within one batch.
 */
function parentsAreDirs(
  root: string,
  path: string,
  cache: Map<string, Promise<boolean>> = new Map(),
): Promise<boolean> {
  const dir = dirname(path);
  if (dir === "." || dir === "") return Promise.resolve(true);
  let p = cache.get(dir);
  if (!p) {
    p = (async () => {
      try {
        const st = await Deno.lstat(join(root, dir));
        if (!st.isDirectory || st.isSymlink) return false;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      return await parentsAreDirs(root, dir, cache);
    })();
    cache.set(dir, p);
  }
  return p;
}

function baseOfDir(path: string, version: number): BaseEntry {
  return { path, kind: "dir", version, size: 0, mtime: 0, exec: false, hash: "", chunks: [] };
}

/** A report of nothing done. */
export function emptyReport(): ExecutionReport {
  return { outcomes: [], touched: [], settled: [] };
}

/** Runs `actions` (already ordered) and reports what happened. */
export async function execute(ctx: ExecutorContext, actions: Action[]): Promise<ExecutionReport> {
  const outcomes: Outcome[] = [];
  const record = (o: Outcome) => outcomes.push(o);
  const note = (path: string, kind: Outcome["kind"], reason?: string) => {
    record(reason === undefined ? { path, kind } : { path, kind, reason });
  };
  const baseUpdates: [string, BaseEntry | null][] = [];
  const settled = new Set<string>();
  const setBase = (path: string, entry: BaseEntry | null) => {
    settled.add(path);
    baseUpdates.push([path, entry]);
    if (entry) ctx.base.set(path, entry);
    else ctx.base.delete(path);
  };
  const flush = () => {
    if (baseUpdates.length > 0) ctx.state.setBase(baseUpdates.splice(0));
  };
  const fail = (path: string, e: unknown) => note(path, "failed", errorReason(e));
  const toLocal = ctx.toLocal ?? ((p: string) => p);
  const full = (p: string) => join(ctx.root, toLocal(p));

  const local = actions.filter((a) =>
    a.op !== "upload" && a.op !== "mkdirRemote" && a.op !== "deleteRemote"
  );
  const remote = actions.filter((a) =>
    a.op === "upload" || a.op === "mkdirRemote" || a.op === "deleteRemote"
  );
  const chunkIndex = indexLocalChunks(
    ctx.toLocal
      ? [...ctx.base.values()].map((b) => ({ ...b, path: toLocal(b.path) }))
      : ctx.base.values(),
  );
  for (const a of actions) {
    if (a.op === "download") {
      ctx.stats.filesTotal++;
      ctx.stats.bytesTotal += a.remote.size;
    } else if (a.op === "upload") {
      ctx.stats.filesTotal++;
      ctx.stats.bytesTotal += a.local.size;
    }
  }

  const downloads: Extract<Action, { op: "download" }>[] = [];
  const copiesSaved = new Set<string>();
  const runDownloads = async () => {
    const batch = downloads.splice(0);
    const cache = new Map<string, Promise<boolean>>();
    const safe = await Promise.all(
      batch.map((a) => parentsAreDirs(ctx.root, toLocal(a.path), cache)),
    );
    batch.forEach((a, i) => {
      if (!safe[i]) note(a.path, "deferred", "a parent folder is not a plain folder");
    });
    await downloadMany(
      { peer: ctx.peer, root: ctx.root, tmpDir: ctx.tmpDir, local: chunkIndex, stats: ctx.stats },
      batch.filter((_, i) => safe[i]).map((a) => ({ ...a, path: toLocal(a.path), wire: a.path })),
      (item, r) => {
        const wire = item.wire ?? item.path;
        if (r instanceof Error) return fail(wire, r);
        if (!r.ok) {
          note(wire, "deferred", r.reason === "blocked" ? "something is in the way" : CHANGED);
          return;
        }
        ctx.stats.filesDone++;
        const follows = item.follows;
        if (wire === item.remote.path) {
          note(wire, "received");
          setBase(wire, { ...r.entry, path: wire });
        } else if (follows !== undefined && item.replace !== null) {
          // An edit made elsewhere, now at the place this device moved the file to: the old
          // path's base records it, and the next pass sends the move.
          note(wire, "received");
          setBase(follows, { ...r.entry, path: follows });
        } else {
          note(wire, "conflict"); // the server's version, kept aside under another name
          copiesSaved.add(wire);
          if (follows !== undefined) setBase(follows, { ...r.entry, path: follows });
        }
      },
    );
    await settleMoves();
    flush();
  };

  // A file moved elsewhere arrives as download + deletion of the same content: move it locally.
  const moves = pairLocalMoves(local, ctx.base);
  const deletions = new Map<string, LocalEntry>();
  for (const a of local) if (a.op === "deleteLocal") deletions.set(a.path, a.expect);
  const movedAway = new Set<string>();
  const moveCache = new Map<string, Promise<boolean>>();
  const movedDirs = new Set<string>();
  const movedBases: [string, BaseEntry][] = [];
  /**
   * Moves the local file `from` to the download's place: a hard link then an unlink, so nothing
   * that appeared at the target meanwhile is ever replaced (the link fails instead). Synchronous
   * calls, so a renamed folder of thousands of files moves quickly; {@link settleMoves} then
   * fsyncs each touched folder once and only then records the moves in the base. False when
   * anything is not as the scan saw it: the download and the deletion then run as planned.
   */
  const moveOwnCopy = async (a: Extract<Action, { op: "download" }>, from: string) => {
    const expect = deletions.get(from);
    if (!expect || !(await parentsAreDirs(ctx.root, toLocal(a.path), moveCache))) return false;
    if (!stillAsScannedSync(full(from), expect)) return false;
    if (!stillInside(ctx.root, full(a.path)) || !stillInside(ctx.root, full(from))) return false;
    try {
      Deno.linkSync(full(from), full(a.path));
    } catch (e) {
      debug(() => `move ${from} -> ${a.path} by link failed (${(e as Error).message}): copying`);
      return false;
    }
    Deno.removeSync(full(from));
    movedAway.add(from);
    note(a.path, "movedHere");
    ctx.stats.filesDone++;
    ctx.stats.bytesDone += a.remote.size;
    movedDirs.add(dirname(full(a.path)));
    movedDirs.add(dirname(full(from)));
    const r = a.remote;
    if (Deno.build.os !== "windows" && perms(expect) !== perms(r)) {
      Deno.chmodSync(full(a.path), perms(r));
    }
    if (expect.mtime !== r.mtime) {
      Deno.utimeSync(full(a.path), new Date(r.mtime), new Date(r.mtime));
    }
    const l = statToEntry(a.path, Deno.lstatSync(full(a.path)), undefined);
    movedBases.push([from, baseFrom(r, l)]); // a plain download: a.path is r.path
    // Chunks that later downloads of this pass would read from the old place: now here.
    const was = toLocal(from);
    for (const c of r.chunks) {
      const src = chunkIndex.get(c.hash);
      if (src?.path === was) chunkIndex.set(c.hash, { ...src, path: toLocal(a.path) });
    }
    return true;
  };
  /** Makes the moves so far durable (each folder fsynced once), then records them as synced. */
  const settleMoves = async () => {
    if (movedBases.length === 0) return;
    const dirs = [...movedDirs];
    movedDirs.clear();
    const bases = movedBases.splice(0);
    await pool(dirs, 16, fsyncDir);
    for (const [from, entry] of bases) {
      setBase(from, null);
      setBase(entry.path, entry);
    }
  };

  // Moves and deletions use synchronous calls (a few microseconds each, where an async one costs
  // a thread hand-off); every 256 of them the event loop gets a turn, so the client stays live.
  let quickSteps = 0;
  const breathe = async () => {
    if (++quickSteps % 256 === 0) await new Promise((r) => setTimeout(r, 0));
  };
  for (const a of local) {
    if (a.op !== "download" && downloads.length > 0) await runDownloads();
    try {
      switch (a.op) {
        case "moveAside": {
          if (
            !(await stillAsScanned(full(a.path), a.expect)) ||
            !(await stillAsScanned(full(a.to), null))
          ) {
            note(a.path, "deferred", CHANGED);
            break;
          }
          // The copy's folder may be new (conflict copies of git's files go to a folder of their
          // own, see core/conflict_name.ts).
          if (!(await parentsAreDirs(ctx.root, toLocal(a.to)))) {
            note(a.path, "deferred", "a parent folder is not a plain folder");
            break;
          }
          if (!stillInside(ctx.root, full(a.to)) || !stillInside(ctx.root, full(a.path))) {
            note(a.path, "deferred", MOVED_AWAY);
            break;
          }
          await Deno.mkdir(dirname(full(a.to)), { recursive: true });
          await Deno.rename(full(a.path), full(a.to));
          await fsyncDir(dirname(full(a.to)));
          if (dirname(full(a.to)) !== dirname(full(a.path))) await fsyncDir(dirname(full(a.path)));
          note(a.to, "conflict");
          break;
        }
        case "mkdirLocal": {
          if (!(await parentsAreDirs(ctx.root, toLocal(a.path)))) {
            note(a.path, "deferred", "a parent folder is not a plain folder");
            break;
          }
          if (!a.replace) {
            const there = await Deno.lstat(full(a.path)).catch(() => null);
            if (there && !there.isDirectory) {
              // Something appeared there since the scan: the next pass decides.
              note(a.path, "deferred", CHANGED);
              break;
            }
          } else {
            if (!(await stillAsScanned(full(a.path), a.replace))) {
              note(a.path, "deferred", CHANGED);
              break;
            }
            if (!stillInside(ctx.root, full(a.path))) {
              note(a.path, "deferred", MOVED_AWAY);
              break;
            }
            await Deno.remove(full(a.path));
          }
          if (!stillInside(ctx.root, full(a.path))) {
            note(a.path, "deferred", MOVED_AWAY);
            break;
          }
          await Deno.mkdir(full(a.path), { recursive: true });
          note(a.path, "dir");
          if (a.remote) setBase(a.path, baseOfDir(a.path, a.remote.version));
          break;
        }
        case "download": {
          const from = moves.get(a.path);
          if (from !== undefined) {
            await breathe();
            if (await moveOwnCopy(a, from)) break;
          }
          downloads.push(a);
          break;
        }
        case "deleteLocal": {
          if (movedAway.has(a.path)) break; // moved to where a download wanted it
          await breathe(); // a deleted or renamed folder of thousands of files is many of these
          if (!stillAsScannedSync(full(a.path), a.expect)) {
            note(a.path, "deferred", CHANGED);
            break;
          }
          if (!stillInside(ctx.root, full(a.path))) {
            note(a.path, "deferred", MOVED_AWAY);
            break;
          }
          try {
            Deno.removeSync(full(a.path)); // never recursive: a directory goes only when empty
          } catch (e) {
            if (a.expect.kind === "dir" && !(e instanceof Deno.errors.NotFound)) {
              debug(() => `folder ${a.path} not empty yet: kept`);
              // Something is still inside (a deletion deferred this pass, or an item we do not
              // sync): keep the folder and its base; the next pass tries again. Forgetting the
              // base here would make the folder look new and bring it back everywhere.
              note(a.path, "deferred", "the folder still holds items that are not synced");
              break;
            }
            if (!(e instanceof Deno.errors.NotFound)) throw e;
          }
          note(a.path, "deletedHere");
          setBase(a.path, null);
          break;
        }
        case "moveLocal": {
          // Another device moved this file, which was edited here: the edit follows the move.
          const [src, dst] = [full(a.path), full(a.to)];
          if (
            !(await parentsAreDirs(ctx.root, toLocal(a.to))) ||
            !(await stillAsScanned(src, a.expect)) || !(await stillAsScanned(dst, null))
          ) {
            note(a.path, "deferred", CHANGED);
            break;
          }
          if (!stillInside(ctx.root, src) || !stillInside(ctx.root, dst)) {
            note(a.path, "deferred", MOVED_AWAY);
            break;
          }
          await Deno.mkdir(dirname(dst), { recursive: true });
          // A hard link never replaces what appeared at the target meanwhile (it fails instead).
          await Deno.link(src, dst);
          await Deno.remove(src);
          await fsyncDir(dirname(dst));
          if (dirname(src) !== dirname(dst)) await fsyncDir(dirname(src));
          outcomes.push({ path: a.to, kind: "movedHere", from: a.path });
          setBase(a.path, null);
          break;
        }
        case "setMeta": {
          // Same content as the server's: only its modification time and permissions change.
          const path = full(a.path);
          if (!stillAsScannedSync(path, a.expect) || !stillInside(ctx.root, path)) {
            note(a.path, "deferred", CHANGED);
            break;
          }
          const r = a.remote;
          // RACE: an edit landing between the check above and these calls keeps its content but
          // takes the server's time; the check below sees a new size or inode and then leaves
          // the base alone, so the next scan reads it as the change it is.
          if (Deno.build.os !== "windows" && perms(a.expect) !== perms(r)) {
            Deno.chmodSync(path, perms(r));
          }
          if (a.expect.mtime !== r.mtime) {
            Deno.utimeSync(path, new Date(r.mtime), new Date(r.mtime));
          }
          const now = statToEntry(a.path, Deno.lstatSync(path), ctx.base.get(a.path));
          if (
            now.size !== a.expect.size || (a.expect.ino !== undefined && now.ino !== a.expect.ino)
          ) {
            note(a.path, "deferred", CHANGED);
            break;
          }
          note(a.path, "receivedMeta");
          setBase(a.path, baseFrom(r, now));
          break;
        }
        case "setBase":
          setBase(a.path, a.entry);
          break;
      }
    } catch (e) {
      fail(a.path, e);
    }
  }
  if (downloads.length > 0) await runDownloads();
  await settleMoves();
  flush();

  if (remote.length > 0) await pushRemote(ctx, remote, record, setBase, flush, copiesSaved);
  flush();
  return { outcomes, touched: unsettledPaths(actions, outcomes, settled), settled: [...settled] };
}

/** Why a step was deferred when a folder on the way is no longer a real folder in the root. */
const MOVED_AWAY = "a folder on the way is no longer a plain folder inside the synced folder";

/** Why a step was deferred when the disk no longer matched the scan. */
const CHANGED = "it changed since it was scanned";

/** The message of an error, for a `failed` outcome. */
function errorReason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * What the next pass must look at again: the paths of actions that did not settle, conflict
 * copies (they upload next), and the parent folder of every deleted item (another device, or the
 * user's `rm -r`, may have emptied it meanwhile: a folder left behind would linger a whole period).
 */
export function unsettledPaths(
  actions: readonly Action[],
  outcomes: readonly Outcome[],
  settled: ReadonlySet<string>,
): string[] {
  const out = new Set<string>();
  for (const a of actions) {
    if (!settled.has(a.path)) out.add(a.path);
    if (a.op === "moveAside") out.add(a.to);
  }
  const folderOf = (p: string) => {
    const slash = p.lastIndexOf("/");
    if (slash > 0) out.add(p.slice(0, slash));
  };
  for (const o of outcomes) {
    if (o.kind === "conflict") out.add(o.path);
    if (o.kind === "deletedHere" || o.kind === "deletedThere") folderOf(o.path);
    if (o.kind === "movedThere" && o.from !== undefined) folderOf(o.from);
  }
  return [...out];
}

type RemoteAction = Extract<Action, { op: "upload" | "mkdirRemote" | "deleteRemote" }>;

/** Files from this size on are announced before upload, so other devices stream them. */
export const STREAM_MIN = 16 * 1024 * 1024;

/** Remote actions are sent in segments: chunks, then one commit, so other devices start early. */
const SEGMENT = 250;

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

async function pushRemote(
  ctx: ExecutorContext,
  actions: RemoteAction[],
  record: (o: Outcome) => void,
  setBase: (path: string, entry: BaseEntry | null) => void,
  flush: () => void,
  copiesSaved: ReadonlySet<string>,
): Promise<void> {
  const toLocal = ctx.toLocal ?? ((p: string) => p);
  // A move's deletion travels in the same commit as its upload: other devices see it whole.
  const together = keepMovesTogether(actions, ctx.base);
  actions = together.actions;
  const chunksOf = (l: LocalEntry) => l.chunks ?? ctx.base.get(l.path)?.chunks ?? [];
  const hashOf = (l: LocalEntry) => l.hash ?? ctx.base.get(l.path)?.hash ?? "";
  // Chunks of the base were confirmed by the server: no need to ask about them (a moved file or
  // an edit asks only about its new chunks). If the server lost one, its commit says "missing"
  // and the item is retried below without this shortcut.
  const known = new Set<string>();
  for (const b of ctx.base.values()) for (const c of b.chunks) known.add(c.hash);
  // Prepare (chunks up, re-check) a few segments ahead; commit them strictly in order.
  const prepare = async (segment: RemoteAction[], trust = true) => {
    const chunksStart = performance.now();
    // A file whose chunk list no request can carry (about 50 GB) is neither announced nor
    // uploaded: its commit item is refused with a message (commit_batches.ts).
    const uploads = segment.filter((a): a is Extract<RemoteAction, { op: "upload" }> =>
      a.op === "upload" && itemBytes({ path: a.path, chunks: chunksOf(a.local) }) <= MAX_ITEM_BYTES
    );
    // Big files are announced first, so other devices can stream them while they upload. Not
    // one whose chunks the server already has (a moved or copied file): there is nothing to
    // stream, and the other devices build it from their own copy.
    for (const a of uploads) {
      if (a.local.size < STREAM_MIN) continue;
      if (trust && chunksOf(a.local).every((c) => known.has(c.hash))) continue;
      await ctx.peer.request({
        t: "announce",
        path: a.path,
        size: a.local.size,
        mtime: a.local.mtime,
        exec: a.local.exec,
        ...(a.local.mode !== undefined ? { mode: a.local.mode } : {}),
        hash: hashOf(a.local),
        chunks: chunksOf(a.local),
      }).catch(() => {}); // an older server without streaming: just upload
    }
    const changed = await uploadChunks(
      ctx.peer,
      ctx.root,
      uploads.map((a) => ({ path: toLocal(a.path), chunks: chunksOf(a.local) })),
      ctx.stats,
      trust ? known : undefined,
    );
    const chunksEnd = performance.now();
    debug(() => `prepare ${segment.length}: chunks ${(chunksEnd - chunksStart).toFixed(0)} ms`);
    // Re-check each item against the disk just before committing it.
    const ready = await Promise.all(segment.map(async (a) => {
      const full = join(ctx.root, toLocal(a.path));
      if (a.op === "upload") {
        return !changed.has(toLocal(a.path)) && stillAsScannedSync(full, a.local);
      }
      if (a.op === "mkdirRemote") {
        // A remote file replaced by this directory must first be saved as a local copy.
        if (a.after !== undefined && !copiesSaved.has(a.after)) return false;
        return (await Deno.lstat(full).catch(() => null))?.isDirectory === true;
      }
      return true;
    }));
    segment.forEach((a, j) => {
      if (ready[j]) return;
      const why = a.op === "mkdirRemote" && a.after !== undefined && !copiesSaved.has(a.after)
        ? "the server's file at its place is not saved here yet"
        : CHANGED;
      record({ path: a.path, kind: "deferred", reason: why });
    });
    return segment.filter((_, j) => ready[j]).map((action) => ({
      action,
      item: commitItem(action, hashOf, chunksOf),
    }));
  };
  const segments = segmentsKeepingPairs(actions, together.pairs, SEGMENT);
  const AHEAD = 2;
  const prepared = segments.slice(0, AHEAD).map((seg) => prepare(seg));
  // Keep rejections of segments still waiting in line from going unhandled.
  for (const p of prepared) p.catch(() => {});
  const missing: RemoteAction[] = [];
  for (let i = 0; i < segments.length + 1; i++) {
    let items;
    if (i < segments.length) {
      items = await prepared[i]!;
      if (i + AHEAD < segments.length) {
        const p = prepare(segments[i + AHEAD]!);
        p.catch(() => {});
        prepared.push(p);
      }
    } else {
      if (missing.length === 0) break;
      items = await prepare(missing.splice(0), false); // one more try, asking about every chunk
    }
    if (items.length === 0) continue;
    const intents: BaseEntry[] = [];
    for (const { item, action } of items) {
      if (action.op === "upload") {
        intents.push({
          ...statToEntryBase(action.local),
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
      (j) => together.pairs.get(items[j]!.action) === items[j + 1]?.action,
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
        } else if (res.reason === "missing" && i < segments.length) missing.push(action);
        else done.set(action, { path: item.path, kind: "failed", reason: res.message });
        return;
      }
      confirmed.push({ ...item, version: res.version, device: "" });
      if (item.deleted) {
        done.set(action, { path: item.path, kind: "deletedThere" });
        setBase(item.path, null);
      } else if (action.op === "upload") {
        // Only the modification time or permissions changed: nothing but metadata was sent.
        const metaOnly = item.hash === ctx.base.get(item.path)?.hash;
        done.set(action, { path: item.path, kind: metaOnly ? "sentMeta" : "sent" });
        ctx.stats.filesDone++;
        setBase(item.path, {
          ...statToEntryBase(action.local),
          version: res.version,
          hash: item.hash,
          chunks: item.chunks,
        });
      } else {
        done.set(action, { path: item.path, kind: "dir" });
        setBase(item.path, baseOfDir(item.path, res.version));
      }
    });
    // Moves as moves, not as a file sent plus one deleted (both halves are in this commit).
    for (const [action, o] of done) {
      const deletion = together.pairs.get(action);
      const d = deletion && done.get(deletion);
      if (o.kind === "sent" && d?.kind === "deletedThere") {
        done.set(action, { path: o.path, kind: "movedThere", from: d.path });
        done.delete(deletion!);
      }
    }
    for (const o of done.values()) record(o);
    ctx.state.setRemoteMany(confirmed);
    flush();
    if (intents.length > 0) ctx.state.clearPending(intents.map((i) => i.path));
    const tDone = performance.now();
    debug(() =>
      `commit ${items.length}: pending ${(tRequest - tPending).toFixed(0)} request ${
        (tReply - tRequest).toFixed(0)
      } after ${(tDone - tReply).toFixed(0)} ms`
    );
  }
}

function statToEntryBase(l: LocalEntry): Omit<BaseEntry, "version" | "hash" | "chunks"> {
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
