/**
 * `cloud-client status FOLDER [--json] [--wait [--timeout S]]`: what the folder's client is
 * doing, beside a running client or without one. It only reads (the folder lock is asked with a
 * shared lock held for a moment, `state.db` is opened read-only and only by its owner: nothing
 * is created as another user), except that `--wait` rings the client's bell (`status_file.ts`).
 *
 * - With a client running: its record (`.cloudsync/status.json`) is the answer.
 * - Without one: `stopped` (or `error` if the last client stopped for good because of an error),
 *   with the server and account from `config.json`, the files the last pull brought that are not
 *   here yet and the conflict copies from `state.db` (each checked on disk), and the failed and
 *   skipped items of the last run.
 * - `--wait`: exits 0 once a running client says the folder is in sync after a full look that
 *   began after the command started, and 1 at the timeout. It sleeps between looks (woken by
 *   changes in `.cloudsync/`, else once a second): no busy loop.
 *
 * @module
 */

import { join, resolve, sep } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  type Enrollment,
  MAX_LISTED,
  type Offline,
  statusJson,
  statusText,
  type StatusView,
  viewOf,
  waitSatisfied,
} from "../core/status.ts";
import { isConflictCopy } from "../core/conflict_name.ts";
import { EXIT, type ExitCode } from "../util/exit_codes.ts";
import { STATE_DIR, stateDir } from "./config.ts";
import { folderLockHeld, lockHolderPid } from "./folder_lock.ts";
import { readStatusFile, ringWaitBell } from "./status_file.ts";

/** What the command was asked. */
export interface StatusOptions {
  folder: string;
  json: boolean;
  wait: boolean;
  /** `--timeout`: seconds `--wait` waits at most; null: no limit. */
  timeoutS: number | null;
}

/** Most bytes of `config.json` read. */
const MAX_CONFIG_BYTES = 64 * 1024;

/** The enrollment from `config.json`, read without changing anything; null if there is none. */
function readEnrollment(root: string): Enrollment | null {
  try {
    const path = join(stateDir(root), "config.json");
    if (Deno.statSync(path).size > MAX_CONFIG_BYTES) return null;
    const c = JSON.parse(Deno.readTextFileSync(path)) as Record<string, unknown>;
    if (
      typeof c.host !== "string" || typeof c.port !== "number" || typeof c.account !== "string" ||
      typeof c.deviceName !== "string"
    ) {
      return null;
    }
    return { server: `${c.host}:${c.port}`, account: c.account, device: c.deviceName };
  } catch {
    return null;
  }
}

/**
 * Opens `state.db` read-only, or null. A client that was killed leaves its last transactions in
 * `state.db-wal`, so it is opened as SQLite opens a WAL database (an `immutable=1` URI would miss
 * them, and Deno only honours URIs with all permissions); that may create `-wal` and `-shm`
 * files, so it is only done by the database's owner: someone else (root) would leave files the
 * owner's client cannot write. For anyone else, null (the last run's record is the answer).
 */
function openStateDb(path: string): DatabaseSync | null {
  try {
    const st = Deno.statSync(path);
    if (Deno.build.os !== "windows" && st.uid !== Deno.uid()) return null;
    return new DatabaseSync(path, { readOnly: true });
  } catch {
    return null;
  }
}

/**
 * What `state.db` says without a client: files the last pull of the server's journal brought
 * that this device does not have yet, and the synced conflict copies still in the folder.
 * Opened read-only (see {@link openStateDb}).
 */
function fromStateDb(root: string): Pick<Offline, "pendingDownloads" | "conflicts"> {
  const db = openStateDb(join(stateDir(root), "state.db"));
  if (!db) return {};
  try {
    const version = (data: string): number | null => {
      try {
        const v = JSON.parse(data) as { version?: unknown; kind?: unknown };
        return v.kind === "file" && typeof v.version === "number" ? v.version : null;
      } catch {
        return null;
      }
    };
    const base = new Map<string, number | null>();
    const conflicts: string[] = [];
    for (const row of db.prepare("SELECT path, data FROM base").iterate()) {
      const r = row as { path: string; data: string };
      base.set(r.path, version(r.data));
      if (conflicts.length < MAX_LISTED && isConflictCopy(r.path)) {
        try {
          Deno.lstatSync(join(root, r.path));
          conflicts.push(r.path);
        } catch { /* gone since */ }
      }
    }
    let pendingDownloads = 0;
    for (const row of db.prepare("SELECT path, data FROM remote").iterate()) {
      const r = row as { path: string; data: string };
      const v = version(r.data);
      if (v !== null && base.get(r.path) !== v) pendingDownloads++;
    }
    return { pendingDownloads, conflicts: conflicts.sort() };
  } catch {
    return {};
  } finally {
    db.close();
  }
}

