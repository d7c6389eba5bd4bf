/**
 * Where pack files live: a tiny object-store interface ({@link ObjectStore}: put a whole object,
 * read a byte range, remove) that the packing layer (`packed_store.ts`) writes through, and
 * {@link FsObjects}, its local implementation (one file per object under a directory, written
 * atomically, read through a small cache of open handles). `s3_objects.ts` is the S3 one.
 *
 * @example
 * ```ts
 * const objects = new FsObjects("./cloud-data/packs", "./cloud-data/tmp");
 * await objects.put("acct/0123.pack", [a, b]);
 * await objects.read("acct/0123.pack", a.length, [new Uint8Array(b.length)]);
 * ```
 *
 * @module
 */

import { dirname, join, sep } from "node:path";
import { fsyncDir, tempPath } from "../util/atomic.ts";

/** Whole objects written once, read by ranges. Keys are `/`-separated and checked by the caller. */
export interface ObjectStore {
  /** Writes `parts`, concatenated, as the object `key`: durable and whole when resolved. */
  put(key: string, parts: readonly Uint8Array[]): Promise<void>;
  /**
   * Reads the object's bytes from `offset` on into `into`, one buffer after the other (each
   * filled completely). False if the object is missing or shorter.
   */
  read(key: string, offset: number, into: readonly Uint8Array[]): Promise<boolean>;
  /** Removes the object (a missing one is fine). */
  remove(key: string): Promise<void>;
  /**
   * Removes every object whose key starts with `prefix`, a folder ending in `/` (`ACCOUNT/`:
   * `cloud-server delete-account`); none is fine.
   */
  removeAll(prefix: string): Promise<void>;
  close(): Promise<void>;
}

/** Objects kept open for reading (a download reads many chunks of the same few packs). */
const OPEN_FILES = 16;

/** An open file; `busy` serializes seek + read on the shared handle. */
interface OpenFile {
  file: Deno.FsFile;
  busy: Promise<unknown>;
  /** The handle's position after the last read (chunks read in order need no seek), or -1. */
  pos: number;
  /** Evicted or removed: the handle closes once queued reads are done; later reads reopen. */
  dropped: boolean;
}

/** An {@link ObjectStore} in a local directory; temporary files go to `tmpDir` (same filesystem). */
export class FsObjects implements ObjectStore {
  readonly #root: string;
  readonly #tmp: string;
  readonly #open = new Map<string, OpenFile>();
  readonly #dirs = new Set<string>();
  /** {@link close} was called: handles opened by reads still in flight are not cached. */
  #closed = false;

  constructor(root: string, tmpDir: string) {
    this.#root = root;
    this.#tmp = tmpDir;
    Deno.mkdirSync(root, { recursive: true });
    Deno.mkdirSync(tmpDir, { recursive: true });
  }

  async put(key: string, parts: readonly Uint8Array[]): Promise<void> {
    const path = join(this.#root, key);
    const dir = dirname(path);
    const tmp = tempPath(this.#tmp, "pack");
    try {
      const f = await Deno.open(tmp, { write: true, createNew: true });
      try {
        for (const data of parts) {
          let off = 0;
          while (off < data.length) off += await f.write(data.subarray(off));
        }
        await f.sync();
      } finally {
        f.close();
      }
      if (!this.#dirs.has(dir)) {
        await Deno.mkdir(dir, { recursive: true });
        this.#dirs.add(dir);
      }
      await Deno.rename(tmp, path);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
    await fsyncDir(dir);
  }

  async read(key: string, offset: number, into: readonly Uint8Array[]): Promise<boolean> {
    const path = join(this.#root, key);
    const open = await this.#file(path);
    if (!open) return false;
    const read = open.busy.then(async () => {
      // Dropped between lookup and now (evicted by other reads): read through a handle of our own.
      let file = open.file;
      if (open.dropped) {
        try {
          file = await Deno.open(path, { read: true });
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) return false; // removed meanwhile
          throw e;
        }
      }
      try {
        if (open.dropped || open.pos !== offset) await file.seek(offset, Deno.SeekMode.Start);
        if (!open.dropped) open.pos = -1;
        let at = offset;
        for (const out of into) {
          let got = 0;
          while (got < out.length) {
            const n = await file.read(out.subarray(got));
            if (n === null) return false; // truncated: reported by verify
            got += n;
          }
          at += got;
        }
        if (!open.dropped) open.pos = at;
        return true;
      } finally {
        if (file !== open.file) file.close();
      }
    });
    // (Not `read.catch(...)`: that would keep the last buffer read alive as long as the handle.)
    open.busy = read.then(() => {}, () => {});
    return await read;
  }

  /** An open handle (least recently used ones are closed), or null if the file is gone. */
  async #file(path: string): Promise<OpenFile | null> {
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
    if (this.#closed) {
      // Closed meanwhile: cache nothing; the read opens (and closes) a handle of its own.
      file.close();
      return { file, busy: Promise.resolve(), pos: -1, dropped: true };
    }
    const open: OpenFile = { file, busy: Promise.resolve(), pos: 0, dropped: false };
    this.#open.set(path, open);
    if (this.#open.size > OPEN_FILES) {
      const [oldest] = this.#open.keys();
      this.#drop(oldest!);
    }
    return open;
  }

  /** Closes the cached handle of `path` once its reads are done (the promise: then). */
  #drop(path: string): Promise<unknown> {
    const open = this.#open.get(path);
    if (!open) return Promise.resolve();
    this.#open.delete(path);
    // Reads already queued on the handle finish first; reads queued after this reopen the file.
    open.busy = open.busy.then(() => {
      open.dropped = true;
      open.file.close();
    });
    return open.busy;
  }

  async remove(key: string): Promise<void> {
    const path = join(this.#root, key);
    this.#drop(path);
    await Deno.remove(path).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  async removeAll(prefix: string): Promise<void> {
    if (!prefix.endsWith("/") || prefix.split("/").some((p, i, a) => i < a.length - 1 && !p)) {
      throw new Error(`Cannot remove objects: ${JSON.stringify(prefix)} is not a folder`);
    }
    const dir = join(this.#root, prefix);
    for (const path of [...this.#open.keys()]) if (path.startsWith(dir)) this.#drop(path);
    for (const d of [...this.#dirs]) if ((d + sep).startsWith(dir)) this.#dirs.delete(d);
    await Deno.remove(dir, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  /** Closes every cached handle once the reads queued on it are done. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#open.keys()].map((path) => this.#drop(path)));
  }
}
