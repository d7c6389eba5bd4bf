/**
 * Work started ahead of the moment it is awaited (a batch in flight while an earlier one is
 * written). Such a promise may reject while nobody awaits it yet; Deno then ends the process
 * ("Uncaught (in promise)"), even though the code would have awaited it, and thrown, a moment
 * later. {@link ahead} marks it as handled at once; awaiting it still throws.
 *
 * @example
 * ```ts
 * import { ahead } from "./ahead.ts";
 * const next = ahead(Promise.reject(new Error("later")));
 * await new Promise((r) => setTimeout(r, 10)); // no unhandled rejection meanwhile
 * await next.catch((e) => console.log(e.message)); // "later"
 * ```
 *
 * @module
 */

/** Returns `p`, marked as handled: a rejection waits for whoever awaits it (or for nobody). */
export function ahead<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}
