/**
 * Server metadata: accounts, devices, the per-account journal of entries and the kept versions.
 * {@link MetaStore} is the interface the sync logic sees; {@link SqliteMetaStore} implements it
 * with `node:sqlite` in WAL mode (one file, no setup).
 *
 * The journal: every accepted change gets the account's next sequence number, stored as the
 * entry's `version`. "What changed since N" is every entry (tombstones included) with
 * `version > N`, so a reconnecting device pays only for what changed. Every replaced or deleted
 * entry is copied to `versions` first and kept for the retention period.
 *
 * @module
 */

import { transaction } from "../util/sqlite_tx.ts";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import type { ChunkRef, Kind, RemoteEntry } from "../core/types.ts";
import { decideCommit } from "../core/commit_rules.ts";
import { parentPaths } from "../core/paths.ts";
import { chunkListProblem } from "../protocol/messages.ts";

/** A change proposed by a device. */
export interface CommitItem {
  path: string;
  baseVersion: number;
  kind: Kind;
  deleted: boolean;
  size: number;
  mtime: number;
  exec: boolean;
  /** Permission bits of a file (absent: an older client; `exec` alone). */
  mode?: number;
  hash: string;
  chunks: ChunkRef[];
}

/** What became of one {@link CommitItem}. */
export type CommitResult =
  | { ok: true; version: number }
  | {
    ok: false;
    reason: "conflict" | "missing" | "invalid" | "quota";
    message: string;
    version?: number;
  };

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

/** A device record. */
export interface DeviceRecord {
  id: string;
  account: string;
  name: string;
  tokenHash: string;
  revoked: boolean;
}

/** One line of `cloud-server accounts`. */
export interface AccountSummary {
  id: string;
  created: number;
  devices: number;
  lastSeen: number | null;
  files: number;
  bytes: number;
  seq: number;
}

/** One line of `cloud-server devices ACCOUNT`. */
export interface DeviceSummary {
  id: string;
  name: string;
  created: number;
  lastSeen: number | null;
  revoked: boolean;
}

/** What an account holds: what `cloud-server delete-account` deletes. */
export interface AccountFootprint {
  devices: number;
  /** Live files. */
  files: number;
  /** Kept (replaced or deleted) versions. */
  versions: number;
  /** Indexed chunks, and their stored bytes. */
  chunks: number;
  storedBytes: number;
}

/** Metadata storage behind the sync logic. Implementations must make `commit` atomic. */
export interface MetaStore {
  createAccount(serialHash: string): string;
  setSerialHash(account: string, serialHash: string): boolean;
  accountBySerialHash(serialHash: string): string | null;
  addDevice(account: string, name: string, tokenHash: string): string;
  device(id: string): DeviceRecord | null;
  touchDevice(id: string): void;
  accounts(): AccountSummary[];
  seq(account: string): number;
  /** Entries with version > since, oldest first, at most `limit`. */
  changes(account: string, since: number, limit: number): RemoteEntry[];
  missingChunks(account: string, hashes: string[]): string[];
  addChunk(account: string, hash: string, size: number, stored: number, compressed: boolean): void;
  /** Indexes several stored chunks in one transaction. */
  addChunks(
    account: string,
    items: { hash: string; size: number; stored: number; compressed: boolean }[],
  ): void;
  /** A stored chunk's plain size, stored (maybe compressed) size and whether it is compressed. */
  chunk(
    account: string,
    hash: string,
  ): { size: number; stored: number; compressed: boolean } | null;
  /** Applies the items in order, in one transaction. */
  commit(account: string, device: string, items: CommitItem[]): CommitResult[];
  /**
   * Forgets at most `limit` kept versions replaced before `cutoff` (ms); returns how many (call
   * again while it returns `limit`).
   */
  pruneVersions(cutoff: number, limit?: number): number;
  /**
   * Starts collecting the unreferenced chunks of `account` in small synchronous steps (see
   * {@link ChunkSweep}); one sweep at a time per store.
   */
  chunkSweep(account: string): ChunkSweep;
  /** Removes a chunk from the index (its bytes are removed from the blob store by the caller). */
  forgetChunk(account: string, hash: string): void;
  /** Every account id. */
  accountIds(): string[];
  close(): void;

