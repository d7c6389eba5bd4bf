/**
 * Taking possession of the sync folder at start, before anything is registered, sent or opened:
 *
 * 1. FOLDER must be a folder, or a path where one can be created: a regular file, or a path under
 *    one, is refused in words.
 * 2. It must not lie inside another enrolled folder (the parents are walked up looking for
 *    `.cloudsync/config.json`), nor contain one (the tree is walked down, never through symlinks):
 *    the outer account would sync the inner folder's files, and its credential.
 * 3. One client per folder: the lock of `folder_lock.ts`, taken before `state.db` is opened.
 * 4. The folder and its `.cloudsync/` must be writable, proven by writing: a registration must
 *    never leave an account behind that no folder can use.
 *
 * What a first start created (the folder, `.cloudsync/`) is removed again if it then fails
 * ({@link FolderPossession.undo}), so a refused serial code leaves nothing behind.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { STATE_DIR, stateDir } from "./config.ts";
import { type FolderLock, lockFolder } from "./folder_lock.ts";

/** FOLDER cannot be used; the message says why and what to do (one line). */
export class FolderSetupError extends Error {
  /** Creates the error with its user-facing message. */
  constructor(message: string) {
    super(message);
    this.name = "FolderSetupError";
  }
}

/** A filesystem error in words, without the OS error number and the repeated path. */
export function describeFsError(e: unknown): string {
  const msg = (e as Error)?.message ?? String(e);
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.NotADirectory) return "a part of the path is a file, not a folder";
  if (/read-only file system|os error 30\b/i.test(msg)) return "the filesystem is read-only";
  if (/no space left|os error 28\b/i.test(msg)) return "the disk is full";
  return msg.replace(/\s*\(os error \d+\).*$/, "");
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Checks that `root` is a folder or can become one; returns whether it exists. Throws
 * {@link FolderSetupError} for a file, a path under a file, or a path that cannot be read.
 */
export function checkFolderPath(root: string): boolean {
  let info: Deno.FileInfo | null;
  try {
    info = statOrNull(root);
  } catch (e) {
    if (e instanceof Deno.errors.NotADirectory) {
      // Some parent is a file: name it.
      for (let p = dirname(root); p !== dirname(p); p = dirname(p)) {
        let st: Deno.FileInfo | null = null;
        try {
          st = statOrNull(p);
        } catch { /* keep looking up */ }
        if (st && !st.isDirectory) {
          throw new FolderSetupError(
            `Cannot start: ${root} cannot be created, because ${p} is a file, not a folder; give the path of a folder to sync`,
          );
        }
      }
    }
    throw new FolderSetupError(`Cannot start: cannot read ${root} (${describeFsError(e)})`);
  }
  if (info && !info.isDirectory) {
    throw new FolderSetupError(
      `Cannot start: ${root} is a file, not a folder; give the path of a folder to sync (it is created if missing)`,
    );
  }
  return info !== null;
}

function isEnrolled(folder: string): boolean {
  try {
    return Deno.statSync(join(folder, STATE_DIR, "config.json")).isFile;
  } catch {
    return false;
  }
}

/** The nearest parent folder of `root` that is itself an enrolled sync folder, or null. */
export function enrolledParent(root: string): string | null {
  for (let p = dirname(root); p !== root; root = p, p = dirname(p)) {
    if (isEnrolled(p)) return p;
  }
  return null;
}

/** Deepest folder level {@link enrolledInside} looks at (paths are limited to 4096 bytes anyway). */
export const MAX_WALK_DEPTH = 256;

/**
 * An enrolled sync folder somewhere inside `root` (not `root` itself), or null. Walks the tree
 * once, reading directory entries only (no stat per file), never through symlinks (or junctions),
 * and skipping what it cannot read; `.cloudsync` folders are not entered.
 */
export function enrolledInside(root: string, maxDepth = MAX_WALK_DEPTH): string | null {
  const stack: [string, number][] = [[root, 0]];
  while (stack.length > 0) {
    const [dir, depth] = stack.pop()!;
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(dir);
    } catch {
      continue; // unreadable or gone: the scan reports it
    }
    try {
      for (const e of entries) {
        if (!e.isDirectory || e.isSymlink) continue;
        const path = join(dir, e.name);
        if (e.name === STATE_DIR) {
          if (depth > 0 && isEnrolled(dir)) return dir;
        } else if (depth + 1 < maxDepth) stack.push([path, depth + 1]);
      }
    } catch {
      continue; // the folder vanished while being read
    }
  }
  return null;
}

