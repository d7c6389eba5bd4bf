/**
 * The local channel between a running client and `cloud-client status`, inside the folder's
 * `.cloudsync/` (0700: only the owner can enter it), the same on Linux, macOS and Windows:
 *
 * - `status.json` (0600): the running client's {@link StatusRecord}, written atomically (temp
 *   file, fsync, rename) when something a user would see changed, at most once a second while a
 *   pass moves content, and never while nothing changes (an idle client writes nothing).
 * - `status-wait`: `status --wait` rings this bell (writes it); the client's watcher sees it and
 *   runs a full pass at once (without a watcher: at the next SECONDS), then writes its record
 *   with the time that pass began, so the command knows the answer is newer than its question.
 * - Whether a client runs at all is the folder lock (`folder_lock.ts`): a record whose writer is
 *   gone (a crash, kill -9) is shown as `stopped`, never as a live state.
 *
 * Deno has no Unix domain sockets on Windows and no named pipes, so files are the one channel
 * that works everywhere. What is read back is bounded ({@link MAX_STATUS_BYTES}) and checked
 * field by field (`core/status.ts`).
 *
 * @module
 */

import { join } from "node:path";
import { writeFileAtomicSync } from "../util/atomic.ts";
import { debug } from "../util/debug.ts";
import {
  MAX_LISTED,
  MAX_STATUS_BYTES,
  parseStatusRecord,
  type StatusItem,
  type StatusRecord,
} from "../core/status.ts";
import { STATE_DIR, stateDir } from "./config.ts";

/** The running client's record, in `.cloudsync/`. */
export const STATUS_FILE = "status.json";
/** The bell `status --wait` rings, in `.cloudsync/`. */
export const WAIT_FILE = "status-wait";
/** The bell's path relative to the folder (as the watcher reports it). */
export const WAIT_PATH = `${STATE_DIR}/${WAIT_FILE}`;

/** Reads the record of `root`, or null if there is none or it is not a well-formed one. */
export function readStatusFile(root: string): StatusRecord | null {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(join(stateDir(root), STATUS_FILE), { read: true });
  } catch {
    return null;
  }
  try {
    const size = file.statSync().size;
    if (size > MAX_STATUS_BYTES) return null;
    const buf = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const n = file.readSync(buf.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    return parseStatusRecord(new TextDecoder().decode(buf.subarray(0, got)));
  } catch {
    return null;
  } finally {
    file.close();
  }
}

/**
 * Rings the bell of `root` (see the module doc). Rung by root in someone else's folder, the bell
 * is given to the folder's owner, so that their client can read it.
 */
export function ringWaitBell(root: string): void {
  const path = join(stateDir(root), WAIT_FILE);
  writeFileAtomicSync(path, new TextEncoder().encode(`${Date.now()}\n`), 0o600);
  if (Deno.build.os !== "windows" && Deno.uid() === 0) {
    const owner = Deno.statSync(stateDir(root));
    if (owner.uid !== null && owner.uid !== 0) {
      try {
        Deno.chownSync(path, owner.uid, owner.gid);
      } catch { /* the client then counts the bell as rung at every look */ }
    }
  }
}

/**
 * When the bell of `root` was last rung (epoch ms, as the ringer wrote it), or null if it never
 * was. A bell that is not a short number counts as rung now.
 */
export function waitBellRungAt(root: string): number | null {
  let text: string;
  try {
    const f = Deno.openSync(join(stateDir(root), WAIT_FILE), { read: true });
    try {
      const buf = new Uint8Array(32);
      const n = f.readSync(buf) ?? 0;
      text = new TextDecoder().decode(buf.subarray(0, n)).trim();
    } finally {
      f.close();
    }
  } catch (e) {
    // A bell this client cannot read was rung by someone who may be waiting.
    return e instanceof Deno.errors.NotFound ? null : Date.now();
  }
  return /^\d{1,16}$/.test(text) ? Number(text) : Date.now();
}

/** A list bounded to {@link MAX_LISTED} items, and how many were left out. */
export function bounded<T>(all: readonly T[]): { list: T[]; more: number } {
  return { list: all.slice(0, MAX_LISTED), more: Math.max(0, all.length - MAX_LISTED) };
}

/** Fields a patch may leave out (kept from the current record). */
export type StatusPatch = Partial<Omit<StatusRecord, "v" | "pid" | "version" | "updatedAt">>;

/** How long a write that is not urgent may wait (several changes then make one write). */
const LAZY_MS = 1000;

/**
 * The running client's side: keeps its record, and writes it when it changed (see the module
 * doc). A failed write is said once in the debug log and never stops the client.
 */
export class StatusKeeper {
  #record: StatusRecord;
  #written = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #path: string;

  constructor(readonly root: string, first: StatusRecord) {
    this.#path = join(stateDir(root), STATUS_FILE);
    this.#record = first;
  }

  /** The current record. */
  get record(): Readonly<StatusRecord> {
    return this.#record;
  }

  /**
   * Applies `patch`; writes at once if `urgent` (a change of state), else within a second. A
   * patch that changes nothing writes nothing.
   */
  update(patch: StatusPatch, urgent = false): void {
    this.#record = { ...this.#record, ...patch };
    if (this.#same()) return;
    if (urgent) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), LAZY_MS);
  }

  #text(): string {
    const { updatedAt: _u, ...rest } = this.#record;
    return JSON.stringify(rest);
  }

  #same(): boolean {
    return this.#text() === this.#written;
  }

  /** Writes the record now if it changed since the last write. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const body = this.#text();
    if (body === this.#written) return;
    this.#record = { ...this.#record, updatedAt: Date.now() };
    try {
      writeFileAtomicSync(
        this.#path,
        new TextEncoder().encode(JSON.stringify(this.#record) + "\n"),
        0o600,
      );
      this.#written = body;
    } catch (e) {
      debug(() => `cannot write ${this.#path}: ${(e as Error).message}`);
    }
  }

  /** Stops the pending write timer (the record was flushed or no longer matters). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Items from a map (path -> reason), bounded. */
export function itemsOf(map: ReadonlyMap<string, string>): { list: StatusItem[]; more: number } {
  const all: StatusItem[] = [];
  for (const [path, reason] of map) {
    if (all.length > MAX_LISTED) break;
    all.push({ path, reason });
  }
  return { list: all.slice(0, MAX_LISTED), more: Math.max(0, map.size - MAX_LISTED) };
}