  // Security (lib/server/session.ts, lib/server/limits.ts, `cloud-server devices|revoke-device`)
  /** Whether the account exists. */
  hasAccount(account: string): boolean;
  /** The devices of `account` (revoked ones included), oldest first. */
  devices(account: string): DeviceSummary[];
  /** Marks a device of `account` revoked; false if `account` has no such device. */
  revokeDevice(account: string, deviceId: string): boolean;
  /** Renames a device of `account`; false if `account` has no such device. */
  renameDevice(account: string, deviceId: string, name: string): boolean;
  /** What `account` holds; null if there is no such account. */
  accountFootprint(account: string): AccountFootprint | null;
  /**
   * Deletes `account` and all its rows (devices, entries, kept versions, chunk index) in one
   * transaction; false if there is no such account. The chunk bytes are the blob store's.
   */
  deleteAccount(account: string): boolean;
  /** True if the device is revoked or unknown (checked on every request of a session). */
  deviceRevoked(deviceId: string): boolean;
  /** Sum of the stored (as sent, maybe compressed) bytes of the chunks of `account`. */
  storedBytes(account: string): number;
  /**
   * Bytes of metadata `account` makes the server keep: its journal entries and kept versions,
   * each counted as in `rowBytes` (path, chunk list, fixed columns). Counted by the quota.
   */
  metadataBytes(account: string): number;
  /** Records a one-time invite code (its hash) that lets one new account register. */
  addInvite(codeHash: string): void;
  /** Uses up the invite code with this hash; false if there is none (or it was used). */
  useInvite(codeHash: string): boolean;

  // Verification queries (read-only; used by `cloud-server verify`, lib/server/verify.ts)
  /** Every entry of `account`, live and tombstones, in path order (streamed, not buffered). */
  verifyEntries(account: string): Iterable<RemoteEntry>;
  /** Every kept (replaced or deleted) version of `account`, in path order (streamed). */
  verifyKeptVersions(account: string): Iterable<RemoteEntry>;
}

function randomId(): string {
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
  mode: number | null;
  hash: string;
  chunks: string;
  device: string;
}

