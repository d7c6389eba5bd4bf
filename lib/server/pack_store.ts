/**
 * Chunks stored in pack files: every batch of chunks an upload sends (`putMany`, up to 4 MiB)
 * becomes one file `DATA/packs/ACCOUNT/ID.pack`, written atomically (temporary file, fsync,
 * rename, directory fsync), and one SQLite transaction records where each chunk sits. A 1 GiB
 * upload then costs a few hundred fsyncs instead of two per chunk. A pack file is deleted when its
 * last chunk is; until then space of collected chunks inside it is not reclaimed.
 *
 * @example
 * ```ts
 * const packs = new PackBlobStore("./cloud-data");
 * await packs.putMany("acct", [{ hash, data }]);
 * const data = await packs.get("acct", hash);
 * ```
 *
 * @module
 */

import { transaction } from "../util/sqlite_tx.ts";
import { join, sep as SEP } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { fsyncDir, tempPath } from "../util/atomic.ts";
import { type BlobStore, checkAccountId, removeTree } from "./blob_store.ts";

/** Pack files kept open for reading (a download reads many chunks of the same few packs). */
const OPEN_PACKS = 16;

/** An open pack file; `busy` serializes seek + read on the shared handle. */
interface OpenPack {
  file: Deno.FsFile;
  busy: Promise<unknown>;
  /** The handle's position after the last read (chunks read in order need no seek), or -1. */
  pos: number;
  /** Evicted or deleted: the handle closes once queued reads are done; later reads reopen. */
  dropped: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;
const ACCOUNT = /^[0-9a-z]{1,64}$/;

/** A {@link BlobStore} that keeps each batch of chunks in one pack file. */
export class PackBlobStore implements BlobStore {
  readonly #db: DatabaseSync;
  readonly #root: string;
  readonly #tmp: string;
  readonly #put: StatementSync;
  readonly #get: StatementSync;
  readonly #del: StatementSync;
  readonly #left: StatementSync;
  readonly #open = new Map<string, OpenPack>();
  readonly #dirs = new Set<string>();

