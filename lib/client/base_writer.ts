/**
 * The one writer of the merge base during an execution: every step that settles a path records
 * its new base here (null: forgotten); {@link BaseWriter.flush} writes them to the state database
 * in one transaction. The base the steps planned on is a read-only view; nothing else changes it.
 *
 * @example
 * ```ts
 * const w = new BaseWriter(state);
 * w.set("a.txt", entry);
 * w.flush(); // now in state.db, and in the state's view
 * ```
 *
 * @module
 */

import type { BaseEntry } from "../core/types.ts";

/** Where the base is kept (`StateDb`). */
export interface BaseStore {
  setBase(updates: Iterable<[string, BaseEntry | null]>): void;
}

/** Collects base updates and writes them (see the module doc). */
export class BaseWriter {
  readonly #pending: [string, BaseEntry | null][] = [];
  /** Paths whose base this execution recorded. */
  readonly settled = new Set<string>();

  constructor(readonly store: BaseStore) {}

  /** Records `path`'s new base (null: forget it); written at the next {@link flush}. */
  set(path: string, entry: BaseEntry | null): void {
    this.settled.add(path);
    this.#pending.push([path, entry]);
  }

  /** Writes what was recorded since the last flush, in one transaction. */
  flush(): void {
    if (this.#pending.length > 0) this.store.setBase(this.#pending.splice(0));
  }
}
