/**
 * A file's metadata that syncs besides its content: modification time and permission bits (rwx
 * for user, group and other; never set-user-id, set-group-id or sticky bits). Both follow the same
 * three-way rule as content (see `reconcile.ts`): a change on one side wins; when both sides
 * changed it and the content is the same, the newer modification time wins. Pure.
 *
 * @example
 * ```ts
 * perms({ exec: true });              // 0o755 (an older device sent no mode)
 * perms({ exec: false, mode: 0o600 }); // 0o600
 * withPerms({ exec: false }, 0o750);   // { exec: true, mode: 0o750 }
 * ```
 *
 * @module
 */

/** The permission bits that travel with files. */
export const PERM_MASK = 0o777;

/** A file's permission bits: its `mode`, else what its `exec` bit implies. */
export function perms(e: { exec: boolean; mode?: number | undefined }): number {
  if (e.mode !== undefined) return e.mode & PERM_MASK;
  return e.exec ? 0o755 : 0o644;
}

/** `e` with permission bits `mode` (and the `exec` bit that agrees with them). */
export function withPerms<T extends { exec: boolean; mode?: number }>(e: T, mode: number): T {
  const m = mode & PERM_MASK;
  return { ...e, mode: m, exec: (m & 0o100) !== 0 };
}

/** Whether two files carry the same metadata (modification time and permission bits). */
export function sameMeta(
  a: { mtime: number; exec: boolean; mode?: number | undefined },
  b: { mtime: number; exec: boolean; mode?: number | undefined },
): boolean {
  return a.mtime === b.mtime && perms(a) === perms(b);
}
