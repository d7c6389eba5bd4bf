/**
 * The local chunk stores, isolated per account ({@link BlobStore} is in `stores.ts`):
 *
 * - {@link TieredBlobStore} (the server's default): chunks up to {@link SMALL_CHUNK} in SQLite
 *   ({@link SqliteBlobStore}), bigger ones in pack files (`pack_store.ts`); chunks kept by older
 *   versions of the server as single files ({@link FsBlobStore}) are still read and swept.
 * - {@link FsBlobStore}: each chunk one file `DATA/blobs/ACCOUNT/ab/abcdef…` (its SHA-256),
 *   written atomically.
 *
 * A stored chunk is exactly what the client sent: zstd-compressed or raw, flagged by the caller in
 * the chunk index, so that it can be sent back without recompressing. Every store remembers when
 * a chunk was last stored, so that garbage collection's `sweep` never deletes one stored again
 * after it decided to (see `retention.ts`).
 *
 * @module
 */

import { transaction } from "../util/sqlite_tx.ts";
import { WalSync } from "../util/wal_sync.ts";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { writeFileAtomic } from "../util/atomic.ts";
import { PackBlobStore } from "./pack_store.ts";
import { addColumnIfMissing } from "./pack_index.ts";
import { checkAccountId, checkAddress } from "./packed_store.ts";
import type { BlobStore, ChunkRead } from "./stores.ts";

export type { BlobStore, ChunkRead };

/** `data` itself, or copied into `into` when given (null when the lengths differ). */
export function fitInto(data: Uint8Array, into?: Uint8Array): Uint8Array | null {
  if (!into) return data;
  if (data.length !== into.length) return null;
  into.set(data);
  return into;
}

/** A {@link BlobStore} on the local filesystem, one file per chunk (its mtime: when stored). */
export class FsBlobStore implements BlobStore {
  readonly #root: string;
  readonly #tmp: string;

