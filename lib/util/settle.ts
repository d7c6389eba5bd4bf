/**
 * Synchronous work behind an asynchronous interface (SQLite behind the storage interfaces):
 * {@link settle} runs it now and turns a throw into a rejected promise, as an `async` function
 * would, without an `async` function's extra tick.
 *
 * @example
 * ```ts
 * seq(account: string): Promise<number> {
 *   return settle(() => Promise.resolve(readSeq(account)));
 * }
 * ```
 *
 * @module
 */

/** `fn()`, or a promise rejected with what it threw. */
export function settle<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}
