/**
 * One client per folder: an OS lock on `FOLDER/.cloudsync/client.lock`, held for the life of the
 * process. Two clients on one folder would each read the other's changes as deletions; the second
 * start must stop before it opens anything else.
 *
 * The lock is `FsFile.tryLockSync` (flock on Unix, LockFileEx on Windows): the OS drops it when the
 * process ends in any way, so a lock left by a crash (kill -9, power loss) is simply free and the
 * next start takes it, with no guessing whether an old PID still runs. The holder writes its PID
 * into the file, for the message of a refused start. The file is never deleted while the folder
 * is enrolled (deleting a lock file lets two processes lock two different files). It is separate
 * from everything read-only commands read (`config.json`, `state.db`), so they work beside a
 * running client.
 *
 * @module
 */

import { join } from "node:path";
import { stateDir } from "./config.ts";

/** Name of the lock file inside `.cloudsync/`. */
export const LOCK_FILE = "client.lock";
/**
 * Also holds the holder's PID: Windows locks the whole lock file against reading, so another
 * process can read the PID only here.
 */
export const PID_FILE = "client.pid";

/** Another process holds the folder's lock. */
export class FolderInUseError extends Error {
  /** The holder's PID as it wrote it, or null if unreadable. */
  readonly pid: number | null;
  /** Creates the error naming `folder` and the holder's PID. */
  constructor(folder: string, pid: number | null) {
    super(
      `Cannot start: ${folder} is already being synced by another cloud-client (${
        pid === null ? "PID unknown" : `PID ${pid}`
      }); stop that one first, or leave it running`,
    );
    this.name = "FolderInUseError";
    this.pid = pid;
  }
}

/** A held folder lock. */
export interface FolderLock {
  /** The lock file. */
  readonly path: string;
  /** Releases the lock (the process ending does too). */
  release(): void;
}

function readPid(path: string): number | null {
  try {
    const text = Deno.readTextFileSync(path).trim();
    return /^\d{1,10}$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/** The PID the lock's holder wrote (or the last holder: check {@link folderLockHeld}), or null. */
export function lockHolderPid(root: string): number | null {
  const dir = stateDir(root);
  return readPid(join(dir, LOCK_FILE)) ?? readPid(join(dir, PID_FILE));
}

function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.ino === null || b.ino === null || (a.ino === b.ino && a.dev === b.dev);
}

/** Sleeps `ms` without giving up the thread (for the few short waits of a synchronous start). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * How many times a busy lock is tried again, 20 ms apart: `cloud-client status` holds it for a
 * moment to see whether a client runs ({@link folderLockHeld}), and a start must not fail then.
 */
const BUSY_RETRIES = 5;

/**
 * Whether a client holds the lock of `root`, asked without taking it for more than a moment and
 * without writing anything (a shared lock, released at once). False when there is no lock file.
 */
export function folderLockHeld(root: string): boolean {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(join(stateDir(root), LOCK_FILE), { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  try {
    if (!file.tryLockSync(false)) return true;
    file.unlockSync();
    return false;
  } finally {
    file.close();
  }
}

/**
 * Takes the lock of `root` (its `.cloudsync/` must exist) and writes this process's PID in it.
 * Throws {@link FolderInUseError} if another process holds it.
 */
export function lockFolder(root: string): FolderLock {
  const dir = stateDir(root);
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0, busy = 0;; attempt++) {
    const file = Deno.openSync(path, { read: true, write: true, create: true });
    let locked = false;
    try {
      locked = file.tryLockSync(true);
      if (!locked && busy < BUSY_RETRIES) {
        busy++;
        file.close();
        sleepSync(20);
        continue;
      }
      // The file we locked must still be the one at `path` (not one unlinked meanwhile).
      if (locked && !sameFile(file.statSync(), Deno.statSync(path)) && attempt < 10) {
        file.close();
        continue;
      }
    } catch (e) {
      file.close();
      if (!(e instanceof Deno.errors.NotFound) || attempt >= 10) throw e;
      continue;
    }
    if (!locked) {
      file.close();
      throw new FolderInUseError(root, readPid(path) ?? readPid(join(dir, PID_FILE)));
    }
    const pid = new TextEncoder().encode(`${Deno.pid}\n`);
    try {
      file.truncateSync(0);
      for (let off = 0; off < pid.length;) off += file.writeSync(pid.subarray(off));
      Deno.writeFileSync(join(dir, PID_FILE), pid);
    } catch (e) {
      file.close();
      throw e;
    }
    return {
      path,
      release() {
        try {
          file.close(); // closing the handle releases the lock
        } catch { /* already closed */ }
      },
    };
  }
}

/**
 * Whether a client holds the lock of `root` now (for messages of the commands that work beside
 * it; the answer may be stale a moment later). Takes the lock for an instant if it is free.
 */
export function folderLocked(root: string): boolean {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(join(stateDir(root), LOCK_FILE), { read: true, write: true });
  } catch {
    return false; // no lock file: no client ever ran here
  }
  try {
    return !file.tryLockSync(true);
  } catch {
    return false;
  } finally {
    file.close();
  }
}