  /**
   * `admin`: opened by an admin command beside a possibly running server, whose writes in
   * progress in `DATA/tmp/` must not be mistaken for a crash's leftovers.
   */
  constructor(dataDir: string, opts: { admin?: boolean } = {}) {
    this.#root = join(dataDir, "blobs");
    this.#tmp = join(dataDir, "tmp");
    Deno.mkdirSync(this.#root, { recursive: true });
    Deno.mkdirSync(this.#tmp, { recursive: true });
    // Leftovers of writes cut by a crash are never referenced: remove them.
    for (const e of opts.admin ? [] : Deno.readDirSync(this.#tmp)) {
      try {
        Deno.removeSync(join(this.#tmp, e.name));
      } catch { /* raced with nothing: ignore */ }
    }
  }

  #path(account: string, hash: string): string {
    checkAddress(account, hash);
    return join(this.#root, account, hash.slice(0, 2), hash);
  }

  async put(account: string, hash: string, data: Uint8Array): Promise<void> {
    const path = this.#path(account, hash);
    await Deno.mkdir(join(this.#root, account, hash.slice(0, 2)), { recursive: true });
    await writeFileAtomic(path, data, this.#tmp);
  }

  async putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void> {
    await Promise.all(items.map((i) => this.put(account, i.hash, i.data)));
  }

  async get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null> {
    try {
      return fitInto(await Deno.readFile(this.#path(account, hash)), into);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  }

  async getMany(account: string, reads: readonly ChunkRead[]): Promise<boolean[]> {
    const found: boolean[] = [];
    for (const r of reads) found.push((await this.get(account, r.hash, r.into)) !== null);
    return found;
  }

  /**
   * Removes the chunks stored before `before`. A chunk is first renamed aside, then judged: a stat
   * of the path followed by its removal would delete an upload renamed into place in between
   * (found by the conformance suite's sweep race). Renamed aside, the file judged is the one
   * removed; one that turns out to be fresh is linked back (unless an upload put the same bytes,
   * the chunk's address, there meanwhile). The server itself never uploads into this store (it
   * holds older versions' chunks only: see {@link TieredBlobStore}), so there every chunk swept is
   * an old one, and a crash between the two steps leaves it in `DATA/tmp/`, cleared at start.
   */
  async sweep(account: string, hashes: readonly string[], before: number): Promise<string[]> {
    const removed: string[] = [];
    for (const hash of hashes) {
      const path = this.#path(account, hash);
      const aside = join(this.#tmp, `sweep-${crypto.randomUUID()}`);
      try {
        await Deno.rename(path, aside);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      const st = await Deno.stat(aside);
      if ((st.mtime?.getTime() ?? 0) >= before) {
        await Deno.link(aside, path).catch((e) => {
          if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        });
      } else removed.push(hash);
      await Deno.remove(aside);
    }
    return removed;
  }

  async deleteAccount(account: string): Promise<void> {
    checkAccountId(account);
    await Deno.remove(join(this.#root, account), { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Stored chunks up to this size live in SQLite (one transaction per batch instead of one fsync per file). */
export const SMALL_CHUNK = 64 * 1024;

/**
 * Small chunks in one SQLite database (`DATA/small-chunks.db`), so that thousands of small files
 * cost one transaction per batch rather than a file, an fsync and a rename each.
 */
export class SqliteBlobStore implements BlobStore {
  readonly #db: DatabaseSync;
  readonly #put: StatementSync;
  readonly #get: StatementSync;
  readonly #sweep: StatementSync;
  readonly #wal: WalSync;

  constructor(dataDir: string) {
    Deno.mkdirSync(dataDir, { recursive: true });
    this.#db = new DatabaseSync(join(dataDir, "small-chunks.db"));
    this.#db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
      CREATE TABLE IF NOT EXISTS small(account TEXT NOT NULL, hash TEXT NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY(account, hash));`);
    // Added with garbage collection's sweep; rows from before count as stored long ago.
    addColumnIfMissing(this.#db, "small", "created", "INTEGER NOT NULL DEFAULT 0");
    this.#put = this.#db.prepare(
      "INSERT OR REPLACE INTO small(account, hash, data, created) VALUES (?,?,?,?)",
    );
    this.#get = this.#db.prepare("SELECT data FROM small WHERE account = ? AND hash = ?");
    this.#sweep = this.#db.prepare(
      "DELETE FROM small WHERE account = ? AND hash = ? AND created < ? RETURNING hash",
    );
    this.#wal = new WalSync(this.#db);
  }

  put(account: string, hash: string, data: Uint8Array): Promise<void> {
    return this.#wal.settle(() => {
      return this.putMany(account, [{ hash, data }]);
    });
  }

  putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void> {
    return this.#wal.settle(() => {
      for (const i of items) checkAddress(account, i.hash);
      const now = Date.now();
      transaction(this.#db, () => {
        for (const i of items) this.#put.run(account, i.hash, i.data, now);
      });
      return Promise.resolve();
    });
  }

  #read(account: string, hash: string, into?: Uint8Array): Uint8Array | null {
    const r = this.#get.get(account, hash) as { data: Uint8Array } | undefined;
    // A fresh array from SQLite: returned or copied into `into` as it is, no extra copy.
    return r ? fitInto(r.data, into) : null;
  }

  get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null> {
    return this.#wal.read(() => {
      return Promise.resolve(this.#read(account, hash, into));
    });
  }

  getMany(account: string, reads: readonly ChunkRead[]): Promise<boolean[]> {
    return this.#wal.read(() => {
      return Promise.resolve(reads.map((r) => this.#read(account, r.hash, r.into) !== null));
    });
  }

  sweep(account: string, hashes: readonly string[], before: number): Promise<string[]> {
    return this.#wal.settle(() => {
      return Promise.resolve(
        transaction(
          this.#db,
          () => hashes.filter((h) => this.#sweep.get(account, h, before) !== undefined),
        ),
      );
    });
  }

  deleteAccount(account: string): Promise<void> {
    return this.#wal.settle(() => {
      checkAccountId(account);
      this.#db.prepare("DELETE FROM small WHERE account = ?").run(account);
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    return this.#wal.durable().finally(() => this.#db.close());
  }
}

/**
 * The server's default store: small chunks in {@link SqliteBlobStore}, bigger ones in pack files
 * ({@link PackBlobStore}, one per uploaded batch); chunks kept by older versions as single files
 * ({@link FsBlobStore}) are still read and swept.
 */
export class TieredBlobStore implements BlobStore {
  readonly small: SqliteBlobStore;
  readonly packs: PackBlobStore;
  readonly files: FsBlobStore;

  /** `admin`: see {@link FsBlobStore}'s constructor. */
  constructor(dataDir: string, opts: { admin?: boolean } = {}) {
    this.small = new SqliteBlobStore(dataDir);
    this.packs = new PackBlobStore(dataDir);
    this.files = new FsBlobStore(dataDir, opts);
  }

  put(account: string, hash: string, data: Uint8Array): Promise<void> {
    return this.putMany(account, [{ hash, data }]);
  }

  async putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void> {
    const small = items.filter((i) => i.data.length <= SMALL_CHUNK);
    const large = items.filter((i) => i.data.length > SMALL_CHUNK);
    // Only the tiers that get something: no empty transaction or pack per batch.
    await Promise.all([
      small.length > 0 ? this.small.putMany(account, small) : null,
      large.length > 0 ? this.packs.putMany(account, large) : null,
    ]);
  }

  async get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null> {
    // A chunk's stored length says which tier holds it: skip the lookup that cannot hit.
    if (into && into.length > SMALL_CHUNK) {
      return (await this.packs.get(account, hash, into)) ??
        await this.files.get(account, hash, into);
    }
    return (await this.small.get(account, hash, into)) ??
      (await this.packs.get(account, hash, into)) ?? await this.files.get(account, hash, into);
  }

  async getMany(account: string, reads: readonly ChunkRead[]): Promise<boolean[]> {
    // Small ones from SQLite, big ones from the packs (their stored length says which tier),
    // then whatever is still missing from the other tiers.
    const found = reads.map(() => false);
    const small: number[] = [];
    const large: number[] = [];
    reads.forEach((r, i) => (r.into.length > SMALL_CHUNK ? large : small).push(i));
    const pick = (idx: number[]) => idx.map((i) => reads[i]!);
    if (small.length > 0) {
      const got = await this.small.getMany(account, pick(small));
      small.forEach((i, k) => found[i] = got[k]!);
    }
    const rest = [...large, ...small.filter((i) => !found[i])];
    if (rest.length > 0) {
      const got = await this.packs.getMany(account, pick(rest));
      rest.forEach((i, k) => found[i] = got[k]!);
    }
    for (let i = 0; i < reads.length; i++) {
      if (!found[i]) {
        found[i] = (await this.files.get(account, reads[i]!.hash, reads[i]!.into)) !== null;
      }
    }
    return found;
  }

  async sweep(account: string, hashes: readonly string[], before: number): Promise<string[]> {
    const removed = new Set([
      ...await this.small.sweep(account, hashes, before),
      ...await this.packs.sweep(account, hashes, before),
      ...await this.files.sweep(account, hashes, before),
    ]);
    return hashes.filter((h) => removed.has(h));
  }

  async deleteAccount(account: string): Promise<void> {
    await this.small.deleteAccount(account);
    await this.packs.deleteAccount(account);
    await this.files.deleteAccount(account);
  }

  async close(): Promise<void> {
    await this.small.close();
    await this.packs.close();
  }
}
