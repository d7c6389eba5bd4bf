/**
 * One sync pass over a connected folder: pull the server's journal since our position into the
 * remote mirror, scan the folder, reconcile (pure), execute. {@link syncUntilStable} repeats
 * passes until nothing is left to do (a pass may create work for the next one: a conflict copy to
 * upload, a change made meanwhile).
 *
 * @module
 */

import type { Peer } from "../protocol/peer.ts";
import * as call from "../protocol/calls.ts";
import { checkWirePath, parentPaths } from "../core/paths.ts";
import { type Action, reconcile } from "../core/reconcile.ts";
import { debug } from "../util/debug.ts";
import { massDeleteGuard } from "./mass_delete.ts";
import {
  applyAliases,
  type CaseRename,
  foldName,
  localBaseView,
  planLocalNames,
  withoutSkipped,
} from "../core/local_names.ts";
import { tempName } from "../util/atomic.ts";
import { type LocalFs, stillAs } from "./fs/local_fs.ts";
import type { Staging } from "./staging.ts";
import { parentOf } from "./placer.ts";
import type { BaseEntry, LocalEntry, RemoteEntry } from "../core/types.ts";
import type { StateDb } from "./state_db.ts";
import { diskSpelling, type HeldItem, scan, type ScanNotices, scanTrees } from "./scanner.ts";
import { emptyReport, execute, type ExecutionReport } from "./executor.ts";
import { Attention } from "../core/attention.ts";
import { SETTLE_MS } from "../core/stability.ts";
import { applyIgnores, keepIgnoredFolders } from "../core/ignore_view.ts";
import { IgnoreFiles } from "./ignore_files.ts";
import { IgnoreRules } from "../core/ignore_rules.ts";
import { addTally, madeProgress, type Outcome, type Tally, tally } from "../core/outcomes.ts";
import type { TransferStats } from "./transfer.ts";

/** Everything a pass needs. */
export interface EngineContext {
  peer: Peer;
  /** The folder (its filesystem also says which name rules apply). */
  fs: LocalFs;
  /** Its partial files. */
  staging: Staging;
  state: StateDb;
  device: string;
  stats: TransferStats;
  log: (line: string) => void;
  warn: (line: string) => void;
  /** Let deletions of more than half of the synced files through (`--allow-mass-delete`). */
  allowMassDelete?: boolean;
  /** Asks for a full pass about a second from now (the mass-delete guard looks again). */
  recheckSoon?: () => void;
  /** Set by the mass-delete guard: it holds deletions back (see `mass_delete.ts`). */
  holdingMassDelete?: boolean;
  /** The folder watcher, paused while a pass changes many local items (see {@link quietWatch}). */
  watch?: { pause(): void; resume(): void };
  /** What to look at again and what to leave alone (kept across passes; made if absent). */
  attention?: Attention;
  /** When each repeated warning was last said (kept across passes). */
  warned?: Map<string, number>;
  /** The folder's ignore rules, read again at every pass (made if absent). */
  ignore?: IgnoreFiles;
  /** Told each step's outcome as it happens (`-v`: one line per file). */
  onOutcome?: (o: Outcome) => void;
  /**
   * Told the items a pass skips for good (symlinks, special files, names this system cannot
   * hold, unreadable items), and at the start of each full scan (`null`: forget the old list).
   */
  onSkip?: (path: string | null, reason?: string) => void;
}

