/**
 * Three-way reconciliation: the pure, I/O-free heart of Cloud Sync.
 *
 * Given the merge base (the last state both sides agreed on), a local scan and the server's current
 * state, {@link reconcile} returns the list of actions that brings both sides to the same tree
 * without losing anything:
 *
 * - a change on one side only is propagated to the other;
 * - the same change on both sides is simply recorded;
 * - an edit beats a delete (the file survives);
 * - two different edits keep both: the local version is moved aside to a conflict copy (which syncs
 *   as an ordinary new file) and the remote version takes the name;
 * - a directory beats a file at the same path (the file becomes a conflict copy);
 * - a directory that still holds something that survives (a new file on either side) is kept.
 *
 * @example
 * ```ts
 * const actions = reconcile({ base, local, remote, device: "laptop", now: new Date() });
 * ```
 *
 * @module
 */

import type { BaseEntry, Kind, LocalEntry, RemoteEntry } from "./types.ts";
import { conflictName } from "./conflict_name.ts";
import { parentPaths } from "./paths.ts";
import { sameMeta } from "./metadata.ts";

/** Something the executor must do. Actions are returned in a safe execution order. */
export type Action =
  /** Rename the local item at `path` to `to` (a conflict copy); it uploads as new on the next pass. */
  | { op: "moveAside"; path: string; to: string; expect: LocalEntry }
  /** Create directory `path` locally (replacing `replace`, a file, if set). Base becomes `remote`. */
  | { op: "mkdirLocal"; path: string; remote: RemoteEntry | null; replace: LocalEntry | null }
  /**
   * Write the content of `remote` at local `path`, replacing `replace` (null: nothing must be
   * there). When `path !== remote.path` this is a copy set aside and the base is not touched,
   * except with `follows`: an edit made elsewhere to a file this device moved; once written, the
   * base of `follows` (the old path) records `remote`, so the next pass sends the move.
   */
  | {
    op: "download";
    path: string;
    remote: RemoteEntry;
    replace: LocalEntry | null;
    follows?: string;
  }
  /**
   * Move the local file at `path` (if it still is `expect`) to `to`, where another device moved
   * it (an edit here follows that move); its base is then forgotten, and an upload of `to` sends
   * the edit.
   */
  | { op: "moveLocal"; path: string; to: string; expect: LocalEntry }
  /** Delete the local item at `path` if it still is `expect`; a directory only if empty. */
  | { op: "deleteLocal"; path: string; expect: LocalEntry }
  /**
   * The content at `path` is already the server's: only give it `remote`'s modification time and
   * permission bits (if it is still `expect`). Base becomes `remote`.
   */
  | { op: "setMeta"; path: string; remote: RemoteEntry; expect: LocalEntry }
  /** Both sides already agree: store `entry` as the base (null: forget the path). */
  | { op: "setBase"; path: string; entry: BaseEntry | null }
  /** Send the local file at `path` to the server, based on server version `baseVersion`. */
  | { op: "upload"; path: string; local: LocalEntry; baseVersion: number }
  /**
   * Create directory `path` on the server (replacing whatever is at `baseVersion`). When `after`
   * is set, only once the download of the replaced remote file to that copy path succeeded.
   */
  | { op: "mkdirRemote"; path: string; local: LocalEntry; baseVersion: number; after?: string }
  /** Delete `path` on the server if it is still at `baseVersion`. */
  | { op: "deleteRemote"; path: string; kind: Kind; baseVersion: number };

/** Inputs of {@link reconcile}. */
export interface ReconcileInput {
  base: ReadonlyMap<string, BaseEntry>;
  local: ReadonlyMap<string, LocalEntry>;
  /** The server's current live entries (tombstones omitted). */
  remote: ReadonlyMap<string, RemoteEntry>;
  /** This device's name, for naming conflict copies of local versions. */
  device: string;
  now: Date;
  /**
   * How this device compares names (`foldName` where letter case does not count). A conflict
   * copy's name must differ from every other name in more than that: on a case-insensitive disk
   * `D (conflict ...).TXT` IS `d (conflict ...).txt`. Default: exact.
   */
  nameKey?: (path: string) => string;
  /**
   * Whether a new item at this wire path would find its name on disk taken by an item whose wire
   * path is another (a local name given by an alias); see `LocalNames.localNameTaken`.
   */
  localNameTaken?: (path: string) => boolean;
}

type Final = Kind | null;

interface Decision {
  actions: Action[];
  /** What exists locally at this path once the actions ran (null: nothing). */
  final: Final;
}

/**
 * True when the local item is as in the base: same content (unhashed files count as same) and
 * same metadata (modification time, permission bits).
 */
