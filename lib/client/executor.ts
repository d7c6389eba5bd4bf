/**
 * Carries out the actions decided by `core/reconcile.ts`, in two phases that return outcomes (as
 * Mutagen's `Transition` does): the local phase here (conflict copies set aside, directories,
 * moves, downloads, metadata, deletions), then the remote phase (`push.ts`: chunks, then batched
 * commits). Each step re-checks the disk just before it acts (`stillAs`, `fs.inside`), so a change
 * made meanwhile is never overwritten: the step is deferred and the next pass sees the change. The
 * merge base is updated only after a step really happened on both sides, through one writer.
 *
 * @module
 */

import { debug } from "../util/debug.ts";
import type { Peer } from "../protocol/peer.ts";
import { type Action, baseFrom } from "../core/reconcile.ts";
import { pairLocalMoves } from "../core/local_moves.ts";
import type { BaseEntry, LocalEntry } from "../core/types.ts";
import type { Outcome } from "../core/outcomes.ts";
import { perms } from "../core/metadata.ts";
import { pool } from "../util/pool.ts";
import { type LocalFs, stillAs } from "./fs/local_fs.ts";
import { statToEntry } from "./scanner.ts";
import type { StateDb } from "./state_db.ts";
import { downloadMany } from "./downloader.ts";
import type { Staging } from "./staging.ts";
import { indexLocalChunks, type LocalChunkIndex, type TransferStats } from "./transfer.ts";
import { BaseWriter } from "./base_writer.ts";
import { parentOf } from "./placer.ts";
import { dirBase, pushRemote, type RemoteAction } from "./push.ts";

export { STREAM_MIN } from "./push.ts";

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
  fs: LocalFs;
  staging: Staging;
  state: StateDb;
  /** The base the actions were planned on (read-only: the executor writes through the state). */
  base: ReadonlyMap<string, BaseEntry>;
  stats: TransferStats;
  /** Where a wire path lives on disk (relative to the root); identity when absent. */
  toLocal?: (wire: string) => string;
  /** The ignore rules' verdict on a wire path (`dir`: a folder); nothing ignored when absent. */
  ignores?: (path: string, dir: boolean) => boolean;
  /** Told each outcome as it happens (the `-v` lines). */
  onOutcome?: (o: Outcome) => void;
}

/** A report of nothing done. */
export function emptyReport(): ExecutionReport {
  return { outcomes: [], touched: [], settled: [] };
}

/** Why a step was deferred when a folder on the way is no longer a real folder in the root. */
const MOVED_AWAY = "a folder on the way is no longer a plain folder inside the synced folder";
/** Why a step was deferred when the disk no longer matched the scan. */
const CHANGED = "it changed since it was scanned";
/** Why a step was deferred when a parent is not a folder. */
const NOT_A_FOLDER = "a parent folder is not a plain folder";

/** The message of an error, for a `failed` outcome. */
function errorReason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isRemote(a: Action): a is RemoteAction {
  return a.op === "upload" || a.op === "mkdirRemote" || a.op === "deleteRemote";
}

/** Runs `actions` (already ordered) and reports what happened. */
export async function execute(ctx: ExecutorContext, actions: Action[]): Promise<ExecutionReport> {
  const run = new LocalPhase(ctx, actions);
  await run.run();
  const remote = actions.filter(isRemote);
  if (remote.length > 0) {
    await pushRemote({
      peer: ctx.peer,
      fs: ctx.fs,
      state: ctx.state,
      base: ctx.base,
      stats: ctx.stats,
      toLocal: run.toLocal,
      record: (o) => run.record(o),
      bases: run.bases,
      copiesSaved: run.copiesSaved,
    }, remote);
  }
  run.bases.flush();
  return {
    outcomes: run.outcomes,
    touched: unsettledPaths(actions, run.outcomes, run.bases.settled),
    settled: [...run.bases.settled],
  };
}

type Download = Extract<Action, { op: "download" }>;

