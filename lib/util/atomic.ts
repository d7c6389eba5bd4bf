/**
 * Atomic file writes: write a temporary file, fsync it, rename it over the target, fsync the
 * directory. A crash at any moment leaves either the old file or the new one, never a mix.
 *
 * @example
 * ```ts
 * await writeFileAtomic("/data/config.json", new TextEncoder().encode("{}"), "/data/tmp");
 * ```
 *
 * @module
 */

import { dirname, join } from "node:path";

let counter = 0;

/** A fresh temporary file name (no folder) that no other writer in this process uses. */
export function tempName(hint = "tmp"): string {
  const rand = crypto.getRandomValues(new Uint32Array(2));
  return `.${hint}-${Deno.pid}-${++counter}-${rand[0]!.toString(36)}${rand[1]!.toString(36)}`;
}

/** A fresh temporary name in `dir` that no other writer in this process uses. */
export function tempPath(dir: string, hint = "tmp"): string {
  return join(dir, tempName(hint));
}

/** Flushes a directory entry to disk (no-op where directories cannot be opened, e.g. Windows). */
export async function fsyncDir(dir: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  try {
    const f = await Deno.open(dir, { read: true });
    try {
      await f.sync();
    } finally {
      f.close();
    }
  } catch {
    // Some filesystems refuse fsync on directories; the rename itself is still atomic.
  }
}

/**
 * Writes `data` to `path` atomically. The temporary file lives in `tmpDir` (default: the target's
 * directory), which must be on the same filesystem.
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array,
  tmpDir: string = dirname(path),
): Promise<void> {
  const tmp = tempPath(tmpDir);
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true });
    try {
      let off = 0;
      while (off < data.length) off += await f.write(data.subarray(off));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await fsyncDir(dirname(path));
}

/**
 * Synchronous form of {@link writeFileAtomic}, for small state files written at startup. `mode`:
 * the permissions the temporary file is created with (so a secret is never readable by others,
 * not even before a chmod).
 */
export function writeFileAtomicSync(path: string, data: Uint8Array, mode?: number): void {
  const tmp = tempPath(dirname(path));
  try {
    const f = Deno.openSync(tmp, {
      write: true,
      createNew: true,
      ...(mode !== undefined ? { mode } : {}),
    });
    try {
      let off = 0;
      while (off < data.length) off += f.writeSync(data.subarray(off));
      f.syncSync();
    } finally {
      f.close();
    }
    Deno.renameSync(tmp, path);
  } catch (e) {
    removeTempSync(tmp);
    throw e;
  }
}

/** Removes a temporary file left by a failed or abandoned write; no error if it is not there. */
export function removeTempSync(tmp: string): void {
  try {
    Deno.removeSync(tmp);
  } catch { /* never created, or already gone */ }
}
