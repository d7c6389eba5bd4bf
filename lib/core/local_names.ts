/**
 * Local names: the bridge between wire paths (NFC, `/`-separated, case-sensitive) and the names a
 * device's file system can hold. Pure; the engine calls {@link planLocalNames} once per pass,
 * after the scan and before `reconcile`, so that reconcile keeps working purely in wire space.
 *
 * - Windows-unsafe names (see `isWindowsUnsafeName`), and everything below them, are `skipped`:
 *   the engine drops them from the remote map AND the base map, so they are neither downloaded
 *   nor deleted anywhere. One warning per topmost unsafe path.
 * - On a case-insensitive device, siblings whose names fold to the same key (`Report.txt`,
 *   `report.txt`; directories too) get distinct local names: one keeps its name, the others get
 *   `NAME (case conflict).EXT` (see `caseConflictName`). Who keeps the plain name, in this order:
 *   the one whose name is on disk exactly, the one that already had an alias, the one already in
 *   the merge base, then the smallest wire path (UTF-16 order). The losers' names are recorded in
 *   the alias table (wire path -> local path), persisted by the engine and passed back next pass.
 *   Descendants of an aliased directory live under the aliased local directory (not stored).
 * - An alias is kept as long as its wire path exists (on the server or in the base), even after
 *   the collision ended: undoing it would rename a file the user can see, and a rename that fails
 *   half way would look like a delete plus a new file. It goes when its wire path goes (deleted on
 *   the server, or renamed locally by the user, which syncs as a rename).
 * - A case-only rename on the server (`Report.txt` gone from the server but still in the base,
 *   `report.txt` new and of the same kind) is recognized: the local item is adopted by the new
 *   wire path, a {@link CaseRename} asks the engine to rename the local item before executing,
 *   and when the content also changed the base is carried over (so a plain download follows, not
 *   a conflict copy). The old wire path maps to the same local item and, being absent on both
 *   sides in reconcile's view, only has its base forgotten: no local delete ever.
 * - A local item whose name differs only in letter case from the (plain) name of a wire path that
 *   is NOT yet in the base is adopted by that wire path (first sync of a folder, a server rename),
 *   with a {@link CaseRename}. When the wire path IS in the base, the user renamed it locally: the
 *   local name is taken literally (a new wire path), which syncs as a rename to the server.
 * - A local file that merely looks like a case-conflict copy is just a file: only wire paths in
 *   the alias table are translated.
 *
 * @module
 */

import type { BaseEntry, Kind, LocalEntry, RemoteEntry } from "./types.ts";
import { isWindowsUnsafeName, WINDOWS_RESERVED_RE } from "./paths.ts";
import { blockedName, caseConflictName } from "./conflict_name.ts";

/** What the device's file system can hold. */
export interface PlatformTraits {
  /** Names that differ only in letter case are the same name (Windows, macOS by default). */
  caseInsensitive: boolean;
  /** Windows' name rules apply (see `isWindowsUnsafeName`). */
  windowsNames: boolean;
}

/** Inputs of {@link planLocalNames}. */
export interface LocalNamesInput {
  /** The server's live entries (remote mirror), wire paths. Only `kind` and `hash` are read. */
  remote: ReadonlyMap<string, Pick<RemoteEntry, "kind" | "hash">>;
  /** The merge base, wire paths. */
  base: ReadonlyMap<string, BaseEntry>;
  /**
   * The local scan in LOCAL path space (names as on disk). Files the scanner did not rehash must
   * have been looked up in {@link localBaseView}`(base, aliases)` (same aliases as below).
   */
  local: ReadonlyMap<string, LocalEntry>;
  /** The alias table saved by the previous pass (wire path -> local path). */
  aliases: ReadonlyMap<string, string>;
  platform: PlatformTraits;
  /**
   * Local items that are there but do not sync (symlinks, special files), LOCAL paths -> what
   * they are. A wire path new to this device whose name one of them holds gets another local
   * name (`NAME (blocked here by a symlink).EXT`), so it still arrives, beside the blocker.
   */
  blocked?: ReadonlyMap<string, string>;
}

/** A case-only (same directory) rename the engine must do on disk before executing actions. */
export interface CaseRename {
  /** Local path as scanned. */
  from: string;
  /** Local path wanted: `from` with only its last name changed (letter case, in practice). */
  to: string;
  /** The scanned entry (local path); rename only if the item still matches it. */
  expect: LocalEntry;
}

