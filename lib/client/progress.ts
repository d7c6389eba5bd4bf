/**
 * A one-line progress display for terminals: files and bytes done, rate and ETA, redrawn a few
 * times a second while a pass moves content, and erased when it ends. Silent when the output is
 * not a terminal (logs stay clean).
 *
 * @module
 */

import { formatBytes } from "../util/cli.ts";
import type { TransferStats } from "./transfer.ts";

/** Formats the progress line for `stats` after `ms` milliseconds. */
export function progressText(stats: TransferStats, ms: number): string {
  const rate = ms > 0 ? stats.bytesDone / (ms / 1000) : 0;
  const left = Math.max(0, stats.bytesTotal - stats.bytesDone);
  const eta = rate > 0 ? `, ETA ${Math.ceil(left / rate)} s` : "";
  return `${stats.filesDone}/${stats.filesTotal} files, ${formatBytes(stats.bytesDone)}/${
    formatBytes(stats.bytesTotal)
  }, ${formatBytes(rate)}/s${eta}`;
}

/** Draws {@link progressText} on stdout while running, if stdout is a terminal. */
export class ProgressLine {
  #timer: ReturnType<typeof setInterval> | undefined;
  #drawn = false;
  readonly #enc = new TextEncoder();

  constructor(readonly stats: TransferStats, readonly enabled = Deno.stdout.isTerminal()) {}

  /** Starts redrawing every 250 ms. */
  start(): void {
    if (!this.enabled) return;
    const t0 = performance.now();
    this.#timer = setInterval(() => {
      if (this.stats.filesTotal === 0) return;
      Deno.stdout.writeSync(
        this.#enc.encode(`\r\x1b[K${progressText(this.stats, performance.now() - t0)}`),
      );
      this.#drawn = true;
    }, 250);
  }

  /** Stops and erases the line. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#drawn) Deno.stdout.writeSync(this.#enc.encode("\r\x1b[K"));
    this.#drawn = false;
  }
}
