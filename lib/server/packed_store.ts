/**
 * Chunks packed into larger objects: {@link PackedStore} is a {@link BlobStore} over an
 * {@link ObjectStore} (local files, S3) and a {@link PackIndex} (where each chunk sits). Every
 * batch of chunks becomes one pack object, written whole, and only then does the index point
 * into it, so thousands of small files cost a few writes, not one each.
 *
 * Two policies, by {@link PackOptions.maxWrites}:
 * - unbounded (local disks): every `putMany` writes its own pack at once (a 1 GiB upload is a
 *   few hundred fsyncs, not two per chunk);
 * - bounded (S3): at most `maxWrites` packs are uploaded at once; chunks that arrive meanwhile
 *   wait and go together into the next pack of their account (up to `packBytes`), so many
 *   small uploads become few PUTs and nothing waits when the store is idle.
 *
 * Reads locate every chunk of a `getMany` with one index call and read runs of chunks that lie
 * next to each other in a pack with one ranged read, at most `maxReads` at once.
 *
 * A chunk stored again is only marked as stored now (see {@link PackIndex.touch}); `sweep`
 * (garbage collection) forgets chunks not stored since its cut-off and removes a pack object
 * when no chunk uses it any more. Space of swept chunks inside a pack still in use is not
 * reclaimed. `deleteAccount` forgets all of an account's chunks, then removes its objects.
 *
 * @example
 * ```ts
 * const store = new PackedStore(new SqlitePackIndex(file), new FsObjects(dir, tmp));
 * await store.putMany("acct", [{ hash, data }]);
 * ```
 *
 * @module
 */

import type { BlobStore, ChunkRead } from "./stores.ts";
import type { ObjectStore } from "./object_store.ts";
import type { PackedChunk, PackIndex, PackLocation } from "./pack_index.ts";

/** How a {@link PackedStore} writes and reads. */
export interface PackOptions {
  /** Most pack writes at once (Infinity: every batch is written at once, on its own). */
  maxWrites: number;
  /** With bounded writes: waiting chunks of one account are merged into packs up to this size. */
  packBytes: number;
  /** Most ranged reads at once in one `getMany`. */
  maxReads: number;
}

/** Local disks: every batch its own pack, at once; reads in order. */
export const LOCAL_PACKS: PackOptions = { maxWrites: Infinity, packBytes: 0, maxReads: 1 };

const HEX64 = /^[0-9a-f]{64}$/;
const ACCOUNT = /^[0-9a-z]{1,64}$/;

/** Throws unless `account` and `hash` are safe to use in object keys. */
export function checkAddress(account: string, hash: string): void {
  if (!ACCOUNT.test(account) || !HEX64.test(hash)) {
    throw new Error(`Cannot address chunk: invalid account or hash ${JSON.stringify(hash)}`);
  }
}

/** Throws unless `account` is a well-formed account id (it becomes a key prefix or a path). */
export function checkAccountId(account: string): void {
  if (!ACCOUNT.test(account)) {
    throw new Error(`Cannot address account: invalid id ${JSON.stringify(account)}`);
  }
}

