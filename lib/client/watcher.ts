/**
 * Watches the synced folder with `Deno.watchFs` and calls back, debounced, when something changed.
 * Event kinds and paths are only hints (Deno reports renames and new trees unreliably), so the
 * callback just says "look again"; the scan finds out what changed. If the OS refuses a watcher
 * (inotify limit), the client falls back to its periodic scan and says how to raise the limit.
 *
 * @module
 */

import { sep } from "node:path";
import { STATE_DIR } from "./config.ts";

/** Options of {@link FolderWatcher}. */
export interface WatcherOptions {
  /** Quiet time after the last event before calling back (default 100 ms). */
  debounceMs?: number;
  /** Longest delay after the first event of a burst (default 1000 ms). */
  maxDelayMs?: number;
  /** Called once if watching fails. */
  onError?: (message: string) => void;
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
  #pauses = 0;
  #resumeWatching = false;

  /**
   * `onChange` gets the absolute paths the OS reported since the last call, or null when the OS
   * lost track (event overflow) and everything must be rescanned.
   */
  constructor(root: string, onChange: (paths: string[] | null) => void, opts: WatcherOptions = {}) {
    this.#root = root;
    this.#onChange = onChange;
    this.#debounce = opts.debounceMs ?? 100;
    this.#maxDelay = opts.maxDelayMs ?? 1000;
    this.#onError = opts.onError ?? (() => {});
    this.#private = root + sep + STATE_DIR;
  }

  /** Starts watching; returns false (and reports why) if the OS refused. */
  start(): boolean {
    try {
      this.#watcher = Deno.watchFs(this.#root, { recursive: true });
    } catch (e) {
      this.#onError(this.#explain(e));
      return false;
    }
    const w = this.#watcher;
    (async () => {
      for await (const ev of w) {
        if (this.#watcher !== w) break;
        const paths = ev.paths.filter((p) =>
          p !== this.#private && !p.startsWith(this.#private + sep)
        );
        if (ev.flag === "rescan") this.#rescan = true;
        else if (paths.length === 0) continue;
        for (const p of paths) this.#paths.add(p);
        this.#poke();
      }
    })().catch((e) => {
      if (this.#watcher === w) this.#onError(this.#explain(e));
    });
    return true;
  }

  /**
   * Stops the OS watcher while this client itself writes many files: their events (several per
   * file, each costing the OS watcher thread a path resolution) would cost more than one rescan.
   * {@link resume} watches again, then asks for a full rescan, which finds anything changed
   * meanwhile. Calls nest; a watcher that could not start stays off.
   */
  pause(): void {
    if (this.#pauses++ > 0) return;
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
    return `Cannot watch ${this.#root}: ${msg}${hint}. Changes are still found by the periodic scan.`;
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
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#resumeWatching = false;
    const w = this.#watcher;
    this.#watcher = null;
    try {
      w?.close();
    } catch { /* already closed */ }
  }
}
