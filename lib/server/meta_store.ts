/**
 * Server metadata in one SQLite database file (`DATA/meta.db`, WAL; no setup): accounts,
 * devices, the per-account journal of entries, the kept versions and the chunk index. It
 * implements the asynchronous {@link MetaStore} (`stores.ts`) over synchronous `node:sqlite`
 * calls: every method runs to completion at once (a batch is one call, so the async interface
 * costs one resolved promise per request, not per item), and a commit is one `BEGIN IMMEDIATE`
 * transaction in which `planCommit` (`lib/core/commit_plan.ts`) reads the database directly.
 *
 * The journal: every accepted change gets the account's next sequence number, stored as the
 * entry's `version`. "What changed since N" is every entry (tombstones included) with
 * `version > N`, so a reconnecting device pays only for what changed. Every replaced or deleted
 * entry is copied to `versions` first and kept for the retention period.
 *
 * @module
 */

import { transaction } from "../util/sqlite_tx.ts";
import { WalSync } from "../util/wal_sync.ts";
import { addColumnIfMissing } from "./pack_index.ts";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import type { ChunkRef, RemoteEntry } from "../core/types.ts";
import {
  type CommitItem,
  type CommitReader,
  type CommitResult,
  planCommit,
} from "../core/commit_plan.ts";
import {
  type PointInTime,
  restoreCommit,
  type RestoreItem,
  type VersionInfo,
} from "../core/restore_plan.ts";
import type {
  AccountFootprint,
  AccountSummary,
  ChunkInfo,
  DeletedInfo,
  DeviceRecord,
  DeviceSummary,
  HistoryQuery,
  ListAtQuery,
  MetaStore,
  NewChunk,
  OldVersion,
  Page,
  VersionRef,
} from "./stores.ts";

export type {
  AccountFootprint,
  AccountSummary,
  CommitItem,
  CommitResult,
  DeviceRecord,
  DeviceSummary,
  MetaStore,
};