function localUnchanged(b: BaseEntry | undefined, l: LocalEntry | undefined): boolean {
  if (!b || !l) return !b && !l;
  if (b.kind !== l.kind) return false;
  if (l.kind === "dir") return true;
  return (l.hash === undefined || l.hash === b.hash) && sameMeta(l, b);
}

function remoteUnchanged(b: BaseEntry | undefined, r: RemoteEntry | undefined): boolean {
  if (!b || !r) return !b && !r;
  return r.version === b.version;
}

/** The content hash of a local file, falling back to the base when it was not rehashed. */
function localHash(b: BaseEntry | undefined, l: LocalEntry): string | undefined {
  return l.hash ?? (b && b.kind === l.kind ? b.hash : undefined);
}

/** Same content: both absent, both directories, or both files with the same hash. */
function sameContent(
  b: BaseEntry | undefined,
  l: LocalEntry | undefined,
  r: RemoteEntry | undefined,
): boolean {
  if (!l || !r) return !l && !r;
  if (l.kind !== r.kind) return false;
  return l.kind === "dir" || localHash(b, l) === r.hash;
}

/** The base entry recording that local `l` and remote `r` agree. */
export function baseFrom(r: RemoteEntry, l: LocalEntry): BaseEntry {
  return {
    path: r.path,
    kind: r.kind,
    version: r.version,
    size: l.size,
    mtime: l.mtime,
    exec: r.exec,
    ...(r.mode !== undefined ? { mode: r.mode } : {}),
    hash: r.hash,
    chunks: r.chunks,
    ...(l.ino !== undefined ? { ino: l.ino } : {}),
  };
}

function push(
  path: string,
  l: LocalEntry | undefined,
  b: BaseEntry | undefined,
  baseVersion: number,
): Decision {
  if (!l) {
    if (!b) return { actions: [], final: null };
    return { actions: [{ op: "deleteRemote", path, kind: b.kind, baseVersion }], final: null };
  }
  if (l.kind === "dir") {
    return { actions: [{ op: "mkdirRemote", path, local: l, baseVersion }], final: "dir" };
  }
  return { actions: [{ op: "upload", path, local: l, baseVersion }], final: "file" };
}

function pull(
  path: string,
  r: RemoteEntry | undefined,
  l: LocalEntry | undefined,
  b: BaseEntry | undefined,
): Decision {
  if (!r) {
    if (!l) return { actions: [{ op: "setBase", path, entry: null }], final: null };
    return { actions: [{ op: "deleteLocal", path, expect: l }], final: null };
  }
  if (r.kind === "dir") {
    if (l?.kind === "dir") {
      return { actions: [{ op: "setBase", path, entry: baseFrom(r, l) }], final: "dir" };
    }
    return { actions: [{ op: "mkdirLocal", path, remote: r, replace: l ?? null }], final: "dir" };
  }
  // Only the metadata changed on the server: no content to move.
  if (l?.kind === "file" && b?.kind === "file" && localHash(b, l) === r.hash) {
    return { actions: [{ op: "setMeta", path, remote: r, expect: l }], final: "file" };
  }
  return { actions: [{ op: "download", path, remote: r, replace: l ?? null }], final: "file" };
}

/** Decides one path in isolation; {@link reconcile} then repairs ancestors of survivors. */
function decidePath(
  path: string,
  b: BaseEntry | undefined,
  l: LocalEntry | undefined,
  r: RemoteEntry | undefined,
  aside: (p: string, device: string) => string,
  device: string,
): Decision {
  const lSame = localUnchanged(b, l);
  const rSame = remoteUnchanged(b, r);
  if (lSame && rSame) return { actions: [], final: l?.kind ?? null };
  if (rSame) return push(path, l, b, b?.version ?? 0);
  if (lSame) return pull(path, r, l, b);
  // Both sides changed.
  if (sameContent(b, l, r)) {
    if (!l || !r || l.kind === "dir" || sameMeta(l, r)) {
      const entry = l && r ? baseFrom(r, l) : null;
      return { actions: [{ op: "setBase", path, entry }], final: l?.kind ?? null };
    }
    // Same content, other metadata on each side: the newer modification time wins.
    if (l.mtime > r.mtime) return push(path, l, b, r.version);
    return { actions: [{ op: "setMeta", path, remote: r, expect: l }], final: "file" };
  }
  if (!l) return pull(path, r, l, b); // deleted here, changed there: the edit wins
  if (!r) return push(path, l, b, 0); // changed here, deleted there: the edit wins
  if (l.kind === "dir") {
    // r is a file: the directory keeps the name, the remote file is set aside as a copy.
    const copy = aside(path, r.device);
    return {
      actions: [
        { op: "download", path: copy, remote: r, replace: null },
        { op: "mkdirRemote", path, local: l, baseVersion: r.version, after: copy },
      ],
      final: "dir",
    };
  }
  // l is a file; r is a file with other content, or a directory: the local file is set aside.
  const moved: Action = { op: "moveAside", path, to: aside(path, device), expect: l };
  if (r.kind === "dir") {
    return { actions: [moved, { op: "mkdirLocal", path, remote: r, replace: null }], final: "dir" };
  }
  return { actions: [moved, { op: "download", path, remote: r, replace: null }], final: "file" };
}

