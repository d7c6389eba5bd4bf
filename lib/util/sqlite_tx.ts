/**
 * One SQLite transaction around a function, with a rollback that never hides the real error:
 * when a write fails because the disk is full, SQLite may already have rolled the transaction
 * back itself, and a second ROLLBACK would throw "no transaction is active" instead of the cause.
 *
 * @example
 * ```ts
 * const rows = transaction(db, () => insertAll(db));
 * ```
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";

/** Runs `fn` inside BEGIN (or BEGIN IMMEDIATE) ... COMMIT; rolls back and rethrows on failure. */
export function transaction<T>(db: DatabaseSync, fn: () => T, immediate = false): T {
  db.exec(immediate ? "BEGIN IMMEDIATE" : "BEGIN");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (e) {
    try {
      db.exec("ROLLBACK");
    } catch { /* SQLite already rolled back (e.g. disk full): keep the original error */ }
    throw e;
  }
}