  constructor(dataDir: string) {
    this.#root = join(dataDir, "packs");
    this.#tmp = join(dataDir, "tmp");
    Deno.mkdirSync(this.#root, { recursive: true });
    Deno.mkdirSync(this.#tmp, { recursive: true });
    this.#db = new DatabaseSync(join(dataDir, "packs.db"));
    this.#db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
      CREATE TABLE IF NOT EXISTS packed(account TEXT NOT NULL, hash TEXT NOT NULL, pack TEXT NOT NULL,
        offset INTEGER NOT NULL, length INTEGER NOT NULL, PRIMARY KEY(account, hash)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS packed_by_pack ON packed(account, pack);`);
    this.#put = this.#db.prepare(
      "INSERT OR REPLACE INTO packed(account, hash, pack, offset, length) VALUES (?,?,?,?,?)",
    );
    this.#get = this.#db.prepare(
      "SELECT pack, offset, length FROM packed WHERE account = ? AND hash = ?",
    );
    this.#del = this.#db.prepare("DELETE FROM packed WHERE account = ? AND hash = ?");
    this.#left = this.#db.prepare("SELECT 1 FROM packed WHERE account = ? AND pack = ? LIMIT 1");
  }

  #check(account: string, hash: string): void {
    if (!ACCOUNT.test(account) || !HEX64.test(hash)) {
      throw new Error(`Cannot address chunk: invalid account or hash ${JSON.stringify(hash)}`);
    }
  }

  put(account: string, hash: string, data: Uint8Array): Promise<void> {
    return this.putMany(account, [{ hash, data }]);
  }

  async putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void> {
    for (const i of items) this.#check(account, i.hash);
    const fresh = items.filter((i) => this.#get.get(account, i.hash) === undefined);
    if (fresh.length === 0) return;
    const id = Array.from(
      crypto.getRandomValues(new Uint8Array(8)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const dir = join(this.#root, account);
    const tmp = tempPath(this.#tmp, "pack");
    const where: [string, number, number][] = [];
    try {
      const f = await Deno.open(tmp, { write: true, createNew: true });
      try {
        let offset = 0;
        for (const i of fresh) {
          let off = 0;
          while (off < i.data.length) off += await f.write(i.data.subarray(off));
          where.push([i.hash, offset, i.data.length]);
          offset += i.data.length;
        }
        await f.sync();
      } finally {
        f.close();
      }
      if (!this.#dirs.has(dir)) {
        await Deno.mkdir(dir, { recursive: true });
        this.#dirs.add(dir);
      }
      await Deno.rename(tmp, join(dir, `${id}.pack`));
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
    await fsyncDir(dir);
    // Only once the pack is durable does the index point into it.
    transaction(this.#db, () => {
      for (const [hash, offset, length] of where) this.#put.run(account, hash, id, offset, length);
    });
  }

  async get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null> {
    this.#check(account, hash);
    const r = this.#get.get(account, hash) as
      | { pack: string; offset: number; length: number }
      | undefined;
    if (!r) return null;
    const length = Number(r.length);
    if (into && into.length !== length) return null;
    const path = join(this.#root, account, `${r.pack}.pack`);
    const pack = await this.#pack(path);
    if (!pack) return null;
    const out = into ?? new Uint8Array(length);
    const offset = Number(r.offset);
    const read = pack.busy.then(async () => {
      // Dropped between lookup and now (evicted by other reads): read through a handle of our own.
      let file = pack.file;
      if (pack.dropped) {
        try {
          file = await Deno.open(path, { read: true });
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) return null; // the pack was deleted meanwhile
          throw e;
        }
      }
      try {
        if (pack.dropped || pack.pos !== offset) await file.seek(offset, Deno.SeekMode.Start);
        if (!pack.dropped) pack.pos = -1;
        let got = 0;
        while (got < out.length) {
          const n = await file.read(out.subarray(got));
          if (n === null) return null; // truncated pack: reported by verify
          got += n;
        }
        if (!pack.dropped) pack.pos = offset + got;
        return out;
      } finally {
        if (file !== pack.file) file.close();
      }
    });
    // (Not `read.catch(...)`: that would keep the last buffer read alive as long as the handle.)
    pack.busy = read.then(() => {}, () => {});
    return await read;
  }

  /** An open handle on a pack (least recently used ones are closed), or null if it is gone. */
  async #pack(path: string): Promise<OpenPack | null> {
    const cached = this.#open.get(path);
    if (cached) {
      this.#open.delete(path);
      this.#open.set(path, cached);
      return cached;
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    const raced = this.#open.get(path);
    if (raced) {
      file.close();
      return raced;
    }
    const pack: OpenPack = { file, busy: Promise.resolve(), pos: 0, dropped: false };
    this.#open.set(path, pack);
    if (this.#open.size > OPEN_PACKS) {
      const [oldest] = this.#open.keys();
      this.#drop(oldest!);
    }
    return pack;
  }

  /** Closes the cached handle of `path` once its reads are done. */
  #drop(path: string): void {
    const pack = this.#open.get(path);
    if (!pack) return;
    this.#open.delete(path);
    // Reads already queued on the handle finish first; reads queued after this reopen the file.
    pack.busy = pack.busy.then(() => {
      pack.dropped = true;
      pack.file.close();
    });
  }

  async delete(account: string, hash: string): Promise<void> {
    this.#check(account, hash);
    const r = this.#get.get(account, hash) as { pack: string } | undefined;
    if (!r) return;
    this.#del.run(account, hash);
    if (this.#left.get(account, r.pack) === undefined) {
      const path = join(this.#root, account, `${r.pack}.pack`);
      this.#drop(path);
      await Deno.remove(path).catch(() => {});
    }
  }

  async deleteAccount(account: string): Promise<void> {
    checkAccountId(account);
    // The index first: no row may point into a removed pack.
    this.#db.prepare("DELETE FROM packed WHERE account = ?").run(account);
    const dir = join(this.#root, account);
    for (const path of [...this.#open.keys()]) if (path.startsWith(dir + SEP)) this.#drop(path);
    this.#dirs.delete(dir);
    await removeTree(dir);
  }

  close(): void {
    for (const path of [...this.#open.keys()]) this.#drop(path);
    this.#db.close();
  }
}
