/**
 * Server metadata in PostgreSQL (`--meta postgres://USER:PASS@HOST:PORT/DB`), shared by every
 * server instance of a deployment: the same {@link MetaStore} as `meta_store.ts` (SQLite), on
 * the schema of `pg_schema.ts` (numbered migrations, applied at start).
 *
 * A commit is one transaction that first locks the account's row (`SELECT … FOR UPDATE`): commits
 * to one account, from any instance, run one after the other, each reading the state the
 * previous one left, so "accept only against the current version" holds exactly and sequence
 * numbers never repeat. Inside it, `planCommit` (`lib/core/commit_plan.ts`) decides on a
 * prefetched {@link CommitSnapshot}: one query for the entries of every path and parent, one for
 * the chunks, one more for any directory's live children the rule asks about; then three
 * statements write the kept versions, the entries and the sequence number.
 *
 * Garbage collection's first step (`forgetUnreferenced`) takes the same row lock.
 *
 * @example
 * ```ts
 * const meta = await PgMetaStore.open("postgres://cs:secret@127.0.0.1:5432/cloudsync");
 * await meta.close();
 * ```
 *
 * @module
 */

import type { RemoteEntry } from "../core/types.ts";
import {
  type CommitItem,
  commitReads,
  type CommitResult,
  CommitSnapshot,
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
import { page, pointPage, randomId } from "./meta_store.ts";
import {
  createClient,
  createPool,
  type Pool,
  type PoolClient,
  type PoolOptions,
  transaction,
} from "./pg_pool.ts";
import { migrate } from "./pg_schema.ts";
import { PgPackIndex } from "./pg_pack_index.ts";
import type { PackIndex } from "./pack_index.ts";
import {
  changedPayload,
  channelFor,
  type ChannelInfo,
  type ClusterOptions,
  PgCluster,
} from "./pg_cluster.ts";

interface EntryRow {
  path: string;
  kind: string;
  deleted: boolean;
  version: number;
  size: number;
  mtime: number;
  exec: boolean;
  /** Permission bits of a file; null when its device sent none (and for directories). */
  mode: number | null;
  hash: string;
  chunks: { hash: string; size: number }[];
  device: string;
  /** When the server wrote it (only where the query asks for it). */
  made?: number;
  /** Kept versions: when it stopped being current; null for the current entry. */
  replaced?: number | null;
}

/** The columns `changes` and verification read. */
const ENTRY_COLUMNS = "path, kind, deleted, version, size, mtime, exec, hash, chunks, device, mode";
/** The columns a commit reads and writes: with `made`, which a kept version keeps. */
const STORED_COLUMNS = `${ENTRY_COLUMNS}, made`;
/** The columns history reads (no chunk lists). */
const VERSION_COLUMNS = "path, kind, deleted, version, size, mtime, exec, hash, device, mode, made";
/** The columns of an entry as `jsonb_to_recordset` reads them (a missing `mode` is NULL). */
const ENTRY_RECORD = `x(path text, kind text, deleted boolean, version bigint, size bigint,
  mtime bigint, exec boolean, hash text, chunks jsonb, device text, mode integer, made bigint)`;

/** What an entry and a version row have in common. */
function rowFields(r: EntryRow) {
  return {
    path: r.path,
    kind: r.kind === "dir" ? "dir" as const : "file" as const,
    deleted: r.deleted,
    version: r.version,
    size: r.size,
    mtime: r.mtime,
    exec: r.exec,
    ...(r.mode !== null && r.mode !== undefined ? { mode: r.mode } : {}),
    hash: r.hash,
    device: r.device,
  };
}

/** A row of the history queries as a {@link VersionInfo}. */
function rowToVersion(r: EntryRow): VersionInfo {
  return {
    ...rowFields(r),
    made: r.made ?? 0,
    replaced: r.replaced ?? null,
  };
}

/**
 * "`path` is `$n` or below it" (`p` "": always), with its parameters from number `n`: as
 * `subtreeSql` in `meta_store.ts`, in byte order (the "C" collation of the path columns).
 */
function subtree(p: string, n: number, col = "path"): { sql: string; params: string[] } {
  if (p === "") return { sql: "true", params: [] };
  return {
    sql: `${col} >= $${n} AND ${col} < $${n + 1} AND (${col} = $${n} OR ${col} > $${n + 2})`,
    params: [p, p + "0", p + "/"],
  };
}

function rowToEntry(r: EntryRow): RemoteEntry {
  return { ...rowFields(r), chunks: r.chunks.map((c) => ({ hash: c.hash, size: c.size })) };
}

/** Rows fetched per page by the streamed verification queries. */
const PAGE = 1000;

/** {@link MetaStore} in a PostgreSQL database. */
export class PgMetaStore implements MetaStore {
  readonly #pool: Pool;
  readonly #url: string;
  readonly #opts: PoolOptions;
  /** This deployment's notification channel and this process's id on it (`pg_cluster.ts`). */
  readonly #channel: ChannelInfo;

  private constructor(pool: Pool, url: string, opts: PoolOptions, channel: ChannelInfo) {
    this.#pool = pool;
    this.#url = url;
    this.#opts = opts;
    this.#channel = channel;
  }

  /**
   * Connects, applies the missing migrations and returns the store. `create: false` (admin
   * commands): a database without the schema is refused, not set up.
   */
  static async open(
    url: string,
    opts: PoolOptions & { create?: boolean } = {},
  ): Promise<PgMetaStore> {
    const pool = createPool(url, opts);
    let schema: string;
    try {
      await migrate(pool, undefined, { create: opts.create ?? true });
      schema = String((await pool.query("SELECT current_schema() AS s")).rows[0].s);
    } catch (e) {
      await pool.end().catch(() => {});
      const m = (e as Error).message;
      throw new Error(
        m.startsWith("Cannot")
          ? m
          : `Cannot open the PostgreSQL metadata database: ${m}; check --meta`,
      );
    }
    const { create: _, ...poolOpts } = opts;
    return new PgMetaStore(pool, url, poolOpts, {
      channel: channelFor(schema),
      instance: randomId(),
    });
  }

  /**
   * What this instance shares with the others on this database (push, certificate, throttles):
   * `start()` it to hear them; closing it leaves this store open.
   */
  cluster(opts: ClusterOptions = {}): PgCluster {
    return new PgCluster(
      this.#pool,
      () => createClient(this.#url, this.#opts, "cloudsync-listen"),
      this.#channel,
      opts,
    );
  }

  /** The chunk-location index of an S3 chunk store, in this database (shared by instances). */
  packIndex(): PackIndex {
    return new PgPackIndex(this.#pool);
  }

  async #query<R>(sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.#pool.query(sql, params)).rows as R[];
  }

  async createAccount(serialHash: string): Promise<string> {
    const id = randomId();
    await this.#query("INSERT INTO accounts(id, serial_hash, created) VALUES ($1, $2, $3)", [
      id,
      serialHash,
      Date.now(),
    ]);
    return id;
  }

  async setSerialHash(account: string, serialHash: string): Promise<boolean> {
    const r = await this.#pool.query("UPDATE accounts SET serial_hash = $2 WHERE id = $1", [
      account,
      serialHash,
    ]);
    return r.rowCount === 1;
  }

  async accountBySerialHash(serialHash: string): Promise<string | null> {
    const rows = await this.#query<{ id: string }>(
      "SELECT id FROM accounts WHERE serial_hash = $1",
      [serialHash],
    );
    return rows[0]?.id ?? null;
  }

  async hasAccount(account: string): Promise<boolean> {
    return (await this.#query("SELECT 1 FROM accounts WHERE id = $1", [account])).length === 1;
  }

  async accountIds(): Promise<string[]> {
    return (await this.#query<{ id: string }>("SELECT id FROM accounts ORDER BY created, id"))
      .map((r) => r.id);
  }

  async accounts(): Promise<AccountSummary[]> {
    const rows = await this.#query<{
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
    }>(`SELECT a.id, a.created, a.seq,
      (SELECT COUNT(*) FROM devices d WHERE d.account = a.id AND NOT d.revoked) AS devices,
      (SELECT MAX(last_seen) FROM devices d WHERE d.account = a.id) AS last_seen,
      (SELECT COUNT(*) FROM entries e WHERE e.account = a.id AND NOT e.deleted AND e.kind = 'file') AS files,
      (SELECT COALESCE(SUM(size), 0)::bigint FROM entries e WHERE e.account = a.id AND NOT e.deleted) AS bytes,
      (SELECT COUNT(*) FROM versions v WHERE v.account = a.id AND NOT v.deleted AND v.kind = 'file') AS versions,
      (SELECT COALESCE(SUM(size), 0)::bigint FROM versions v WHERE v.account = a.id AND NOT v.deleted) AS kept,
      (SELECT COALESCE(SUM(stored), 0)::bigint FROM chunks c WHERE c.account = a.id) AS stored
      FROM accounts a ORDER BY a.created, a.id`);
    return rows.map((r) => ({
      id: r.id,
      created: r.created,
      devices: r.devices,
      lastSeen: r.last_seen,
      files: r.files,
      bytes: r.bytes,
      seq: r.seq,
      versions: r.versions,
      keptBytes: r.kept,
      storedBytes: r.stored,
    }));
  }

  async addDevice(account: string, name: string, tokenHash: string): Promise<string> {
    const id = randomId();
    const now = Date.now();
    await this.#query(
      `INSERT INTO devices(id, account, name, token_hash, created, last_seen)
       VALUES ($1, $2, $3, $4, $5, $5)`,
      [id, account, name, tokenHash, now],
    );
    return id;
  }

  async device(id: string): Promise<DeviceRecord | null> {
    const [r] = await this.#query<
      { id: string; account: string; name: string; token_hash: string; revoked: boolean }
    >("SELECT id, account, name, token_hash, revoked FROM devices WHERE id = $1", [id]);
    return r
      ? { id: r.id, account: r.account, name: r.name, tokenHash: r.token_hash, revoked: r.revoked }
      : null;
  }

  async touchDevice(id: string): Promise<void> {
    await this.#query("UPDATE devices SET last_seen = $2 WHERE id = $1", [id, Date.now()]);
  }

  async devices(account: string): Promise<DeviceSummary[]> {
    const rows = await this.#query<
      { id: string; name: string; created: number; last_seen: number | null; revoked: boolean }
    >(
      `SELECT id, name, created, last_seen, revoked FROM devices WHERE account = $1
       ORDER BY created, id`,
      [account],
    );
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      created: r.created,
      lastSeen: r.last_seen,
      revoked: r.revoked,
    }));
  }

  async revokeDevice(account: string, deviceId: string): Promise<boolean> {
    const r = await this.#pool.query(
      "UPDATE devices SET revoked = true WHERE id = $1 AND account = $2",
      [deviceId, account],
    );
    return r.rowCount === 1;
  }

  async renameDevice(account: string, deviceId: string, name: string): Promise<boolean> {
    const r = await this.#pool.query(
      "UPDATE devices SET name = $3 WHERE id = $1 AND account = $2",
      [deviceId, account, name],
    );
    return r.rowCount === 1;
  }

  async accountFootprint(account: string): Promise<AccountFootprint | null> {
    const [r] = await this.#query<AccountFootprint>(
      `SELECT
        (SELECT COUNT(*) FROM devices WHERE account = $1)::bigint AS devices,
        (SELECT COUNT(*) FROM entries WHERE account = $1 AND NOT deleted AND kind = 'file')::bigint
          AS files,
        (SELECT COUNT(*) FROM versions WHERE account = $1)::bigint AS versions,
        (SELECT COUNT(*) FROM chunks WHERE account = $1)::bigint AS chunks,
        (SELECT COALESCE(SUM(stored), 0) FROM chunks WHERE account = $1)::bigint AS "storedBytes"
       FROM accounts WHERE id = $1`,
      [account],
    );
    return r ?? null;
  }

  deleteAccount(account: string): Promise<boolean> {
    return transaction(this.#pool, async (c) => {
      // The account's lock, as commits take it: a commit in progress on any instance ends first,
      // and none starts after (it finds no account).
      const found = (await c.query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", [account]))
        .rows.length === 1;
      if (!found) return false;
      for (const table of ["devices", "entries", "versions", "chunks"]) {
        await c.query(`DELETE FROM ${table} WHERE account = $1`, [account]);
      }
      await c.query("DELETE FROM accounts WHERE id = $1", [account]);
      return true;
    });
  }

  async deviceRevoked(deviceId: string): Promise<boolean> {
    const [r] = await this.#query<{ revoked: boolean }>(
      "SELECT revoked FROM devices WHERE id = $1",
      [deviceId],
    );
    return r === undefined || r.revoked;
  }

  async revokedDevices(deviceIds: readonly string[]): Promise<Set<string>> {
    if (deviceIds.length === 0) return new Set();
    const rows = await this.#query<{ id: string }>(
      `SELECT x AS id FROM unnest($1::text[]) x LEFT JOIN devices d ON d.id = x
       WHERE d.id IS NULL OR d.revoked`,
      [[...new Set(deviceIds)]],
    );
    return new Set(rows.map((r) => r.id));
  }

  async seq(account: string): Promise<number> {
    const [r] = await this.#query<{ seq: number }>("SELECT seq FROM accounts WHERE id = $1", [
      account,
    ]);
    return r?.seq ?? 0;
  }

  async changes(account: string, since: number, limit: number): Promise<RemoteEntry[]> {
    const rows = await this.#query<EntryRow>(
      `SELECT ${ENTRY_COLUMNS} FROM entries WHERE account = $1 AND version > $2
       ORDER BY version LIMIT $3`,
      [account, since, limit],
    );
    return rows.map(rowToEntry);
  }

  /** Fills `snap` with the answers to the questions given. */
  async #fetch(
    c: PoolClient,
    account: string,
    snap: CommitSnapshot,
    paths: Iterable<string>,
    chunks: Iterable<string>,
    below: Map<string, number>,
  ): Promise<void> {
    const p = [...paths];
    const h = [...chunks];
    if (p.length > 0) {
      const rows = (await c.query(
        `SELECT ${STORED_COLUMNS} FROM entries WHERE account = $1 AND path = ANY($2::text[])`,
        [account, p],
      )).rows as EntryRow[];
      snap.addEntries(p, rows.map((r) => ({ ...rowToEntry(r), made: r.made! })));
    }
    if (h.length > 0) {
      const rows = (await c.query(
        "SELECT hash, size FROM chunks WHERE account = $1 AND hash = ANY($2::text[])",
        [account, h],
      )).rows as { hash: string; size: number }[];
      snap.addChunks(h, rows);
    }
    if (below.size > 0) {
      const dirs = [...below.keys()];
      const rows = (await c.query(
        `SELECT d.dir, e.path FROM unnest($2::text[], $3::int[]) AS d(dir, lim)
         CROSS JOIN LATERAL (SELECT path FROM entries WHERE account = $1
           AND path > (d.dir || '/') COLLATE "C" AND path < (d.dir || '0') COLLATE "C"
           AND NOT deleted ORDER BY path LIMIT d.lim) e`,
        [account, dirs, dirs.map((d) => below.get(d)!)],
      )).rows as { dir: string; path: string }[];
      const found = new Map<string, string[]>(dirs.map((d) => [d, []]));
      for (const r of rows) found.get(r.dir)!.push(r.path);
      for (const d of dirs) snap.addBelow(d, below.get(d)!, found.get(d)!);
    }
  }

  commit(account: string, device: string, items: CommitItem[]): Promise<CommitResult[]> {
    return transaction(this.#pool, async (c) => {
      const seq = await this.#lock(c, account);
      return await this.#commitIn(c, account, device, items, seq);
    });
  }

  /**
   * The account's lock: every commit (and garbage collection) of this account, on any instance,
   * waits here for the one before to end, then reads what it wrote. Returns its sequence number.
   */
  async #lock(c: PoolClient, account: string): Promise<number> {
    const [row] = (await c.query("SELECT seq FROM accounts WHERE id = $1 FOR UPDATE", [
      account,
    ])).rows as { seq: number }[];
    if (!row) throw new Error(`Cannot commit: no account ${account}`);
    return row.seq;
  }

  /** A commit, in the caller's transaction, which holds the account's lock. */
  async #commitIn(
    c: PoolClient,
    account: string,
    device: string,
    items: CommitItem[],
    seq: number,
  ): Promise<CommitResult[]> {
    const snap = new CommitSnapshot();
    const reads = commitReads(items);
    await this.#fetch(c, account, snap, reads.paths, reads.chunks, new Map());
    let plan;
    for (let round = 0;; round++) {
      snap.reset();
      plan = planCommit(snap, seq, device, items);
      if (snap.complete) break;
      if (round >= 10) throw new Error("Cannot commit: the batch keeps asking for more reads");
      const m = snap.missed;
      await this.#fetch(c, account, snap, m.paths, m.chunks, m.below);
    }
    // A version is current from when it was made until it is replaced (the same instant as
    // its successor's `made`): at any instant, one version of a path was the current one.
    const now = Date.now();
    if (plan.kept.length > 0) {
      await c.query(
        `INSERT INTO versions(account, ${STORED_COLUMNS}, replaced)
         SELECT $1, ${STORED_COLUMNS}, $3 FROM jsonb_to_recordset($2::jsonb) AS ${ENTRY_RECORD}`,
        [account, JSON.stringify(plan.kept.map((e) => ({ ...e, made: e.made ?? now }))), now],
      );
    }
    if (plan.written.length > 0) {
      await c.query(
        `INSERT INTO entries(account, ${STORED_COLUMNS})
         SELECT $1, ${ENTRY_COLUMNS}, $3 FROM jsonb_to_recordset($2::jsonb) AS ${ENTRY_RECORD}
         ON CONFLICT (account, path) DO UPDATE SET kind = EXCLUDED.kind,
           deleted = EXCLUDED.deleted, version = EXCLUDED.version, size = EXCLUDED.size,
           mtime = EXCLUDED.mtime, exec = EXCLUDED.exec, hash = EXCLUDED.hash,
           chunks = EXCLUDED.chunks, device = EXCLUDED.device, mode = EXCLUDED.mode,
           made = EXCLUDED.made`,
        [account, JSON.stringify(plan.written), now],
      );
    }
    if (plan.seq !== seq) {
      // The other instances hear of it when (and only if) this transaction commits.
      await c.query(
        `WITH u AS (UPDATE accounts SET seq = $2 WHERE id = $1) SELECT pg_notify($3, $4)`,
        [
          account,
          plan.seq,
          this.#channel.channel,
          changedPayload(this.#channel.instance, account, plan.seq),
        ],
      );
    }
    return plan.results;
  }

  restore(account: string, device: string, items: RestoreItem[]): Promise<CommitResult[]> {
    return transaction(this.#pool, async (c) => {
      const seq = await this.#lock(c, account);
      const want = { paths: items.map((i) => i.path), versions: items.map((i) => i.version) };
      const rows = (await c.query(
        `SELECT x.* FROM unnest($2::text[], $3::bigint[]) AS w(path, version)
         JOIN LATERAL (SELECT ${STORED_COLUMNS} FROM versions v
             WHERE v.account = $1 AND v.path = w.path AND v.version = w.version
           UNION ALL SELECT ${STORED_COLUMNS} FROM entries e
             WHERE e.account = $1 AND e.path = w.path AND e.version = w.version) x ON true`,
        [account, want.paths, want.versions],
      )).rows as EntryRow[];
      const by = new Map(rows.map((r) => [`${r.version}\0${r.path}`, r]));
      const found = items.map((i) => {
        const r = by.get(`${i.version}\0${i.path}`);
        return r
          ? { ...rowToVersion({ ...r, replaced: null }), chunks: rowToEntry(r).chunks }
          : null;
      });
      // Planned in this transaction, after the reads, under the account's lock.
      const plan = restoreCommit(items, found);
      return plan.results(
        plan.valid.length > 0 ? await this.#commitIn(c, account, device, plan.valid, seq) : [],
      );
    });
  }

  async history(account: string, q: HistoryQuery): Promise<Page<VersionInfo>> {
    const where = subtree(q.path, 4);
    const cond = `account = $1 AND ${where.sql} AND version < $2 AND made >= $3`;
    const rows = await this.#query<EntryRow>(
      `SELECT ${VERSION_COLUMNS}, NULL::bigint AS replaced FROM entries WHERE ${cond}
       UNION ALL SELECT ${VERSION_COLUMNS}, replaced FROM versions WHERE ${cond}
       ORDER BY version DESC LIMIT ${q.limit + 1}`,
      [account, q.before ?? Number.MAX_SAFE_INTEGER, q.since ?? 0, ...where.params],
    );
    return page(rows.map(rowToVersion), q.limit);
  }

  async deletedPaths(account: string, q: HistoryQuery): Promise<Page<DeletedInfo>> {
    const where = subtree(q.path, 4, "e.path");
    const cols = VERSION_COLUMNS.split(", ");
    const rows = await this.#query<Record<string, unknown>>(
      `SELECT ${cols.map((c) => `e.${c}`).join(", ")}, NULL::bigint AS replaced,
         ${cols.map((c) => `k.${c} AS k_${c}`).join(", ")}, k.replaced AS k_replaced
       FROM entries e JOIN LATERAL (SELECT * FROM versions v WHERE v.account = e.account
         AND v.path = e.path AND NOT v.deleted ORDER BY v.version DESC LIMIT 1) k ON true
       WHERE e.account = $1 AND e.deleted AND ${where.sql} AND e.version < $2 AND e.made >= $3
       ORDER BY e.version DESC LIMIT ${q.limit + 1}`,
      [account, q.before ?? Number.MAX_SAFE_INTEGER, q.since ?? 0, ...where.params],
    );
    return page(
      rows.map((r) => {
        const k: Record<string, unknown> = {};
        for (const [key, v] of Object.entries(r)) if (key.startsWith("k_")) k[key.slice(2)] = v;
        return {
          ...rowToVersion(r as unknown as EntryRow),
          kept: rowToVersion(k as unknown as EntryRow),
        };
      }),
      q.limit,
    );
  }

  async listAt(account: string, q: ListAtQuery): Promise<Page<PointInTime>> {
    const where = subtree(q.path, 4);
    const after = q.after === undefined ? "" : ` AND path > $${4 + where.params.length}`;
    const cond = `account = $1 AND ${where.sql}${after} AND made <= $2`;
    const rows = await this.#query<
      EntryRow & {
        c_kind: string;
        c_deleted: boolean;
        c_version: number;
        c_size: number;
        c_mtime: number;
        c_exec: boolean;
        c_mode: number | null;
        c_hash: string;
      }
    >(
      `SELECT x.*, e.kind AS c_kind, e.deleted AS c_deleted, e.version AS c_version,
         e.size AS c_size, e.mtime AS c_mtime, e.exec AS c_exec, e.mode AS c_mode,
         e.hash AS c_hash
       FROM (SELECT ${STORED_COLUMNS}, NULL::bigint AS replaced FROM entries WHERE ${cond}
         UNION ALL SELECT ${STORED_COLUMNS}, replaced FROM versions WHERE ${cond} AND replaced > $2
         ORDER BY path, version DESC LIMIT $3) x
       JOIN entries e ON e.account = $1 AND e.path = x.path
       ORDER BY x.path, x.version DESC`,
      [account, q.at, q.limit + 1, ...where.params, ...(q.after === undefined ? [] : [q.after])],
    );
    return pointPage(
      rows.map((r) => ({
        ...rowToVersion(r),
        chunks: rowToEntry(r).chunks,
        current: {
          kind: r.c_kind === "dir" ? "dir" : "file",
          deleted: r.c_deleted,
          version: r.c_version,
          size: r.c_size,
          mtime: r.c_mtime,
          exec: r.c_exec,
          ...(r.c_mode !== null && r.c_mode !== undefined ? { mode: r.c_mode } : {}),
          hash: r.c_hash,
        },
      })),
      q.limit,
    );
  }

  async oldestKept(account: string, path: string): Promise<number | null> {
    const where = subtree(path, 2);
    const cond = `account = $1 AND ${where.sql} AND NOT deleted`;
    const [r] = await this.#query<{ m: number | null }>(
      `SELECT MIN(m) AS m FROM (SELECT MIN(made) AS m FROM entries WHERE ${cond}
       UNION ALL SELECT MIN(made) FROM versions WHERE ${cond}) x`,
      [account, ...where.params],
    );
    return r?.m ?? null;
  }

  async *oldVersions(account: string, cutoff: number): AsyncIterable<OldVersion> {
    let last: VersionRef | null = null;
    for (;;) {
      const rows: OldVersion[] = last === null
        ? await this.#query<OldVersion>(
          `SELECT path, version, made, replaced FROM versions WHERE account = $1 AND replaced < $2
           ORDER BY path, version LIMIT ${PAGE}`,
          [account, cutoff],
        )
        : await this.#query<OldVersion>(
          `SELECT path, version, made, replaced FROM versions WHERE account = $1 AND replaced < $2
           AND (path, version) > ($3, $4) ORDER BY path, version LIMIT ${PAGE}`,
          [account, cutoff, last.path, last.version],
        );
      for (const r of rows) yield r;
      if (rows.length < PAGE) return;
      const l = rows[rows.length - 1]!;
      last = { path: l.path, version: l.version };
    }
  }

  async forgetVersions(account: string, refs: readonly VersionRef[]): Promise<number> {
    if (refs.length === 0) return 0;
    const r = await this.#pool.query(
      `DELETE FROM versions v USING unnest($2::text[], $3::bigint[]) AS w(path, version)
       WHERE v.account = $1 AND v.path = w.path AND v.version = w.version`,
      [account, refs.map((x) => x.path), refs.map((x) => x.version)],
    );
    return r.rowCount ?? 0;
  }

  async pruneVersions(cutoff: number): Promise<number> {
    return (await this.#pool.query("DELETE FROM versions WHERE replaced < $1", [cutoff]))
      .rowCount ?? 0;
  }

  async *verifyEntries(account: string): AsyncIterable<RemoteEntry> {
    let after: string | null = null;
    for (;;) {
      const rows: EntryRow[] = after === null
        ? await this.#query<EntryRow>(
          `SELECT ${ENTRY_COLUMNS} FROM entries WHERE account = $1 ORDER BY path LIMIT ${PAGE}`,
          [account],
        )
        : await this.#query<EntryRow>(
          `SELECT ${ENTRY_COLUMNS} FROM entries WHERE account = $1 AND path > $2
           ORDER BY path LIMIT ${PAGE}`,
          [account, after],
        );
      for (const r of rows) yield rowToEntry(r);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.path;
    }
  }

  async *verifyKeptVersions(account: string): AsyncIterable<RemoteEntry> {
    let after: [string, number] | null = null;
    for (;;) {
      const rows: EntryRow[] = after === null
        ? await this.#query<EntryRow>(
          `SELECT ${ENTRY_COLUMNS} FROM versions WHERE account = $1 ORDER BY path, version
           LIMIT ${PAGE}`,
          [account],
        )
        : await this.#query<EntryRow>(
          `SELECT ${ENTRY_COLUMNS} FROM versions WHERE account = $1 AND (path, version) > ($2, $3)
           ORDER BY path, version LIMIT ${PAGE}`,
          [account, after[0], after[1]],
        );
      for (const r of rows) yield rowToEntry(r);
      if (rows.length < PAGE) return;
      const last = rows[rows.length - 1]!;
      after = [last.path, last.version];
    }
  }

  async missingChunks(account: string, hashes: string[]): Promise<string[]> {
    if (hashes.length === 0) return [];
    const have = new Set(
      (await this.#query<{ hash: string }>(
        "SELECT hash FROM chunks WHERE account = $1 AND hash = ANY($2::text[])",
        [account, hashes],
      )).map((r) => r.hash),
    );
    return hashes.filter((h) => !have.has(h));
  }

  async chunk(account: string, hash: string): Promise<ChunkInfo | null> {
    return (await this.chunks(account, [hash]))[0]!;
  }

  async chunks(account: string, hashes: readonly string[]): Promise<(ChunkInfo | null)[]> {
    if (hashes.length === 0) return [];
    const rows = await this.#query<ChunkInfo & { hash: string }>(
      `SELECT hash, size, stored, compressed FROM chunks
       WHERE account = $1 AND hash = ANY($2::text[])`,
      [account, [...new Set(hashes)]],
    );
    const by = new Map(rows.map((r) => [r.hash, r]));
    return hashes.map((h) => {
      const r = by.get(h);
      return r ? { size: r.size, stored: r.stored, compressed: r.compressed } : null;
    });
  }

  async addChunks(account: string, items: readonly NewChunk[]): Promise<void> {
    if (items.length === 0) return;
    // Once per hash (an upsert cannot touch a row twice), in hash order (no deadlocks between
    // uploads of the same chunks).
    const once = [...new Map(items.map((i) => [i.hash, i])).values()]
      .sort((a, b) => a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0)
      .map((i) => ({ hash: i.hash, size: i.size, stored: i.stored, compressed: i.compressed }));
    await transaction(this.#pool, (c) =>
      c.query(
        `INSERT INTO chunks(account, hash, size, stored, compressed, created)
         SELECT $1, x.hash, x.size, x.stored, x.compressed, $3
         FROM jsonb_to_recordset($2::jsonb) AS x(hash text, size bigint, stored bigint, compressed boolean)
         ON CONFLICT (account, hash) DO UPDATE SET size = EXCLUDED.size, stored = EXCLUDED.stored,
           compressed = EXCLUDED.compressed, created = EXCLUDED.created`,
        [account, JSON.stringify(once), Date.now()],
      ));
  }

  async storedBytes(account: string): Promise<number> {
    const [r] = await this.#query<{ n: number }>(
      "SELECT COALESCE(SUM(stored), 0)::bigint AS n FROM chunks WHERE account = $1",
      [account],
    );
    return r?.n ?? 0;
  }

  async metadataBytes(account: string): Promise<number> {
    // As rowBytes in session.ts: 3 bytes a path character, 90 per chunk reference, 200 a row.
    const [r] = await this.#query<{ n: number }>(
      `SELECT COALESCE(SUM(length(path) * 3 + jsonb_array_length(chunks) * 90 + 200), 0)::bigint AS n
       FROM (SELECT path, chunks FROM entries WHERE account = $1
             UNION ALL SELECT path, chunks FROM versions WHERE account = $1) AS t`,
      [account],
    );
    return Number(r?.n ?? 0);
  }

  async addInvite(codeHash: string): Promise<void> {
    await this.#query("INSERT INTO invites(hash, created) VALUES ($1, $2)", [codeHash, Date.now()]);
  }

  async useInvite(codeHash: string): Promise<boolean> {
    const r = await this.#pool.query(
      "UPDATE invites SET used = $2 WHERE hash = $1 AND used IS NULL",
      [codeHash, Date.now()],
    );
    return r.rowCount === 1;
  }

  forgetUnreferenced(account: string, cutoff: number): Promise<string[]> {
    return transaction(this.#pool, async (c) => {
      // The account's lock, as commits take it: no commit runs between the look and the delete.
      await c.query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", [account]);
      const rows = (await c.query(
        `WITH used AS (
           SELECT x->>'hash' AS hash FROM entries e, jsonb_array_elements(e.chunks) x
             WHERE e.account = $1 AND e.chunks <> '[]'::jsonb
           UNION SELECT x->>'hash' FROM versions v, jsonb_array_elements(v.chunks) x
             WHERE v.account = $1 AND v.chunks <> '[]'::jsonb)
         DELETE FROM chunks c WHERE c.account = $1 AND c.created < $2
           AND NOT EXISTS (SELECT 1 FROM used u WHERE u.hash = c.hash)
         RETURNING c.hash`,
        [account, cutoff],
      )).rows as { hash: string }[];
      return rows.map((r) => r.hash);
    });
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
