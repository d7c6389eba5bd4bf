/**
 * Selective sync: `cloud-client exclude FOLDER PATH` and `cloud-client include FOLDER PATH`. A
 * path excluded on this device is a rule in `FOLDER/.cloudsync/ignore` (never synced): the
 * server and the other devices keep it, this device neither sends nor receives it.
 *
 * `exclude` frees the space only where that loses nothing, in this order (each step durable
 * before the next, so a crash anywhere leaves nothing lost and a run again finishes the job):
 *
 * 0. the server is asked what it holds now at and below the path (`listAt`): without an answer,
 *    nothing changes;
 * 1. the rule is written (from now on a client leaves the path alone);
 * 2. the path is scanned afresh, every file read: a file is removable only when its content is
 *    the one the server holds there now and this device synced (the version the merge base
 *    records, or the server's as of the last sync). What the server does not have is kept and
 *    reported: a file changed here or never synced, one changed or deleted on the server since
 *    the last sync, an empty folder the server does not have, items being written or unreadable,
 *    symlinks and special files, and ignored items (never synced, so never removed);
 * 3. the merge base of what is to be removed is forgotten (so that `include` later, or the rule
 *    removed by hand, merges it as new: it comes back from the server, and its absence here is
 *    never sent as a deletion);
 * 4. each file is removed if it is still as scanned, then each folder left empty.
 *
 * `exclude` needs the folder to itself (it takes the client's lock): with a client running it
 * says so and changes nothing. `include` works beside a running client too: it only removes the
 * rule (atomically), and the running client's watcher sees the change and downloads the path.
 *
 * @module
 */

import { resolve } from "node:path";
import { parentPaths } from "../core/paths.ts";
import {
  describeRule,
  exactPattern,
  IgnoreRules,
  type RuleHit,
  type RuleSource,
} from "../core/ignore_rules.ts";
import { applyAliases, localBaseView } from "../core/local_names.ts";
import type { LocalEntry } from "../core/types.ts";
import { tempName } from "../util/atomic.ts";
import { formatBytes } from "../util/cli.ts";
import { type LocalFs, stillAs } from "./fs/local_fs.ts";
import type { Peer } from "../protocol/peer.ts";
import type { PointInTime } from "../core/restore_plan.ts";
import { fetchPointInTime } from "./restore.ts";
import { DenoFs } from "./fs/deno_fs.ts";
import { type HeldItem, scanTrees } from "./scanner.ts";
import { remoteBytesUnder, StateDb } from "./state_db.ts";
import { CLOUDIGNORE, DEVICE_RULES, readRuleFile } from "./ignore_files.ts";
import { STATE_DIR, stateDir } from "./config.ts";
import { FolderInUseError, folderLocked, lockFolder } from "./folder_lock.ts";
import {
  CommandError,
  enrolledConfig,
  type FolderSession,
  openFolderSession,
  wirePathOf,
} from "./folder_session.ts";

/** An item `exclude` left in place, and why. */
export interface KeptItem {
  path: string;
  why: string;
}

/** What `exclude` did. */
export interface ExcludeReport {
  path: string;
  /** Whether anything of it was here. */
  wasHere: boolean;
  removedFiles: number;
  removedFolders: number;
  /** Bytes of the files removed. */
  freed: number;
  kept: KeptItem[];
}

const enc = new TextEncoder();

/** `p` with each `\`-escaped character unescaped. */
function unescape(p: string): string {
  return p.replace(/\\(.)/g, "$1");
}

/**
 * Whether a rule line excludes exactly `wire` (file or folder): what `exclude` writes, or the
 * same written by hand (`/Archive`, `Archive/`, ...), with no wildcard.
 */