/** Actions that change the local folder (each makes the OS watcher report several events). */
const LOCAL_OPS: ReadonlySet<Action["op"]> = new Set([
  "moveAside",
  "moveLocal",
  "setMeta",
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
 * Case-only renames on a case-insensitive filesystem go through a temporary name in the same
 * directory. Returns false (nothing more done) if an item changed since the scan.
 */
async function renameCases(fs: LocalFs, renames: CaseRename[]): Promise<boolean> {
  for (const r of renames) {
    if (!stillAs(fs, r.from, r.expect) || !fs.inside(r.from)) return false;
    const dir = parentOf(r.from);
    const tmp = (dir === "" ? "" : dir + "/") + tempName("cloudsync-case");
    await fs.rename(r.from, tmp);
    await fs.rename(tmp, r.to);
    await fs.fsyncDir(dir);
  }
  return true;
}

/** Brings the remote mirror up to the server's current journal position. */
export async function pullChanges(ctx: EngineContext): Promise<number> {
  let since = ctx.state.seq;
  let count = 0;
  for (;;) {
    const tq = performance.now();
    const page = await call.changes(ctx.peer, since);
    const tr = performance.now();
    for (const why of page.rejected) ctx.warn(`Ignoring an entry from the server: ${why}`);
    const entries: RemoteEntry[] = [];
    for (const e of page.entries) {
      const problem = checkWirePath(e.path);
      if (problem) {
        ctx.warn(`Ignoring an entry from the server: ${problem}`);
        continue;
      }
      entries.push(e);
    }
    const tp = performance.now();
    ctx.state.applyChanges(entries, page.seq);
    debug(() =>
      `changes ${entries.length}: request ${(tr - tq).toFixed(0)} parse ${
        (tp - tr).toFixed(0)
      } apply ${(performance.now() - tp).toFixed(0)} ms`
    );
    count += entries.length;
    if (!page.more) return count;
    if (page.seq === since) {
      throw new Error("Cannot read changes: the server's journal did not move on");
    }
    since = page.seq;
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
      const mode = r.mode !== undefined ? { mode: r.mode } : {};
      adopted.push([path, { ...p, ...mode, version: r.version, exec: r.exec, chunks: r.chunks }]);
    }
  }
  if (adopted.length > 0) state.setBase(adopted);
  state.clearPending(pending.keys());
}

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
 * The local paths a scoped pass scans: what the watcher reported (local paths) and what the
 * folder's attention asks to look at again (wire paths: an aliased one lives under its local
 * name, not under its wire name, which on a case-insensitive disk may even be another item's),
 * spelled as on disk (see `diskSpelling`), without scopes inside others.
 */
export async function passScopes(
  fs: LocalFs,
  watched: readonly string[],
  rechecks: readonly string[],
  aliases: ReadonlyMap<string, string>,
): Promise<string[]> {
  const asked = [...watched, ...rechecks.map((p) => applyAliases(p, aliases))];
  return normalizeScopes(await diskSpelling(fs, asked));
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
    const l: LocalEntry = { path, kind: b.kind, size: b.size, mtime: b.mtime, exec: b.exec };
    if (b.mode !== undefined) l.mode = b.mode;
    if (b.ino !== undefined) l.ino = b.ino; // every later check then compares the inode too
    scanned.set(path, l);
  }
}

/** Where `state.db` keeps the ignore rules the last pass applied. */
const RULES_KEY = "ignoreRules";

/** How often the same warning about one item may be repeated. */
const WARN_AGAIN_MS = 60 * 60 * 1000;

/** Says `line` unless it was said within the last hour (`key` identifies it). */
function warnSometimes(ctx: EngineContext, key: string, line: string): void {
  const said = ctx.warned ??= new Map();
  const now = Date.now();
  const last = said.get(key);
  if (last !== undefined && now - last < WARN_AGAIN_MS) return;
  if (said.size > 10_000) said.clear();
  said.set(key, now);
  ctx.warn(line);
}

/**
 * Leaves `held` paths (and everything below them) out of a pass: removed from the base, the
 * local scan and the remote view alike, reconcile plans nothing for them, so a file being
 * written, an unreadable one or one whose step keeps failing is neither sent, nor replaced, nor
 * deleted, on either side, and is never mistaken for deleted. Maps are copied only when needed.
 */
export function withoutHeld<T>(
  map: ReadonlyMap<string, T>,
  held: ReadonlySet<string>,
): ReadonlyMap<string, T> {
  if (held.size === 0) return map;
  if (held.has("")) return new Map();
  let out: Map<string, T> | null = null;
  for (const path of map.keys()) {
    let hit = held.has(path);
    if (!hit && path.includes("/")) hit = parentPaths(path).some((p) => held.has(p));
    if (!hit) continue;
    out ??= new Map(map);
    out.delete(path);
  }
  return out ?? map;
}

/**
 * One pass. `scopes` limits the local scan to those subtrees (null: the whole folder; []: no
 * scan, only remote changes); everything outside is taken as unchanged since the base, and every
 * step still re-checks the disk before it acts, so a wrong guess only defers work. Whatever the
 * scopes, the paths the folder's {@link Attention} asks for are scanned too (an earlier step did
 * not settle there), and the paths it holds are left alone.
 */
