/**
 * Watches the synced folder with `Deno.watchFs` and calls back, debounced, when something changed.
 * Event kinds and paths are only hints (Deno reports renames and new trees unreliably), so the
 * callback just says "look again"; the scan finds out what changed.
 *
 * The watcher never gives up. An event it cannot read (a file name that is not UTF-8 makes the
 * iterator throw `path contains invalid UTF-8 characters`; the watcher itself lives on) asks for
 * a full rescan, the scan finds that change, and other changes keep being reported live. A watcher
 * that ended, or that the OS refused (inotify limit), is started again with backoff (1 s doubling
 * to 5 min), each time with a full rescan; meanwhile the client's periodic scan finds changes.
 * Problems are said at most once an hour. Rescans caused by unreadable events back off too
 * (doubling to a minute), so a file with such a name that changes all the time does not make the
 * client rescan the whole folder every second.
 *
 * @module
 */

import { QUIET_MS } from "../core/stability.ts";
import { sep } from "node:path";
import { REQUESTS_DIR, STATE_DIR } from "./config.ts";

/** The device's ignore rules, `.cloudsync/ignore` (see `ignore_files.ts`): a change wakes a pass. */
const DEVICE_RULES_NAME = "ignore";

/** Options of {@link FolderWatcher}. */
export interface WatcherOptions {
  /** Quiet time after the last event before calling back (default `QUIET_MS`, 50 ms). */
  debounceMs?: number;
  /** Longest delay after the first event of a burst (default 1000 ms). */
  maxDelayMs?: number;
  /** Called when watching fails (at most once an hour). */
  onError?: (message: string) => void;
  /**
   * Names of files in the private `.cloudsync/` whose changes are reported all the same (the
   * bell `cloud-client status --wait` rings); everything else in there is not.
   */
  bells?: string[];
}

/** Longest wait before starting a failed watcher again. */
const MAX_RESTART_MS = 5 * 60_000;
/** Longest wait between two rescans asked for by unreadable events. */
const MAX_ERROR_RESCAN_MS = 60_000;
/** Problems are said at most this often. */
const WARN_EVERY_MS = 3600_000;
/** More unreadable events than this within a second: start the watcher again instead. */
const ERROR_STORM = 1000;

/** True for iterator errors after which the OS watcher is known to be dead. */
function isDeadWatcher(e: unknown): boolean {
  return /watch limit|bad resource|bad file descriptor/i.test((e as Error)?.message ?? "");
}

/** A debounced folder watcher. */
export class FolderWatcher {
  #watcher: Deno.FsWatcher | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #first = 0;
  readonly #root: string;
  readonly #onChange: (paths: string[] | null) => void;
  #paths = new Set<string>();
  #rescan = false;
  readonly #debounce: number;
  readonly #maxDelay: number;
  readonly #onError: (message: string) => void;
  readonly #private: string;
  readonly #deviceRules: string;
  readonly #bells: Set<string>;
  #pauses = 0;
  #resumeWatching = false;
  #closed = false;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #restartMs = 1000;
  #lastWarn = -Infinity;
  #errorRescanTimer: ReturnType<typeof setTimeout> | undefined;
  #errorRescanMs = 0;
  #lastErrorRescan = -Infinity;
  #lastError = -Infinity;

  /**
   * `onChange` gets the absolute paths the OS reported since the last call, or null when the OS
   * lost track (event overflow) and everything must be rescanned.
   */
  constructor(root: string, onChange: (paths: string[] | null) => void, opts: WatcherOptions = {}) {
    this.#root = root;
    this.#onChange = onChange;
    this.#debounce = opts.debounceMs ?? QUIET_MS;
    this.#maxDelay = opts.maxDelayMs ?? 1000;
    this.#onError = opts.onError ?? (() => {});
    this.#private = root + sep + STATE_DIR;
    this.#deviceRules = this.#private + sep + DEVICE_RULES_NAME;
    this.#bells = new Set((opts.bells ?? []).map((b) => this.#private + sep + b));
  }

  /**
   * Starts watching; returns false (and reports why) if the OS refused, in which case it tries
   * again later by itself.
   */
  start(): boolean {
    this.#closed = false;
    let w: Deno.FsWatcher;
    try {
      w = Deno.watchFs(this.#root, { recursive: true });
    } catch (e) {
      this.#warn(e);
      this.#scheduleRestart();
      return false;
    }
    this.#watcher = w;
    this.#read(w).catch((e) => {
      if (this.#watcher === w) this.#fail(w, e);
    });
    return true;
  }