/** A folder this process may sync: checked, locked, writable. */
export interface FolderPossession {
  /** This start created the folder. */
  readonly createdFolder: boolean;
  /** The folder's lock, held until {@link release}. */
  readonly lock: FolderLock;
  /** Releases the lock. */
  release(): void;
  /**
   * Removes what this start created (its `.cloudsync/`, the folder if it is empty then) and
   * releases the lock: for a first start that failed before enrolling.
   */
  undo(): void;
}

function cannotWrite(root: string, e: unknown): FolderSetupError {
  return new FolderSetupError(
    `Cannot start: cannot write in ${root} (${
      describeFsError(e)
    }); make the folder writable for this user, or choose another (nothing was registered)`,
  );
}

/**
 * Runs the checks of this module in order and takes the folder: parents first, then creates the
 * folder and `.cloudsync/` if needed, takes the lock (a second client stops here, having touched
 * nothing), walks the tree for enrolled folders inside, creates `.cloudsync/tmp/`, and, if
 * `probe` (not enrolled yet), proves the folder itself writable. Throws {@link FolderSetupError},
 * or `FolderInUseError` from `folder_lock.ts`.
 */
export function takeFolder(
  root: string,
  opts: { probe: boolean; log?: (line: string) => void },
): FolderPossession {
  const exists = checkFolderPath(root);
  const outer = enrolledParent(root);
  if (outer) {
    throw new FolderSetupError(
      `Cannot start: ${root} is inside ${outer}, which is already synced (it has ${
        join(outer, STATE_DIR)
      }); sync ${outer} as a whole, or move this folder out of it`,
    );
  }
  const dir = stateDir(root);
  const dirInfo = exists ? statOrNull(dir) : null;
  if (dirInfo && !dirInfo.isDirectory) {
    throw new FolderSetupError(
      `Cannot start: ${dir} is a file, not the client's folder; move it away (nothing was registered)`,
    );
  }
  /** Folders this start created, the deepest first (FOLDER and any missing parents). */
  const created: string[] = [];
  let createdDir = false;
  let lock: FolderLock | null = null;
  const undo = () => {
    // Removed while still locked, so nobody else can be inside; Windows cannot delete an open
    // file, so there the lock goes first.
    if (Deno.build.os === "windows") lock?.release();
    if (createdDir) {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* leave it */ }
    }
    lock?.release();
    for (const p of created) {
      try {
        Deno.removeSync(p); // only if empty
      } catch {
        break; // something else appeared: leave it, and its parents
      }
    }
  };
  try {
    if (!exists) {
      for (let p = root; statOrNull(p) === null && p !== dirname(p); p = dirname(p)) {
        created.push(p);
      }
      Deno.mkdirSync(root, { recursive: true });
    }
    if (!dirInfo) {
      Deno.mkdirSync(dir);
      createdDir = true;
    }
  } catch (e) {
    undo();
    throw cannotWrite(root, e);
  }
  try {
    lock = lockFolder(root);
  } catch (e) {
    undo();
    if (e instanceof Error && e.name === "FolderInUseError") throw e;
    throw cannotWrite(root, e);
  }
  try {
    const inner = exists ? enrolledInside(root) : null;
    if (inner) {
      throw new FolderSetupError(
        `Cannot start: ${root} contains ${inner}, which is synced on its own (it has ${
          join(inner, STATE_DIR)
        }); sync only one of them: choose another folder, or stop that folder's client and delete its ${STATE_DIR}`,
      );
    }
    try {
      Deno.mkdirSync(join(dir, "tmp"), { recursive: true });
      // Creating .cloudsync/ just now proved the folder writable; one that was there already
      // did not (a crash in the microseconds between write and remove would leave the probe to
      // be synced, so it is only made when needed).
      if (opts.probe && dirInfo) {
        const probe = join(root, `.cloudsync-probe-${Deno.pid}`);
        Deno.writeTextFileSync(probe, "");
        Deno.removeSync(probe);
      }
    } catch (e) {
      throw cannotWrite(root, e);
    }
  } catch (e) {
    undo();
    throw e;
  }
  if (created.length > 0) opts.log?.(`Created folder ${root}`);
  const held = lock;
  return {
    createdFolder: created.length > 0,
    lock: held,
    release: () => held.release(),
    undo,
  };
}
