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

/** Prints `message()` on stderr when {@link DEBUG} is on; the message is not built otherwise. */
export function debug(message: () => string): void {
  if (DEBUG) console.error(`[debug] ${new Date().toISOString().slice(11, 23)} ${message()}`);
}