function rowToEntry(r: EntryRow): RemoteEntry {
  return {
    path: r.path,
    kind: r.kind === "dir" ? "dir" : "file",
    deleted: r.deleted === 1,
    version: Number(r.version),
    size: Number(r.size),
    mtime: Number(r.mtime),
    exec: r.exec === 1,
    ...(r.mode !== null && r.mode !== undefined ? { mode: Number(r.mode) } : {}),
    hash: r.hash,
    chunks: JSON.parse(r.chunks) as ChunkRef[],
    device: r.device,
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
CREATE INDEX IF NOT EXISTS versions_by_path ON versions(account, path);
CREATE INDEX IF NOT EXISTS versions_by_replaced ON versions(replaced);
CREATE TABLE IF NOT EXISTS chunks(
  account TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL, stored INTEGER NOT NULL,
  compressed INTEGER NOT NULL, created INTEGER NOT NULL, PRIMARY KEY(account, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invites(
  hash TEXT PRIMARY KEY, created INTEGER NOT NULL, used INTEGER) WITHOUT ROWID;
`;

/** {@link MetaStore} in one SQLite database file. */
export class SqliteMetaStore implements MetaStore {
  readonly #db: DatabaseSync;
  readonly #q: Record<string, StatementSync>;
  /** A {@link ChunkSweep} is running (they share a temporary table). */
  #sweeping = false;

  constructor(dataDir: string) {
    Deno.mkdirSync(dataDir, { recursive: true });
    this.#db = new DatabaseSync(join(dataDir, "meta.db"));
    this.#db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;");
    this.#db.exec(SCHEMA);
    // Schema additions since the first release, for databases made by an older server.
    for (const table of ["entries", "versions"]) {
      const cols = this.#db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
      if (!cols.some((c) => c.name === "mode")) {
        this.#db.exec(`ALTER TABLE ${table} ADD COLUMN mode INTEGER`);
      }
    }
    const p = (sql: string) => this.#db.prepare(sql);
    this.#q = {
      entry: p("SELECT * FROM entries WHERE account = ? AND path = ?"),
      liveChild: p(
        "SELECT 1 FROM entries WHERE account = ? AND path > ? AND path < ? AND deleted = 0 LIMIT 1",
      ),
      upsert: p(`INSERT INTO entries(account, path, kind, deleted, version, size, mtime, exec, hash,
        chunks, device, mode) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(account, path) DO UPDATE
        SET kind=excluded.kind, deleted=excluded.deleted, version=excluded.version,
        size=excluded.size, mtime=excluded.mtime, exec=excluded.exec, hash=excluded.hash,
        chunks=excluded.chunks, device=excluded.device, mode=excluded.mode`),
      keep: p(`INSERT INTO versions(account, path, kind, deleted, version, size, mtime, exec, hash,
        chunks, device, replaced, mode) SELECT account, path, kind, deleted, version, size, mtime,
        exec, hash, chunks, device, ?, mode FROM entries WHERE account = ? AND path = ?
        AND deleted = 0`),
      nextSeq: p("UPDATE accounts SET seq = seq + 1 WHERE id = ? RETURNING seq"),
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
  }

  createAccount(serialHash: string): string {
    const id = randomId();
    this.#db.prepare("INSERT INTO accounts(id, serial_hash, created) VALUES (?,?,?)").run(
      id,
      serialHash,
      Date.now(),
    );
    return id;
  }

  setSerialHash(account: string, serialHash: string): boolean {
    const r = this.#db.prepare("UPDATE accounts SET serial_hash = ? WHERE id = ?").run(
      serialHash,
      account,
    );
    return Number(r.changes) === 1;
  }

  accountBySerialHash(serialHash: string): string | null {
    const r = this.#db.prepare("SELECT id FROM accounts WHERE serial_hash = ?").get(serialHash) as
      | { id: string }
      | undefined;
    return r?.id ?? null;
  }

  addDevice(account: string, name: string, tokenHash: string): string {
    const id = randomId();
    this.#db.prepare(
      "INSERT INTO devices(id, account, name, token_hash, created, last_seen) VALUES (?,?,?,?,?,?)",
    ).run(id, account, name, tokenHash, Date.now(), Date.now());
    return id;
  }

  device(id: string): DeviceRecord | null {
    const r = this.#db.prepare("SELECT * FROM devices WHERE id = ?").get(id) as
      | { id: string; account: string; name: string; token_hash: string; revoked: number }
      | undefined;
    if (!r) return null;
    return {
      id: r.id,
      account: r.account,
      name: r.name,
      tokenHash: r.token_hash,
      revoked: r.revoked === 1,
    };
  }

  touchDevice(id: string): void {
    this.#db.prepare("UPDATE devices SET last_seen = ? WHERE id = ?").run(Date.now(), id);
  }

  accounts(): AccountSummary[] {
    const rows = this.#db.prepare(`SELECT a.id, a.created, a.seq,
      (SELECT COUNT(*) FROM devices d WHERE d.account = a.id AND d.revoked = 0) AS devices,
      (SELECT MAX(last_seen) FROM devices d WHERE d.account = a.id) AS last_seen,
      (SELECT COUNT(*) FROM entries e WHERE e.account = a.id AND e.deleted = 0 AND e.kind = 'file') AS files,
      (SELECT COALESCE(SUM(size), 0) FROM entries e WHERE e.account = a.id AND e.deleted = 0) AS bytes
      FROM accounts a ORDER BY a.created`).all() as unknown as {
      id: string;
      created: number;
      seq: number;
      devices: number;
      last_seen: number | null;
      files: number;
      bytes: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      created: Number(r.created),
      devices: Number(r.devices),
      lastSeen: r.last_seen === null ? null : Number(r.last_seen),
      files: Number(r.files),
      bytes: Number(r.bytes),
      seq: Number(r.seq),
    }));
  }

  seq(account: string): number {
    const r = this.#q.seq!.get(account) as { seq: number } | undefined;
    return r ? Number(r.seq) : 0;
  }

  changes(account: string, since: number, limit: number): RemoteEntry[] {
    return (this.#q.changes!.all(account, since, limit) as unknown as EntryRow[]).map(rowToEntry);
  }

  missingChunks(account: string, hashes: string[]): string[] {
    return hashes.filter((h) => this.#q.chunk!.get(account, h) === undefined);
  }

  addChunk(account: string, hash: string, size: number, stored: number, compressed: boolean): void {
    this.#q.addChunk!.run(account, hash, size, stored, compressed ? 1 : 0, Date.now());
  }

  addChunks(
    account: string,
    items: { hash: string; size: number; stored: number; compressed: boolean }[],
  ): void {
    const now = Date.now();
    transaction(this.#db, () => {
      for (const i of items) {
        this.#q.addChunk!.run(account, i.hash, i.size, i.stored, i.compressed ? 1 : 0, now);
      }
    });
  }

  chunk(
    account: string,
    hash: string,
  ): { size: number; stored: number; compressed: boolean } | null {
    const r = this.#q.chunk!.get(account, hash) as
      | { size: number; stored: number; compressed: number }
      | undefined;
    return r
      ? { size: Number(r.size), stored: Number(r.stored), compressed: r.compressed === 1 }
      : null;
  }

  #current(account: string, path: string): RemoteEntry | undefined {
    const r = this.#q.entry!.get(account, path) as EntryRow | undefined;
    return r ? rowToEntry(r) : undefined;
  }

  #hasLiveChildren(account: string, path: string): boolean {
    return this.#q.liveChild!.get(account, path + "/", path + "0") !== undefined;
  }

  /** Writes `item` as the path's new current entry; `replacesLive`: keep the old one first. */
  #write(
    account: string,
    device: string,
    item: Omit<CommitItem, "baseVersion">,
    replacesLive = true,
  ): number {
    const version = Number((this.#q.nextSeq!.get(account) as { seq: number }).seq);
    if (replacesLive) this.#q.keep!.run(Date.now(), account, item.path);
    this.#q.upsert!.run(
      account,
      item.path,
      item.kind,
      item.deleted ? 1 : 0,
      version,
      item.size,
      item.mtime,
      item.exec ? 1 : 0,
      item.hash,
      JSON.stringify(item.chunks),
      device,
      item.kind === "file" && !item.deleted && item.mode !== undefined ? item.mode : null,
    );
    return version;
  }

  /** `liveDirs`: directories this commit already found live (fewer lookups for siblings). */
  #commitOne(
    account: string,
    device: string,
    item: CommitItem,
    liveDirs: Set<string>,
  ): CommitResult {
    const current = this.#current(account, item.path);
    const live = current !== undefined && !current.deleted;
    // Only a live directory can have live children (the rules ask about them for directories).
    const children = live && current.kind === "dir" && this.#hasLiveChildren(account, item.path);
    const verdict = decideCommit(current, item, children);
    if (verdict.verdict === "same") return { ok: true, version: verdict.version };
    if (verdict.verdict === "conflict") {
      return {
        ok: false,
        reason: "conflict",
        message: "changed on another device",
        version: verdict.version,
      };
    }
    if (!item.deleted) {
      if (item.kind === "file") {
        // Every chunk stored, with the size the index knows, and the list bounded by the file's
        // size: a list naming one tiny chunk 390,000 times (free metadata) is refused.
        for (const c of item.chunks) {
          const known = this.#q.chunk!.get(account, c.hash) as { size: number } | undefined;
          if (known === undefined) {
            return { ok: false, reason: "missing", message: `chunk ${c.hash} was never uploaded` };
          }
          if (Number(known.size) !== c.size) {
            return {
              ok: false,
              reason: "invalid",
              message: `chunk ${c.hash} holds ${known.size} bytes, not ${c.size}`,
            };
          }
        }
        const problem = chunkListProblem(item.size, item.chunks);
        if (problem) return { ok: false, reason: "invalid", message: problem };
      }
      // Parents must be live directories: revive deleted ones, refuse to nest under a file.
      for (const parent of parentPaths(item.path)) {
        if (liveDirs.has(parent)) continue;
        const p = this.#current(account, parent);
        if (p && !p.deleted && p.kind === "dir") {
          liveDirs.add(parent);
          continue;
        }
        if (p && !p.deleted) {
          return {
            ok: false,
            reason: "conflict",
            message: `${parent} is a file`,
            version: p.version,
          };
        }
        this.#write(account, device, {
          path: parent,
          kind: "dir",
          deleted: false,
          size: 0,
          mtime: item.mtime,
          exec: false,
          hash: "",
          chunks: [],
        }, false);
        liveDirs.add(parent);
      }
    }
    const written = item.deleted
      ? { ...item, kind: current?.kind ?? item.kind, size: 0, hash: "", chunks: [], exec: false }
      : item;
    if (item.deleted || item.kind !== "dir") liveDirs.delete(item.path);
    else liveDirs.add(item.path);
    return { ok: true, version: this.#write(account, device, written, live) };
  }

  commit(account: string, device: string, items: CommitItem[]): CommitResult[] {
    const liveDirs = new Set<string>();
    return transaction(
      this.#db,
      () => items.map((item) => this.#commitOne(account, device, item, liveDirs)),
      true,
    );
  }

  pruneVersions(cutoff: number, limit = 5000): number {
    return Number(
      this.#db.prepare(
        "DELETE FROM versions WHERE rowid IN (SELECT rowid FROM versions WHERE replaced < ? LIMIT ?)",
      ).run(cutoff, limit).changes,
    );
  }

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
    let seq = this.seq(account);
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
        const nowSeq = this.seq(account);
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
        if (gone.length > 0) {
          transaction(db, () => {
            for (const h of gone) q.forget.run(account, h);
          });
        }
        return gone;
      },
      close: () => {
        if (!this.#sweeping) return;
        this.#sweeping = false;
        db.exec("DELETE FROM temp.used");
      },
    };
  }

  forgetChunk(account: string, hash: string): void {
    this.#db.prepare("DELETE FROM chunks WHERE account = ? AND hash = ?").run(account, hash);
  }

  accountIds(): string[] {
    return (this.#db.prepare("SELECT id FROM accounts").all() as unknown as { id: string }[]).map((
      r,
    ) => r.id);
  }

  close(): void {
    this.#db.close();
  }

  hasAccount(account: string): boolean {
    return this.#q.seq!.get(account) !== undefined;
  }

  devices(account: string): DeviceSummary[] {
    const rows = this.#db.prepare(
      "SELECT id, name, created, last_seen, revoked FROM devices WHERE account = ? ORDER BY created, id",
    ).all(account) as unknown as {
      id: string;
      name: string;
      created: number;
      last_seen: number | null;
      revoked: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      created: Number(r.created),
      lastSeen: r.last_seen === null ? null : Number(r.last_seen),
      revoked: Number(r.revoked) === 1,
    }));
  }

  revokeDevice(account: string, deviceId: string): boolean {
    const r = this.#db.prepare("UPDATE devices SET revoked = 1 WHERE id = ? AND account = ?").run(
      deviceId,
      account,
    );
    return Number(r.changes) === 1;
  }

  renameDevice(account: string, deviceId: string, name: string): boolean {
    const r = this.#db.prepare("UPDATE devices SET name = ? WHERE id = ? AND account = ?").run(
      name,
      deviceId,
      account,
    );
    return Number(r.changes) === 1;
  }

  accountFootprint(account: string): AccountFootprint | null {
    if (!this.hasAccount(account)) return null;
    const n = (sql: string) =>
      Number((this.#db.prepare(sql).get(account) as { n: number | bigint }).n);
    return {
      devices: n("SELECT COUNT(*) AS n FROM devices WHERE account = ?"),
      files: n(
        "SELECT COUNT(*) AS n FROM entries WHERE account = ? AND deleted = 0 AND kind = 'file'",
      ),
      versions: n("SELECT COUNT(*) AS n FROM versions WHERE account = ?"),
      chunks: n("SELECT COUNT(*) AS n FROM chunks WHERE account = ?"),
      storedBytes: this.storedBytes(account),
    };
  }

  deleteAccount(account: string): boolean {
    return transaction(this.#db, () => {
      for (const table of ["devices", "entries", "versions", "chunks"]) {
        this.#db.prepare(`DELETE FROM ${table} WHERE account = ?`).run(account);
      }
      return Number(this.#db.prepare("DELETE FROM accounts WHERE id = ?").run(account).changes) ===
        1;
    }, true);
  }

  deviceRevoked(deviceId: string): boolean {
    const r = this.#q.revoked!.get(deviceId) as { revoked: number } | undefined;
    return r === undefined || Number(r.revoked) === 1;
  }

  metadataBytes(account: string): number {
    let n = 0;
    for (const table of ["entries", "versions"]) {
      // As rowBytes in session.ts: 3 bytes a path character, 90 per chunk reference, 200 a row.
      const r = this.#db.prepare(
        `SELECT COALESCE(SUM(length(path) * 3 + json_array_length(chunks) * 90 + 200), 0) AS n
         FROM ${table} WHERE account = ?`,
      ).get(account) as { n: number };
      n += Number(r.n);
    }
    return n;
  }

  addInvite(codeHash: string): void {
    this.#db.prepare("INSERT INTO invites(hash, created) VALUES (?, ?)").run(codeHash, Date.now());
  }

  useInvite(codeHash: string): boolean {
    const r = this.#db.prepare("UPDATE invites SET used = ? WHERE hash = ? AND used IS NULL").run(
      Date.now(),
      codeHash,
    );
    return Number(r.changes) === 1;
  }

  storedBytes(account: string): number {
    const r = this.#db.prepare(
      "SELECT COALESCE(SUM(stored), 0) AS n FROM chunks WHERE account = ?",
    ).get(account) as { n: number };
    return Number(r.n);
  }

  // Verification queries (read-only; used by `cloud-server verify`, lib/server/verify.ts)
  *verifyEntries(account: string): Iterable<RemoteEntry> {
    const rows = this.#db.prepare("SELECT * FROM entries WHERE account = ? ORDER BY path")
      .iterate(account) as Iterable<unknown>;
    for (const r of rows) yield rowToEntry(r as EntryRow);
  }

  *verifyKeptVersions(account: string): Iterable<RemoteEntry> {
    const rows = this.#db.prepare(
      "SELECT * FROM versions WHERE account = ? ORDER BY path, version",
    ).iterate(account) as Iterable<unknown>;
    for (const r of rows) yield rowToEntry(r as EntryRow);
  }
}
