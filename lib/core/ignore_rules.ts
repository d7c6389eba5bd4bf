/**
 * Paths that never sync, whatever any device says: they are neither uploaded nor downloaded nor
 * deleted anywhere. Pure.
 *
 * - Git's lock files (`.git/index.lock`, `.git/HEAD.lock`, `.git/refs/heads/main.lock`, ...):
 *   git holds one for a moment while it changes a repository; a copy arriving on another device
 *   makes every git command there refuse to run ("Unable to create '.../index.lock': File
 *   exists") until it is deleted.
 *
 * @example
 * ```ts
 * isAlwaysIgnored("proj/.git/index.lock"); // true
 * isAlwaysIgnored("proj/notes.lock");      // false
 * ```
 *
 * @module
 */

/** Whether `path` (a wire path) is never synced. */
export function isAlwaysIgnored(path: string): boolean {
  if (!path.endsWith(".lock")) return false;
  return path.startsWith(".git/") || path.includes("/.git/");
}
