/**
 * The {@link PackIndex} of an S3 chunk store in PostgreSQL (table `packed`, `pg_schema.ts`), so
 * that every instance finds every chunk any instance stored. Races between an upload marking a
 * chunk as stored again (`touch`) and garbage collection removing it (`remove`) are settled by
 * PostgreSQL's row locks: whichever statement comes second sees the other's result (a removed
 * chunk is uploaded again; a touched one is not removed).
 *
 * @module
 */

import type { PackedChunk, PackIndex, PackLocation } from "./pack_index.ts";
import { type Pool, transaction } from "./pg_pool.ts";

/** A {@link PackIndex} on a pool it does not own (closing it leaves the pool open). */
export class PgPackIndex implements PackIndex {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  async touch(account: string, hashes: readonly string[], now: number): Promise<Set<string>> {
    if (hashes.length === 0) return new Set();
    const sorted = [...new Set(hashes)].sort();
    const rows = await transaction(this.#pool, async (c) =>
      (await c.query(
        `UPDATE packed SET created = $3 WHERE account = $1 AND hash = ANY($2::text[])
         RETURNING hash`,
        [account, sorted, now],
      )).rows as { hash: string }[]);
    return new Set(rows.map((r) => r.hash));
  }

  async add(account: string, rows: readonly PackedChunk[], now: number): Promise<void> {
    if (rows.length === 0) return;
    const once = [...new Map(rows.map((r) => [r.hash, r])).values()].sort((a, b) =>
      a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0
    );
    await transaction(this.#pool, (c) =>
      c.query(
        `INSERT INTO packed(account, hash, pack, "offset", length, created)
         SELECT $1, x.hash, x.pack, x."offset", x.length, $3
         FROM jsonb_to_recordset($2::jsonb) AS x(hash text, pack text, "offset" bigint, length bigint)
         ON CONFLICT (account, hash) DO UPDATE SET pack = EXCLUDED.pack,
           "offset" = EXCLUDED."offset", length = EXCLUDED.length, created = EXCLUDED.created`,
        [account, JSON.stringify(once), now],
      ));
  }

  async locate(account: string, hashes: readonly string[]): Promise<(PackLocation | null)[]> {
    if (hashes.length === 0) return [];
    const rows = (await this.#pool.query(
      `SELECT hash, pack, "offset", length FROM packed
       WHERE account = $1 AND hash = ANY($2::text[])`,
      [account, [...new Set(hashes)]],
    )).rows as { hash: string; pack: string; offset: number; length: number }[];
    const by = new Map(rows.map((r) => [r.hash, r]));
    return hashes.map((h) => {
      const r = by.get(h);
      return r ? { pack: r.pack, offset: r.offset, length: r.length } : null;
    });
  }

  remove(
    account: string,
    hashes: readonly string[],
    before: number,
  ): Promise<{ removed: string[]; emptyPacks: string[] }> {
    if (hashes.length === 0) return Promise.resolve({ removed: [], emptyPacks: [] });
    return transaction(this.#pool, async (c) => {
      const gone = (await c.query(
        `DELETE FROM packed WHERE account = $1 AND hash = ANY($2::text[]) AND created < $3
         RETURNING hash, pack`,
        [account, [...new Set(hashes)].sort(), before],
      )).rows as { hash: string; pack: string }[];
      const packs = [...new Set(gone.map((g) => g.pack))];
      const empty = packs.length === 0 ? [] : (await c.query(
        `SELECT p FROM unnest($2::text[]) AS p
         WHERE NOT EXISTS (SELECT 1 FROM packed WHERE account = $1 AND pack = p)`,
        [account, packs],
      )).rows as { p: string }[];
      return { removed: gone.map((g) => g.hash), emptyPacks: empty.map((e) => e.p) };
    });
  }

  async removeAccount(account: string): Promise<void> {
    await this.#pool.query("DELETE FROM packed WHERE account = $1", [account]);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
