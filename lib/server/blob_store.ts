/**
 * Content-addressed chunk storage, isolated per account. {@link BlobStore} is the small interface
 * the sync logic sees; {@link FsBlobStore} keeps each chunk as one file under
 * `DATA/blobs/ACCOUNT/ab/abcdef…` (the chunk's SHA-256), written atomically. Another backend (S3,
 * say) only has to implement the interface.
 *
 * A stored chunk is exactly what the client sent: zstd-compressed or raw, flagged by the caller in
 * the metadata store, so that it can be sent back without recompressing.
 *
 * @module
 */

import { join } from "node:path";
import { writeFileAtomic } from "../util/atomic.ts";

/** Storage of chunk bytes, addressed by account and hash. */
export interface BlobStore {
  /** Stores `data` under `hash` for `account` (atomic; overwriting is harmless). */
  put(account: string, hash: string, data: Uint8Array): Promise<void>;
  /** Returns the stored bytes, or null if missing. */
  get(account: string, hash: string): Promise<Uint8Array | null>;
  /** Deletes a chunk (garbage collection). Missing chunks are ignored. */
  delete(account: string, hash: string): Promise<void>;
}

const HEX64 = /^[0-9a-f]{64}$/;
const ACCOUNT = /^[0-9a-z]{1,64}$/;

/** A {@link BlobStore} on the local filesystem. */
export class FsBlobStore implements BlobStore {
  readonly #root: string;
  readonly #tmp: string;

  constructor(dataDir: string) {
    this.#root = join(dataDir, "blobs");
    this.#tmp = join(dataDir, "tmp");
    Deno.mkdirSync(this.#root, { recursive: true });
    Deno.mkdirSync(this.#tmp, { recursive: true });
    // Leftovers of writes cut by a crash are never referenced: remove them.
    for (const e of Deno.readDirSync(this.#tmp)) {
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

  async get(account: string, hash: string): Promise<Uint8Array | null> {
    try {
      return await Deno.readFile(this.#path(account, hash));
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
}
