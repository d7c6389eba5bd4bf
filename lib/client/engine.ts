/**
 * One sync pass over a connected folder: pull the server's journal since our position into the
 * remote mirror, scan the folder, reconcile (pure), execute. {@link syncUntilStable} repeats
 * passes until nothing is left to do (a pass may create work for the next one: a conflict copy to
 * upload, a change made meanwhile).
 *
 * @module
 */

import type { Peer } from "../protocol/peer.ts";
import { parseRemoteEntry } from "../protocol/messages.ts";
import { checkWirePath, parentPaths } from "../core/paths.ts";
import { type Action, reconcile } from "../core/reconcile.ts";
import { debug } from "../util/debug.ts";
import { massDeleteCheck, withVanishedKept } from "../core/guards.ts";
import {
  type CaseRename,
  localBaseView,
  planLocalNames,
  type PlatformTraits,
  withoutSkipped,
} from "../core/local_names.ts";
import { dirname, join } from "node:path";
import { fsyncDir, tempPath } from "../util/atomic.ts";
import { prunePartials, stillAsScanned } from "./transfer.ts";
import type { BaseEntry, LocalEntry, RemoteEntry } from "../core/types.ts";
import type { StateDb } from "./state_db.ts";
import { scan, scanTrees } from "./scanner.ts";
import { emptyReport, execute, type ExecutionReport } from "./executor.ts";
import type { TransferStats } from "./transfer.ts";

/** Everything a pass needs. */
export interface EngineContext {
  peer: Peer;
  root: string;
  tmpDir: string;
  state: StateDb;
  device: string;
  stats: TransferStats;
  log: (line: string) => void;
  warn: (line: string) => void;
  /** Let deletions of more than half of the synced files through (`--allow-mass-delete`). */
  allowMassDelete?: boolean;
  /** Set while the mass-delete guard holds deletions back (so the warning is said once). */
  holdingMassDelete?: boolean;
  /** What names the folder's filesystem can hold (default: from the OS, see {@link hostPlatform}). */
  platform?: PlatformTraits;
  /** The folder watcher, paused while a pass changes many local items (see {@link quietWatch}). */
  watch?: { pause(): void; resume(): void };
}

/** Actions that change the local folder (each makes the OS watcher report several events). */
const LOCAL_OPS: ReadonlySet<Action["op"]> = new Set([
  "moveAside",
  "mkdirLocal",
  "download",
  "deleteLocal",
]);

/**
 * True when a pass should pause the folder watcher while it runs `actions`: when they change at
 * least 256 local items and at least 1 in 20 of the `synced` ones. Each write costs the OS
 * watcher several events at ~40 µs of CPU each; the full rescan that follows the pause costs
 * ~10 µs per synced item (stat only).
 */
export function quietWatch(actions: readonly Action[], synced: number): boolean {
  let n = 0;
  for (const a of actions) if (LOCAL_OPS.has(a.op)) n++;
  return n >= 256 && n * 20 >= synced;
}

/**
 * Name rules of this OS: Windows is case-insensitive with reserved names, macOS case-insensitive,
 * Linux neither. `CLOUDSYNC_TEST_PLATFORM=windows|darwin|linux` overrides it (for tests on Linux).
 */
export function hostPlatform(): PlatformTraits {
  const os = Deno.env.get("CLOUDSYNC_TEST_PLATFORM") ?? Deno.build.os;
  return { caseInsensitive: os === "windows" || os === "darwin", windowsNames: os === "windows" };
}

/**
 * Case-only renames on a case-insensitive filesystem go through a temporary name in the same
 * directory. Returns false (nothing more done) if an item changed since the scan.
 */
async function renameCases(root: string, renames: CaseRename[]): Promise<boolean> {
  for (const r of renames) {
    const from = join(root, r.from);
    if (!(await stillAsScanned(from, r.expect))) return false;
    const tmp = tempPath(dirname(from), "cloudsync-case");
    await Deno.rename(from, tmp);
    await Deno.rename(tmp, join(root, r.to));
    await fsyncDir(dirname(from));
  }
  return true;
}

