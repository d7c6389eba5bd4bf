/**
 * Durable SQLite commits that do not stop the event loop. With `synchronous=FULL`, every COMMIT
 * fsyncs the write-ahead log inside `node:sqlite`'s synchronous call: the server's one thread
 * then waits for the disk, two fsyncs per 4 MiB of upload (the chunk index and the pack index),
 * about 2 s per GiB on this VM, during which no other request of any account is served.
 *
 * {@link WalSync} switches the connection to `synchronous=NORMAL` (in WAL mode a COMMIT then only
 * writes the log) and makes the log durable itself, with an asynchronous `fdatasync` of the
 * `-wal` file on Deno's blocking pool, before a store's promise resolves. Concurrent commits
 * share one fsync (group commit). The rule: a store method's promise resolves only when every
 * change this connection made before it resolved is on disk — writes and reads alike, so nothing
 * a caller is told, and nothing it then acknowledges, can be rolled back by a crash. SQLite still
 * fsyncs the log before a checkpoint copies it into the database file, and that file after.
 *
 * @example
 * ```ts
 * const db = new DatabaseSync("meta.db");
 * db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"); // schema, migrations ...
 * const wal = new WalSync(db, "meta.db"); // from here: NORMAL + WalSync
 * const n = await wal.settle(() => Promise.resolve(db.prepare("INSERT ...").run().changes));
 * ```
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";

const RESOLVED: Promise<void> = Promise.resolve();

/** See the module doc. */
export class WalSync {
  readonly #wal: string;
  readonly #syncFile: (path: string) => Promise<void>;
  readonly #changes: StatementSync;
  /** `total_changes()` when the last fsync was asked for. */
  #requested: number;
  #running: Promise<void> | null = null;
  #next: Promise<void> | null = null;

  /**
   * `file`: the database's path (its log is `file-wal`). Call once setup is committed. `syncFile`
   * is for tests (default: open the log, `fdatasync`, close).
   */
  constructor(
    db: DatabaseSync,
    file: string,
    syncFile: (path: string) => Promise<void> = fsyncFile,
  ) {
    this.#wal = `${file}-wal`;
    this.#syncFile = syncFile;
    this.#changes = db.prepare("SELECT total_changes() AS n");
    db.exec("PRAGMA synchronous=NORMAL");
    this.#requested = this.#count();
  }

  /**
   * Runs `fn` now (synchronous SQLite work behind a promise, like `settle.ts`); its result or
   * error is passed on once every change made so far is durable.
   */
  settle<T>(fn: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    try {
      p = fn();
    } catch (e) {
      p = Promise.reject(e);
    }
    return p.then(
      (v) => this.durable().then(() => v),
      (e) => this.durable().then(() => Promise.reject(e), () => Promise.reject(e)),
    );
  }

  /** Resolves once every change made on the connection so far is on disk. */
  durable(): Promise<void> {
    const n = this.#count();
    if (n !== this.#requested) {
      this.#requested = n;
      return this.#sync();
    }
    return this.#next ?? this.#running ?? RESOLVED;
  }

  #count(): number {
    return Number((this.#changes.get() as { n: number | bigint }).n);
  }

  /** An fsync that starts after this call (joining one queued already). */
  #sync(): Promise<void> {
    if (this.#next) return this.#next;
    const running = this.#running;
    if (!running) return this.#start();
    const next: Promise<void> = running.then(() => {}, () => {}).then(() => {
      if (this.#next === next) this.#next = null;
      return this.#start();
    });
    this.#next = next;
    return next;
  }

  #start(): Promise<void> {
    const p = this.#syncFile(this.#wal);
    this.#running = p;
    const clear = () => {
      if (this.#running === p) this.#running = null;
    };
    p.then(clear, clear);
    return p;
  }
}

/** `fdatasync` of `path`; a log that does not exist has nothing unsynced (checkpointed away). */
export async function fsyncFile(path: string): Promise<void> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { write: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  try {
    await f.syncData();
  } finally {
    f.close();
  }
}
