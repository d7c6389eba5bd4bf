/**
 * The {@link Cluster} of instances sharing one PostgreSQL database (`--meta postgres://…`).
 *
 * - **Push**: every commit that moves an account's sequence number sends a notification on the
 *   deployment's channel inside its transaction (`pg_meta.ts`), so PostgreSQL delivers it exactly
 *   when the commit is visible. Each instance keeps one connection of its own that `LISTEN`s
 *   (application name `cloudsync-listen`) and passes what other instances sent to its hub; its own
 *   notifications it skips (the hub was told at once). Announced uploads travel the same way: the
 *   entry (too big for a notification's 8,000 bytes) is a row of `announcements`, the
 *   notification names it; stored announced chunks, and withdrawn ones, are notified by hash.
 * - **When the channel drops** (the connection breaks, PostgreSQL restarts, the listening backend
 *   is terminated, a health check gets no answer within 3 s): the instance polls the sequence
 *   numbers of the accounts its devices watch (one query, every `pollMs`) and sets the channel up
 *   again with back-off (from `reconnectMs`, doubling to 5 s); once it listens again it polls
 *   once more, for what was committed while it could not hear. A device thus learns of a change
 *   at once, or within `pollMs` while the channel is down, never at its next full pass only.
 * - **Certificate**: one row of `tls_certificate`, inserted by the first instance that needs it
 *   (`ON CONFLICT DO NOTHING`, then read back: two instances starting at once end up with the
 *   same one).
 * - **Counters** of `shared_limits.ts`: `pg_limits.ts`.
 *
 * The channel's name is derived from the schema (`current_schema()`), so deployments (and tests)
 * sharing a database in separate schemas do not hear each other.
 *
 * @module
 */

import pg from "pg";
import type { Cluster, ClusterEvents, ClusterStatus, SharedCertificate } from "./cluster.ts";
import type { Pool } from "./pg_pool.ts";
import { PgLimitCounters } from "./pg_limits.ts";
import { pemFingerprint } from "../transport/tls_cert.ts";
import { ANNOUNCE_TTL_MS } from "./incoming.ts";

/** Tuning of {@link PgCluster} (tests shorten or lengthen them). */
export interface ClusterOptions {
  /** Poll this often while the channel is down (default 1000 ms). */
  pollMs?: number;
  /** First wait before setting the channel up again (default 100 ms; doubles up to 5 s). */
  reconnectMs?: number;
  /** Check the listening connection this often (default 5000 ms; it must answer within 3 s). */
  healthMs?: number;
}

/** How the notification channel's name and this instance's id are chosen (`pg_meta.ts`). */
export interface ChannelInfo {
  /** The channel of this deployment (schema). */
  channel: string;
  /** This process's id in notifications (its own are skipped). */
  instance: string;
}

/** A notification's payload, as JSON text. */
type Payload =
  | { t: "c"; i: string; a: string; s: number }
  | { t: "i"; i: string; a: string; id: number }
  | { t: "s" | "w"; i: string; a: string; h: string[] };

/** Hashes per `stored` or `withdrawn` notification (a payload must stay under 8,000 bytes). */
const HASHES_PER_NOTICE = 100;
const MAX_RECONNECT_MS = 5_000;
const HEALTH_TIMEOUT_MS = 3_000;
const MAINTENANCE_MS = 10 * 60_000;
/** Counters untouched this long are forgotten (longer than any lockout or bucket refill). */
const COUNTERS_KEPT_MS = 24 * 3600_000;

/** The notification text of a commit that brought `account` to `seq` (sent by `pg_meta.ts`). */
export function changedPayload(instance: string, account: string, seq: number): string {
  return JSON.stringify({ t: "c", i: instance, a: account, s: seq } satisfies Payload);
}

/** The channel name for a schema: at most 63 bytes, as PostgreSQL requires. */
export function channelFor(schema: string): string {
  const name = `cloudsync_${schema}`;
  if (new TextEncoder().encode(name).length <= 63) return name;
  let h = 0;
  for (const ch of schema) h = (Math.imul(h, 31) + ch.codePointAt(0)!) >>> 0;
  return `cloudsync_${h.toString(16)}_${schema.replace(/[^a-z0-9_]/gi, "").slice(0, 30)}`;
}