/** The folder's status now. */
export function readView(root: string): StatusView {
  const running = folderLockHeld(root);
  let record = readStatusFile(root);
  // A record written by an earlier client, while a new one starts: not this client's.
  if (running && record && lockHolderPid(root) !== record.pid) record = null;
  const offline: Offline = { folder: root, running, enrollment: readEnrollment(root) };
  if (!running) Object.assign(offline, fromStateDb(root));
  return viewOf(record, offline);
}

function show(view: StatusView, json: boolean, out: (line: string) => void): void {
  if (json) out(JSON.stringify(statusJson(view), null, 2));
  else for (const line of statusText(view, Date.now())) out(line);
}

/**
 * Sleeps until something changes in a folder, or for at most the time given: with a watcher when
 * one could be made (a missed event only costs the rest of the wait).
 */
class Sleeper {
  #watcher: Deno.FsWatcher | null = null;
  #next: Promise<unknown> | null = null;

  /** Watches `dir` from now on (no-op if it cannot be watched, or already is). */
  watch(dir: string): void {
    if (this.#watcher) return;
    try {
      this.#watcher = Deno.watchFs(dir, { recursive: false });
    } catch { /* sleep by time only */ }
  }

  /** Resolves on the next change, or after `ms`. */
  async sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((r) => timer = setTimeout(r, ms));
    if (this.#watcher) {
      this.#next ??= this.#watcher[Symbol.asyncIterator]().next().finally(() => {
        this.#next = null;
      });
    }
    await Promise.race(this.#next ? [late, this.#next] : [late]);
    clearTimeout(timer);
  }

  close(): void {
    try {
      this.#watcher?.close();
    } catch { /* already closed */ }
  }
}

/** Whether this user may list `dir` (the status channel is the owner's only: 0700). */
function canEnter(dir: string): boolean {
  try {
    for (const _ of Deno.readDirSync(dir)) break;
    return true;
  } catch (e) {
    return !(e instanceof Deno.errors.PermissionDenied);
  }
}

/** Runs the command; resolves with the exit code. */
export async function statusCommand(
  o: StatusOptions,
  out: (line: string) => void = (l) => console.log(l),
  err: (line: string) => void = (l) => console.error(l),
): Promise<ExitCode> {
  const root = resolve(o.folder);
  let isDir = false;
  try {
    isDir = Deno.statSync(join(root, STATE_DIR)).isDirectory;
  } catch { /* not synced */ }
  if (!isDir && !o.wait) {
    err(
      `Cannot show status: ${root} is not a synced folder (it has no ${STATE_DIR}/); start cloud-client on it first`,
    );
    return EXIT.folder;
  }
  if (isDir && !canEnter(stateDir(root))) {
    err(
      `Cannot show status: ${root}${sep}${STATE_DIR} can be read only by the folder's owner; run the command as that user`,
    );
    return EXIT.folder;
  }
  if (!o.wait) {
    show(readView(root), o.json, out);
    return EXIT.ok;
  }
  const askedAt = Date.now();
  const deadline = o.timeoutS === null ? Infinity : askedAt + o.timeoutS * 1000;
  let rang = false;
  const sleeper = new Sleeper();
  try {
    for (;;) {
      if (!rang) {
        try {
          ringWaitBell(root);
          rang = true;
          sleeper.watch(stateDir(root));
        } catch { /* not enrolled yet: look again */ }
      }
      const view = readView(root);
      if (waitSatisfied(view, askedAt)) {
        show(view, o.json, out);
        return EXIT.ok;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        show(view, o.json, out);
        err(
          `Not in sync after ${o.timeoutS} s (${view.state}${
            view.running ? "" : ": no client is running on this folder"
          })`,
        );
        return EXIT.retry;
      }
      await sleeper.sleep(Math.min(1000, left));
    }
  } finally {
    sleeper.close();
  }
}