  async #read(w: Deno.FsWatcher): Promise<void> {
    const events = w[Symbol.asyncIterator]();
    let stormStart = 0;
    let storm = 0;
    for (;;) {
      let r: IteratorResult<Deno.FsEvent>;
      try {
        r = await events.next();
      } catch (e) {
        if (this.#watcher !== w) return;
        const now = performance.now();
        if (now - stormStart > 1000) [stormStart, storm] = [now, 0];
        if (isDeadWatcher(e) || ++storm > ERROR_STORM) return this.#fail(w, e);
        // One event could not be read (a name that is not UTF-8): the watcher lives on.
        this.#warn(e);
        this.#errorRescan();
        continue;
      }
      if (this.#watcher !== w) return;
      if (r.done) return this.#fail(w, new Error("the watcher stopped"));
      this.#restartMs = 1000; // a (re)started watcher that delivers events is healthy
      const ev = r.value;
      // The client's own state is not watched, except the bells (`status --wait`) and the
      // requests of one-time commands.
      const paths = ev.paths.filter((p) =>
        this.#bells.has(p) ||
        (p !== this.#private &&
          (!p.startsWith(this.#private + sep) || p.startsWith(this.#private + sep + REQUESTS_DIR)))
      );
      // A change of this device's ignore rules (the one user file in .cloudsync/): look again.
      if (ev.flag === "rescan" || ev.paths.includes(this.#deviceRules)) this.#rescan = true;
      else if (paths.length === 0) continue;
      for (const p of paths) this.#paths.add(p);
      this.#poke();
    }
  }

  /** The OS watcher `w` is dead: say so, rescan, and start a new one later. */
  #fail(w: Deno.FsWatcher, e: unknown): void {
    this.#warn(e);
    this.#watcher = null;
    try {
      w.close();
    } catch { /* already closed */ }
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.#closed || this.#pauses > 0 || this.#restartTimer !== undefined) return;
    const wait = this.#restartMs;
    this.#restartMs = Math.min(this.#restartMs * 2, MAX_RESTART_MS);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#closed || this.#pauses > 0 || this.#watcher) return;
      if (this.start()) {
        this.#rescan = true; // whatever happened while nothing watched
        this.#poke();
      }
    }, wait);
  }

  /** A full rescan for an event that could not be read, with backoff while they keep coming. */
  #errorRescan(): void {
    const now = performance.now();
    if (now - this.#lastError > 10 * 60_000) this.#errorRescanMs = 0; // quiet for long: reset
    this.#lastError = now;
    if (this.#errorRescanTimer !== undefined) return; // one is already due
    const wait = Math.max(0, this.#lastErrorRescan + this.#errorRescanMs - now);
    this.#errorRescanMs = Math.min(Math.max(1000, this.#errorRescanMs * 2), MAX_ERROR_RESCAN_MS);
    this.#errorRescanTimer = setTimeout(() => {
      this.#errorRescanTimer = undefined;
      this.#lastErrorRescan = performance.now();
      this.#rescan = true;
      this.#poke();
    }, wait);
  }

  #warn(e: unknown): void {
    const now = performance.now();
    if (now - this.#lastWarn < WARN_EVERY_MS) return;
    this.#lastWarn = now;
    this.#onError(this.#explain(e));
  }

  /**
   * Stops the OS watcher while this client itself writes many files: their events (several per
   * file, each costing the OS watcher thread a path resolution) would cost more than one rescan.
   * {@link resume} watches again, then asks for a full rescan, which finds anything changed
   * meanwhile. Calls nest; a watcher that could not start stays off.
   */
  pause(): void {
    if (this.#pauses++ > 0) return;
    if (this.#restartTimer !== undefined) {
      clearTimeout(this.#restartTimer); // resume starts it
      this.#restartTimer = undefined;
      this.#resumeWatching = true;
    }
    const w = this.#watcher;
    if (!w) return;
    this.#watcher = null;
    this.#resumeWatching = true;
    try {
      w.close();
    } catch { /* already closed */ }
  }

  /** Ends a {@link pause}. */
  resume(): void {
    if (this.#pauses === 0 || --this.#pauses > 0 || !this.#resumeWatching) return;
    this.#resumeWatching = false;
    if (this.start()) {
      this.#rescan = true;
      this.#poke();
    }
  }

  #explain(e: unknown): string {
    const msg = (e as Error).message ?? String(e);
    const hint = /watch limit/i.test(msg)
      ? "; raise it with `sudo sysctl fs.inotify.max_user_watches=524288`"
      : "";
    const what = /invalid UTF-8/i.test(msg)
      ? "a file name there is not UTF-8 (such files are skipped); watching goes on, and changes the watcher cannot name are found by a rescan"
      : "changes are found by the periodic scan meanwhile, and watching is tried again";
    return `Cannot watch ${this.#root}: ${msg}${hint}; ${what} (said at most once an hour)`;
  }

  #poke(): void {
    const now = performance.now();
    if (this.#timer === undefined) this.#first = now;
    clearTimeout(this.#timer);
    const wait = Math.max(0, Math.min(this.#debounce, this.#first + this.#maxDelay - now));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const paths = this.#rescan ? null : [...this.#paths];
      this.#paths.clear();
      this.#rescan = false;
      this.#onChange(paths);
    }, wait);
  }

  /** Stops watching and cancels a pending callback. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    clearTimeout(this.#errorRescanTimer);
    this.#errorRescanTimer = undefined;
    this.#resumeWatching = false;
    const w = this.#watcher;
    this.#watcher = null;
    try {
      w?.close();
    } catch { /* already closed */ }
  }
}