/**
 * Makes `path` end as a directory on both sides because something beneath it survives, whatever
 * was decided for it alone.
 */
function keepDirectory(
  path: string,
  b: BaseEntry | undefined,
  l: LocalEntry | undefined,
  r: RemoteEntry | undefined,
  aside: (p: string, device: string) => string,
  device: string,
): Action[] {
  const actions: Action[] = [];
  if (l && l.kind === "file") {
    actions.push({ op: "moveAside", path, to: aside(path, device), expect: l });
  }
  const localDir: LocalEntry = l?.kind === "dir"
    ? l
    : { path, kind: "dir", size: 0, mtime: 0, exec: false };
  if (r?.kind === "dir") {
    if (l?.kind === "dir") {
      if (!b || b.version !== r.version) {
        actions.push({ op: "setBase", path, entry: baseFrom(r, l) });
      }
    } else actions.push({ op: "mkdirLocal", path, remote: r, replace: null });
    return actions;
  }
  if (!l || l.kind === "file") {
    actions.push({ op: "mkdirLocal", path, remote: null, replace: null });
  }
  if (r) {
    const copy = aside(path, r.device);
    actions.push({ op: "download", path: copy, remote: r, replace: null });
    actions.push({ op: "mkdirRemote", path, local: localDir, baseVersion: r.version, after: copy });
  } else {
    actions.push({ op: "mkdirRemote", path, local: localDir, baseVersion: 0 });
  }
  return actions;
}

/**
 * An edit on one side and a move of the same file on the other must not come out split (the
 * moved copy stale, the edit revived at the old path). Decisions for such paths, which take the
 * place of {@link decidePath}'s:
 *
 * - moved elsewhere (the old path deleted on the server, a new path there with exactly its base
 *   content), edited here: the local file moves to the new path and its upload sends the edit;
 * - moved here (the old path gone locally, a new local path with its base content, or with its
 *   inode), edited elsewhere: the remote edit is written at the new path (or, if the file was
 *   edited here too, beside it as a conflict copy), and the old path's base records the remote
 *   version, so the next pass sends the move.
 *
 * Each new path is used once (the first old path in order takes it).
 */
function editsFollowMoves(
  base: ReadonlyMap<string, BaseEntry>,
  local: ReadonlyMap<string, LocalEntry>,
  remote: ReadonlyMap<string, RemoteEntry>,
  aside: (p: string, device: string) => string,
): Map<string, Decision> {
  const out = new Map<string, Decision>();
  const key = (hash: string, size: number) => `${hash}:${size}`;
  // New remote files (not in the base, nothing here) by content; new local files by content and
  // by inode.
  const remoteNew = new Map<string, string[]>();
  for (const [q, r] of remote) {
    if (r.kind !== "file" || r.size === 0 || base.has(q) || local.has(q)) continue;
    const k = key(r.hash, r.size);
    remoteNew.set(k, [...(remoteNew.get(k) ?? []), q]);
  }
  const localNewByContent = new Map<string, string[]>();
  const localNewByIno = new Map<number, string>();
  for (const [q, l] of local) {
    if (l.kind !== "file" || base.has(q) || remote.has(q)) continue;
    if (l.hash !== undefined && l.size > 0) {
      const k = key(l.hash, l.size);
      localNewByContent.set(k, [...(localNewByContent.get(k) ?? []), q]);
    }
    if (l.ino !== undefined) localNewByIno.set(l.ino, q);
  }
  if (remoteNew.size === 0 && localNewByContent.size === 0 && localNewByIno.size === 0) return out;
  const used = new Set<string>();
  const take = (list: string[] | undefined) => {
    const q = list?.find((x) => !used.has(x));
    if (q !== undefined) used.add(q);
    return q;
  };
  for (const p of [...base.keys()].sort()) {
    const b = base.get(p)!;
    if (b.kind !== "file" || b.size === 0) continue;
    const l = local.get(p);
    const r = remote.get(p);
    if (!r && l?.kind === "file" && l.hash !== undefined && l.hash !== b.hash) {
      // Moved elsewhere, edited here.
      const q = take(remoteNew.get(key(b.hash, b.size)));
      if (q === undefined) continue;
      const rq = remote.get(q)!;
      out.set(p, { actions: [{ op: "moveLocal", path: p, to: q, expect: l }], final: null });
      out.set(q, {
        actions: [{ op: "upload", path: q, local: { ...l, path: q }, baseVersion: rq.version }],
        final: "file",
      });
    } else if (!l && r?.kind === "file" && r.version !== b.version && r.hash !== b.hash) {
      // Moved here, edited elsewhere.
      let q = take(localNewByContent.get(key(b.hash, b.size)));
      let edited = false;
      if (q === undefined && b.ino !== undefined) {
        const byIno = localNewByIno.get(b.ino);
        if (byIno !== undefined && !used.has(byIno)) {
          used.add(byIno);
          q = byIno;
          edited = true;
        }
      }
      if (q === undefined) continue;
      const lq = local.get(q)!;
      out.set(p, { actions: [], final: null });
      if (!edited) {
        out.set(q, {
          actions: [{ op: "download", path: q, remote: r, replace: lq, follows: p }],
          final: "file",
        });
      } else {
        const copy = aside(q, r.device);
        out.set(q, {
          actions: [
            { op: "download", path: copy, remote: r, replace: null, follows: p },
            { op: "upload", path: q, local: lq, baseVersion: 0 },
          ],
          final: "file",
        });
      }
    }
  }
  return out;
}

