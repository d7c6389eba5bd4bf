/**
 * A pass's view of base, local scan and server without what the ignore rules leave out, so that
 * `reconcile` plans nothing for an ignored path: it is neither uploaded, nor downloaded, nor
 * deleted, nor overwritten, on either side. Pure.
 *
 * - A path ignored in any of the three maps (a kind-dependent rule such as `build/` may match the
 *   folder on one side and not the file on the other), or that the scan found ignored and did not
 *   enter, leaves all three, with everything below it. A file that becomes ignored therefore stays
 *   everywhere as it is and simply stops syncing; ignoring a folder never looks like deleting it
 *   (the mass-delete guard sees neither its base nor its absence).
 * - An ignored path keeps its merge base, so that when it stops being ignored an edit made
 *   meanwhile on one side simply syncs. But a deletion made while it was ignored is not
 *   propagated: at the pass where the rules change, a path that stops being ignored and is missing
 *   on one side loses its base ({@link IgnoreView.forget}), so it is merged as new (the side
 *   without it receives it; nothing is deleted). A local copy removed by `cloud-client exclude`, or
 *   by hand while its folder was excluded, comes back from the server.
 * - A folder whose only content on one side is ignored, and that the other side does not have, is
 *   left out of that side ({@link IgnoreView.hollow}): a folder deleted on another device stays
 *   here when it still holds ignored files (it is not deleted with them inside, nor created again
 *   on the server), and a folder holding only ignored items is not sent (as git does). A folder
 *   deleted here that still holds ignored entries on the server stays there
 *   ({@link keepIgnoredFolders}); one deleted elsewhere that still holds ignored items here is
 *   kept by the executor, which looks at the disk.
 *
 * @example
 * ```ts
 * const ignores = (p: string, dir: boolean) => rules.ignores(p, dir);
 * const view = applyIgnores({ base, local, remote, ignores });
 * state.setBase(view.forget.map((p) => [p, null])); // when the rules changed
 * reconcile({ base: view.base, local: view.local, remote: view.remote, device, now });
 * ```
 *
 * @module
 */

import type { BaseEntry, Kind, LocalEntry, RemoteEntry } from "./types.ts";
import { parentPaths } from "./paths.ts";
import { type Action, orderActions } from "./reconcile.ts";

/** Inputs of {@link applyIgnores} (wire paths). */
export interface IgnoreViewInput {
  base: ReadonlyMap<string, BaseEntry>;
  local: ReadonlyMap<string, LocalEntry>;
  remote: ReadonlyMap<string, RemoteEntry>;
  /** The verdict of the rules for a path (`dir`: as a folder). */
  ignores: (path: string, dir: boolean) => boolean;
  /** Local items the scan found ignored and did not enter (they are not in `local`). */
  ignoredHere?: Iterable<string>;
  /**
   * The verdict of the rules of the previous pass, when they were different (the rules just
   * changed; `local` must then be a scan of the whole folder).
   */
  ignoredBefore?: (path: string, dir: boolean) => boolean;
}

/** Output of {@link applyIgnores}. */
export interface IgnoreView {
  base: ReadonlyMap<string, BaseEntry>;
  local: ReadonlyMap<string, LocalEntry>;
  remote: ReadonlyMap<string, RemoteEntry>;
  /** Base paths that just stopped being ignored and are missing on one side: forget their base. */
  forget: string[];
  /** Folders left out of one side because they hold only ignored items there. */
  hollow: string[];
  /** Folders on the server that hold ignored entries (it would refuse to delete them). */
  heldThere: ReadonlySet<string>;
}

function topName(p: string): string {
  const i = p.indexOf("/");
  return i === -1 ? p : p.slice(0, i);
}

/**
 * Folders of `side` that hold ignored items (`ignoredBelow`: the ancestors of the side's ignored
 * items) and nothing else that syncs, and that `other` does not have.
 */