/** A random pack id: 64 bits in hex. */
function packId(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(8)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** A pack waiting for a write slot: chunks of one account and the uploads waiting for them. */
interface Waiting {
  account: string;
  items: { hash: string; data: Uint8Array }[];
  bytes: number;
  done: { resolve: () => void; reject: (e: unknown) => void }[];
}

/** A {@link BlobStore} that keeps chunks in pack objects. */
export class PackedStore implements BlobStore {
  readonly #index: PackIndex;
  readonly #objects: ObjectStore;
  readonly #opts: PackOptions;
  #writing = 0;
  readonly #waiting: Waiting[] = [];
  /** Pack writes started, in all (for tests and logs). */
  packsWritten = 0;

  constructor(index: PackIndex, objects: ObjectStore, opts: PackOptions = LOCAL_PACKS) {
    this.#index = index;
    this.#objects = objects;
    this.#opts = opts;
  }

  #key(account: string, pack: string): string {
    return `${account}/${pack}.pack`;
  }

  put(account: string, hash: string, data: Uint8Array): Promise<void> {
    return this.putMany(account, [{ hash, data }]);
  }

  async putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void> {
    for (const i of items) checkAddress(account, i.hash);
    const present = await this.#index.touch(account, items.map((i) => i.hash), Date.now());
    const fresh: { hash: string; data: Uint8Array }[] = [];
    for (const i of items) {
      if (present.has(i.hash)) continue;
      present.add(i.hash); // once per batch
      fresh.push(i);
    }
    if (fresh.length === 0) return;
    if (this.#opts.maxWrites === Infinity) return await this.#write(account, fresh);
    await new Promise<void>((resolve, reject) => {
      const bytes = fresh.reduce((n, i) => n + i.data.length, 0);
      let w = this.#waiting.findLast((w) => w.account === account);
      if (!w || (w.bytes > 0 && w.bytes + bytes > this.#opts.packBytes)) {
        w = { account, items: [], bytes: 0, done: [] };
        this.#waiting.push(w);
      }
      w.items.push(...fresh);
      w.bytes += bytes;
      w.done.push({ resolve, reject });
      this.#pump();
    });
  }

  /** Starts waiting pack writes while slots are free. */
  #pump(): void {
    while (this.#writing < this.#opts.maxWrites && this.#waiting.length > 0) {
      const w = this.#waiting.shift()!;
      this.#writing++;
      const seen = new Set<string>();
      const items = w.items.filter((i) => !seen.has(i.hash) && seen.add(i.hash));
      this.#write(w.account, items).then(
        () => w.done.forEach((d) => d.resolve()),
        (e) => w.done.forEach((d) => d.reject(e)),
      ).finally(() => {
        this.#writing--;
        this.#pump();
      });
    }
  }

  /** Writes `items` as one new pack, then indexes them. */
  async #write(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void> {
    const pack = packId();
    const rows: PackedChunk[] = [];
    let offset = 0;
    for (const i of items) {
      rows.push({ hash: i.hash, pack, offset, length: i.data.length });
      offset += i.data.length;
    }
    this.packsWritten++;
    await this.#objects.put(this.#key(account, pack), items.map((i) => i.data));
    // Only once the pack is durable does the index point into it.
    await this.#index.add(account, rows, Date.now());
  }

  async get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null> {
    checkAddress(account, hash);
    const [where] = await this.#index.locate(account, [hash]);
    if (!where || (into && into.length !== where.length)) return null;
    const out = into ?? new Uint8Array(where.length);
    return await this.#objects.read(this.#key(account, where.pack), where.offset, [out])
      ? out
      : null;
  }

  async getMany(account: string, reads: readonly ChunkRead[]): Promise<boolean[]> {
    for (const r of reads) checkAddress(account, r.hash);
    const found = reads.map(() => false);
    if (reads.length === 0) return found;
    const where = await this.#index.locate(account, reads.map((r) => r.hash));
    // Runs of chunks that follow each other in one pack, in the order asked.
    const runs: { loc: PackLocation; idx: number[] }[] = [];
    let last: { loc: PackLocation; idx: number[] } | undefined;
    where.forEach((w, i) => {
      if (!w || w.length !== reads[i]!.into.length) return;
      if (last && last.loc.pack === w.pack && last.loc.offset + last.loc.length === w.offset) {
        last.loc = { ...last.loc, length: last.loc.length + w.length };
        last.idx.push(i);
        return;
      }
      runs.push(last = { loc: { ...w }, idx: [i] });
    });
    let next = 0;
    const worker = async () => {
      while (next < runs.length) {
        const run = runs[next++]!;
        const ok = await this.#objects.read(
          this.#key(account, run.loc.pack),
          run.loc.offset,
          run.idx.map((i) => reads[i]!.into),
        );
        if (ok) { for (const i of run.idx) found[i] = true; }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(this.#opts.maxReads, runs.length) }, worker),
    );
    return found;
  }

  async sweep(account: string, hashes: readonly string[], before: number): Promise<string[]> {
    for (const h of hashes) checkAddress(account, h);
    if (hashes.length === 0) return [];
    const { removed, emptyPacks } = await this.#index.remove(account, hashes, before);
    // The index first: a crash between leaves an unused object, never an index row without bytes.
    for (const pack of emptyPacks) await this.#objects.remove(this.#key(account, pack));
    return removed;
  }

  async deleteAccount(account: string): Promise<void> {
    checkAccountId(account);
    // Chunks of the account still waiting for a write slot are not written any more.
    for (let i = this.#waiting.length - 1; i >= 0; i--) {
      const w = this.#waiting[i]!;
      if (w.account !== account) continue;
      this.#waiting.splice(i, 1);
      const e = new Error(`Cannot store chunks: account ${account} was deleted`);
      w.done.forEach((d) => d.reject(e));
    }
    // The index first: no row may point into a removed pack (a crash between leaves unused
    // objects, which the next run removes).
    await this.#index.removeAccount(account);
    await this.#objects.removeAll(`${account}/`);
  }

  async close(): Promise<void> {
    await this.#objects.close();
    await this.#index.close();
  }
}