export async function syncPass(
  ctx: EngineContext,
  scopes: readonly string[] | null = null,
): Promise<ExecutionReport | null> {
  let t = performance.now();
  const attention = ctx.attention ??= new Attention();
  const now = ctx.fs.now();
  const rechecks = attention.takeScopes(now);
  const rules = (ctx.ignore ??= new IgnoreFiles(ctx.fs, ctx.warn)).load();
  const applied = ctx.state.getMeta(RULES_KEY);
  const rulesChanged = applied !== rules.key;
  // New rules may let through what no scan has looked at yet: look at everything.
  if (rulesChanged) scopes = null;
  const before = rulesChanged && applied !== null ? IgnoreRules.fromKey(applied) : null;
  const ignores = (path: string, dir: boolean) => rules.ignores(path, dir);
  await pullChanges(ctx);
  t = phase("pull", t);
  const allRemote = ctx.state.loadRemote();
  adoptPending(ctx.state, allRemote);
  const wireBase = ctx.state.loadBase();
  const aliases = ctx.state.loadAliases();
  const platform = ctx.fs.platform;
  if (scopes !== null) scopes = await passScopes(ctx.fs, scopes, rechecks, aliases);
  const heldHere = new Map<string, HeldItem>();
  const blockers = new Map<string, string>();
  const ignoredHere = new Set<string>();
  if (scopes === null) ctx.onSkip?.(null);
  const notices: ScanNotices = {
    ignores,
    ignored: ignoredHere,
    skipped: (path, why) => {
      ctx.onSkip?.(path, why);
      warnSometimes(ctx, `skip:${path}`, `Skipping ${path}: ${why}`);
    },
    held: heldHere,
    blockers,
    recentlyUnstable: (path) => attention.recentlyUnstable(path, now),
    now,
  };
  // Identity on Linux with no aliases; elsewhere the base is looked up by local names.
  const naming0 = platform.caseInsensitive || platform.windowsNames || aliases.size > 0;
  const localBase = naming0 ? localBaseView(wireBase, aliases) : wireBase;
  let scanned: Map<string, LocalEntry>;
  if (scopes === null) scanned = await scan(ctx.fs, localBase, notices);
  else {
    scanned = scopes.length > 0 ? await scanTrees(ctx.fs, localBase, scopes, notices) : new Map();
    addUnscanned(scanned, localBase, scopes);
  }
  t = phase(`scan ${scopes === null ? "all" : JSON.stringify(scopes)}`, t);
  // A remote file arriving where a symlink or a special file sits gets another local name.
  const naming = naming0 || blockers.size > 0;
  let base: ReadonlyMap<string, BaseEntry> = wireBase;
  let local: ReadonlyMap<string, LocalEntry> = scanned;
  let remote: ReadonlyMap<string, RemoteEntry> = allRemote;
  let toLocal = (wire: string) => wire;
  let toWire = (localPath: string) => localPath;
  let localNameTaken: ((wire: string) => boolean) | null = null;
  if (naming) {
    const plan = planLocalNames({
      remote: allRemote,
      base: wireBase,
      local: scanned,
      aliases,
      platform,
      blocked: blockers,
    });
    for (const w of plan.warnings) warnSometimes(ctx, `name:${w}`, w);
    for (const [path, why] of plan.skipped) ctx.onSkip?.(path, why);
    ctx.state.saveAliases(plan.aliases, [...plan.skipped.keys()].filter((p) => wireBase.has(p)));
    if (plan.caseRenames.length > 0) {
      const done = await renameCases(ctx.fs, plan.caseRenames);
      if (!done) {
        // The folder's attention works in wire paths (held and rechecked as such).
        const wires = plan.caseRenames.map((r) => plan.toWire(r.from));
        const report = emptyReport();
        for (const path of wires) {
          report.outcomes.push({ path, kind: "deferred", reason: "it changed meanwhile" });
        }
        report.touched = wires;
        afterPass(ctx, attention, report, now);
        return report;
      }
    }
    base = plan.base;
    local = plan.local;
    remote = withoutSkipped(allRemote, plan.skipped);
    toLocal = plan.toLocal;
    toWire = plan.toWire;
    localNameTaken = plan.localNameTaken;
  }
  // Left out of this pass: what the scan found being written or unreadable, and what is held.
  const held = new Set<string>();
  for (const [path, h] of heldHere) {
    const wire = toWire(path);
    held.add(wire);
    if (h.kind === "unstable") {
      attention.unstable(wire, h.retryAt ?? now + SETTLE_MS, h.reason, now);
      debug(() => `holding ${wire}: ${h.reason}`);
    } else if (h.kind === "settling") {
      attention.settling(wire, h.retryAt ?? now + SETTLE_MS, h.reason, now);
    } else {
      ctx.onSkip?.(wire, h.reason);
      warnSometimes(
        ctx,
        `held:${wire}`,
        `Skipping ${
          wire === "" ? "the folder" : wire
        } for now: ${h.reason}. Nothing is deleted because of it; it is tried again at every full pass.`,
      );
    }
  }
  for (const path of attention.heldAt(now).keys()) held.add(path);
  const view = applyIgnores({
    base: withoutHeld(base, held),
    local: withoutHeld(local, held),
    remote: withoutHeld(remote, held),
    ignores,
    ignoredHere: [...ignoredHere].map(toWire),
    ...(before ? { ignoredBefore: (p: string, dir: boolean) => before.ignores(p, dir) } : {}),
  });
  // What stopped being ignored and is missing on one side is merged as new (never deleted).
  if (view.forget.length > 0) ctx.state.setBase(view.forget.map((p) => [p, null]));
  if (rulesChanged) ctx.state.setMeta(RULES_KEY, rules.key);
  ({ base, local, remote } = view);
  // The mass-delete guard, and its one-time ways out (bring-back, confirm-delete). It sees the
  // view without ignored paths: a file that became ignored did not vanish.
  ({ base, local } = massDeleteGuard(ctx, base, local, scopes === null));
  const actions = keepIgnoredFolders(
    reconcile({
      base,
      local,
      remote,
      device: ctx.device,
      now: new Date(now),
      ...(platform.caseInsensitive ? { nameKey: foldName } : {}),
      ...(localNameTaken ? { localNameTaken } : {}),
    }),
    view,
  );
  t = phase("reconcile", t);
  debug(() =>
    `actions: ${
      actions.length <= 60
        ? actions.map((a) => `${a.op} ${a.path}`).join(", ")
        : `${actions.length} (${[...new Set(actions.map((a) => a.op))].join(", ")})`
    }`
  );
  // Paths that failed or were deferred before and need nothing now are settled.
  const planned = new Set(actions.map((a) => a.path));
  for (const path of attention.troubled().keys()) {
    if (!planned.has(path) && !held.has(path)) attention.settled(path);
  }
  if (actions.length === 0) {
    // Everything is in sync: partial downloads left by cut or abandoned transfers are useless.
    if (scopes === null && held.size === 0) {
      const n = await ctx.staging.prune().catch(() => 0);
      if (n > 0) debug(() => `deleted ${n} unused partial download(s)`);
    }
    return null;
  }
  const quiet = ctx.watch !== undefined && quietWatch(actions, base.size);
  if (quiet) ctx.watch?.pause();
  try {
    const report = await execute(
      {
        peer: ctx.peer,
        fs: ctx.fs,
        staging: ctx.staging,
        state: ctx.state,
        base,
        stats: ctx.stats,
        toLocal,
        ignores,
        ...(ctx.onOutcome ? { onOutcome: ctx.onOutcome } : {}),
      },
      actions,
    );
    afterPass(ctx, attention, report, ctx.fs.now());
    return report;
  } finally {
    if (quiet) ctx.watch?.resume();
    phase(`execute ${actions.length} actions${quiet ? " (watcher paused)" : ""}`, t);
  }
}