const PHASE: Record<Action["op"], number> = {
  moveAside: 0,
  mkdirLocal: 1,
  moveLocal: 2,
  download: 3,
  setMeta: 3,
  deleteLocal: 4,
  setBase: 5,
  mkdirRemote: 6,
  upload: 7,
  deleteRemote: 8,
};

function depth(path: string): number {
  let n = 0;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) n++;
  return n;
}

/** Orders actions so that every step finds what it needs: parents first, deletes deepest first. */
export function orderActions(actions: Action[]): Action[] {
  return actions
    .map((a, i) => ({ a, i }))
    .sort((x, y) => {
      const p = PHASE[x.a.op] - PHASE[y.a.op];
      if (p !== 0) return p;
      const deleting = x.a.op === "deleteLocal" || x.a.op === "deleteRemote";
      const d = depth(x.a.path) - depth(y.a.path);
      if (d !== 0) return deleting ? -d : d;
      return x.i - y.i;
    })
    .map((x) => x.a);
}

/**
 * Computes the actions that make local and remote agree. Pure: the same input always gives the
 * same output, and nothing is read or written.
 */
export function reconcile(input: ReconcileInput): Action[] {
  const { base, local, remote, device, now } = input;
  const paths = new Set<string>([...base.keys(), ...local.keys(), ...remote.keys()]);
  const key = input.nameKey ?? ((p: string) => p);
  const keys = input.nameKey ? new Set([...paths].map(key)) : paths;
  const chosen = new Set<string>();
  const taken = (p: string) =>
    chosen.has(key(p)) || keys.has(key(p)) || (input.localNameTaken?.(p) ?? false);
  const aside = (p: string, from: string) => {
    const name = conflictName(p, from, now, taken);
    chosen.add(key(name));
    return name;
  };
  const decisions = new Map<string, Decision>();
  const follow = editsFollowMoves(base, local, remote, aside);
  for (const path of [...paths].sort()) {
    decisions.set(
      path,
      follow.get(path) ??
        decidePath(path, base.get(path), local.get(path), remote.get(path), aside, device),
    );
  }
  // Every ancestor of something that survives must end as a directory on both sides.
  const mustBeDir = new Set<string>();
  for (const [path, d] of decisions) {
    if (d.final !== null) { for (const parent of parentPaths(path)) mustBeDir.add(parent); }
    for (const a of d.actions) {
      if (a.op === "moveAside" || (a.op === "download" && a.path !== path)) {
        for (const parent of parentPaths(a.path)) mustBeDir.add(parent);
      }
    }
  }
  for (const path of [...mustBeDir].sort()) {
    const d = decisions.get(path);
    // An unknown parent (no entry anywhere) is created on demand by the executor.
    if (!d || d.final === "dir") continue;
    const actions = keepDirectory(
      path,
      base.get(path),
      local.get(path),
      remote.get(path),
      aside,
      device,
    );
    decisions.set(path, { actions, final: "dir" });
  }
  const all: Action[] = [];
  for (const d of decisions.values()) all.push(...d.actions);
  return orderActions(all);
}