export function excludesExactly(line: string, wire: string): boolean {
  const l = line.replace(/\r$/, "");
  if (l === exactPattern(wire) || l === exactPattern(wire) + "/") return true;
  if (l.startsWith("!") || l.startsWith("#") || /(^|[^\\])[*?[]/.test(l)) return false;
  return unescape(l.trim().replace(/^\//, "").replace(/\/$/, "")) === wire;
}

/** `text` without the lines that exclude exactly `wire`, and how many there were. */
function withoutExclusion(text: string, wire: string): { text: string; removed: number } {
  const lines = text.split("\n");
  const kept = lines.filter((l) => !excludesExactly(l, wire));
  return { text: kept.join("\n"), removed: lines.length - kept.length };
}

/** Writes `.cloudsync/ignore` atomically (temporary file, fsync, rename, folder fsync). */
async function writeDeviceRules(fs: LocalFs, text: string): Promise<void> {
  const tmp = `${STATE_DIR}/${tempName("ignore")}`;
  const f = await fs.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const data = enc.encode(text);
    for (let off = 0; off < data.length;) off += await f.write(data.subarray(off));
    await f.sync();
  } finally {
    f.close();
  }
  try {
    await fs.rename(tmp, DEVICE_RULES);
  } catch (e) {
    await fs.remove(tmp).catch(() => {});
    throw e;
  }
  await fs.fsyncDir(STATE_DIR);
}

/** The rules of the folder with `deviceText` in place of `.cloudsync/ignore`. */
function rulesWith(fs: LocalFs, deviceText: string): IgnoreRules {
  const sources: RuleSource[] = [
    { name: CLOUDIGNORE, text: readRuleFile(fs, CLOUDIGNORE) },
    { name: DEVICE_RULES, text: deviceText },
  ];
  return new IgnoreRules(sources);
}

/** The rule that ignores `wire` as a file or a folder, or null. */
function ruleFor(rules: IgnoreRules, wire: string): RuleHit | null {
  return rules.why(wire, true) ?? rules.why(wire, false);
}

/** Whether `map` has `dir` or anything below it. */
function hasAtOrBelow(map: ReadonlyMap<string, unknown>, dir: string): boolean {
  if (map.has(dir)) return true;
  const prefix = dir + "/";
  for (const p of map.keys()) if (p.startsWith(prefix)) return true;
  return false;
}

/** What the server holds now at a path (its current entry, as `listAt` gives it). */
export type ServerNow = Pick<PointInTime["current"], "kind" | "deleted" | "hash" | "size">;

/**
 * The server's current entries at and below wire path `wire` (live ones and deletions), asked
 * now over `peer`: what `exclude` checks every removal against.
 */
export async function serverNow(peer: Peer, wire: string): Promise<Map<string, ServerNow>> {
  const out = new Map<string, ServerNow>();
  // The state at the end of time: every path's current entry (its `current` fields say it too).
  for await (const rows of fetchPointInTime(peer, wire, Number.MAX_SAFE_INTEGER, "exclude")) {
    for (const r of rows) {
      const { kind, deleted, hash, size } = r.current;
      out.set(r.path, { kind, deleted, hash, size });
    }
  }
  return out;
}

/**
 * Excludes wire path `wire` on this device (see the module doc); `peer`: a signed-in connection
 * to the folder's server, asked what it holds before anything is removed. The caller holds the
 * folder (no client runs on it). Throws `Cannot exclude ...` when the path is nowhere.
 */
export async function excludePath(
  fs: LocalFs,
  state: StateDb,
  peer: Peer,
  wire: string,
): Promise<ExcludeReport> {
  const deviceText = readRuleFile(fs, DEVICE_RULES);
  // What the folder's other rules ignore is never synced: kept, and not even looked into.
  const others = withoutExclusion(deviceText, wire);
  const rules = rulesWith(fs, others.text);
  const aliases = state.loadAliases();
  const here = applyAliases(wire, aliases);
  const st = fs.lstat(here);
  if (!st && !hasAtOrBelow(state.loadRemote(), wire) && !hasAtOrBelow(state.loadBase(), wire)) {
    throw new Error(
      `Cannot exclude ${wire}: there is no such file or folder in ${fs.where}, nor on the server as of the last sync; check the path (it is relative to the folder)`,
    );
  }
  // What the server holds, asked now: nothing is removed that it does not hold as it is here.
  const server = st ? await serverNow(peer, wire) : new Map<string, ServerNow>();
  // 1. The rule.
  if (others.removed === 0) {
    const sepLine = deviceText === "" || deviceText.endsWith("\n") ? "" : "\n";
    await writeDeviceRules(fs, `${deviceText}${sepLine}${exactPattern(wire)}\n`);
  }
  const report: ExcludeReport = {
    path: wire,
    wasHere: st !== null,
    removedFiles: 0,
    removedFolders: 0,
    freed: 0,
    kept: [],
  };
  if (!st) return report;
  // 2. A fresh scan: no base given, so every file is read and hashed.
  const held = new Map<string, HeldItem>();
  const ignored = new Set<string>();
  const skipped: KeptItem[] = [];
  const scanned = await scanTrees(fs, new Map(), [here], {
    held,
    ignored,
    ignores: (p, dir) => rules.ignores(p, dir),
    skipped: (path, why) => skipped.push({ path, why }),
    now: fs.now(),
  });
  const inside = (p: string) => p === here || p.startsWith(here + "/");
  const base = localBaseView(state.loadBase(), aliases);
  const remote = localBaseView(state.loadRemote(), aliases); // the same fields are read
  const kept = report.kept;
  const files: { entry: LocalEntry; wire: string }[] = [];
  const folders: { path: string; wire: string | null }[] = [];
  for (const [p, e] of scanned) {
    if (!inside(p)) continue;
    // Synced: the version the merge base records, or the server's as of the last sync...
    const synced = [base.get(p), remote.get(p)].find((x) =>
      x?.kind === e.kind && (e.kind === "dir" || x.hash === e.hash)
    );
    // ... and the server holds it so now.
    const now = synced ? server.get(synced.path) : undefined;
    const holds = now !== undefined && !now.deleted && now.kind === e.kind &&
      (e.kind === "dir" || (now.hash === e.hash && now.size === e.size));
    if (e.kind === "dir") folders.push({ path: p, wire: holds ? synced!.path : null });
    else if (holds) files.push({ entry: e, wire: synced!.path });
    else {
      kept.push({
        path: p,
        why: synced
          ? "the server has another version of it now (start the client to sync, then exclude again)"
          : base.has(p)
          ? "changed here since the last sync"
          : "never synced",
      });
    }
  }
  for (const [p, h] of held) if (inside(p)) kept.push({ path: p, why: h.reason });
  for (const s of skipped) if (inside(s.path)) kept.push(s);
  for (const p of ignored) {
    if (!inside(p)) continue;
    const hit = ruleFor(rules, p);
    kept.push({ path: p, why: `ignored${hit ? ` by ${describeRule(hit)}` : ""}, so never synced` });
  }
  const blocked = new Set<string>();
  const block = (p: string) => {
    for (const a of [...parentPaths(p), p]) blocked.add(a);
  };
  for (const k of kept) block(k.path);
  // A folder the server does not hold stays (what is in it, if anything, is listed already).
  for (const f of folders) {
    if (f.wire !== null) continue;
    if (!blocked.has(f.path)) {
      const synced = base.has(f.path) || remote.has(f.path);
      kept.push({
        path: f.path,
        why: synced ? "a folder the server no longer has" : "a folder never synced",
      });
    }
    block(f.path);
  }
  const removable = folders.filter((f) => f.wire !== null && !blocked.has(f.path));
  // 3. Forget the base of what goes (see the module doc for why first).
  state.setBase([
    ...files.map((f): [string, null] => [f.wire, null]),
    ...removable.map((f): [string, null] => [f.wire!, null]),
  ]);
  // 4. Remove: files still as scanned, then folders deepest first, only when empty.
  const touched = new Set<string>();
  for (const { entry } of files) {
    if (!stillAs(fs, entry.path, entry) || !fs.inside(entry.path)) {
      kept.push({ path: entry.path, why: "it changed while this command ran" });
      continue;
    }
    fs.removeSync(entry.path);
    report.removedFiles++;
    report.freed += entry.size;
    touched.add(parentOf(entry.path));
  }
  const deepestFirst = removable.map((f) => f.path).sort((a, b) => b.length - a.length);
  for (const p of deepestFirst) {
    try {
      fs.removeSync(p); // never recursive
      report.removedFolders++;
      touched.delete(p);
      touched.add(parentOf(p));
    } catch { /* not empty: something is kept inside */ }
  }
  for (const d of touched) await fs.fsyncDir(d).catch(() => {});
  kept.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return report;
}

function parentOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i === -1 ? "" : p.slice(0, i);
}

/** What `include` did. */
export interface IncludeReport {
  path: string;
  /** Rules removed from `.cloudsync/ignore`. */
  removed: number;
  /** The rule that still ignores the path, if any. */
  still: RuleHit | null;
}

/** Includes wire path `wire` again on this device: removes its exclusion rule (see the module doc). */
export async function includePath(fs: LocalFs, wire: string): Promise<IncludeReport> {
  const deviceText = readRuleFile(fs, DEVICE_RULES);
  const r = withoutExclusion(deviceText, wire);
  if (r.removed > 0) await writeDeviceRules(fs, r.text);
  return { path: wire, removed: r.removed, still: ruleFor(rulesWith(fs, r.text), wire) };
}

/** Options of the two commands. */
export interface SelectiveOptions {
  folder: string;
  /** The path as the user typed it (relative to FOLDER, or absolute inside it). */
  path: string;
  out: (line: string) => void;
  warn: (line: string) => void;
}

/**
 * The wire path `given` names in `root` for `action` (`exclude`, `include`), or a
 * {@link CommandError} (exit code 2): not the whole folder, not `.cloudignore`.
 */
export function selectivePath(root: string, given: string, action: string): string {
  const wire = wirePathOf(root, given, action);
  if (wire === "") {
    throw new CommandError(
      `Cannot ${action} the whole folder: give a file or folder inside ${root}${
        action === "exclude" ? " (to stop syncing the folder itself, stop its client)" : ""
      }`,
      2,
    );
  }
  if (wire.toLowerCase() === CLOUDIGNORE) {
    throw new CommandError(
      `Cannot ${action} ${CLOUDIGNORE}: it holds the rules every device follows; edit it instead`,
      2,
    );
  }
  return wire;
}

/** Lists kept items, at most 20. */
function keptLines(kept: readonly KeptItem[]): string[] {
  const lines = kept.slice(0, 20).map((k) => `  ${k.path}: ${k.why}`);
  if (kept.length > 20) lines.push(`  ... and ${kept.length - 20} more`);
  return lines;
}

/** `cloud-client exclude FOLDER PATH`: returns the exit code (throws a {@link CommandError}). */
export async function runExclude(o: SelectiveOptions): Promise<number> {
  const root = resolve(o.folder);
  enrolledConfig(root, `exclude ${o.path}`);
  const wire = selectivePath(root, o.path, "exclude");
  let lock;
  try {
    lock = lockFolder(root);
  } catch (e) {
    if (!(e instanceof FolderInUseError)) throw e;
    throw new CommandError(
      `Cannot exclude ${wire}: a cloud-client is running on ${root} (${
        e.pid === null ? "PID unknown" : `PID ${e.pid}`
      }); stop it first, then run this again. Nothing was changed`,
    );
  }
  let session: FolderSession | null = null;
  let state: StateDb | null = null;
  try {
    session = await openFolderSession(root, `exclude ${wire}`);
    state = new StateDb(stateDir(root));
    o.out(`Checking ${wire} against what the server holds (every file is read)...`);
    const r = await excludePath(new DenoFs(root), state, session.peer, wire);
    const back = `\`cloud-client include ${shellWord(o.folder)} ${shellWord(wire)}\` brings ${
      r.wasHere ? "them" : "it"
    } back`;
    if (!r.wasHere) {
      o.out(
        `Excluded ${wire} on this device: nothing of it was here, and the client will not download it; ${back}.`,
      );
    } else {
      const files = `${r.removedFiles} file${r.removedFiles === 1 ? "" : "s"}`;
      const dirs = r.removedFolders > 0
        ? ` and ${r.removedFolders} folder${r.removedFolders === 1 ? "" : "s"}`
        : "";
      o.out(
        `Excluded ${wire} on this device: removed ${files}${dirs}, ${
          formatBytes(r.freed)
        } freed. The server and the other devices keep them; ${back}.`,
      );
    }
    if (r.kept.length > 0) {
      o.warn(
        `Kept ${r.kept.length} item${
          r.kept.length === 1 ? "" : "s"
        } the server does not have (they stay here, not synced while ${wire} is excluded; move them out of ${wire} to sync them):`,
      );
      for (const l of keptLines(r.kept)) o.warn(l);
    }
    return 0;
  } catch (e) {
    if (e instanceof CommandError) throw e;
    throw new CommandError((e as Error).message);
  } finally {
    state?.close();
    session?.close();
    lock.release();
  }
}

/** `cloud-client include FOLDER PATH`: returns the exit code (throws a {@link CommandError}). */
export async function runInclude(o: SelectiveOptions): Promise<number> {
  const root = resolve(o.folder);
  enrolledConfig(root, `include ${o.path}`);
  const wire = selectivePath(root, o.path, "include");
  let r: IncludeReport;
  try {
    r = await includePath(new DenoFs(root), wire);
  } catch (e) {
    throw new CommandError((e as Error).message);
  }
  if (r.still) {
    const hit = r.still;
    const fix = hit.origin === DEVICE_RULES
      ? `it covers more than ${wire}: include that path instead, or edit ${root}/${DEVICE_RULES}`
      : hit.origin === CLOUDIGNORE
      ? `that rule applies on every device: remove it from ${root}/${CLOUDIGNORE}, or add !${wire} there`
      : `add !${hit.pattern} (or !${wire}) to ${root}/${CLOUDIGNORE} to sync it`;
    const done = r.removed > 0 ? "its exclusion on this device is removed, but " : "";
    throw new CommandError(
      `Cannot include ${wire}: ${done}it is ignored by ${describeRule(hit)}; ${fix}`,
    );
  }
  if (r.removed === 0) {
    o.out(`${wire} is not excluded on this device: it syncs already.`);
    return 0;
  }
  const size = remoteBytesUnder(stateDir(root), wire);
  const amount = size === null ? "" : ` (${formatBytes(size)} on the server)`;
  o.out(
    `Included ${wire} on this device${amount}: ${
      folderLocked(root)
        ? "the running client downloads it now"
        : "it is downloaded when the client runs next"
    }.`,
  );
  return 0;
}

/** `s` as one shell word (quoted when it needs to be). */
function shellWord(s: string): string {
  return /^[\w@%+=:,./~-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