/** Output of {@link planLocalNames}. */
export interface LocalNames {
  /** Wire paths that cannot exist here (each with its reason); drop them from remote AND base. */
  skipped: Map<string, string>;
  /** One warning per topmost unsafe path, sorted. */
  warnings: string[];
  /** The new alias table (wire path -> local path) to persist, replacing the previous one. */
  aliases: Map<string, string>;
  /** The local scan translated into wire space (entries' `path` is the wire path). */
  local: Map<string, LocalEntry>;
  /** The base to pass to reconcile: without skipped paths, with server case renames carried. */
  base: Map<string, BaseEntry>;
  /** Local case-only renames to do first, deepest first. */
  caseRenames: CaseRename[];
  /** The local path (relative to the root) where wire path `wire` lives or is to be created. */
  toLocal(wire: string): string;
  /** The wire path of a local path (relative to the root). */
  toWire(local: string): string;
  /**
   * Whether the local name a NEW wire path `wire` would get (`toLocal`) is already held, case-
   * insensitively where case does not count, by an item on disk or by the local name of another
   * wire path. What a conflict copy's name must avoid besides the wire paths themselves.
   */
  localNameTaken(wire: string): boolean;
}

const ASCII_RE = /^[ -~]*$/; // printable ASCII (others take the per-character path)

/**
 * The case-folding key of a name or path: every code point upper-cased by its simple (one to one)
 * mapping, as NTFS does (`ſ` -> `S`, `ı` -> `I`; `ß` stays `ß`). Two names with the same key are
 * the same name on a case-insensitive file system. Erring towards folding more only adds suffixes.
 */
export function foldName(s: string): string {
  if (ASCII_RE.test(s)) return s.toUpperCase();
  let out = "";
  for (const ch of s) {
    const u = ch.toUpperCase();
    out += u.length === ch.length || [...u].length === 1 ? u : ch;
  }
  return out;
}

/** Why Windows cannot hold `name` (one segment), or null if it can. */
export function windowsNameProblem(name: string): string | null {
  if (!isWindowsUnsafeName(name)) return null;
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f]/.test(name)) return "Windows does not allow control characters in names";
  const bad = name.match(/[<>:"|?*\\]/);
  if (bad) return `Windows does not allow ${JSON.stringify(bad[0])} in names`;
  if (name.endsWith(".")) return "Windows does not allow names that end with a dot";
  if (name.endsWith(" ")) return "Windows does not allow names that end with a space";
  if (WINDOWS_RESERVED_RE.test(name)) return "the name is reserved for a device on Windows";
  return "Windows cannot hold this name";
}

function lastSlash(p: string): number {
  return p.lastIndexOf("/");
}
function parentOf(p: string): string {
  const i = lastSlash(p);
  return i === -1 ? "" : p.slice(0, i);
}
function nameOf(p: string): string {
  return p.slice(lastSlash(p) + 1);
}
function join(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}
function depthOf(p: string): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return n;
}
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Replaces the deepest ancestor-or-self of `p` found in `map` by its value. */
function viaDeepest(p: string, map: ReadonlyMap<string, string>): string | undefined {
  const exact = map.get(p);
  if (exact !== undefined) return exact;
  for (let i = lastSlash(p); i > 0; i = p.lastIndexOf("/", i - 1)) {
    const hit = map.get(p.slice(0, i));
    if (hit !== undefined) return hit + p.slice(i);
  }
  return undefined;
}

/** The local path of wire path `wire` under an alias table (deepest aliased ancestor wins). */
export function applyAliases(wire: string, aliases: ReadonlyMap<string, string>): string {
  return aliases.size === 0 ? wire : (viaDeepest(wire, aliases) ?? wire);
}

/**
 * The base keyed by the local paths the previous pass used (`applyAliases`): what the scanner
 * must look files up in to decide whether to rehash them.
 */
export function localBaseView(
  base: ReadonlyMap<string, BaseEntry>,
  aliases: ReadonlyMap<string, string>,
): Map<string, BaseEntry> {
  const out = new Map<string, BaseEntry>();
  for (const [p, b] of base) out.set(applyAliases(p, aliases), b);
  return out;
}

/** A wire path taking part in naming. */
interface Member {
  wire: string;
  seg: string;
  kind: Kind;
  live: boolean;
  inBase: boolean;
  /** Last name of the previous alias, if any. */
  aliasSeg: string | undefined;
  /** When this is a server-side case rename's old path: the new one. */
  partner?: Member;
  /** When this is a server-side case rename's new path: the old one. */
  source?: Member;
  /** The chosen local name. */
  name?: string;
}

interface Group {
  /** Wire directory these children are translated under. */
  wireDir: string;
  /** Local directory where the members' images go. */
  localDir: string;
  members: Member[];
  disk: LocalEntry[];
}