/** Quotes an identifier for SQL. */
function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** {@link Cluster} on a PostgreSQL pool it does not own. */
export class PgCluster implements Cluster {
  readonly counters: PgLimitCounters;
  readonly status: ClusterStatus = { listening: false, reconnects: 0, polls: 0, listenerPid: null };
  readonly #pool: Pool;
  readonly #newClient: () => pg.Client;
  readonly #info: ChannelInfo;
  readonly #pollMs: number;
  readonly #reconnectMs: number;
  readonly #healthMs: number;
  #events: ClusterEvents | null = null;
  #watched: () => ReadonlyMap<string, number> = () => new Map();
  /** The listening connection (or the one being set up). */
  #client: pg.Client | null = null;
  #everListened = false;
  #delay: number;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #pollTimer: ReturnType<typeof setInterval> | undefined;
  #healthTimer: ReturnType<typeof setInterval> | undefined;
  #maintenanceTimer: ReturnType<typeof setInterval> | undefined;
  #polling: Promise<void> | null = null;
  #checking = false;
  #closed = false;
  /** Work in flight (close waits for it). */
  readonly #busy = new Set<Promise<unknown>>();

  /** `newClient`: a connection of its own to the same database, for listening. */
  constructor(
    pool: Pool,
    newClient: () => pg.Client,
    info: ChannelInfo,
    opts: ClusterOptions = {},
  ) {
    this.#pool = pool;
    this.#newClient = newClient;
    this.#info = info;
    this.counters = new PgLimitCounters(pool);
    this.#pollMs = opts.pollMs ?? 1000;
    this.#reconnectMs = opts.reconnectMs ?? 100;
    this.#healthMs = opts.healthMs ?? 5000;
    this.#delay = this.#reconnectMs;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#busy.add(p);
    p.finally(() => this.#busy.delete(p)).catch(() => {});
    return p;
  }

  async certificate(
    make: () => Promise<{ cert: string; key: string }>,
  ): Promise<SharedCertificate> {
    const read = async () =>
      (await this.#pool.query("SELECT cert, key FROM tls_certificate WHERE id = 1"))
        .rows[0] as { cert: string; key: string } | undefined;
    const found = await read();
    if (found) return { cert: found.cert, key: found.key, created: false };
    const made = await make();
    const r = await this.#pool.query(
      `INSERT INTO tls_certificate(id, cert, key, fingerprint, created) VALUES (1, $1, $2, $3, $4)
       ON CONFLICT (id) DO NOTHING`,
      [made.cert, made.key, pemFingerprint(made.cert), Date.now()],
    );
    if (r.rowCount === 1) return { ...made, created: true };
    const won = await read(); // another instance stored one first: use it
    if (!won) throw new Error("Cannot load the TLS certificate from the --meta database");
    return { cert: won.cert, key: won.key, created: false };
  }

  async start(events: ClusterEvents, watched: () => ReadonlyMap<string, number>): Promise<void> {
    this.#events = events;
    this.#watched = watched;
    this.#pollTimer = setInterval(() => {
      if (!this.status.listening) void this.#poll();
    }, this.#pollMs);
    this.#healthTimer = setInterval(() => void this.#health(), this.#healthMs);
    this.#maintenanceTimer = setInterval(() => void this.#maintain(), MAINTENANCE_MS);
    await this.#listen().catch(() => {/* #drop scheduled another attempt; polls meanwhile */});
    void this.#maintain();
  }