/** Entries asked for per `changes` request (the server's maximum). */
const CHANGES_PAGE = 2000;

/** Brings the remote mirror up to the server's current journal position. */
export async function pullChanges(ctx: EngineContext): Promise<number> {
  let since = ctx.state.seq;
  let count = 0;
  for (;;) {
    const tq = performance.now();
    const r = await ctx.peer.request({ t: "changes", since, limit: CHANGES_PAGE });
    const tr = performance.now();
    const raw = r.header.entries;
    const seq = r.header.seq;
    // Never more than asked, and a reply that says "more" must move on: a hostile server can
    // neither flood the client in one reply nor keep it asking forever.
    if (
      !Array.isArray(raw) || raw.length > CHANGES_PAGE || typeof seq !== "number" ||
      !Number.isSafeInteger(seq) || seq < 0 || (r.header.more === true && seq <= since)
    ) {
      throw new Error("Cannot read changes: the server sent a malformed reply");
    }
    const entries: RemoteEntry[] = [];
    for (const v of raw) {
      let e: RemoteEntry;
      try {
        e = parseRemoteEntry(v);
      } catch (err) {
        // An impossible entry (chunks over the maximum size, sizes that do not add up): skipped
        // like a bad path, so that one hostile entry cannot stop the sync of everything else.
        ctx.warn(`Ignoring an entry from the server: ${(err as Error).message}`);
        continue;
      }
      const problem = checkWirePath(e.path);
      if (problem) {
        ctx.warn(`Ignoring an entry from the server: ${problem}`);
        continue;
      }
      entries.push(e);
    }
    const tp = performance.now();
    ctx.state.applyChanges(entries, seq);
    debug(() =>
      `changes ${entries.length}: request ${(tr - tq).toFixed(0)} parse ${
        (tp - tr).toFixed(0)
      } apply ${(performance.now() - tp).toFixed(0)} ms`
    );
    count += entries.length;
    since = seq;
    if (r.header.more !== true) return count;
  }
}

/**
 * Uploads cut short by a crash after the server accepted them: a server version with exactly the
 * content we sent is ours, so it becomes the base (with the size and mtime we uploaded). Without
 * this, an edit made after that upload would look like a conflict with our own earlier version.
 */
export function adoptPending(state: StateDb, remote: ReadonlyMap<string, RemoteEntry>): void {
  const pending = state.loadPending();
  if (pending.size === 0) return;
  const base = state.loadBase();
  const adopted: [string, BaseEntry][] = [];
  for (const [path, p] of pending) {
    const r = remote.get(path);
    const b = base.get(path);
    if (r && r.kind === "file" && r.hash === p.hash && (!b || b.version < r.version)) {
      adopted.push([path, { ...p, version: r.version, exec: r.exec, chunks: r.chunks }]);
    }
  }
  if (adopted.length > 0) state.setBase(adopted);
  state.clearPending(pending.keys());
}

const warnedSkips = new Set<string>();
const saidErrors = new Set<string>();

/** One pull + scan + reconcile + execute. Returns the report, or null if nothing was to do. */
function phase(name: string, t0: number): number {
  const now = performance.now();
  debug(() => `${name}: ${(now - t0).toFixed(0)} ms`);
  return now;
}

/** True when `path` is inside one of `scopes` (the scope itself, below it, or an ancestor of it). */
export function scopeTest(scopes: readonly string[]): (path: string) => boolean {
  const set = new Set(scopes);
  const ancestors = new Set<string>();
  for (const s of scopes) for (const p of parentPaths(s)) ancestors.add(p);
  return (path) => {
    if (set.has(path) || ancestors.has(path)) return true;
    for (const p of parentPaths(path)) if (set.has(p)) return true;
    return false;
  };
}

