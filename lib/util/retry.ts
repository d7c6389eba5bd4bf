/**
 * Retries with exponential back-off and full jitter, for requests to services that fail now and
 * then (object storage): a failure the caller calls transient is retried after a random wait of
 * up to `baseMs * 2^attempt` (capped at `maxMs`), at most `attempts` times in all; any other
 * failure, or the last one, is thrown as is.
 *
 * @example
 * ```ts
 * const data = await retry(() => fetchPart(key), { attempts: 5, transient: (e) => isNetwork(e) });
 * ```
 *
 * @module
 */

/** How {@link retry} retries. */
export interface RetryOptions {
  /** Tries in all, the first included (default 5). */
  attempts?: number;
  /** The first back-off's upper bound (default 100 ms). */
  baseMs?: number;
  /** The longest back-off (default 5 s). */
  maxMs?: number;
  /** Whether a failure is worth another try. */
  transient: (e: unknown) => boolean;
  /** Told about each retry (for logs and tests). */
  onRetry?: (e: unknown, attempt: number, waitMs: number) => void;
  /** Waits `ms` (injectable for tests). */
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `fn` until it succeeds, a failure is not transient, or the attempts are used up. */
export async function retry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const attempts = opts.attempts ?? 5;
  const base = opts.baseMs ?? 100;
  const max = opts.maxMs ?? 5_000;
  const sleep = opts.sleep ?? defaultSleep;
  for (let attempt = 1;; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= attempts || !opts.transient(e)) throw e;
      const wait = Math.random() * Math.min(max, base * 2 ** (attempt - 1));
      opts.onRetry?.(e, attempt, wait);
      await sleep(wait);
    }
  }
}
