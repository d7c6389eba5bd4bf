/**
 * Diagnostics for developers: with `CLOUDSYNC_DEBUG=1` in the environment, the client prints
 * phase timings, watcher events, planned actions and refused or deferred steps on stderr, each
 * line prefixed with `[debug]` and the time of day in milliseconds (to line up the logs of
 * several processes). Off (and free) otherwise.
 *
 * @example
 * ```ts
 * debug(() => `scan: ${ms} ms`);
 * ```
 *
 * @module
 */

/** Whether debug output is on (read once at start; off where reading the environment is denied). */
export const DEBUG = (() => {
  try {
    return Deno.env.get("CLOUDSYNC_DEBUG") === "1";
  } catch {
    return false;
  }
})();

let tag = "";

/** Names the device the next debug lines are about (several in one process: the simulator). */
export function setDebugTag(name: string): void {
  tag = name === "" ? "" : `${name}: `;
}

/** Prints `message()` on stderr when {@link DEBUG} is on; the message is not built otherwise. */
export function debug(message: () => string): void {
  if (DEBUG) console.error(`[debug] ${new Date().toISOString().slice(11, 23)} ${tag}${message()}`);
}

/**
 * While debugging, prints the process's memory (resident, V8 heap used, buffers outside the heap)
 * every `ms` until the returned function is called; does nothing otherwise.
 */
export function debugMemory(ms = 1000): () => void {
  if (!DEBUG) return () => {};
  const mb = (n: number) => (n / 1e6).toFixed(0);
  let peak = 0;
  const timer = setInterval(() => {
    const m = Deno.memoryUsage();
    peak = Math.max(peak, m.rss);
    debug(() =>
      `memory: rss ${mb(m.rss)} MB (peak ${mb(peak)}), heap ${mb(m.heapUsed)}/${
        mb(m.heapTotal)
      } MB, external ${mb(m.external)} MB`
    );
  }, ms);
  return () => clearInterval(timer);
}
