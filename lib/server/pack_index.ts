/**
 * Where each packed chunk sits: {@link PackIndex} maps (account, hash) to a pack object, an
 * offset and a length, and remembers when the chunk was last stored, which garbage collection
 * needs (`sweep` deletes only chunks not stored again since it decided). {@link SqlitePackIndex}
 * keeps it in a local SQLite file; `pg_meta.ts` has the PostgreSQL one that instances share.
 *
 * @example
 * ```ts
 * const index = new SqlitePackIndex("./cloud-data/packs.db");
 * await index.add("acct", [{ hash, pack: "0123abcd", offset: 0, length: 100 }], Date.now());
 * const [where] = await index.locate("acct", [hash]);
 * ```
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { transaction } from "../util/sqlite_tx.ts";
import { WalSync } from "../util/wal_sync.ts";

/** Where a chunk's stored bytes are. */
export interface PackLocation {
  pack: string;
  offset: number;
  length: number;
}

/** A chunk's location, with its hash. */
export interface PackedChunk extends PackLocation {
  hash: string;
}

/** The index of a pack store. */
export interface PackIndex {
  /**
   * Of `hashes`, returns those indexed, and marks them as stored at `now` (an upload of a chunk
   * already stored writes no bytes, but a sweep that has not deleted it yet must keep it now).
   */
  touch(account: string, hashes: readonly string[], now: number): Promise<Set<string>>;
  /** Records where chunks sit, stored at `now` (a chunk indexed again is moved). */
  add(account: string, rows: readonly PackedChunk[], now: number): Promise<void>;
  /** The locations of `hashes`, in order (null where not indexed). */
  locate(account: string, hashes: readonly string[]): Promise<(PackLocation | null)[]>;
  /**
   * Forgets those of `hashes` last stored before `before`, in one transaction; returns them and
   * the packs that no chunk uses any more (their objects can go).
   */
  remove(
    account: string,
    hashes: readonly string[],
    before: number,
  ): Promise<{ removed: string[]; emptyPacks: string[] }>;
  /** Forgets every chunk of `account` (`cloud-server delete-account`). */
  removeAccount(account: string): Promise<void>;
  close(): Promise<void>;
}

/** A {@link PackIndex} in one SQLite file (table `packed`). */
export class SqlitePackIndex implements PackIndex {
  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #put: StatementSync;
  readonly #touch: StatementSync;
  readonly #del: StatementSync;
  readonly #left: StatementSync;
  readonly #wal: WalSync;

  constructor(file: string) {
    this.#db = new DatabaseSync(file);
    this.#db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
      CREATE TABLE IF NOT EXISTS packed(account TEXT NOT NULL, hash TEXT NOT NULL, pack TEXT NOT NULL,
        offset INTEGER NOT NULL, length INTEGER NOT NULL, PRIMARY KEY(account, hash)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS packed_by_pack ON packed(account, pack);`);
    // Added with garbage collection's sweep; rows from before count as stored long ago.
    addColumnIfMissing(this.#db, "packed", "created", "INTEGER NOT NULL DEFAULT 0");
    this.#get = this.#db.prepare(
      "SELECT pack, offset, length FROM packed WHERE account = ? AND hash = ?",
    );
    this.#put = this.#db.prepare(
      "INSERT OR REPLACE INTO packed(account, hash, pack, offset, length, created) VALUES (?,?,?,?,?,?)",
    );
    this.#touch = this.#db.prepare("UPDATE packed SET created = ? WHERE account = ? AND hash = ?");
    this.#del = this.#db.prepare(
      "DELETE FROM packed WHERE account = ? AND hash = ? AND created < ? RETURNING pack",
    );
    this.#left = this.#db.prepare("SELECT 1 FROM packed WHERE account = ? AND pack = ? LIMIT 1");
    this.#wal = new WalSync(this.#db); // setup above is durable (FULL); NORMAL from here
  }

  touch(account: string, hashes: readonly string[], now: number): Promise<Set<string>> {
    return this.#wal.settle(() => {
      // Look first: a fresh chunk (the usual case) costs a read, not a write transaction.
      const present = new Set(hashes.filter((h) => this.#get.get(account, h) !== undefined));
      if (present.size > 0) {
        transaction(this.#db, () => {
          for (const h of present) this.#touch.run(now, account, h);
        });
      }
      return Promise.resolve(present);
    });
  }

  add(account: string, rows: readonly PackedChunk[], now: number): Promise<void> {
    return this.#wal.settle(() => {
      transaction(this.#db, () => {
        for (const r of rows) this.#put.run(account, r.hash, r.pack, r.offset, r.length, now);
      });
      return Promise.resolve();
    });
  }

  locate(account: string, hashes: readonly string[]): Promise<(PackLocation | null)[]> {
    return this.#wal.read(() => {
      return Promise.resolve(hashes.map((h) => {
        const r = this.#get.get(account, h) as
          | { pack: string; offset: number; length: number }
          | undefined;
        return r ? { pack: r.pack, offset: Number(r.offset), length: Number(r.length) } : null;
      }));
    });
  }

  remove(
    account: string,
    hashes: readonly string[],
    before: number,
  ): Promise<{ removed: string[]; emptyPacks: string[] }> {
    return this.#wal.settle(() =>
      Promise.resolve(transaction(this.#db, () => {
        const removed: string[] = [];
        const packs = new Set<string>();
        for (const h of hashes) {
          const r = this.#del.get(account, h, before) as { pack: string } | undefined;
          if (!r) continue;
          removed.push(h);
          packs.add(r.pack);
        }
        const emptyPacks = [...packs].filter((p) => this.#left.get(account, p) === undefined);
        return { removed, emptyPacks };
      }))
    );
  }

  removeAccount(account: string): Promise<void> {
    return this.#wal.settle(() => {
      this.#db.prepare("DELETE FROM packed WHERE account = ?").run(account);
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    return this.#wal.durable().finally(() => this.#db.close());
  }
}

/**
 * `ALTER TABLE table ADD COLUMN column decl` unless the column exists (schema upgrade); true if it
 * was added now.
 */
export function addColumnIfMissing(
  db: DatabaseSync,
  table: string,
  column: string,
  decl: string,
): boolean {
  const cols = db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
  if (cols.some((c) => c.name === column)) return false;
  db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${decl}`);
  return true;
}
