/**
 * Safety guards applied to a scan before reconciliation, as pure functions.
 *
 * The mass-delete guard: when more than half of the synced files (and more than 100) vanished at
 * once, the likely cause is an unmounted drive or an emptied folder, not a user deleting their
 * data. The vanished files are then treated as unchanged (nothing is deleted anywhere) until the
 * user chooses one of two one-time ways out (`lib/client/mass_delete.ts`): bring them back from
 * the server (their merge base is forgotten, so they download as new), or confirm the deletion
 * of exactly those files, once ({@link splitConfirmed}: the confirmed ones go, the guard judges
 * the rest as before). A file whose content reappears at a path new to the base (a renamed or
 * moved folder) did not vanish: it is neither counted nor held back.
 *
 * @example
 * ```ts
 * const check = massDeleteCheck(base, local);
 * if (check.tripped) local = withVanishedKept(base, local, check.vanished);
 * ```
 *
 * @module
 */

import type { BaseEntry, LocalEntry } from "./types.ts";

/** Vanished files above this count (and above half of all synced files) trip the guard. */
export const MASS_DELETE_MIN = 100;

/** Result of {@link massDeleteCheck}. */
export interface MassDeleteCheck {
  /** Synced files in the base. */
  total: number;
  /** Base files (and directories) missing from the scan, except files found moved. */
  vanished: string[];
  /** Base files missing from their path whose content is at a path new to the base. */
  moved: number;
  /** How many of `vanished` are files. */
  vanishedFiles: number;
  /** True when the number of vanished files is over both thresholds. */
  tripped: boolean;
}

/** Counts base files missing from the local scan (those found moved apart). */
export function massDeleteCheck(
  base: ReadonlyMap<string, BaseEntry>,
  local: ReadonlyMap<string, LocalEntry>,
): MassDeleteCheck {
  // Content now at paths new to the base (hashed or recognized by the scan): moved files.
  const arrived = new Map<string, number>();
  for (const [path, l] of local) {
    if (l.kind !== "file" || l.hash === undefined || base.has(path)) continue;
    const key = `${l.hash}:${l.size}`;
    arrived.set(key, (arrived.get(key) ?? 0) + 1);
  }
  let total = 0;
  let files = 0;
  let moved = 0;
  const vanished: string[] = [];
  for (const [path, b] of base) {
    if (b.kind === "file") total++;
    if (local.has(path)) continue;
    if (b.kind === "file") {
      const key = `${b.hash}:${b.size}`;
      const n = arrived.get(key) ?? 0;
      if (n > 0) {
        arrived.set(key, n - 1);
        moved++;
        continue;
      }
      files++;
    }
    vanished.push(path);
  }
  return {
    total,
    vanished,
    moved,
    vanishedFiles: files,
    tripped: tripsGuard(files, total),
  };
}

/** A copy of `local` in which every vanished path looks exactly as in the base (unchanged). */
export function withVanishedKept(
  base: ReadonlyMap<string, BaseEntry>,
  local: ReadonlyMap<string, LocalEntry>,
  vanished: readonly string[],
): Map<string, LocalEntry> {
  const out = new Map(local);
  for (const path of vanished) {
    const b = base.get(path);
    if (!b) continue;
    const l: LocalEntry = { path, kind: b.kind, size: b.size, mtime: b.mtime, exec: b.exec };
    if (b.mode !== undefined) l.mode = b.mode;
    out.set(path, l);
  }
  return out;
}

/** True when `files` vanished files of `total` synced ones trip the guard. */
export function tripsGuard(files: number, total: number): boolean {
  return files > MASS_DELETE_MIN && files * 2 > total;
}

/**
 * Splits a tripped check's vanished paths by a one-time confirmation (path -> the base version
 * it was confirmed at): those confirmed at their current base version are let through; the rest
 * is held back if it still trips the guard by itself.
 */
export function splitConfirmed(
  check: MassDeleteCheck,
  base: ReadonlyMap<string, BaseEntry>,
  confirmed: ReadonlyMap<string, number>,
): { release: string[]; hold: string[] } {
  const release: string[] = [];
  const rest: string[] = [];
  let restFiles = 0;
  for (const path of check.vanished) {
    const b = base.get(path);
    if (b && confirmed.get(path) === b.version) release.push(path);
    else {
      rest.push(path);
      if (b?.kind === "file") restFiles++;
    }
  }
  return { release, hold: tripsGuard(restFiles, check.total) ? rest : [] };
}