/**
 * Computes skips, local names, aliases and the translated scan. Pure and deterministic:
 * O(n log n) in the number of paths (times their depth for string work).
 */
export function planLocalNames(input: LocalNamesInput): LocalNames {
  const { remote, base, local, aliases: prevAliases, platform } = input;
  /** Local directory -> folded names held there by items that do not sync. */
  const blockedIn = new Map<string, Map<string, string>>();
  for (const [p, what] of input.blocked ?? []) {
    const dir = parentOf(p);
    let names = blockedIn.get(dir);
    if (!names) blockedIn.set(dir, names = new Map());
    names.set(platform.caseInsensitive ? foldName(nameOf(p)) : nameOf(p), what);
  }
  const blockWarnings: string[] = [];
  const fold = platform.caseInsensitive ? foldName : (s: string) => s;

  // 1. Skips (Windows names), for everything on the server or in the base.
  const skipped = new Map<string, string>();
  const topmost = new Map<string, string>();
  if (platform.windowsNames) {
    const verdict = new Map<string, { top: string; why: string } | null>();
    const check = (p: string): { top: string; why: string } | null => {
      const known = verdict.get(p);
      if (known !== undefined) return known;
      const parent = parentOf(p);
      let v = parent === "" ? null : check(parent);
      if (!v) {
        const why = windowsNameProblem(nameOf(p));
        v = why ? { top: p, why } : null;
      }
      verdict.set(p, v);
      return v;
    };
    for (const p of [...remote.keys(), ...base.keys()]) {
      const v = check(p);
      if (!v) continue;
      topmost.set(v.top, v.why);
      skipped.set(
        p,
        v.top === p ? v.why : `it is inside ${JSON.stringify(v.top)}, which Windows cannot hold`,
      );
    }
  }
  const warnings: string[] = [...topmost.keys()].sort(byCodeUnits).map((p) =>
    `Skipping ${JSON.stringify(p)} here: ${
      topmost.get(p)
    }. It stays on the server and on other devices.`
  );

  // 2. The wire paths that need a local name (closed under parents).
  const members = new Map<string, Member>();
  const addMember = (p: string, kind: Kind) => {
    if (members.has(p) || skipped.has(p)) return;
    const alias = prevAliases.get(p);
    members.set(p, {
      wire: p,
      seg: nameOf(p),
      kind,
      live: remote.has(p),
      inBase: base.has(p),
      aliasSeg: alias === undefined ? undefined : nameOf(alias),
    });
    const parent = parentOf(p);
    if (parent !== "") addMember(parent, "dir");
  };
  for (const [p, r] of remote) addMember(p, r.kind);
  for (const [p, b] of base) if (!remote.has(p)) addMember(p, b.kind);

  // Hash of files the scanner did not rehash: from the base it looked them up in.
  const scanBase = localBaseView(base, prevAliases);

  const wireToLocal = new Map<string, string>();
  const localToWire = new Map<string, string>();
  const foldToWire = new Map<string, string>();
  const outLocal = new Map<string, LocalEntry>();
  const outAliases = new Map<string, string>();
  const outBase = new Map<string, BaseEntry>();
  for (const [p, b] of base) if (!skipped.has(p)) outBase.set(p, b);
  const caseRenames: CaseRename[] = [];
  /** Wire directory -> the wire directory its children are grouped under (merges renames). */
  const canonical = new Map<string, string>([["", ""]]);
  /** Wire directory (canonical) -> local directory. */
  const localDirOf = new Map<string, string>([["", ""]]);
  const usedWire = new Set<string>();

  // 3. Level by level, top down: every group is one wire directory (after merging renames).
  const byDepth: { members: Member[]; disk: LocalEntry[] }[] = [];
  const level = (d: number) => (byDepth[d] ??= { members: [], disk: [] });
  for (const m of members.values()) level(depthOf(m.wire)).members.push(m);
  for (const e of local.values()) level(depthOf(e.path)).disk.push(e);
  /** Disk directory (local path) -> wire directory it was translated to. */
  const diskDirWire = new Map<string, string>([["", ""]]);

  for (let d = 0; d < byDepth.length; d++) {
    const lvl = byDepth[d];
    if (!lvl) continue;
    const groups = new Map<string, Group>();
    const group = (wireDir: string): Group => {
      let g = groups.get(wireDir);
      if (!g) {
        g = { wireDir, localDir: localDirOf.get(wireDir) ?? wireDir, members: [], disk: [] };
        groups.set(wireDir, g);
      }
      return g;
    };
    for (const m of lvl.members) {
      const parent = parentOf(m.wire);
      group(canonical.get(parent) ?? parent).members.push(m);
    }
    for (const e of lvl.disk) {
      const parent = diskDirWire.get(parentOf(e.path));
      if (parent === undefined) continue; // its directory vanished from the scan: ignore
      group(parent).disk.push(e);
    }
    for (const wireDir of [...groups.keys()].sort(byCodeUnits)) {
      resolveGroup(groups.get(wireDir)!);
    }
  }

  function resolveGroup(g: Group): void {
    const ms = g.members.sort((a, b) => byCodeUnits(a.wire, b.wire));
    const disk = g.disk.sort((a, b) => byCodeUnits(a.path, b.path));
    const diskExact = new Map<string, LocalEntry>();
    const diskFolds = new Set<string>();
    for (const e of disk) {
      diskExact.set(nameOf(e.path), e);
      diskFolds.add(fold(nameOf(e.path)));
    }
    // a. Server-side case renames: an old path (base only, no alias) and a new one (server
    //    only, no alias), same kind, same folded name.
    if (platform.caseInsensitive) {
      const partners = new Map<string, Member[]>();
      for (const m of ms) {
        if (m.live && !m.inBase && m.aliasSeg === undefined) {
          const k = `${m.kind}:${fold(m.seg)}`;
          const list = partners.get(k);
          if (list) list.push(m);
          else partners.set(k, [m]);
        }
      }
      for (const m of ms) {
        if (m.live || !m.inBase || m.aliasSeg !== undefined) continue;
        const p = partners.get(`${m.kind}:${fold(m.seg)}`)?.shift();
        if (p) {
          m.partner = p;
          p.source = m;
        }
      }
    }
    const naming = ms.filter((m) => m.partner === undefined);
    const preferred = (m: Member) => m.aliasSeg ?? m.seg;
    // Who keeps its name: on disk under its alias, on disk under its own name (or, for a server
    // case rename, under the old name), an alias, in the base, the rest.
    const rank = (m: Member) => {
      if (m.aliasSeg !== undefined && diskExact.has(m.aliasSeg)) return 0;
      if (diskExact.has(m.seg) || (m.source && diskExact.has(m.source.seg))) return 1;
      if (m.aliasSeg !== undefined) return 2;
      if (m.inBase) return 3;
      return 4;
    };
    const ordered = naming.map((m) => ({ m, r: rank(m) })).sort((a, b) =>
      a.r - b.r || byCodeUnits(a.m.wire, b.m.wire)
    ).map((x) => x.m);
    // b. Names: the preferred one if its folded form is free, else a case-conflict name; a
    //    new arrival whose name an unsynced local item holds gets a "blocked here" name.
    const taken = new Map<string, Member>();
    const losers: Member[] = [];
    const blockedNames = blockedIn.get(g.localDir);
    const blockers = new Map<Member, string>();
    for (const m of ordered) {
      const f = fold(preferred(m));
      const blocker = m.inBase || m.aliasSeg !== undefined ? undefined : blockedNames?.get(f);
      if (blocker !== undefined) {
        blockers.set(m, blocker);
        losers.push(m);
      } else if (taken.has(f)) losers.push(m);
      else {
        m.name = preferred(m);
        taken.set(f, m);
      }
    }
    const segFolds = new Set(ms.map((m) => fold(m.seg)));
    const free = (c: string) =>
      !taken.has(fold(c)) && !diskFolds.has(fold(c)) && !segFolds.has(fold(c)) &&
      !(blockedNames?.has(fold(c)) ?? false);
    for (const m of losers) {
      const blocker = blockers.get(m);
      if (blocker !== undefined) {
        m.name = blockedName(m.seg, blocker, (c) => !free(c));
        blockWarnings.push(
          `${JSON.stringify(m.wire)} arrives here as ${
            JSON.stringify(nameOf(m.name))
          }: a ${blocker} has its name in this folder.`,
        );
      } else m.name = caseConflictName(m.seg, (c) => !free(c));
      taken.set(fold(m.name), m);
    }
    // c. Images and aliases.
    for (const m of naming) {
      const image = join(g.localDir, m.name!);
      wireToLocal.set(m.wire, image);
      localToWire.set(image, m.wire);
      foldToWire.set(fold(image), m.wire);
      canonical.set(m.wire, m.wire);
      localDirOf.set(m.wire, image);
      if (m.name !== m.seg) outAliases.set(m.wire, image);
    }
    for (const m of ms) {
      if (!m.partner) continue;
      wireToLocal.set(m.wire, wireToLocal.get(m.partner.wire)!);
      canonical.set(m.wire, m.partner.wire);
    }
    // d. The disk entries.
    const matched = new Set<Member>();
    const byName = new Map<string, Member>();
    for (const m of naming) byName.set(m.name!, m);
    const pending: LocalEntry[] = [];
    for (const e of disk) {
      const m = byName.get(nameOf(e.path));
      if (m) {
        matched.add(m);
        adoptBy(e, m);
      } else pending.push(e);
    }
    for (const e of pending) {
      const seg = nameOf(e.path);
      const m = taken.get(fold(seg));
      if (m && !m.inBase && !matched.has(m) && platform.caseInsensitive) {
        matched.add(m);
        adoptBy(e, m);
        caseRenames.push({
          from: e.path,
          to: join(parentOf(e.path), m.name!),
          expect: e,
        });
        continue;
      }
      // A name of the user's: a new wire path, unless that one already has another local name.
      let wire = join(g.wireDir, seg.normalize("NFC"));
      if (members.has(wire) || usedWire.has(wire)) {
        wire = caseConflictName(
          wire,
          (c) =>
            members.has(c) || usedWire.has(c) || skipped.has(c) || segFolds.has(fold(nameOf(c))) ||
            taken.has(fold(nameOf(c))) || diskFolds.has(fold(nameOf(c))),
        );
        outAliases.set(wire, e.path);
      }
      adopt(e, wire);
    }
  }

  /**
   * Member `m` takes disk entry `e`. When `m` is the new path of a server case rename whose content
   * also changed, the old path's base is carried over, so reconcile sees an unchanged local file
   * and a changed remote one (a download), not two different new files (a conflict copy).
   */
  function adoptBy(e: LocalEntry, m: Member): void {
    adopt(e, m.wire);
    const old = m.source ? outBase.get(m.source.wire) : undefined;
    const r = remote.get(m.wire);
    if (old && r && r.kind === "file" && old.kind === "file" && old.hash !== r.hash) {
      outBase.set(m.wire, { ...old, path: m.wire });
    }
  }

  function adopt(e: LocalEntry, wire: string): void {
    usedWire.add(wire);
    if (skipped.has(wire)) return; // not synced here (cannot happen on a real Windows disk)
    let entry: LocalEntry = { ...e, path: wire };
    if (entry.kind === "file" && entry.hash === undefined) {
      const b = scanBase.get(e.path);
      if (b && b.kind === "file") entry = { ...entry, hash: b.hash, chunks: b.chunks };
    }
    outLocal.set(wire, entry);
    if (!wireToLocal.has(wire)) wireToLocal.set(wire, e.path);
    localToWire.set(e.path, wire);
    if (e.kind === "dir") {
      diskDirWire.set(e.path, wire);
      if (!localDirOf.has(wire)) localDirOf.set(wire, e.path);
      if (!canonical.has(wire)) canonical.set(wire, wire);
    }
  }

  caseRenames.sort((a, b) => depthOf(b.from) - depthOf(a.from) || byCodeUnits(a.from, b.from));
  warnings.push(...blockWarnings.sort(byCodeUnits));

  const toLocal = (wire: string): string => viaDeepest(wire, wireToLocal) ?? wire;
  const toWire = (localPath: string): string => {
    const exact = localToWire.get(localPath);
    if (exact !== undefined) return exact;
    const f = foldToWire.get(fold(localPath));
    if (f !== undefined) return f;
    for (let i = lastSlash(localPath); i > 0; i = localPath.lastIndexOf("/", i - 1)) {
      const head = localPath.slice(0, i);
      const w = localToWire.get(head) ?? foldToWire.get(fold(head));
      if (w !== undefined) return w + localPath.slice(i).normalize("NFC");
    }
    return localPath.normalize("NFC");
  };

  let held: Set<string> | null = null;
  const localNameTaken = (wire: string): boolean => {
    if (!held) {
      held = new Set<string>();
      for (const p of wireToLocal.values()) held.add(fold(p));
      for (const p of local.keys()) held.add(fold(p));
      for (const p of input.blocked?.keys() ?? []) held.add(fold(p));
    }
    return held.has(fold(toLocal(wire)));
  };

  return {
    skipped,
    warnings,
    aliases: outAliases,
    local: outLocal,
    base: outBase,
    caseRenames,
    toLocal,
    toWire,
    localNameTaken,
  };
}

/** A copy of `map` without the skipped paths (for the remote mirror before reconcile). */
export function withoutSkipped<T>(
  map: ReadonlyMap<string, T>,
  skipped: ReadonlyMap<string, string>,
): Map<string, T> {
  const out = new Map<string, T>();
  for (const [p, v] of map) if (!skipped.has(p)) out.set(p, v);
  return out;
}
