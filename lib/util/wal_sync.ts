/**
 * Durable SQLite commits that do not stop the event loop. With `synchronous=FULL`, every COMMIT
 * fsyncs the write-ahead log inside `node:sqlite`'s synchronous call: the server's one thread
 * then waits for the disk, two fsyncs per 4 MiB of upload (the chunk index and the pack index),
 * about 2 s per GiB on this VM, during which no other request of any account is served.
 *
 * {@link WalSync} switches the connection to `synchronous=NORMAL` (in WAL mode a COMMIT then only
 * writes the log) and makes the log durable itself, with an asynchronous `fdatasync` of the
 * `-wal` file on Deno's blocking pool, before a store's promise resolves. Commits of the same moment
 * share one fsync; a commit made while one runs starts another at once (queued behind the running
 * one, it would wait for two). Chunk bytes and the chunk index are read without waiting
 * ({@link WalSync.read}): made to wait for uploads' fsyncs, B's chunk fetches in the 10,000-file
 * row took 201 ms each instead of 41. The rule: a store method's promise resolves only when every
 * change this connection made before it resolved is on disk — writes and reads alike, so nothing
 * a caller is told, and nothing it then acknowledges, can be rolled back by a crash. SQLite still
 * fsyncs the log before a checkpoint copies it into the database file, and that file after (an
 * automatic checkpoint, every 1,000 pages of log, thus still waits inside a COMMIT). A failed
 * fsync fails every later call (fail-stop: see `#failed`). Only this connection's changes are
 * covered: another process's connection (an admin command beside the server) may read commits
 * not fsynced yet, which it only reports.
 *
 * @example
 * ```ts
 * const db = new DatabaseSync("meta.db");
 * db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"); // schema, migrations ...
 * const wal = new WalSync(db); // from here: NORMAL + WalSync
 * const n = await wal.settle(() => Promise.resolve(db.prepare("INSERT ...").run().changes));
 * ```
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { settle } from "./settle.ts";

const RESOLVED: Promise<void> = Promise.resolve();

/** See the module doc. */
export class WalSync {
  /** The log to fsync; null: not in WAL mode, every COMMIT is durable by itself. */
  readonly #wal: string | null;
  readonly #syncFile: (path: string) => Promise<void>;
  readonly #changes: StatementSync;
  /** `total_changes()` when the last fsync was asked for. */
  #requested: number;
  /** The fsync started last (after the last change counted), while it runs. */
  #latest: Promise<void> | null = null;
  /**
   * The first failed fsync. From then on every call fails with it: the changes it should have
   * made durable are visible to every later statement, and after a failed fsync Linux may have
   * dropped the pages and report the next fsync as a success, so nothing read here may be
   * passed on as durable any more. Restarting the server lets SQLite's recovery decide what is
   * on disk.
   */
  #failed: Error | null = null;

  /**
   * Call once setup is committed (under FULL). The log is found where SQLite writes it (beside
   * the database file a symlink points to, if one does); a connection not in WAL mode stays as it
   * is and {@link durable} has nothing to do. `syncFile` is for tests (default {@link fsyncFile}).
   */
  constructor(db: DatabaseSync, syncFile: (path: string) => Promise<void> = fsyncFile) {
    const main = (db.prepare("PRAGMA database_list").all() as { name: string; file: string }[])
      .find((d) => d.name === "main");
    const mode = (db.prepare("PRAGMA journal_mode").get() as { journal_mode: string })
      .journal_mode;
    this.#wal = mode.toLowerCase() === "wal" && main?.file ? `${main.file}-wal` : null;
    this.#syncFile = syncFile;
    this.#changes = db.prepare("SELECT total_changes() AS n");
    if (this.#wal) db.exec("PRAGMA synchronous=NORMAL");
    this.#requested = this.#count();
  }

  /**
   * Runs `fn` now (synchronous SQLite work behind a promise, like `settle.ts`); its result or
   * error is passed on once every change made so far is durable.
   */
  settle<T>(fn: () => Promise<T>): Promise<T> {
    return settle(fn).then(
      (v) => this.durable().then(() => v),
      (e) => this.durable().then(() => Promise.reject(e), () => Promise.reject(e)),
    );
  }

  /**
   * Runs `fn` now and passes its result on at once, without waiting for durability: only for
   * reads whose result can make nothing durable that depends on an unsynced change. Chunk bytes
   * to send (verified by their hash wherever they go), and the chunk index, whose rows are written
   * only once their bytes are durable and which only decides later writes to this same database:
   * the log is one sequence, so those writes are never durable before the rows they read.
   */
  read<T>(fn: () => Promise<T>): Promise<T> {
    return this.#failed ? Promise.reject(this.#failed) : settle(fn);
  }

  /** Resolves once every change made on the connection so far is on disk. */
  durable(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (!this.#wal) return RESOLVED;
    const n = this.#count();
    if (n !== this.#requested) {
      this.#requested = n;
      this.#latest = this.#start();
    }
    return this.#latest ?? RESOLVED;
  }

  #count(): number {
    return Number((this.#changes.get() as { n: number | bigint }).n);
  }

  /**
   * An fsync started now, beside any still running (not queued behind them: a change waits for
   * one fsync, not two). Every change made up to now is in it; {@link durable} calls of the same
   * moment share it.
   */
  #start(): Promise<void> {
    const wal = this.#wal!;
    const p = this.#syncFile(wal).catch((e) => {
      this.#failed ??= new Error(
        `Cannot keep the database durable: the fsync of ${wal} failed (${
          (e as Error).message
        }); restart the server (SQLite's recovery then decides what is on disk)`,
      );
      throw this.#failed;
    });
    const clear = () => {
      if (this.#latest === p) this.#latest = null;
    };
    p.then(clear, clear);
    return p;
  }
}

/**
 * `fdatasync` of `path`. The log of an open connection in WAL mode is never removed, so a log
 * that is not there is an error too (never "nothing to sync").
 */
export async function fsyncFile(path: string): Promise<void> {
  const f = await Deno.open(path, { write: true });
  try {
    await f.syncData();
  } finally {
    f.close();
  }
}