/** Drops scopes inside other scopes; "" (the root) swallows everything. */
export function normalizeScopes(scopes: Iterable<string>): string[] {
  const sorted = [...new Set(scopes)].sort();
  if (sorted.includes("")) return [""];
  const out: string[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && s.startsWith(last + "/")) continue;
    out.push(s);
  }
  return out;
}

/**
 * Completes a scoped scan: every base item outside `scopes` is taken as unchanged (added to
 * `scanned` as the base has it), except below a scope or scope ancestor the scan found gone or no
 * longer a folder: nothing there can still exist. (Assuming those kept made reconcile recreate
 * the folder holding them, undoing a tree deleted while a scoped pass ran.)
 */
export function addUnscanned(
  scanned: Map<string, LocalEntry>,
  base: ReadonlyMap<string, BaseEntry>,
  scopes: readonly string[],
): void {
  const inScope = scopeTest(scopes);
  const gone = new Set<string>();
  for (const s of scopes) {
    for (const a of [...parentPaths(s), s]) {
      if (a !== "" && scanned.get(a)?.kind !== "dir") gone.add(a);
    }
  }
  for (const [path, b] of base) {
    if (inScope(path)) continue;
    if (gone.size > 0 && parentPaths(path).some((a) => gone.has(a))) continue;
    scanned.set(path, { path, kind: b.kind, size: b.size, mtime: b.mtime, exec: b.exec });
  }
}

/**
 * One pass. `scopes` limits the local scan to those subtrees (null: the whole folder; []: no
 * scan, only remote changes); everything outside is taken as unchanged since the base, and every
 * step still re-checks the disk before it acts, so a wrong guess only defers work.
 */
export async function syncPass(
  ctx: EngineContext,
  scopes: readonly string[] | null = null,
): Promise<ExecutionReport | null> {
  let t = performance.now();
  await pullChanges(ctx);
  t = phase("pull", t);
  const allRemote = ctx.state.loadRemote();
  adoptPending(ctx.state, allRemote);
  const wireBase: Map<string, BaseEntry> = ctx.state.loadBase();
  const aliases = ctx.state.loadAliases();
  const platform = ctx.platform ?? hostPlatform();
  // Identity on Linux with no aliases; elsewhere the base is looked up by local names.
  const naming = platform.caseInsensitive || platform.windowsNames || aliases.size > 0;
  const localBase = naming ? localBaseView(wireBase, aliases) : wireBase;
  const notices = {
    skipped: (path: string, why: string) => {
      if (warnedSkips.has(path)) return;
      warnedSkips.add(path);
      ctx.warn(`Skipping ${path}: ${why}`);
    },
  };
  let scanned: Map<string, LocalEntry>;
  if (scopes === null) scanned = await scan(ctx.root, localBase, notices);
  else {
    scanned = scopes.length > 0 ? await scanTrees(ctx.root, localBase, scopes, notices) : new Map();
    addUnscanned(scanned, localBase, scopes);
  }
  t = phase(`scan ${scopes === null ? "all" : JSON.stringify(scopes)}`, t);
  let base = wireBase;
  let local = scanned;
  let remote: ReadonlyMap<string, RemoteEntry> = allRemote;
  let toLocal = (wire: string) => wire;
  if (naming) {
    const plan = planLocalNames({
      remote: allRemote,
      base: wireBase,
      local: scanned,
      aliases,
      platform,
    });
    for (const w of plan.warnings) {
      if (!warnedSkips.has(w)) {
        warnedSkips.add(w);
        ctx.warn(w);
      }
    }
    ctx.state.saveAliases(plan.aliases, [...plan.skipped.keys()].filter((p) => wireBase.has(p)));
    if (plan.caseRenames.length > 0) {
      const done = await renameCases(ctx.root, plan.caseRenames);
      if (!done) {
        return {
          ...emptyReport(),
          deferred: 1,
          touched: plan.caseRenames.map((r) => r.to),
        };
      }
    }
    base = plan.base;
    local = plan.local;
    remote = withoutSkipped(allRemote, plan.skipped);
    toLocal = plan.toLocal;
  }
  const guard = massDeleteCheck(base, local);
  if (guard.tripped && !ctx.allowMassDelete) {
    if (!ctx.holdingMassDelete) {
      ctx.warn(
        `Cannot propagate deletions: ${guard.vanishedFiles} of ${guard.total} synced files vanished at once (an unmounted drive or emptied folder?). Nothing is deleted on the server or other devices. If you really deleted them, restart the client with --allow-mass-delete.`,
      );
    }
    ctx.holdingMassDelete = true;
    local = withVanishedKept(base, local, guard.vanished);
  } else ctx.holdingMassDelete = false;
  const actions = reconcile({ base, local, remote, device: ctx.device, now: new Date() });
  t = phase("reconcile", t);
  debug(() =>
    `actions: ${
      actions.length <= 20
        ? actions.map((a) => `${a.op} ${a.path}`).join(", ")
        : `${actions.length} (${[...new Set(actions.map((a) => a.op))].join(", ")})`
    }`
  );
  if (actions.length === 0) {
    // Everything is in sync: partial downloads left by cut or abandoned transfers are useless.
    if (scopes === null) {
      const n = await prunePartials(ctx.tmpDir).catch(() => 0);
      if (n > 0) debug(() => `deleted ${n} unused partial download(s)`);
    }
    return null;
  }
  const quiet = ctx.watch !== undefined && quietWatch(actions, base.size);
  if (quiet) ctx.watch?.pause();
  try {
    return await execute(
      {
        peer: ctx.peer,
        root: ctx.root,
        tmpDir: ctx.tmpDir,
        state: ctx.state,
        base,
        stats: ctx.stats,
        toLocal,
      },
      actions,
    );
  } finally {
    if (quiet) ctx.watch?.resume();
    phase(`execute ${actions.length} actions${quiet ? " (watcher paused)" : ""}`, t);
  }
}

