/**
 * The client's state database, `FOLDER/.cloudsync/state.db` (SQLite, WAL): the merge base (the last
 * state of every path that both sides agreed on), a mirror of the server's live entries, and the
 * journal position (`seq`) up to which that mirror is current.
 *
 * @module
 */

import { transaction } from "../util/sqlite_tx.ts";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import type { BaseEntry, RemoteEntry } from "../core/types.ts";

/** Persistent sync state of one folder. */
export class StateDb {
  readonly #db: DatabaseSync;
  readonly #setBase: StatementSync;
  readonly #delBase: StatementSync;
  readonly #setRemote: StatementSync;
  readonly #delRemote: StatementSync;
  readonly #setMeta: StatementSync;
  #base: Map<string, BaseEntry> | null = null;
  #remote: Map<string, RemoteEntry> | null = null;
  #aliases: Map<string, string> | null = null;

  /**
   * Opens (or creates) `dir/state.db`. `durable: false` skips fsyncs (the simulator, whose
   * crashes are simulated above the database: what was committed stays committed).
   */
  constructor(dir: string, opts: { durable?: boolean } = {}) {
    this.#db = new DatabaseSync(join(dir, "state.db"));
    const sync = opts.durable === false ? "OFF" : "FULL";
    this.#db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=${sync};
      CREATE TABLE IF NOT EXISTS base(path TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS remote(path TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS pending(path TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS alias(path TEXT PRIMARY KEY, local TEXT NOT NULL) WITHOUT ROWID;`);
    this.#setBase = this.#db.prepare("INSERT OR REPLACE INTO base(path, data) VALUES (?, ?)");
    this.#delBase = this.#db.prepare("DELETE FROM base WHERE path = ?");
    this.#setRemote = this.#db.prepare("INSERT OR REPLACE INTO remote(path, data) VALUES (?, ?)");
    this.#delRemote = this.#db.prepare("DELETE FROM remote WHERE path = ?");
    this.#setMeta = this.#db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)");
  }

  #load<T>(table: string): Map<string, T> {
    const rows = this.#db.prepare(`SELECT path, data FROM ${table}`).all() as unknown as {
      path: string;
      data: string;
    }[];
    return new Map(rows.map((r) => [r.path, JSON.parse(r.data) as T]));
  }

  /** The merge base (kept in memory after the first load; updated by {@link setBase}). */
  loadBase(): ReadonlyMap<string, BaseEntry> {
    return this.#base ??= this.#load<BaseEntry>("base");
  }

  /** The mirror of the server's live entries (in memory after the first load). */
  loadRemote(): Map<string, RemoteEntry> {
    return this.#remote ??= this.#load<RemoteEntry>("remote");
  }

  /** Journal position the remote mirror is current to. */
  get seq(): number {
    const r = this.#db.prepare("SELECT value FROM meta WHERE key = 'seq'").get() as {
      value: string;
    } | undefined;
    return r ? Number(r.value) : 0;
  }

  /** A small named value kept with the state (null when never set). */
  getMeta(key: string): string | null {
    const r = this.#db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as {
      value: string;
    } | undefined;
    return r ? r.value : null;
  }

  /** Sets a value {@link getMeta} reads. */
  setMeta(key: string, value: string): void {
    this.#setMeta.run(key, value);
  }

  /** Applies a page of server changes to the mirror and moves `seq`, atomically. */
  applyChanges(entries: RemoteEntry[], seq: number): void {
    this.#tx(() => {
      for (const e of entries) {
        if (e.deleted) this.#delRemote.run(e.path);
        else this.#setRemote.run(e.path, JSON.stringify(e));
      }
      this.#setMeta.run("seq", String(seq));
    });
    this.#cacheRemote(entries);
  }

  #cacheRemote(entries: RemoteEntry[]): void {
    if (!this.#remote) return;
    for (const e of entries) {
      if (e.deleted) this.#remote.delete(e.path);
      else this.#remote.set(e.path, e);
    }
  }

  /** Records (or forgets, with null) base entries, atomically. */
  setBase(updates: Iterable<[string, BaseEntry | null]>): void {
    const list = [...updates];
    this.#tx(() => {
      for (const [path, entry] of list) {
        if (entry) this.#setBase.run(path, JSON.stringify(entry));
        else this.#delBase.run(path);
      }
    });
    if (this.#base) {
      for (const [path, entry] of list) {
        if (entry) this.#base.set(path, entry);
        else this.#base.delete(path);
      }
    }
  }

  /** Records remote entries the server just confirmed (our own commits), without moving `seq`. */
  setRemoteMany(entries: RemoteEntry[]): void {
    this.#tx(() => {
      for (const e of entries) {
        if (e.deleted) this.#delRemote.run(e.path);
        else this.#setRemote.run(e.path, JSON.stringify(e));
      }
    });
    this.#cacheRemote(entries);
  }

  /**
   * Uploads about to be committed, written before the commit is sent: if we crash after the
   * server accepted one but before the base recorded it, the next run recognizes the new server
   * version as our own (see {@link adoptPending}) instead of seeing a conflict.
   */
  setPending(entries: BaseEntry[]): void {
    this.#tx(() => {
      const put = this.#db.prepare("INSERT OR REPLACE INTO pending(path, data) VALUES (?, ?)");
      for (const e of entries) put.run(e.path, JSON.stringify(e));
    });
  }

  /** Local names of wire paths this filesystem cannot hold as they are (case conflicts). */
  loadAliases(): Map<string, string> {
    if (!this.#aliases) {
      const rows = this.#db.prepare("SELECT path, local FROM alias").all() as unknown as {
        path: string;
        local: string;
      }[];
      this.#aliases = new Map(rows.map((r) => [r.path, r.local]));
    }
    return this.#aliases;
  }

  /** Replaces the alias table and forgets the base of paths that cannot exist here, atomically. */
  saveAliases(aliases: Map<string, string>, forgetBase: string[]): void {
    const old = this.loadAliases();
    const same = old.size === aliases.size && [...aliases].every(([k, v]) => old.get(k) === v);
    if (same && forgetBase.length === 0) return;
    this.#tx(() => {
      if (!same) {
        this.#db.exec("DELETE FROM alias");
        const put = this.#db.prepare("INSERT INTO alias(path, local) VALUES (?, ?)");
        for (const [k, v] of aliases) put.run(k, v);
      }
      for (const p of forgetBase) this.#delBase.run(p);
    });
    this.#aliases = new Map(aliases);
    for (const p of forgetBase) this.#base?.delete(p);
  }

  /** Forgets pending uploads (their outcome is recorded). */
  clearPending(paths: Iterable<string>): void {
    this.#tx(() => {
      const del = this.#db.prepare("DELETE FROM pending WHERE path = ?");
      for (const p of paths) del.run(p);
    });
  }

  /** Pending uploads left by an interrupted run. */
  loadPending(): Map<string, BaseEntry> {
    return this.#load<BaseEntry>("pending");
  }

  #tx(fn: () => void): void {
    transaction(this.#db, fn);
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * The bytes of the server's files at or below wire path `path`, as of the last sync, read from
 * `dir/state.db` without changing it (beside a running client too); null if it cannot be read.
 */
export function remoteBytesUnder(dir: string, path: string): number | null {
  let db: DatabaseSync | null = null;
  try {
    db = new DatabaseSync(join(dir, "state.db"), { readOnly: true });
    // Everything below `path/` sorts between "path/" and "path0" ("0" follows "/").
    const rows = db.prepare(
      "SELECT data FROM remote WHERE path = ? OR (path > ? AND path < ?)",
    ).all(path, path + "/", path + "0") as unknown as { data: string }[];
    let n = 0;
    for (const r of rows) {
      const e = JSON.parse(r.data) as RemoteEntry;
      if (e.kind === "file") n += e.size;
    }
    return n;
  } catch {
    return null;
  } finally {
    db?.close();
  }
}
