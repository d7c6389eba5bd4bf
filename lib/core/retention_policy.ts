/**
 * Which kept versions of one path the server forgets, as a pure function (used by
 * `lib/server/retention.ts`, which streams an account's old versions path by path):
 *
 * - every version replaced less than `keepDays` ago is kept (`--keep-days`, default 30);
 * - of the older ones, as restic's `forget` does, `--keep-daily N` keeps the last version of each
 *   of the N most recent days that have one, `--keep-weekly N` of the N most recent weeks (ISO
 *   weeks, Monday first), `--keep-monthly N` of the N most recent months; a version kept by any
 *   rule is kept. The days counted are those before the window: a day whose last version is
 *   still within `keepDays` (or current) is kept already and counts for none of the N;
 * - everything else is forgotten.
 *
 * Deleted files follow the same rule: their versions (the last one replaced by the deletion) age
 * like any other. A version's day is the day it was made, in the server's time zone; its age is
 * how long ago it was replaced (until then it was the current one).
 *
 * @example
 * ```ts
 * const policy = { keepDays: 30, daily: 7, weekly: 4, monthly: 12 };
 * versionsToForget(versionsOfOnePath, policy, Date.now()); // versions to delete
 * ```
 *
 * @module
 */

import { calendarKeys, LOCAL_ZONE, type Zone } from "./time_spec.ts";

/** The server's retention settings. */
export interface RetentionPolicy {
  /** Everything replaced less than this many days ago is kept. */
  keepDays: number;
  /** Of older versions: the last of each of this many most recent days that have one. */
  daily: number;
  /** ... of this many most recent weeks. */
  weekly: number;
  /** ... of this many most recent months. */
  monthly: number;
}

/** The default: everything for 30 days, nothing after. */
export const DEFAULT_POLICY: RetentionPolicy = { keepDays: 30, daily: 0, weekly: 0, monthly: 0 };

const DAY = 24 * 60 * 60 * 1000;

/** What the policy needs to know of one kept version. */
export interface VersionAge {
  version: number;
  /** When the server wrote it (ms). */
  made: number;
  /** When it stopped being current (ms). */
  replaced: number;
}

/** True when the policy only counts days (no thinning: one cut-off decides). */
export function cutoffOnly(p: RetentionPolicy): boolean {
  return p.daily <= 0 && p.weekly <= 0 && p.monthly <= 0;
}

/** Versions replaced before this instant are older than `keepDays`. */
export function keepCutoff(p: RetentionPolicy, now: number): number {
  return now - p.keepDays * DAY;
}

/**
 * The versions of `versions` (all of one path, any order) to forget under `policy` at `now`;
 * `zone` says where days, weeks and months begin.
 */
export function versionsToForget(
  versions: readonly VersionAge[],
  policy: RetentionPolicy,
  now: number,
  zone: Zone = LOCAL_ZONE,
): number[] {
  const cutoff = keepCutoff(policy, now);
  const old = versions.filter((v) => v.replaced < cutoff);
  if (old.length === 0) return [];
  // Newest first; a version's bucket is the day, week or month it was made.
  old.sort((a, b) => b.made - a.made || b.version - a.version);
  const keep = new Set<number>();
  const rules: { n: number; key: (k: ReturnType<typeof calendarKeys>) => number }[] = [
    { n: policy.daily, key: (k) => k.day },
    { n: policy.weekly, key: (k) => k.week },
    { n: policy.monthly, key: (k) => k.month },
  ];
  const left = rules.map((r) => Math.max(0, Math.floor(r.n)));
  // The version that replaced the newest old one is still kept (by the window, or as the
  // current one): its day, week and month have their last version already, so they are not
  // counted, and an older version of the same day is no "last version of the day".
  const successor = calendarKeys(Math.max(...old.map((v) => v.replaced)), zone);
  const last: (number | null)[] = rules.map((r) => r.key(successor));
  for (const v of old) {
    const keys = calendarKeys(v.made, zone);
    rules.forEach((r, i) => {
      const k = r.key(keys);
      if (left[i]! > 0 && k !== last[i]) {
        keep.add(v.version);
        left[i]!--;
        last[i] = k;
      }
    });
  }
  return old.filter((v) => !keep.has(v.version)).map((v) => v.version).sort((a, b) => a - b);
}

/** Reads a `--keep-daily`/`--keep-weekly`/`--keep-monthly` value: a whole number, 0 or more. */
export function parseKeepCount(text: string): number | null {
  return /^\d{1,6}$/.test(text) ? Number(text) : null;
}