/** Sums two reports. */
function add(a: ExecutionReport, b: ExecutionReport): ExecutionReport {
  return {
    uploaded: a.uploaded + b.uploaded,
    downloaded: a.downloaded + b.downloaded,
    movedLocal: a.movedLocal + b.movedLocal,
    movedRemote: a.movedRemote + b.movedRemote,
    deletedLocal: a.deletedLocal + b.deletedLocal,
    deletedRemote: a.deletedRemote + b.deletedRemote,
    conflicts: a.conflicts + b.conflicts,
    deferred: a.deferred + b.deferred,
    errors: [...a.errors, ...b.errors],
    touched: [...a.touched, ...b.touched],
  };
}

/**
 * Runs passes until one finds nothing to do (at most `maxPasses`). Later passes scan only the
 * paths the previous one left unsettled (a conflict copy to upload, a deferred step); they still
 * pull and apply every remote change.
 */
export async function syncUntilStable(
  ctx: EngineContext,
  scopes: readonly string[] | null = null,
  maxPasses = 8,
): Promise<ExecutionReport | null> {
  let total: ExecutionReport | null = null;
  let current = scopes === null ? null : normalizeScopes(scopes);
  for (let i = 0; i < maxPasses; i++) {
    const r = await syncPass(ctx, current);
    if (!r) break;
    // The next pass looks again only at what this one left unsettled; the watcher (or, while it
    // was paused, the full rescan that follows) reports whatever else changed meanwhile.
    current = normalizeScopes(r.touched);
    total = total ? add(total, r) : r;
    // Each distinct error is said once, not again on every retry.
    for (const e of r.errors) {
      if (saidErrors.has(e)) continue;
      if (saidErrors.size > 1000) saidErrors.clear();
      saidErrors.add(e);
      ctx.warn(`Cannot sync ${e}`);
    }
    // No progress (only errors or deferred steps): wait for the next change or the next period.
    const done = r.uploaded + r.downloaded + r.movedLocal + r.movedRemote + r.deletedLocal +
      r.deletedRemote;
    if (done + r.conflicts === 0) break;
  }
  return total;
}