/** The local phase (see the module doc): one step per action, in order. */
class LocalPhase {
  readonly outcomes: Outcome[] = [];
  readonly bases: BaseWriter;
  /** Conflict copies of remote files saved here (a folder may then replace them remotely). */
  readonly copiesSaved = new Set<string>();
  readonly toLocal: (wire: string) => string;
  readonly #ctx: ExecutorContext;
  readonly #fs: LocalFs;
  readonly #actions: Action[];
  readonly #chunks: LocalChunkIndex;
  /** Downloads waiting to run as one batch (consecutive download actions). */
  readonly #downloads: Download[] = [];
  /** download path -> the local file to move there instead (a move made elsewhere). */
  readonly #moves: Map<string, string>;
  readonly #deletions = new Map<string, LocalEntry>();
  /** Files moved to where a download wanted them: their deletion is done. */
  readonly #movedAway = new Set<string>();
  /** Folders whose entries moves changed, fsynced once before the moves are recorded. */
  readonly #movedDirs = new Set<string>();
  readonly #movedBases: [string, BaseEntry][] = [];
  #quickSteps = 0;

  constructor(ctx: ExecutorContext, actions: Action[]) {
    this.#ctx = ctx;
    this.#fs = ctx.fs;
    this.#actions = actions.filter((a) => !isRemote(a));
    this.bases = new BaseWriter(ctx.state);
    const toLocal = ctx.toLocal;
    this.toLocal = toLocal ?? ((p) => p);
    this.#chunks = indexLocalChunks(
      toLocal
        ? [...ctx.base.values()].map((b) => ({ ...b, path: toLocal(b.path) }))
        : ctx.base.values(),
    );
    // A file moved elsewhere arrives as download + deletion of the same content: move it here.
    this.#moves = pairLocalMoves(this.#actions, ctx.base);
    for (const a of this.#actions) {
      if (a.op === "deleteLocal") this.#deletions.set(a.path, a.expect);
    }
    for (const a of actions) {
      if (a.op === "download") {
        ctx.stats.filesTotal++;
        ctx.stats.bytesTotal += a.remote.size;
      } else if (a.op === "upload") {
        ctx.stats.filesTotal++;
        ctx.stats.uploadsTotal++;
        ctx.stats.bytesTotal += a.local.size;
      }
    }
  }

  /** Records one step's outcome (and tells whoever follows them). */
  record(o: Outcome): void {
    this.outcomes.push(o);
    this.#ctx.onOutcome?.(o);
  }

  #note(path: string, kind: Outcome["kind"], reason?: string): void {
    this.record(reason === undefined ? { path, kind } : { path, kind, reason });
  }

  /** The local path of a wire path. */
  #at(wire: string): string {
    return this.toLocal(wire);
  }

  /** Whether every existing parent of `wire` is a folder (a file there blocks the step). */
  #parentsOk(wire: string, cache?: Map<string, boolean>): boolean {
    let dir = parentOf(this.#at(wire));
    const seen: string[] = [];
    let ok = true;
    while (dir !== "") {
      const known = cache?.get(dir);
      if (known !== undefined) {
        ok = known;
        break;
      }
      seen.push(dir);
      const st = this.#fs.lstat(dir);
      if (st && st.kind !== "dir") {
        ok = false;
        break;
      }
      dir = parentOf(dir);
    }
    for (const d of seen) cache?.set(d, ok);
    return ok;
  }

  /**
   * Moves and deletions use synchronous calls (a few microseconds each, where an async one costs
   * a thread hand-off); every 256 of them the event loop gets a turn, so the client stays live.
   */
  async #breathe(): Promise<void> {
    if (++this.#quickSteps % 256 === 0) await new Promise((r) => setTimeout(r, 0));
  }

  async run(): Promise<void> {
    for (const a of this.#actions) {
      if (a.op !== "download" && this.#downloads.length > 0) await this.#runDownloads();
      try {
        switch (a.op) {
          case "moveAside":
            await this.#moveAside(a);
            break;
          case "mkdirLocal":
            await this.#mkdirLocal(a);
            break;
          case "moveLocal":
            await this.#moveLocal(a);
            break;
          case "download": {
            const from = this.#moves.get(a.path);
            if (from !== undefined) {
              await this.#breathe();
              if (this.#moveOwnCopy(a, from)) break;
            }
            this.#downloads.push(a);
            break;
          }
          case "setMeta":
            this.#setMeta(a);
            break;
          case "deleteLocal":
            await this.#deleteLocal(a);
            break;
          case "setBase":
            this.bases.set(a.path, a.entry);
            break;
        }
      } catch (e) {
        this.#note(a.path, "failed", errorReason(e));
      }
    }
    if (this.#downloads.length > 0) await this.#runDownloads();
    await this.#settleMoves();
    this.bases.flush();
  }

  /** A local version set aside as a conflict copy (it uploads as a new file next pass). */
  async #moveAside(a: Extract<Action, { op: "moveAside" }>): Promise<void> {
    const [from, to] = [this.#at(a.path), this.#at(a.to)];
    if (!stillAs(this.#fs, from, a.expect) || !stillAs(this.#fs, to, null)) {
      return this.#note(a.path, "deferred", CHANGED);
    }
    // The copy's folder may be new (copies of git's files go to a folder of their own).
    if (!this.#parentsOk(a.to)) return this.#note(a.path, "deferred", NOT_A_FOLDER);
    if (!this.#fs.inside(to) || !this.#fs.inside(from)) {
      return this.#note(a.path, "deferred", MOVED_AWAY);
    }
    await this.#fs.mkdir(parentOf(to), true);
    await this.#fs.rename(from, to);
    await this.#fs.fsyncDir(parentOf(to));
    if (parentOf(to) !== parentOf(from)) await this.#fs.fsyncDir(parentOf(from));
    this.#note(a.to, "conflict");
    debug(() => `set aside ${a.path} as ${a.to}`);
  }

  async #mkdirLocal(a: Extract<Action, { op: "mkdirLocal" }>): Promise<void> {
    const path = this.#at(a.path);
    if (!this.#parentsOk(a.path)) return this.#note(a.path, "deferred", NOT_A_FOLDER);
    if (!this.#fs.inside(path)) return this.#note(a.path, "deferred", MOVED_AWAY);
    if (!a.replace) {
      const there = this.#fs.lstat(path);
      // Something appeared there since the scan: the next pass decides.
      if (there && there.kind !== "dir") return this.#note(a.path, "deferred", CHANGED);
    } else {
      if (!stillAs(this.#fs, path, a.replace)) return this.#note(a.path, "deferred", CHANGED);
      await this.#fs.remove(path);
    }
    await this.#fs.mkdir(path, true);
    this.#note(a.path, "dir");
    if (a.remote) this.bases.set(a.path, dirBase(a.path, a.remote.version));
  }

  /** Another device moved this file, which was edited here: the edit follows the move. */
  async #moveLocal(a: Extract<Action, { op: "moveLocal" }>): Promise<void> {
    const [src, dst] = [this.#at(a.path), this.#at(a.to)];
    if (
      !this.#parentsOk(a.to) || !stillAs(this.#fs, src, a.expect) || !stillAs(this.#fs, dst, null)
    ) {
      return this.#note(a.path, "deferred", CHANGED);
    }
    if (!this.#fs.inside(src) || !this.#fs.inside(dst)) {
      return this.#note(a.path, "deferred", MOVED_AWAY);
    }
    await this.#fs.mkdir(parentOf(dst), true);
    // A hard link never replaces what appeared at the target meanwhile (it fails instead).
    await this.#fs.link(src, dst);
    await this.#fs.remove(src);
    await this.#fs.fsyncDir(parentOf(dst));
    if (parentOf(src) !== parentOf(dst)) await this.#fs.fsyncDir(parentOf(src));
    this.record({ path: a.to, kind: "movedHere", from: a.path });
    this.bases.set(a.path, null);
  }

  /** Same content as the server's: only its modification time and permissions change. */
  #setMeta(a: Extract<Action, { op: "setMeta" }>): void {
    const path = this.#at(a.path);
    if (!stillAs(this.#fs, path, a.expect) || !this.#fs.inside(path)) {
      return this.#note(a.path, "deferred", CHANGED);
    }
    const r = a.remote;
    // RACE: an edit landing between the check above and these calls keeps its content but takes
    // the server's time; the check below sees a new size or inode and then leaves the base
    // alone, so the next scan reads it as the change it is.
    if (perms(a.expect) !== perms(r)) this.#fs.chmodSync(path, perms(r));
    if (a.expect.mtime !== r.mtime) this.#fs.utimeSync(path, r.mtime);
    const st = this.#fs.lstat(path);
    const now = st ? statToEntry(a.path, st, this.#ctx.base.get(a.path)) : null;
    if (
      !now || now.size !== a.expect.size || (a.expect.ino !== undefined && now.ino !== a.expect.ino)
    ) {
      return this.#note(a.path, "deferred", CHANGED);
    }
    this.#note(a.path, "receivedMeta");
    this.bases.set(a.path, baseFrom(r, now));
  }

  async #deleteLocal(a: Extract<Action, { op: "deleteLocal" }>): Promise<void> {
    if (this.#movedAway.has(a.path)) return; // moved to where a download wanted it
    await this.#breathe(); // a deleted or renamed folder of thousands of files is many of these
    const path = this.#at(a.path);
    if (!stillAs(this.#fs, path, a.expect)) return this.#note(a.path, "deferred", CHANGED);
    if (!this.#fs.inside(path)) return this.#note(a.path, "deferred", MOVED_AWAY);
    try {
      this.#fs.removeSync(path); // never recursive: a directory goes only when empty
    } catch (e) {
      if (a.expect.kind === "dir" && !(e instanceof Deno.errors.NotFound)) {
        if (await this.#holdsOnlyIgnored(a.path)) {
          // Deleted elsewhere, but what is left here is ignored: the folder stays, unsynced.
          debug(() => `folder ${a.path} holds only ignored items: kept here, base forgotten`);
          this.bases.set(a.path, null);
          return;
        }
        debug(() => `folder ${a.path} not empty yet: kept`);
        // Something is still inside (a deletion deferred this pass, or an item we do not sync):
        // keep the folder and its base; the next pass tries again. Forgetting the base here
        // would make the folder look new and bring it back everywhere.
        return this.#note(a.path, "deferred", "the folder still holds items that are not synced");
      }
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    this.#note(a.path, "deletedHere");
    this.bases.set(a.path, null);
  }

  /**
   * Whether the folder at wire path `dir` holds something, and only items the rules ignore or
   * folders (never synced: a synced one would have been deleted first) that do. At most
   * `budget.left` entries are looked at; past that the answer is no (the folder then waits).
   */
  async #holdsOnlyIgnored(dir: string, budget = { left: 10_000 }): Promise<boolean> {
    const ignores = this.#ctx.ignores;
    if (!ignores) return false;
    let items;
    try {
      items = await this.#fs.readDir(this.#at(dir));
    } catch {
      return false;
    }
    if (items.length === 0 || (budget.left -= items.length) < 0) return false;
    for (const d of items) {
      const path = `${dir}/${d.name.normalize("NFC")}`;
      if (ignores(path, d.kind === "dir")) continue;
      if (d.kind !== "dir" || !(await this.#holdsOnlyIgnored(path, budget))) return false;
    }
    return true;
  }

  /**
   * Moves the local file `from` to the download's place: a hard link then an unlink, so nothing
   * that appeared at the target meanwhile is ever replaced (the link fails instead). Synchronous
   * calls, so a renamed folder of thousands of files moves quickly; {@link #settleMoves} then
   * fsyncs each touched folder once and only then records the moves in the base. False when
   * anything is not as the scan saw it: the download and the deletion then run as planned.
   */
  #moveOwnCopy(a: Download, from: string): boolean {
    const fs = this.#fs;
    const expect = this.#deletions.get(from);
    if (!expect || !this.#parentsOk(a.path)) return false;
    const [src, dst] = [this.#at(from), this.#at(a.path)];
    if (!stillAs(fs, src, expect) || !fs.inside(dst) || !fs.inside(src)) return false;
    try {
      fs.mkdirSync(parentOf(dst), true);
      fs.linkSync(src, dst);
    } catch (e) {
      debug(() => `move ${from} -> ${a.path} by link failed (${(e as Error).message}): copying`);
      return false;
    }
    fs.removeSync(src);
    this.#movedAway.add(from);
    this.record({ path: a.path, kind: "movedHere", from });
    this.#ctx.stats.filesDone++;
    this.#ctx.stats.bytesDone += a.remote.size;
    this.#movedDirs.add(parentOf(dst));
    this.#movedDirs.add(parentOf(src));
    const r = a.remote;
    if (perms(expect) !== perms(r)) fs.chmodSync(dst, perms(r));
    if (expect.mtime !== r.mtime) fs.utimeSync(dst, r.mtime);
    const st = fs.lstat(dst);
    if (!st) throw new Error(`Cannot move ${from} to ${a.path}: it vanished`);
    this.#movedBases.push([from, baseFrom(r, statToEntry(a.path, st, undefined))]);
    // Chunks that later downloads of this pass would read from the old place: now here.
    for (const c of r.chunks) {
      const s = this.#chunks.get(c.hash);
      if (s?.path === src) this.#chunks.set(c.hash, { ...s, path: dst });
    }
    return true;
  }

  /** Makes the moves so far durable (each folder fsynced once), then records them as synced. */
  async #settleMoves(): Promise<void> {
    if (this.#movedBases.length === 0) return;
    const dirs = [...this.#movedDirs];
    this.#movedDirs.clear();
    const bases = this.#movedBases.splice(0);
    await pool(dirs, 16, (d) => this.#fs.fsyncDir(d));
    for (const [from, entry] of bases) {
      this.bases.set(from, null);
      this.bases.set(entry.path, entry);
    }
  }

  /** Runs the queued downloads as one batch and records each outcome. */
  async #runDownloads(): Promise<void> {
    const batch = this.#downloads.splice(0);
    const cache = new Map<string, boolean>();
    const safe = batch.filter((a) => {
      if (this.#parentsOk(a.path, cache)) return true;
      this.#note(a.path, "deferred", NOT_A_FOLDER);
      return false;
    });
    const ctx = this.#ctx;
    await downloadMany(
      {
        fs: ctx.fs,
        peer: ctx.peer,
        local: this.#chunks,
        stats: ctx.stats,
        staging: ctx.staging,
      },
      safe.map((a) => ({ ...a, path: this.#at(a.path), wire: a.path })),
      (item, r) => {
        const wire = item.wire ?? item.path;
        if (r instanceof Error) return this.#note(wire, "failed", errorReason(r));
        if (!r.ok) {
          return this.#note(
            wire,
            "deferred",
            r.reason === "blocked" ? "something is in the way" : CHANGED,
          );
        }
        ctx.stats.filesDone++;
        const follows = item.follows;
        if (wire === item.remote.path) {
          this.#note(wire, "received");
          this.bases.set(wire, { ...r.entry, path: wire });
        } else if (follows !== undefined && item.replace !== null) {
          // An edit made elsewhere, now at the place this device moved the file to: the old
          // path's base records it, and the next pass sends the move.
          this.#note(wire, "received");
          this.bases.set(follows, { ...r.entry, path: follows });
        } else {
          this.#note(wire, "conflict"); // the server's version, kept aside under another name
          this.copiesSaved.add(wire);
          if (follows !== undefined) this.bases.set(follows, { ...r.entry, path: follows });
        }
      },
    );
    await this.#settleMoves();
    this.bases.flush();
  }
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