function hollowFolders(
  side: ReadonlyMap<string, { kind: Kind }>,
  other: ReadonlyMap<string, unknown>,
  ignoredBelow: ReadonlySet<string>,
): Set<string> {
  const candidates = new Set<string>();
  for (const a of ignoredBelow) {
    if (side.get(a)?.kind === "dir" && !other.has(a)) candidates.add(a);
  }
  if (candidates.size === 0) return candidates;
  const tops = new Set([...candidates].map(topName));
  const holdsMore = new Set<string>();
  for (const [p, e] of side) {
    // A folder holding ignored items is not something that syncs by itself; anything else
    // (a file, an empty folder) below a candidate means it holds more than ignored items.
    if (!p.includes("/") || !tops.has(topName(p))) continue;
    if (e.kind === "dir" && ignoredBelow.has(p)) continue;
    for (const a of parentPaths(p)) if (candidates.has(a)) holdsMore.add(a);
  }
  for (const c of holdsMore) candidates.delete(c);
  return candidates;
}

/** `map` without `drop`ped paths; the paths removed are added to `removed`. */
function without<T>(
  map: ReadonlyMap<string, T>,
  drop: (path: string) => boolean,
  removed: string[],
): ReadonlyMap<string, T> {
  let out: Map<string, T> | null = null;
  for (const path of map.keys()) {
    if (!drop(path)) continue;
    out ??= new Map(map);
    out.delete(path);
    removed.push(path);
  }
  return out ?? map;
}

/** The pass's view without ignored paths (see the module doc). */
export function applyIgnores(input: IgnoreViewInput): IgnoreView {
  const { ignores } = input;
  const here = [...(input.ignoredHere ?? [])];
  const ignored = new Set<string>(here);
  for (const map of [input.base, input.local, input.remote] as const) {
    for (const [p, e] of map) {
      if (!ignored.has(p) && ignores(p, e.kind === "dir")) ignored.add(p);
    }
  }
  const forget: string[] = [];
  const before = input.ignoredBefore;
  if (before) {
    for (const [p, b] of input.base) {
      const dir = b.kind === "dir";
      if (ignored.has(p) || !before(p, dir) || ignores(p, dir)) continue;
      if (!input.local.has(p) || !input.remote.has(p)) forget.push(p);
    }
  }
  let base = input.base;
  if (forget.length > 0) {
    const copy = new Map(base);
    for (const p of forget) copy.delete(p);
    base = copy;
  }
  if (ignored.size === 0) {
    const { local, remote } = input;
    return { base, local, remote, forget, hollow: [], heldThere: new Set() };
  }
  // Below a path ignored as a folder, the rules ignore everything already; below one ignored
  // only as a file (or only by the scan), what another side has there must go too.
  const roots = new Set([...ignored].filter((p) => !ignores(p, true)));
  const drop = roots.size === 0
    ? (p: string) => ignored.has(p)
    : (p: string) =>
      ignored.has(p) || (p.includes("/") && parentPaths(p).some((a) => roots.has(a)));
  const goneHere: string[] = [];
  const goneThere: string[] = [];
  base = without(base, drop, []);
  let local = without(input.local, drop, goneHere);
  let remote = without(input.remote, drop, goneThere);
  const below = (paths: Iterable<string>) => {
    const out = new Set<string>();
    for (const p of paths) for (const a of parentPaths(p)) out.add(a);
    return out;
  };
  const heldThere = below(goneThere);
  const hollowHere = hollowFolders(local, remote, below([...here, ...goneHere]));
  const hollowThere = hollowFolders(remote, local, heldThere);
  if (hollowHere.size > 0) local = without(local, (p) => hollowHere.has(p), []);
  if (hollowThere.size > 0) remote = without(remote, (p) => hollowThere.has(p), []);
  return { base, local, remote, forget, hollow: [...hollowHere, ...hollowThere], heldThere };
}

/**
 * `actions` (reconcile's, on the view) with each deletion on the server of a folder that holds
 * ignored entries there turned into forgetting its base: the folder stays on the server with what
 * does not sync, and nothing asks for a deletion the server would refuse at every pass. (A folder
 * here that holds ignored items is kept by the executor, which looks at the disk.)
 */
export function keepIgnoredFolders(actions: Action[], view: IgnoreView): Action[] {
  if (view.heldThere.size === 0) return actions;
  let changed = false;
  const out = actions.map((a): Action => {
    if (a.op !== "deleteRemote" || a.kind !== "dir" || !view.heldThere.has(a.path)) return a;
    changed = true;
    return { op: "setBase", path: a.path, entry: null };
  });
  return changed ? orderActions(out) : actions;
}