/** A fresh random id (accounts, devices): 40 bits in hex. */
export function randomId(): string {
  const b = crypto.getRandomValues(new Uint8Array(5));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

interface EntryRow {
  path: string;
  kind: string;
  deleted: number;
  version: number;
  size: number;
  mtime: number;
  exec: number;
  /** Permission bits of a file; null when its device sent none (and for directories). */
  mode: number | null;
  hash: string;
  chunks: string;
  device: string;
  /** When the server wrote it (absent from rows of queries that do not ask for it). */
  made?: number;
  /** Kept versions: when it stopped being current; null for the current entry. */
  replaced?: number | null;
}

/** What an entry and a version row have in common (SQLite: integers for booleans). */
function rowFields(r: EntryRow) {
  return {
    path: r.path,
    kind: r.kind === "dir" ? "dir" as const : "file" as const,
    deleted: r.deleted === 1,
    version: Number(r.version),
    size: Number(r.size),
    mtime: Number(r.mtime),
    exec: r.exec === 1,
    ...(r.mode !== null && r.mode !== undefined ? { mode: Number(r.mode) } : {}),
    hash: r.hash,
    device: r.device,
  };
}

/** The entry as `changes` sends it (without the server-side `made`). */
function rowToEntry(r: EntryRow): RemoteEntry {
  return { ...rowFields(r), chunks: JSON.parse(r.chunks) as ChunkRef[] };
}

/** The entry as the commit planner reads it: with `made`, which its kept version keeps. */
function rowToStored(r: EntryRow): RemoteEntry {
  const e = rowToEntry(r);
  if (r.made !== undefined && r.made !== null) e.made = Number(r.made);
  return e;
}

/** A row of the history queries as a {@link VersionInfo}. */
function rowToVersion(r: EntryRow): VersionInfo {
  return {
    ...rowFields(r),
    made: Number(r.made ?? 0),
    replaced: r.replaced === null || r.replaced === undefined ? null : Number(r.replaced),
  };
}

/** The columns of a version row, with the current state's as `c_…` (see `listAt`). */
interface PointRow extends EntryRow {
  c_kind: string;
  c_deleted: number;
  c_version: number;
  c_size: number;
  c_mtime: number;
  c_exec: number;
  c_mode: number | null;
  c_hash: string;
}

function rowToPoint(r: PointRow): PointInTime {
  return {
    ...rowToVersion(r),
    chunks: JSON.parse(r.chunks) as ChunkRef[],
    current: {
      kind: r.c_kind === "dir" ? "dir" : "file",
      deleted: r.c_deleted === 1,
      version: Number(r.c_version),
      size: Number(r.c_size),
      mtime: Number(r.c_mtime),
      exec: r.c_exec === 1,
      ...(r.c_mode !== null && r.c_mode !== undefined ? { mode: Number(r.c_mode) } : {}),
      hash: r.c_hash,
    },
  };
}

/**
 * The condition "`path` is `p` or below it" on a column (`p` "": always), with its parameters:
 * one range of the index, from `p` up to `p0` ("0" follows "/" in byte order), without the
 * siblings inside it (`p.txt`, `p-2`: they sort between `p` and `p/`). Pure comparisons of
 * UTF-8 bytes (SQLite's BINARY collation, PostgreSQL's "C"), so any name works.
 */
export function subtreeSql(
  p: string,
  col = "path",
): { sql: string; params: string[] } {
  if (p === "") return { sql: "1 = 1", params: [] };
  return {
    sql: `${col} >= ? AND ${col} < ? AND (${col} = ? OR ${col} > ?)`,
    params: [p, p + "0", p, p + "/"],
  };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS accounts(
  id TEXT PRIMARY KEY, serial_hash TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices(
  id TEXT PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL, token_hash TEXT NOT NULL,
  created INTEGER NOT NULL, last_seen INTEGER, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS entries(
  account TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL, deleted INTEGER NOT NULL,
  version INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL, exec INTEGER NOT NULL,
  hash TEXT NOT NULL, chunks TEXT NOT NULL, device TEXT NOT NULL,
  PRIMARY KEY(account, path)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_version ON entries(account, version);
CREATE TABLE IF NOT EXISTS versions(
  account TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL, deleted INTEGER NOT NULL,
  version INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL, exec INTEGER NOT NULL,
  hash TEXT NOT NULL, chunks TEXT NOT NULL, device TEXT NOT NULL, replaced INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS versions_by_path_version ON versions(account, path, version);
CREATE INDEX IF NOT EXISTS versions_by_version ON versions(account, version);
DROP INDEX IF EXISTS versions_by_path;
CREATE TABLE IF NOT EXISTS chunks(
  account TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL, stored INTEGER NOT NULL,
  compressed INTEGER NOT NULL, created INTEGER NOT NULL, PRIMARY KEY(account, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invites(
  hash TEXT PRIMARY KEY, created INTEGER NOT NULL, used INTEGER) WITHOUT ROWID;
`;

/** The entries/versions columns, in insert order (`mode`, `made` came later: see the constructor). */
const ENTRY_COLUMNS =
  "path, kind, deleted, version, size, mtime, exec, hash, chunks, device, mode, made";
/** The columns history reads (no chunk lists). */
const VERSION_COLUMNS = "path, kind, deleted, version, size, mtime, exec, hash, device, mode, made";

/**
 * Garbage collection of one account's chunks in steps that each take a few milliseconds, so
 * that retention never stalls the sessions and never holds the account's journal in memory:
 * {@link mark} until it returns false (chunks referenced by the journal and the kept versions,
 * a few hundred rows a call), then {@link take} until it returns null. Commits may run between
 * the steps: each `take` first marks what was written since the previous step (entries with a
 * newer version, kept versions added since), then forgets, in the same synchronous step, the
 * chunks of its page that nothing references, so a chunk a commit has just referenced is never
 * forgotten. {@link close} ends the sweep (also when abandoned).
 */
export interface ChunkSweep {
  /** Marks the chunks of the next rows as used; false once every row is marked. */
  mark(): boolean;
  /**
   * Forgets (from the index) the next page's chunks stored before `cutoff` that nothing
   * references and returns their hashes (possibly none); null once every chunk was seen.
   */
  take(cutoff: number): string[] | null;
  close(): void;
}

function nextTurn(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/** {@link MetaStore} in one SQLite database file. */
export class SqliteMetaStore implements MetaStore {
  readonly #db: DatabaseSync;
  readonly #wal: WalSync;
  readonly #q: Record<string, StatementSync>;
  /** A {@link chunkSweep} is running (they share a temporary table). */
  #sweeping = false;
  /** The end of the last {@link forgetUnreferenced} queued. */
  #sweepTail: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    Deno.mkdirSync(dataDir, { recursive: true });
    this.#db = new DatabaseSync(join(dataDir, "meta.db"));
    this.#db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;");
    this.#db.exec(SCHEMA);
    // Schema additions since the first release, for databases made by an older server.
    for (const table of ["entries", "versions"]) {
      addColumnIfMissing(this.#db, table, "mode", "INTEGER");
    }
    // When each version was written (history, point-in-time restore). Rows of an older server
    // are dated as well as can be: an entry was made when its previous version was replaced.
    transaction(this.#db, () => {
      const added = ["versions", "entries"].map((t) =>
        addColumnIfMissing(this.#db, t, "made", "INTEGER")
      );
      if (added.includes(true)) {
        this.#db.exec(`UPDATE versions SET made = MIN(replaced, COALESCE((SELECT MAX(p.replaced)
          FROM versions p WHERE p.account = versions.account AND p.path = versions.path
          AND p.version < versions.version), mtime)) WHERE made IS NULL`);
        this.#db.exec(`UPDATE entries SET made = COALESCE((SELECT MAX(v.replaced) FROM versions v
          WHERE v.account = entries.account AND v.path = entries.path), mtime) WHERE made IS NULL`);
      }
    });
    const p = (sql: string) => this.#db.prepare(sql);
    this.#q = {
      entry: p("SELECT * FROM entries WHERE account = ? AND path = ?"),
      liveBelow: p(
        "SELECT path FROM entries WHERE account = ? AND path > ? AND path < ? AND deleted = 0 LIMIT ?",
      ),
      upsert: p(`INSERT INTO entries(account, ${ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
        ON CONFLICT(account, path) DO UPDATE SET
        kind=excluded.kind, deleted=excluded.deleted, version=excluded.version, size=excluded.size,
        mtime=excluded.mtime, exec=excluded.exec, hash=excluded.hash, chunks=excluded.chunks,
        device=excluded.device, mode=excluded.mode, made=excluded.made`),
      keep: p(`INSERT INTO versions(account, ${ENTRY_COLUMNS}, replaced)
        VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
      keptVersion: p("SELECT * FROM versions WHERE account = ? AND path = ? AND version = ?"),
      setSeq: p("UPDATE accounts SET seq = ? WHERE id = ?"),
      seq: p("SELECT seq FROM accounts WHERE id = ?"),
      changes: p(
        "SELECT * FROM entries WHERE account = ? AND version > ? ORDER BY version LIMIT ?",
      ),
      chunk: p("SELECT size, stored, compressed FROM chunks WHERE account = ? AND hash = ?"),
      addChunk: p(
        "INSERT OR REPLACE INTO chunks(account, hash, size, stored, compressed, created) VALUES (?,?,?,?,?,?)",
      ),
      revoked: p("SELECT revoked FROM devices WHERE id = ?"),
    };
    this.#wal = new WalSync(this.#db); // setup above: FULL
  }

  createAccount(serialHash: string): Promise<string> {
    return this.#wal.settle(() => {
      const id = randomId();
      this.#db.prepare("INSERT INTO accounts(id, serial_hash, created) VALUES (?,?,?)").run(
        id,
        serialHash,
        Date.now(),
      );
      return Promise.resolve(id);
    });
  }

  setSerialHash(account: string, serialHash: string): Promise<boolean> {
    return this.#wal.settle(() => {
      const r = this.#db.prepare("UPDATE accounts SET serial_hash = ? WHERE id = ?").run(
        serialHash,
        account,
      );
      return Promise.resolve(Number(r.changes) === 1);
    });
  }

  accountBySerialHash(serialHash: string): Promise<string | null> {
    return this.#wal.settle(() => {
      const r = this.#db.prepare("SELECT id FROM accounts WHERE serial_hash = ?").get(serialHash) as
        | { id: string }
        | undefined;
      return Promise.resolve(r?.id ?? null);
    });
  }

  addDevice(account: string, name: string, tokenHash: string): Promise<string> {
    return this.#wal.settle(() => {
      const id = randomId();
      this.#db.prepare(
        "INSERT INTO devices(id, account, name, token_hash, created, last_seen) VALUES (?,?,?,?,?,?)",
      ).run(id, account, name, tokenHash, Date.now(), Date.now());
      return Promise.resolve(id);
    });
  }

  device(id: string): Promise<DeviceRecord | null> {
    return this.#wal.settle(() => {
      const r = this.#db.prepare("SELECT * FROM devices WHERE id = ?").get(id) as
        | { id: string; account: string; name: string; token_hash: string; revoked: number }
        | undefined;
      return Promise.resolve(
        r
          ? {
            id: r.id,
            account: r.account,
            name: r.name,
            tokenHash: r.token_hash,
            revoked: r.revoked === 1,
          }
          : null,
      );
    });
  }

  touchDevice(id: string): Promise<void> {
    return this.#wal.settle(() => {
      this.#db.prepare("UPDATE devices SET last_seen = ? WHERE id = ?").run(Date.now(), id);
      return Promise.resolve();
    });
  }

  accounts(): Promise<AccountSummary[]> {
    return this.#wal.settle(() => {
      const rows = this.#db.prepare(`SELECT a.id, a.created, a.seq,
        (SELECT COUNT(*) FROM devices d WHERE d.account = a.id AND d.revoked = 0) AS devices,
        (SELECT MAX(last_seen) FROM devices d WHERE d.account = a.id) AS last_seen,
        (SELECT COUNT(*) FROM entries e WHERE e.account = a.id AND e.deleted = 0 AND e.kind = 'file') AS files,
        (SELECT COALESCE(SUM(size), 0) FROM entries e WHERE e.account = a.id AND e.deleted = 0) AS bytes,
        (SELECT COUNT(*) FROM versions v WHERE v.account = a.id AND v.deleted = 0 AND v.kind = 'file') AS versions,
        (SELECT COALESCE(SUM(size), 0) FROM versions v WHERE v.account = a.id AND v.deleted = 0) AS kept,
        (SELECT COALESCE(SUM(stored), 0) FROM chunks c WHERE c.account = a.id) AS stored
        FROM accounts a ORDER BY a.created, a.id`).all() as unknown as {
        id: string;
        created: number;
        seq: number;
        devices: number;
        last_seen: number | null;
        files: number;
        bytes: number;
        versions: number;
        kept: number;
        stored: number;
      }[];
      return Promise.resolve(rows.map((r) => ({
        id: r.id,
        created: Number(r.created),
        devices: Number(r.devices),
        lastSeen: r.last_seen === null ? null : Number(r.last_seen),
        files: Number(r.files),
        bytes: Number(r.bytes),
        seq: Number(r.seq),
        versions: Number(r.versions),
        keptBytes: Number(r.kept),
        storedBytes: Number(r.stored),
      })));
    });
  }

  #seq(account: string): number | undefined {
    const r = this.#q.seq!.get(account) as { seq: number } | undefined;
    return r ? Number(r.seq) : undefined;
  }

  seq(account: string): Promise<number> {
    return this.#wal.settle(() => {
      return Promise.resolve(this.#seq(account) ?? 0);
    });
  }

  changes(account: string, since: number, limit: number): Promise<RemoteEntry[]> {
    return this.#wal.settle(() => {
      return Promise.resolve(
        (this.#q.changes!.all(account, since, limit) as unknown as EntryRow[]).map(rowToEntry),
      );
    });
  }

  #chunk(account: string, hash: string): ChunkInfo | null {
    const r = this.#q.chunk!.get(account, hash) as
      | { size: number; stored: number; compressed: number }
      | undefined;
    return r
      ? { size: Number(r.size), stored: Number(r.stored), compressed: r.compressed === 1 }
      : null;
  }

  missingChunks(account: string, hashes: string[]): Promise<string[]> {
    return this.#wal.read(() => {
      return Promise.resolve(hashes.filter((h) => this.#q.chunk!.get(account, h) === undefined));
    });
  }

  chunk(account: string, hash: string): Promise<ChunkInfo | null> {
    return this.#wal.read(() => {
      return Promise.resolve(this.#chunk(account, hash));
    });
  }

  chunks(account: string, hashes: readonly string[]): Promise<(ChunkInfo | null)[]> {
    return this.#wal.read(() => {
      return Promise.resolve(hashes.map((h) => this.#chunk(account, h)));
    });
  }

  addChunks(account: string, items: readonly NewChunk[]): Promise<void> {
    return this.#wal.settle(() => {
      const now = Date.now();
      transaction(this.#db, () => {
        for (const i of items) {
          this.#q.addChunk!.run(account, i.hash, i.size, i.stored, i.compressed ? 1 : 0, now);
        }
      });
      return Promise.resolve();
    });
  }

  /** The commit rule reads the database directly, inside the commit's transaction. */
  #reader(account: string): CommitReader {
    return {
      entry: (path) => {
        const r = this.#q.entry!.get(account, path) as EntryRow | undefined;
        return r ? rowToStored(r) : undefined;
      },
      liveBelow: (dir, limit) =>
        (this.#q.liveBelow!.all(account, dir + "/", dir + "0", limit) as { path: string }[])
          .map((r) => r.path),
      chunkSize: (hash) => this.#chunk(account, hash)?.size,
    };
  }

  /** The insert parameters of `e`, made at `made`. */
  #row(account: string, e: RemoteEntry, made: number): (string | number | null)[] {
    return [
      account,
      e.path,
      e.kind,
      e.deleted ? 1 : 0,
      e.version,
      e.size,
      e.mtime,
      e.exec ? 1 : 0,
      e.hash,
      JSON.stringify(e.chunks),
      e.device,
      e.kind === "file" && !e.deleted && e.mode !== undefined ? e.mode : null,
      made,
    ];
  }

  commit(account: string, device: string, items: CommitItem[]): Promise<CommitResult[]> {
    return this.#wal.settle(() => {
      return Promise.resolve(
        transaction(this.#db, () => this.#commitIn(account, device, items), true),
      );
    });
  }

  /** A commit, inside the caller's immediate transaction. */
  #commitIn(account: string, device: string, items: CommitItem[]): CommitResult[] {
    const seq = this.#seq(account);
    if (seq === undefined) throw new Error(`Cannot commit: no account ${account}`);
    const plan = planCommit(this.#reader(account), seq, device, items);
    const now = Date.now();
    // A version is current from when it was made until it is replaced (the same instant as its
    // successor's `made`): at any instant, one version of a path was the current one.
    for (const e of plan.kept) this.#q.keep!.run(...this.#row(account, e, e.made ?? now), now);
    for (const e of plan.written) this.#q.upsert!.run(...this.#row(account, e, now));
    if (plan.seq !== seq) this.#q.setSeq!.run(plan.seq, account);
    return plan.results;
  }

  restore(account: string, device: string, items: RestoreItem[]): Promise<CommitResult[]> {
    return this.#wal.settle(() => {
      return Promise.resolve(transaction(this.#db, () => {
        const found = items.map((i) => {
          const r = (this.#q.keptVersion!.get(account, i.path, i.version) ??
            this.#q.entry!.get(account, i.path)) as EntryRow | undefined;
          return r && Number(r.version) === i.version
            ? { ...rowToVersion(r), chunks: JSON.parse(r.chunks) as ChunkRef[] }
            : null;
        });
        const plan = restoreCommit(items, found);
        return plan.results(
          plan.valid.length > 0 ? this.#commitIn(account, device, plan.valid) : [],
        );
      }, true));
    });
  }

  history(account: string, q: HistoryQuery): Promise<Page<VersionInfo>> {
    return this.#wal.settle(() => {
      const where = subtreeSql(q.path);
      const cond = `account = ? AND ${where.sql} AND version < ? AND made >= ?`;
      const params = [account, ...where.params, q.before ?? Number.MAX_SAFE_INTEGER, q.since ?? 0];
      const rows = this.#db.prepare(
        `SELECT ${VERSION_COLUMNS}, NULL AS replaced FROM entries WHERE ${cond}
         UNION ALL SELECT ${VERSION_COLUMNS}, replaced FROM versions WHERE ${cond}
         ORDER BY version DESC LIMIT ?`,
      ).all(...params, ...params, q.limit + 1) as unknown as EntryRow[];
      return Promise.resolve(page(rows.map(rowToVersion), q.limit));
    });
  }

  deletedPaths(account: string, q: HistoryQuery): Promise<Page<DeletedInfo>> {
    return this.#wal.settle(() => {
      const where = subtreeSql(q.path, "e.path");
      const k = VERSION_COLUMNS.split(", ").map((c) => `k.${c} AS k_${c}`).join(", ");
      const rows = this.#db.prepare(
        `SELECT ${VERSION_COLUMNS.split(", ").map((c) => `e.${c}`).join(", ")}, NULL AS replaced,
           ${k}, k.replaced AS k_replaced
         FROM entries e JOIN versions k ON k.account = e.account AND k.path = e.path
           AND k.version = (SELECT MAX(v.version) FROM versions v
             WHERE v.account = e.account AND v.path = e.path AND v.deleted = 0)
         WHERE e.account = ? AND e.deleted = 1 AND ${where.sql} AND e.version < ? AND e.made >= ?
         ORDER BY e.version DESC LIMIT ?`,
      ).all(
        account,
        ...where.params,
        q.before ?? Number.MAX_SAFE_INTEGER,
        q.since ?? 0,
        q.limit + 1,
      ) as unknown as Record<string, unknown>[];
      return Promise.resolve(page(
        rows.map((r) => ({ ...rowToVersion(r as unknown as EntryRow), kept: keptOf(r) })),
        q.limit,
      ));
    });
  }

  listAt(account: string, q: ListAtQuery): Promise<Page<PointInTime>> {
    return this.#wal.settle(() => {
      const where = subtreeSql(q.path);
      const after = q.after === undefined ? "" : " AND path > ?";
      const afterParams = q.after === undefined ? [] : [q.after];
      const cond = `account = ? AND ${where.sql}${after} AND made <= ?`;
      const params = [account, ...where.params, ...afterParams, q.at];
      const rows = this.#db.prepare(
        `SELECT x.*, e.kind AS c_kind, e.deleted AS c_deleted, e.version AS c_version,
           e.size AS c_size, e.mtime AS c_mtime, e.exec AS c_exec, e.mode AS c_mode,
           e.hash AS c_hash
         FROM (SELECT ${ENTRY_COLUMNS}, NULL AS replaced FROM entries WHERE ${cond}
           UNION ALL SELECT ${ENTRY_COLUMNS}, replaced FROM versions WHERE ${cond} AND replaced > ?
           ORDER BY path, version DESC LIMIT ?) x
         JOIN entries e ON e.account = ? AND e.path = x.path
         ORDER BY x.path, x.version DESC`,
      ).all(...params, ...params, q.at, q.limit + 1, account) as unknown as PointRow[];
      return Promise.resolve(pointPage(rows.map(rowToPoint), q.limit));
    });
  }

  oldestKept(account: string, path: string): Promise<number | null> {
    return this.#wal.settle(() => {
      const where = subtreeSql(path);
      const cond = `account = ? AND ${where.sql} AND deleted = 0`;
      const params = [account, ...where.params];
      const r = this.#db.prepare(
        `SELECT MIN(m) AS m FROM (SELECT MIN(made) AS m FROM entries WHERE ${cond}
         UNION ALL SELECT MIN(made) FROM versions WHERE ${cond})`,
      ).get(...params, ...params) as { m: number | null } | undefined;
      return Promise.resolve(r?.m === null || r?.m === undefined ? null : Number(r.m));
    });
  }

  async *oldVersions(account: string, cutoff: number): AsyncIterable<OldVersion> {
    const first = this.#db.prepare(
      `SELECT path, version, made, replaced FROM versions WHERE account = ? AND replaced < ?
       ORDER BY path, version LIMIT ${PAGE}`,
    );
    const next = this.#db.prepare(
      `SELECT path, version, made, replaced FROM versions WHERE account = ? AND replaced < ?
       AND (path > ? OR (path = ? AND version > ?)) ORDER BY path, version LIMIT ${PAGE}`,
    );
    let last: OldVersion | null = null;
    for (;;) {
      const rows = (last === null
        ? first.all(account, cutoff)
        : next.all(account, cutoff, last.path, last.path, last.version)) as unknown as OldVersion[];
      for (const r of rows) {
        yield {
          path: r.path,
          version: Number(r.version),
          made: Number(r.made),
          replaced: Number(r.replaced),
        };
      }
      if (rows.length < PAGE) {
        return;
      }
      const l = rows[rows.length - 1]!;
      last = { path: l.path, version: Number(l.version), made: 0, replaced: 0 };
    }
  }

  forgetVersions(account: string, refs: readonly VersionRef[]): Promise<number> {
    return this.#wal.settle(() => {
      const del = this.#db.prepare(
        "DELETE FROM versions WHERE account = ? AND path = ? AND version = ?",
      );
      return Promise.resolve(transaction(this.#db, () => {
        let n = 0;
        for (const r of refs) n += Number(del.run(account, r.path, r.version).changes);
        return n;
      }));
    });
  }

  pruneVersions(cutoff: number): Promise<number> {
    return this.#wal.settle(() => {
      return Promise.resolve(
        Number(this.#db.prepare("DELETE FROM versions WHERE replaced < ?").run(cutoff).changes),
      );
    });
  }

  /**
   * Garbage collection, step 1 (see `stores.ts`), in steps of a few milliseconds with the
   * event loop free between them (see {@link ChunkSweep}), instead of one statement over the
   * account's whole journal: each page of chunks is re-checked against what commits wrote
   * meanwhile and forgotten in the same synchronous step, so no commit runs in between.
   */
  forgetUnreferenced(account: string, cutoff: number): Promise<string[]> {
    // Collections share a temporary table: one at a time, in order.
    const run = this.#sweepTail.then(() => this.#forget(account, cutoff));
    this.#sweepTail = run.then(() => {}, () => {});
    return this.#wal.settle(() => run); // what it forgot is durable before blobs go
  }

  async #forget(account: string, cutoff: number): Promise<string[]> {
    const sweep = this.chunkSweep(account);
    const gone: string[] = [];
    try {
      while (sweep.mark()) await nextTurn();
      for (let page = sweep.take(cutoff); page !== null; page = sweep.take(cutoff)) {
        for (const h of page) gone.push(h);
        await nextTurn();
      }
    } finally {
      sweep.close();
    }
    return gone;
  }

  /**
   * The steps of {@link forgetUnreferenced} for `account` (see {@link ChunkSweep}); one sweep at
   * a time per store. Public for tests.
   */
  chunkSweep(account: string): ChunkSweep {
    if (this.#sweeping) throw new Error("Cannot collect chunks: a collection is running already");
    this.#sweeping = true;
    const db = this.#db;
    // The referenced hashes go into a temporary table, built by SQLite from the chunk lists
    // (json_each): the journal never passes through JavaScript.
    db.exec("CREATE TEMP TABLE IF NOT EXISTS used(hash TEXT PRIMARY KEY) WITHOUT ROWID");
    db.exec("DELETE FROM temp.used");
    const ROWS = 200;
    const CHUNKS = 2000;
    const markFrom = (table: "entries" | "versions", where: string) =>
      db.prepare(`INSERT OR IGNORE INTO temp.used(hash) SELECT json_extract(j.value, '$.hash')
        FROM (SELECT chunks FROM ${table} WHERE account = ?1 AND ${where}) AS t,
        json_each(t.chunks) AS j`);
    const q = {
      entriesPage: markFrom("entries", "path > ?2 ORDER BY path LIMIT ?3"),
      entriesNext: db.prepare(
        "SELECT path FROM entries WHERE account = ? AND path > ? ORDER BY path LIMIT 1 OFFSET ?",
      ),
      versionsPage: markFrom("versions", "(path, rowid) > (?2, ?3) ORDER BY path, rowid LIMIT ?4"),
      versionsNext: db.prepare(`SELECT path, rowid AS id FROM versions WHERE account = ?
        AND (path, rowid) > (?, ?) ORDER BY path, rowid LIMIT 1 OFFSET ?`),
      newEntries: markFrom("entries", "version > ?2"),
      newVersions: markFrom("versions", "rowid > ?2"),
      maxRowid: db.prepare("SELECT COALESCE(MAX(rowid), 0) AS n FROM versions"),
      chunksPage: db.prepare(`SELECT hash, created, hash IN (SELECT hash FROM temp.used) AS used
        FROM chunks WHERE account = ? AND hash > ? ORDER BY hash LIMIT ?`),
      forget: db.prepare("DELETE FROM chunks WHERE account = ? AND hash = ?"),
    };
    // Everything written after these is marked again before each page is forgotten.
    let seq = this.#seq(account) ?? 0;
    let rowid = Number((q.maxRowid.get() as { n: number }).n);
    let entriesAfter: string | null = "";
    let versionsAfter: { path: string; id: number } | null = { path: "", id: 0 };
    let chunksAfter = "";
    let done = false;
    return {
      mark: () => {
        if (entriesAfter !== null) {
          q.entriesPage.run(account, entriesAfter, ROWS);
          const next = q.entriesNext.get(account, entriesAfter, ROWS - 1) as
            | { path: string }
            | undefined;
          entriesAfter = next ? next.path : null;
          return true;
        }
        if (versionsAfter !== null) {
          const { path, id } = versionsAfter;
          q.versionsPage.run(account, path, id, ROWS);
          const next = q.versionsNext.get(account, path, id, ROWS - 1) as
            | { path: string; id: number }
            | undefined;
          versionsAfter = next ? { path: next.path, id: Number(next.id) } : null;
          return true;
        }
        return false;
      },
      take: (cutoff: number) => {
        if (done) return null;
        // One immediate transaction: no commit (of this process or another) runs between marking
        // what was written since the last step and forgetting this page.
        return transaction(db, () => {
          const nowSeq = this.#seq(account) ?? 0;
          if (nowSeq > seq) q.newEntries.run(account, seq);
          seq = nowSeq;
          const nowRowid = Number((q.maxRowid.get() as { n: number }).n);
          if (nowRowid > rowid) q.newVersions.run(account, rowid);
          rowid = nowRowid;
          const rows = q.chunksPage.all(account, chunksAfter, CHUNKS) as unknown as {
            hash: string;
            created: number;
            used: number;
          }[];
          if (rows.length < CHUNKS) done = true;
          if (rows.length > 0) chunksAfter = rows[rows.length - 1]!.hash;
          const gone = rows.filter((r) => Number(r.used) === 0 && Number(r.created) < cutoff)
            .map((r) => r.hash);
          for (const h of gone) q.forget.run(account, h);
          return gone;
        }, true);
      },
      close: () => {
        if (!this.#sweeping) return;
        this.#sweeping = false;
        db.exec("DELETE FROM temp.used");
      },
    };
  }

  accountIds(): Promise<string[]> {
    return this.#wal.settle(() => {
      return Promise.resolve(
        (this.#db.prepare("SELECT id FROM accounts ORDER BY created, id").all() as unknown as {
          id: string;
        }[]).map((r) => r.id),
      );
    });
  }

  close(): Promise<void> {
    return this.#wal.durable().finally(() => this.#db.close());
  }

  hasAccount(account: string): Promise<boolean> {
    return this.#wal.settle(() => {
      return Promise.resolve(this.#q.seq!.get(account) !== undefined);
    });
  }

  devices(account: string): Promise<DeviceSummary[]> {
    return this.#wal.settle(() => {
      const rows = this.#db.prepare(
        "SELECT id, name, created, last_seen, revoked FROM devices WHERE account = ? ORDER BY created, id",
      ).all(account) as unknown as {
        id: string;
        name: string;
        created: number;
        last_seen: number | null;
        revoked: number;
      }[];
      return Promise.resolve(rows.map((r) => ({
        id: r.id,
        name: r.name,
        created: Number(r.created),
        lastSeen: r.last_seen === null ? null : Number(r.last_seen),
        revoked: Number(r.revoked) === 1,
      })));
    });
  }

  revokeDevice(account: string, deviceId: string): Promise<boolean> {
    return this.#wal.settle(() => {
      const r = this.#db.prepare("UPDATE devices SET revoked = 1 WHERE id = ? AND account = ?").run(
        deviceId,
        account,
      );
      return Promise.resolve(Number(r.changes) === 1);
    });
  }

  renameDevice(account: string, deviceId: string, name: string): Promise<boolean> {
    return this.#wal.settle(() => {
      const r = this.#db.prepare("UPDATE devices SET name = ? WHERE id = ? AND account = ?").run(
        name,
        deviceId,
        account,
      );
      return Promise.resolve(Number(r.changes) === 1);
    });
  }

  accountFootprint(account: string): Promise<AccountFootprint | null> {
    return this.#wal.settle(() => {
      if (this.#q.seq!.get(account) === undefined) return Promise.resolve(null);
      const n = (sql: string) =>
        Number((this.#db.prepare(sql).get(account) as { n: number | bigint }).n);
      return Promise.resolve({
        devices: n("SELECT COUNT(*) AS n FROM devices WHERE account = ?"),
        files: n(
          "SELECT COUNT(*) AS n FROM entries WHERE account = ? AND deleted = 0 AND kind = 'file'",
        ),
        versions: n("SELECT COUNT(*) AS n FROM versions WHERE account = ?"),
        chunks: n("SELECT COUNT(*) AS n FROM chunks WHERE account = ?"),
        storedBytes: n("SELECT COALESCE(SUM(stored), 0) AS n FROM chunks WHERE account = ?"),
      });
    });
  }

  deleteAccount(account: string): Promise<boolean> {
    return this.#wal.settle(() => {
      return Promise.resolve(transaction(this.#db, () => {
        for (const table of ["devices", "entries", "versions", "chunks"]) {
          this.#db.prepare(`DELETE FROM ${table} WHERE account = ?`).run(account);
        }
        return Number(
          this.#db.prepare("DELETE FROM accounts WHERE id = ?").run(account).changes,
        ) ===
          1;
      }, true));
    });
  }

  deviceRevoked(deviceId: string): Promise<boolean> {
    return this.#wal.settle(() => {
      const r = this.#q.revoked!.get(deviceId) as { revoked: number } | undefined;
      return Promise.resolve(r === undefined || Number(r.revoked) === 1);
    });
  }

  revokedDevices(deviceIds: readonly string[]): Promise<Set<string>> {
    return this.#wal.settle(() => {
      if (deviceIds.length === 0) return Promise.resolve(new Set<string>());
      const rows = this.#db.prepare(
        `SELECT j.value AS id FROM json_each(?) j LEFT JOIN devices d ON d.id = j.value
         WHERE d.id IS NULL OR d.revoked = 1`,
      ).all(JSON.stringify(deviceIds)) as { id: string }[];
      return Promise.resolve(new Set(rows.map((r) => r.id)));
    });
  }

  storedBytes(account: string): Promise<number> {
    return this.#wal.settle(() => {
      const r = this.#db.prepare(
        "SELECT COALESCE(SUM(stored), 0) AS n FROM chunks WHERE account = ?",
      ).get(account) as { n: number };
      return Promise.resolve(Number(r.n));
    });
  }

  metadataBytes(account: string): Promise<number> {
    return this.#wal.settle(() => {
      let n = 0;
      for (const table of ["entries", "versions"]) {
        // As rowBytes in session.ts: 3 bytes a path character, 90 per chunk reference, 200 a row.
        const r = this.#db.prepare(
          `SELECT COALESCE(SUM(length(path) * 3 + json_array_length(chunks) * 90 + 200), 0) AS n
           FROM ${table} WHERE account = ?`,
        ).get(account) as { n: number };
        n += Number(r.n);
      }
      return Promise.resolve(n);
    });
  }

  addInvite(codeHash: string): Promise<void> {
    return this.#wal.settle(() => {
      this.#db.prepare("INSERT INTO invites(hash, created) VALUES (?, ?)").run(
        codeHash,
        Date.now(),
      );
      return Promise.resolve();
    });
  }

  useInvite(codeHash: string): Promise<boolean> {
    return this.#wal.settle(() => {
      const r = this.#db.prepare("UPDATE invites SET used = ? WHERE hash = ? AND used IS NULL")
        .run(Date.now(), codeHash);
      return Promise.resolve(Number(r.changes) === 1);
    });
  }

  // Verification queries (read-only; used by `cloud-server verify`, lib/server/verify.ts)
  async *verifyEntries(account: string): AsyncIterable<RemoteEntry> {
    const rows = this.#db.prepare("SELECT * FROM entries WHERE account = ? ORDER BY path")
      .iterate(account) as Iterable<unknown>;
    for (const r of rows) yield rowToEntry(r as EntryRow);
  }

  async *verifyKeptVersions(account: string): AsyncIterable<RemoteEntry> {
    const rows = this.#db.prepare(
      "SELECT * FROM versions WHERE account = ? ORDER BY path, version",
    ).iterate(account) as Iterable<unknown>;
    for (const r of rows) yield rowToEntry(r as EntryRow);
  }
}

/** Rows fetched per page by the streamed queries. */
const PAGE = 1000;

/** A page of `limit` rows from a query that asked for `limit + 1`. */
export function page<T>(rows: T[], limit: number): Page<T> {
  const more = rows.length > limit;
  return { rows: more ? rows.slice(0, limit) : rows, more };
}

/**
 * A page of a point-in-time listing from a query that asked for `limit + 1` rows in path (then
 * newest version) order: one row per path (the newest, should clocks have disagreed), and a path
 * cut by the limit is dropped whole, the next page starting after the last full one.
 */
export function pointPage(rows: PointInTime[], limit: number): Page<PointInTime> {
  const more = rows.length > limit;
  const out: PointInTime[] = [];
  for (const r of rows.slice(0, limit)) {
    if (out.length > 0 && out[out.length - 1]!.path === r.path) continue;
    out.push(r);
  }
  if (more && out.length > 1 && out[out.length - 1]!.path === rows[limit]!.path) out.pop();
  return { rows: out, more };
}

/** The `kept` part of a `deletedPaths` row (columns `k_…`). */
function keptOf(r: Record<string, unknown>): VersionInfo {
  const k: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(r)) if (key.startsWith("k_")) k[key.slice(2)] = v;
  return rowToVersion(k as unknown as EntryRow);
}
