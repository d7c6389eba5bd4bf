/**
 * Content-addressed chunk storage, isolated per account. {@link BlobStore} is the small interface
 * the sync logic sees; {@link FsBlobStore} keeps each chunk as one file under
 * `DATA/blobs/ACCOUNT/ab/abcdef…` (the chunk's SHA-256), written atomically. Another backend (S3,
 * say) only has to implement the interface.
 *
 * {@link TieredBlobStore} (the server's default) keeps small chunks in SQLite instead.
 *
 * A stored chunk is exactly what the client sent: zstd-compressed or raw, flagged by the caller in
 * the metadata store, so that it can be sent back without recompressing.
 *
 * @module
 */

import { transaction } from "../util/sqlite_tx.ts";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { writeFileAtomic } from "../util/atomic.ts";
import { PackBlobStore } from "./pack_store.ts";

/** Storage of chunk bytes, addressed by account and hash. */
export interface BlobStore {
  /** Stores `data` under `hash` for `account` (atomic; overwriting is harmless). */
  put(account: string, hash: string, data: Uint8Array): Promise<void>;
  /** Stores several chunks; all are durable when the promise resolves. */
  putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void>;
  /**
   * Returns the stored bytes, or null if missing. With `into` (a buffer of exactly the stored
   * length, as the metadata store recorded it) the bytes are read into it and it is returned, which
   * saves a copy on the hot path; a stored chunk of another length is treated as missing.
   */
  get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null>;
  /** Deletes a chunk (garbage collection). Missing chunks are ignored. */
  delete(account: string, hash: string): Promise<void>;
  /** Deletes every chunk of `account` (`cloud-server delete-account`); idempotent. */
  deleteAccount(account: string): Promise<void>;
}

/** Throws unless `account` is a well-formed account id (it becomes a path). */
export function checkAccountId(account: string): void {
  if (!/^[0-9a-z]{1,64}$/.test(account)) {
    throw new Error(`Cannot address account: invalid id ${JSON.stringify(account)}`);
  }
}

/** Removes `dir` and everything in it; nothing there is fine. */
export async function removeTree(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}

/** `data` itself, or copied into `into` when given (null when the lengths differ). */
export function fitInto(data: Uint8Array, into?: Uint8Array): Uint8Array | null {
  if (!into) return data;
  if (data.length !== into.length) return null;
  into.set(data);
  return into;
}

const HEX64 = /^[0-9a-f]{64}$/;
const ACCOUNT = /^[0-9a-z]{1,64}$/;

/** A {@link BlobStore} on the local filesystem. */
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
    if (!ACCOUNT.test(account) || !HEX64.test(hash)) {
      throw new Error(`Cannot address chunk: invalid account or hash ${JSON.stringify(hash)}`);
    }
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

  async delete(account: string, hash: string): Promise<void> {
    await Deno.remove(this.#path(account, hash)).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  async deleteAccount(account: string): Promise<void> {
    checkAccountId(account);
    await removeTree(join(this.#root, account));
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
  readonly #del: StatementSync;

  constructor(dataDir: string) {
    Deno.mkdirSync(dataDir, { recursive: true });
    this.#db = new DatabaseSync(join(dataDir, "small-chunks.db"));
    this.#db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
      CREATE TABLE IF NOT EXISTS small(account TEXT NOT NULL, hash TEXT NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY(account, hash));`);
    this.#put = this.#db.prepare(
      "INSERT OR REPLACE INTO small(account, hash, data) VALUES (?,?,?)",
    );
    this.#get = this.#db.prepare("SELECT data FROM small WHERE account = ? AND hash = ?");
    this.#del = this.#db.prepare("DELETE FROM small WHERE account = ? AND hash = ?");
  }

  put(account: string, hash: string, data: Uint8Array): Promise<void> {
    return this.putMany(account, [{ hash, data }]);
  }

  putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void> {
    transaction(this.#db, () => {
      for (const i of items) this.#put.run(account, i.hash, i.data);
    });
    return Promise.resolve();
  }

  get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null> {
    const r = this.#get.get(account, hash) as { data: Uint8Array } | undefined;
    return Promise.resolve(r ? fitInto(new Uint8Array(r.data), into) : null);
  }

  delete(account: string, hash: string): Promise<void> {
    this.#del.run(account, hash);
    return Promise.resolve();
  }

  deleteAccount(account: string): Promise<void> {
    this.#db.prepare("DELETE FROM small WHERE account = ?").run(account);
    return Promise.resolve();
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * The server's store: small chunks in {@link SqliteBlobStore}, bigger ones in pack files
 * ({@link PackBlobStore}, one per uploaded batch); chunks kept by older versions as single files
 * ({@link FsBlobStore}) are still read and deleted.
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

  async delete(account: string, hash: string): Promise<void> {
    await this.small.delete(account, hash);
    await this.packs.delete(account, hash);
    await this.files.delete(account, hash);
  }

  async deleteAccount(account: string): Promise<void> {
    await this.small.deleteAccount(account);
    await this.packs.deleteAccount(account);
    await this.files.deleteAccount(account);
  }

  close(): void {
    this.small.close();
    this.packs.close();
  }
}