/**
 * Records what a pass left unsettled: a refused upload is merged again at once (its path is
 * rescanned before anything touches it), a deferred step is looked at again soon, a failed one
 * with back-off; everything that settled is forgotten.
 */
function afterPass(ctx: EngineContext, attention: Attention, r: ExecutionReport, now: number) {
  for (const path of r.settled) attention.settled(path);
  const later = new Set<string>();
  for (const o of r.outcomes) {
    if (o.kind === "failed") {
      const h = attention.failed(o.path, o.reason ?? "unknown error", now);
      later.add(o.path);
      debug(() => `failed ${o.path} (${o.reason}); retry in ${h.until - now} ms`);
    } else if (o.kind === "deferred") {
      const h = attention.deferred(o.path, o.reason ?? "it changed meanwhile", now);
      later.add(o.path);
      debug(() => `deferred ${o.path} (${o.reason}); again in ${h.until - now} ms`);
    }
  }
  attention.recheck(r.touched.filter((p) => !later.has(p)));
  void ctx;
}

/**
 * Runs passes until one finds nothing more to do (at most `maxPasses`). Later passes scan only the
 * paths the previous one left unsettled (a conflict copy to upload, an upload the server refused
 * because another device was first); they still pull and apply every remote change. Steps that
 * were deferred or failed are retried later, when their hold runs out (see {@link Attention}).
 */
export async function syncUntilStable(
  ctx: EngineContext,
  scopes: readonly string[] | null = null,
  maxPasses = 8,
): Promise<Tally | null> {
  let total: Tally | null = null;
  let current = scopes === null ? null : normalizeScopes(scopes);
  for (let i = 0; i < maxPasses; i++) {
    const r = await syncPass(ctx, current);
    if (!r) break;
    current = []; // the attention's rechecks are added by the pass itself
    const t = tally(r.outcomes);
    total = total ? addTally(total, t) : t;
    // Keep going while something moved, or while the server refused a step because another
    // device was first (the next pass merges it); else wait for a change, a push or a hold.
    if (!madeProgress(t) && t.refused === 0) break;
  }
  return total;
}
