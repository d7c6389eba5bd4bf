/**
 * Which pass runs next: a full one (everything scanned: the period's consistency pass, or one
 * asked for) or one scoped to the changed paths. Pure, table-tested.
 *
 * When the period's full pass is due just as a change waits (a local one, or one the server
 * pushed), the change's own pass goes first and the full pass right after it: a full pass of
 * 10,000 files takes about 150 ms here, which a new file would otherwise wait for (one new file
 * in five did in the bench's latency row). Only once in a row: a stream of changes never puts the
 * full pass off again.
 *
 * @example
 * ```ts
 * choosePass({ due: true, asked: false, changed: 1, pushed: false, deferred: false });
 * // { full: false, deferred: true, again: true }: the change's pass now, the full one next
 * ```
 *
 * @module
 */

/** What decides the next pass. */
export interface PassState {
  /** The period since the last full pass has run out. */
  due: boolean;
  /** A full pass was asked for (a reconnection, a lost watcher event, `status --wait`, ...). */
  asked: boolean;
  /** How many changed local paths wait. */
  changed: number;
  /** The server pushed a change (its pass scans nothing local; what it brings is merged). */
  pushed: boolean;
  /** The due full pass was already put off once for a change's pass. */
  deferred: boolean;
}

/** The choice: `full`, the new `deferred`, and whether to run the next pass at once (`again`). */
export interface PassChoice {
  full: boolean;
  deferred: boolean;
  again: boolean;
}

/** See the module doc. */
export function choosePass(s: PassState): PassChoice {
  if (s.due && !s.asked && (s.changed > 0 || s.pushed) && !s.deferred) {
    return { full: false, deferred: true, again: true };
  }
  const full = s.asked || s.due;
  return { full, deferred: full ? false : s.deferred, again: false };
}
