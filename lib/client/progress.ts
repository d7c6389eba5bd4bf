/**
 * The live progress line on a terminal: files done as each one finishes, a percentage, the rate
 * and an ETA measured over the last few seconds (so it settles quickly and follows a change of
 * speed), cut to the terminal's width, redrawn a few times a second while a pass moves content
 * and erased when it ends. Off when stdout is not a terminal or `TERM=dumb` (logs stay clean).
 * The text is a pure function of the counters, the rate and the width ({@link progressText}).
 *
 * @example
 * ```ts
 * progressText({ filesDone: 3, filesTotal: 10, bytesDone: 300, bytesTotal: 1000 }, 100, 80);
 * // "3/10 files, 30%, 300 B/1000 B, 100 B/s, ETA 7 s"
 * ```
 *
 * @module
 */

import { formatBytes } from "../util/cli.ts";
import type { TransferStats } from "./transfer.ts";

/** The counters the line shows. */
export type ProgressCounts = Pick<
  TransferStats,
  "filesDone" | "filesTotal" | "bytesDone" | "bytesTotal"
>;

/** Over how long the rate is measured. */
export const RATE_WINDOW_MS = 5_000;
/** No rate (and no ETA) before this much of a window was seen: the first moments mislead. */
export const RATE_MIN_SPAN_MS = 1_000;

/**
 * The rate of a growing byte count over the last {@link RATE_WINDOW_MS}: samples in, bytes per
 * second out. Pure (the caller gives the time), so it is tested with a made-up clock.
 */
export class RateMeter {
  readonly #samples: { t: number; bytes: number }[] = [];

  /** Records that `bytes` were done at time `t` (ms). */
  sample(t: number, bytes: number): void {
    const s = this.#samples;
    const last = s[s.length - 1];
    if (last && t <= last.t) {
      last.bytes = Math.max(last.bytes, bytes);
      return;
    }
    s.push({ t, bytes });
    // Keep one sample older than the window, so the window is always covered whole.
    while (s.length > 2 && s[1]!.t <= t - RATE_WINDOW_MS) s.shift();
  }

  /** Bytes per second over the window, or null while less than {@link RATE_MIN_SPAN_MS} was seen. */
  rate(): number | null {
    const s = this.#samples;
    if (s.length < 2) return null;
    const first = s[0]!;
    const last = s[s.length - 1]!;
    const span = last.t - first.t;
    if (span < RATE_MIN_SPAN_MS) return null;
    return Math.max(0, last.bytes - first.bytes) / (span / 1000);
  }

  /** Forgets every sample (a new pass). */
  reset(): void {
    this.#samples.length = 0;
  }
}

/** `45 s`, `3 min 20 s`, `2 h 05 min`: seconds rounded so the figure does not flicker. */
export function formatEta(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const r = Math.round(s / 10) * 10; // to 10 s
    const m = Math.floor(r / 60);
    const rest = r % 60;
    return rest === 0 ? `${m} min` : `${m} min ${rest} s`;
  }
  const m = Math.round(s / 60);
  const h = Math.floor(m / 60);
  return `${h} h ${String(m % 60).padStart(2, "0")} min`;
}

/**
 * The progress line: files done as they finish, a percentage (of bytes, or of files when there
 * are no bytes to move), bytes, rate and ETA (once the rate is known). At most `width - 1`
 * characters (the last column would wrap on some terminals): the least useful parts go first
 * (the byte counts, then the rate), and what is still too long is cut.
 */
export function progressText(c: ProgressCounts, rate: number | null, width: number): string {
  const filesDone = Math.min(c.filesDone, c.filesTotal);
  const bytesDone = Math.min(c.bytesDone, c.bytesTotal);
  const ratio = c.bytesTotal > 0
    ? bytesDone / c.bytesTotal
    : c.filesTotal > 0
    ? filesDone / c.filesTotal
    : 0;
  // Never 100% before the last file is done.
  const pct = Math.min(Math.floor(ratio * 100), filesDone < c.filesTotal ? 99 : 100);
  const files = `${filesDone}/${c.filesTotal} files, ${pct}%`;
  const bytes = c.bytesTotal > 0 ? `${formatBytes(bytesDone)}/${formatBytes(c.bytesTotal)}` : "";
  const speed = rate === null ? null : `${formatBytes(Math.round(rate))}/s`;
  const left = c.bytesTotal - bytesDone;
  const eta = rate !== null && rate > 0 && left > 0 ? `ETA ${formatEta(left / rate)}` : null;
  const max = Math.max(1, width - 1);
  // From the most to the least useful; parts are dropped from the end of this list first.
  const wanted: [number, string][] = [[0, files], [3, eta ?? ""], [2, speed ?? ""], [1, bytes]];
  let parts = wanted.filter(([, text]) => text !== "");
  const join = () => [...parts].sort((a, b) => a[0] - b[0]).map(([, t]) => t).join(", ");
  while (parts.length > 1 && join().length > max) parts = parts.slice(0, -1);
  const line = join();
  return line.length > max ? line.slice(0, max) : line;
}

/** Whether the progress line is drawn: stdout is a terminal that is not `TERM=dumb`. */
export function progressWanted(): boolean {
  return Deno.stdout.isTerminal() && Deno.env.get("TERM") !== "dumb";
}

function terminalWidth(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

/** Draws {@link progressText} on stdout while running, if {@link progressWanted}. */
export class ProgressLine {
  #timer: ReturnType<typeof setInterval> | undefined;
  #drawn = false;
  readonly #meter = new RateMeter();
  readonly #enc = new TextEncoder();

  constructor(readonly stats: TransferStats, readonly enabled = progressWanted()) {}

  /** Starts redrawing every 250 ms. */
  start(): void {
    if (!this.enabled) return;
    this.#meter.reset();
    this.#timer = setInterval(() => {
      if (this.stats.filesTotal === 0) return;
      this.#meter.sample(performance.now(), this.stats.bytesDone);
      const text = progressText(this.stats, this.#meter.rate(), terminalWidth());
      Deno.stdout.writeSync(this.#enc.encode(`\r\x1b[K${text}`));
      this.#drawn = true;
    }, 250);
  }

  /** Erases the line (before another line is printed, or at the end). */
  clear(): void {
    if (this.#drawn) Deno.stdout.writeSync(this.#enc.encode("\r\x1b[K"));
    this.#drawn = false;
  }

  /** Stops and erases the line. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.clear();
  }
}