  /** Sets up the listening connection; on failure, schedules another attempt. */
  async #listen(): Promise<void> {
    this.#reconnectTimer = undefined;
    if (this.#closed) return;
    const c = this.#newClient();
    this.#client = c;
    c.on("error", () => this.#drop(c));
    c.on("end", () => this.#drop(c));
    c.on("notification", (m: pg.Notification) => this.#notified(m.channel, m.payload));
    try {
      await c.connect();
      await c.query(`LISTEN ${ident(this.#info.channel)}`);
    } catch (e) {
      this.#drop(c);
      throw e;
    }
    if (this.#client !== c) return; // dropped meanwhile
    if (this.#closed) {
      await c.end().catch(() => {});
      return;
    }
    this.status.listening = true;
    this.status.listenerPid = (c as unknown as { processID?: number }).processID ?? null;
    if (this.#everListened) this.status.reconnects++;
    this.#everListened = true;
    this.#delay = this.#reconnectMs;
    await this.#poll(); // what was committed while this instance could not hear
  }

  /** The listening connection `c` broke (or failed a health check): poll, and listen again. */
  #drop(c: pg.Client): void {
    if (this.#client !== c) return;
    this.#client = null;
    this.status.listening = false;
    this.status.listenerPid = null;
    forceClose(c);
    if (this.#closed || this.#reconnectTimer !== undefined) return;
    const wait = this.#delay;
    this.#delay = Math.min(this.#delay * 2, MAX_RECONNECT_MS);
    this.#reconnectTimer = setTimeout(() => {
      void this.#track(this.#listen()).catch(() => {});
    }, wait);
  }

  /** One round trip on the listening connection; no answer within 3 s counts as a drop. */
  async #health(): Promise<void> {
    const c = this.#client;
    if (!c || !this.status.listening || this.#checking) return;
    this.#checking = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        c.query("SELECT 1"),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no answer")), HEALTH_TIMEOUT_MS);
        }),
      ]);
    } catch {
      this.#drop(c);
    } finally {
      clearTimeout(timer);
      this.#checking = false;
    }
  }

  /** Tells the hub of every watched account whose sequence number moved past what it knows. */
  #poll(): Promise<void> {
    if (this.#polling || this.#closed) return this.#polling ?? Promise.resolve();
    const run = (async () => {
      const watched = this.#watched();
      if (watched.size === 0) return;
      this.status.polls++;
      const ids = [...watched.keys()];
      for (let i = 0; i < ids.length; i += 5000) {
        const rows = (await this.#pool.query(
          "SELECT id, seq FROM accounts WHERE id = ANY($1::text[])",
          [ids.slice(i, i + 5000)],
        )).rows as { id: string; seq: number }[];
        for (const r of rows) {
          if (r.seq > (watched.get(r.id) ?? Infinity)) this.#events?.changed(r.id, r.seq);
        }
      }
    })().catch(() => {/* the database is unreachable: the next tick tries again */})
      .finally(() => this.#polling = null);
    this.#polling = run;
    return this.#track(run);
  }

  #notified(channel: string, payload: string | undefined): void {
    if (channel !== this.#info.channel || !payload || !this.#events) return;
    let p: Payload;
    try {
      p = JSON.parse(payload);
    } catch {
      return;
    }
    if (typeof p !== "object" || p === null || p.i === this.#info.instance) return;
    if (typeof p.a !== "string") return;
    if (p.t === "c" && typeof p.s === "number") this.#events.changed(p.a, p.s);
    else if ((p.t === "s" || p.t === "w") && Array.isArray(p.h)) {
      const hashes = p.h.filter((h) => typeof h === "string");
      if (p.t === "s") this.#events.stored(p.a, hashes);
      else this.#events.withdrawn(p.a, hashes);
    } else if (p.t === "i" && typeof p.id === "number" && this.#watched().has(p.a)) {
      const account = p.a;
      void this.#track(
        this.#pool.query("SELECT entry FROM announcements WHERE id = $1 AND account = $2", [
          p.id,
          account,
        ]).then((r: pg.QueryResult) => {
          const entry = r.rows[0]?.entry;
          if (entry && typeof entry === "object") this.#events?.incoming(account, entry);
        }),
      ).catch(() => {});
    }
  }

  async announce(account: string, entry: Record<string, unknown>): Promise<void> {
    await this.#track(this.#pool.query(
      `WITH ins AS (INSERT INTO announcements(account, entry, expires)
         VALUES ($1::text, $2::jsonb, $3) RETURNING id)
       SELECT pg_notify($4, json_build_object('t', 'i', 'i', $5::text, 'a', $1::text,
         'id', (SELECT id FROM ins))::text)`,
      [
        account,
        JSON.stringify(entry),
        Date.now() + ANNOUNCE_TTL_MS,
        this.#info.channel,
        this
          .#info.instance,
      ],
    ));
  }

  stored(account: string, hashes: readonly string[]): Promise<void> {
    return this.#byHash("s", account, hashes);
  }

  withdrawn(account: string, hashes: readonly string[]): Promise<void> {
    return this.#byHash("w", account, hashes);
  }

  async #byHash(t: "s" | "w", account: string, hashes: readonly string[]): Promise<void> {
    for (let i = 0; i < hashes.length; i += HASHES_PER_NOTICE) {
      const payload: Payload = {
        t,
        i: this.#info.instance,
        a: account,
        h: hashes.slice(i, i + HASHES_PER_NOTICE),
      };
      await this.#track(
        this.#pool.query("SELECT pg_notify($1, $2)", [this.#info.channel, JSON.stringify(payload)]),
      );
    }
  }

  async #maintain(): Promise<void> {
    if (this.#closed) return;
    const now = Date.now();
    await this.#track(Promise.all([
      this.#pool.query("DELETE FROM announcements WHERE expires < $1", [now]),
      this.counters.prune(COUNTERS_KEPT_MS, now),
    ])).catch(() => {/* next time */});
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#pollTimer);
    clearInterval(this.#healthTimer);
    clearInterval(this.#maintenanceTimer);
    const c = this.#client;
    this.#client = null;
    this.status.listening = false;
    if (c) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        c.end().catch(() => {}),
        new Promise<void>((r) => timer = setTimeout(r, 2000)),
      ]);
      clearTimeout(timer);
      forceClose(c);
    }
    while (this.#busy.size > 0) await Promise.allSettled([...this.#busy]);
  }
}

/** Closes a client's socket at once (a half-open connection never finishes a polite end). */
function forceClose(c: pg.Client): void {
  const stream = (c as unknown as { connection?: { stream?: { destroy?: () => void } } })
    .connection?.stream;
  try {
    stream?.destroy?.();
  } catch { /* gone */ }
}
