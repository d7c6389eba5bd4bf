/**
 * What the sync engine must look at again, and what it must leave alone for now. Pure state with
 * an injected clock (no I/O), owned by the client for the life of a folder:
 *
 * - **Rechecks**: paths a pass left unsettled (a step deferred because the disk changed, an upload
 *   the server refused because another device got there first, the folder of a deleted item, a
 *   conflict copy to upload). The next pass scans them whatever woke it, so nothing is ever acted
 *   on from a stale picture: a path that did not settle is never again "assumed unchanged".
 * - **Holds**: paths no pass may act on before a given time: a file caught while it was being
 *   written (it must first stay still for a settle time), and items whose step failed (retried
 *   with back-off). A held path is left out of the pass entirely: not uploaded, not replaced, not
 *   deleted, on either side.
 *
 * @example
 * ```ts
 * const att = new Attention();
 * att.failed("a.txt", "Permission denied", 0); // held 1 s, then 2 s, 4 s, ... if it fails again
 * att.heldAt(500).has("a.txt"); // true
 * att.takeScopes(1000); // ["a.txt"]: the hold ran out, the next pass looks again
 * ```
 *
 * @module
 */

/** Why a path is held, and until when. */
export interface Hold {
  /** Epoch ms; the path is acted on again from then on. */
  until: number;
  /** For the user: why it is held. */
  reason: string;
  /**
   * `unstable`: being written; `settling`: changed a moment ago; `failed`: its step failed;
   * `deferred`: it kept changing under us.
   */
  kind: "unstable" | "settling" | "failed" | "deferred";
  /** How many times in a row this path failed (or was deferred). */
  count: number;
}

/** First retry of a failed item after this long; doubles with each failure. */
export const RETRY_FIRST_MS = 1000;
/** Longest wait between retries of a failed item. */
export const RETRY_MAX_MS = 5 * 60 * 1000;
/** A deferred step is looked at again after this long (doubling while it stays deferred). */
export const DEFER_FIRST_MS = 250;

/** Back-off before retry number `count` (1-based): `first`, 2x, 4x, ... capped at `max`. */
export function backoffMs(count: number, first = RETRY_FIRST_MS, max = RETRY_MAX_MS): number {
  const n = Math.max(1, Math.min(count, 30));
  return Math.min(max, first * 2 ** (n - 1));
}

/** Rechecks and holds of one folder (see the module doc). */
export class Attention {
  readonly #recheck = new Set<string>();
  readonly #holds = new Map<string, Hold>();
  /** Failures or deferrals in a row per path (back-off grows with them), until it settles. */
  readonly #streak = new Map<string, { kind: Hold["kind"]; count: number; reason: string }>();
  /** Paths last seen being written, and when. */
  readonly #unstable = new Map<string, number>();

  /** Asks the next pass to scan `paths` again. */
  recheck(paths: Iterable<string>): void {
    for (const p of paths) this.#recheck.add(p);
  }

  /**
   * The paths the next pass must scan (on top of what woke it): every recheck, and every hold
   * that has run out at `now`. Both are then forgotten: the pass records again whatever stays
   * unsettled.
   */
  takeScopes(now: number): string[] {
    const out = new Set(this.#recheck);
    this.#recheck.clear();
    for (const [p, h] of this.#holds) {
      if (h.until > now) continue;
      out.add(p);
      this.#holds.delete(p);
    }
    return [...out];
  }

  /** Forgets the rechecks (a full pass scans everything anyway). */
  clearRechecks(): void {
    this.#recheck.clear();
  }

  /** Holds in force at `now`: these paths (and everything below them) are left alone. */
  heldAt(now: number): Map<string, Hold> {
    const out = new Map<string, Hold>();
    for (const [p, h] of this.#holds) if (h.until > now) out.set(p, h);
    return out;
  }

  /** Paths that failed or were deferred and have not settled since, with the last reason. */
  troubled(): Map<string, { kind: Hold["kind"]; count: number; reason: string }> {
    return new Map(this.#streak);
  }

  /** Holds `path` as being written until `until` (it must stay still until then). */
  unstable(path: string, until: number, reason: string, now: number): void {
    this.#unstable.set(path, now);
    this.#holds.set(path, { until: Math.max(until, now + 1), reason, kind: "unstable", count: 1 });
  }

  /** Holds `path`, changed a moment ago, until `until` (not yet taken as being written). */
  settling(path: string, until: number, reason: string, now: number): void {
    this.#holds.set(path, { until: Math.max(until, now + 1), reason, kind: "settling", count: 1 });
  }

  /**
   * True when `path` was seen being written within the last `window` ms: it is then taken only
   * once its modification time is a settle time old.
   */
  recentlyUnstable(path: string, now: number, window = 60_000): boolean {
    const t = this.#unstable.get(path);
    if (t === undefined) return false;
    if (now - t > window) {
      this.#unstable.delete(path);
      return false;
    }
    return true;
  }

  /** Records that the step for `path` failed: held with back-off. Returns the hold. */
  failed(path: string, reason: string, now: number): Hold {
    return this.#streakHold(path, "failed", reason, now, RETRY_FIRST_MS);
  }

  /**
   * Records that the step for `path` was deferred (the disk changed under it): looked at again
   * soon, later each time it stays deferred, so a step that can never run does not spin.
   */
  deferred(path: string, reason: string, now: number): Hold {
    return this.#streakHold(path, "deferred", reason, now, DEFER_FIRST_MS);
  }

  #streakHold(path: string, kind: Hold["kind"], reason: string, now: number, first: number): Hold {
    const prev = this.#streak.get(path);
    const count = prev?.kind === kind ? prev.count + 1 : 1;
    this.#streak.set(path, { kind, count, reason });
    const hold: Hold = { until: now + backoffMs(count, first), reason, kind, count };
    this.#holds.set(path, hold);
    return hold;
  }

  /** `path` settled (synced, or nothing left to do): nothing more to wait for. */
  settled(path: string): void {
    this.#holds.delete(path);
    this.#streak.delete(path);
    this.#unstable.delete(path);
  }

  /** When the client should wake for a pass: soon for rechecks, else the earliest hold end. */
  nextWake(now: number): number | null {
    let t: number | null = this.#recheck.size > 0 ? now + DEFER_FIRST_MS : null;
    for (const h of this.#holds.values()) {
      const at = Math.max(h.until, now);
      if (t === null || at < t) t = at;
    }
    return t;
  }
}
