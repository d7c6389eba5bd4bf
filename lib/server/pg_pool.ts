/**
 * PostgreSQL connections for the metadata backend: one `pg` pool per process (`npm:pg`: the
 * reference Node client, maintained for a decade; it needs a full `--allow-env` since it reads
 * the `PG*` variables), with 64-bit integers read as numbers, and {@link transaction}, which runs
 * a function in one transaction and runs it again when PostgreSQL aborted it for a deadlock or a
 * serialization failure (both are safe to retry: nothing was written).
 *
 * @example
 * ```ts
 * const pool = createPool("postgres://cs:secret@127.0.0.1:5432/cloudsync");
 * const n = await transaction(pool, async (c) => (await c.query("SELECT 1 AS n")).rows[0].n);
 * ```
 *
 * @module
 */

import pg from "pg";

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/** Options of {@link createPool}. */
export interface PoolOptions {
  /** Most connections (default 10). */
  max?: number;
  /** Schema to work in (tests use one each); default: the database's `search_path`. */
  schema?: string;
}

const INT8 = 20;

/** A pool for `url`; errors of idle connections are absorbed (the pool replaces them). */
export function createPool(url: string, opts: PoolOptions = {}): Pool {
  if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) {
    throw new Error(`Cannot use schema ${JSON.stringify(opts.schema)}: not a plain name`);
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    idleTimeoutMillis: 30_000,
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8
          ? (v: string) =>
            Number(v)
          : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
    },
  });
  pool.on("error", () => {/* an idle connection broke: the pool opens another when needed */});
  return pool;
}

/** PostgreSQL's codes for "this transaction lost a race; run it again". */
const RETRY_CODES = new Set(["40P01", "40001"]);

/** Runs `fn` in one transaction (rolled back on failure); retries deadlock victims a few times. */
export async function transaction<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
): Promise<T> {
  for (let attempt = 1;; attempt++) {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (e) {
      try {
        await client.query("ROLLBACK");
      } catch {
        broken = true; // the connection is gone: do not give it back to the pool
      }
      const code = (e as { code?: unknown }).code;
      if (attempt < 5 && typeof code === "string" && RETRY_CODES.has(code)) {
        await new Promise((r) => setTimeout(r, Math.random() * 20 * attempt));
        continue;
      }
      throw e;
    } finally {
      client.release(broken);
    }
  }
}
