/**
 * When a file may be taken: a file caught while a program writes it must not be uploaded half
 * written (other devices would get a torn or empty copy, and the server would keep chunks nobody
 * uses). Pure rules over two stats of the file, table-tested:
 *
 * - **Before reading**: a file changed less than {@link QUIET_MS} ago is looked at again once it
 *   is that old (the watcher's debounce means a file saved in one go is already that old); a
 *   file just emptied (it had content in the merge base, it is empty now, and it changed less
 *   than {@link EMPTIED_SETTLE_MS} ago) is most likely being rewritten (`> file` truncates first,
 *   then writes); a file already seen being written is taken only once it has not changed for
 *   {@link SETTLE_MS}. None of them is read now.
 * - **After reading**: a file whose size, modification time or inode changed while it was read
 *   (or whose content was not the size its stat said) is unstable.
 *
 * A new small file saved in one go is stable at once, so it still syncs within the watcher's
 * debounce.
 *
 * @example
 * ```ts
 * beforeRead({ size: 0, mtime: 1000 }, 4096, false, 1200); // unstable until 2000
 * afterRead({ size: 5, mtime: 1 }, { size: 5, mtime: 1 }, 5, 10); // stable
 * ```
 *
 * @module
 */

/**
 * A file seen changing is taken only once it has not changed for this long: long enough for a
 * program that truncates a file and then writes it to have written (a shell's
 * `( sleep 0.3; cat x ) > f`, an editor's save), short enough that a saved file still syncs
 * within about a second.
 */
export const SETTLE_MS = 1000;

/**
 * A file just emptied is taken as empty only after this long: a program that truncates a file,
 * computes, then writes it (measured in the tests: 0.3 s and 1.5 s between the two) must not make
 * every other device's copy empty meanwhile. Only emptied files wait this long.
 */
export const EMPTIED_SETTLE_MS = 3000;

/** A file is read only once its last change is at least this old (the watcher's debounce). */
export const QUIET_MS = 50;

/** The parts of a stat the rules compare. */
export interface StatSample {
  size: number;
  /** Modification time, ms since the epoch. */
  mtime: number;
  ino?: number;
}

/** Whether a file may be taken now, or why not and when to look again. */
export type Stability =
  | { stable: true }
  /** `writing`: seen being written (it must then be still for a settle time before it is taken). */
  | { stable: false; reason: string; retryAt: number; writing: boolean };

function wait(
  s: StatSample,
  now: number,
  settle: number,
  reason: string,
  writing = true,
): Stability {
  // A modification time in the future (a copied file) would hold it forever: wait one settle.
  const at = s.mtime > now ? now + settle : s.mtime + settle;
  return { stable: false, reason, retryAt: Math.max(at, now + 1), writing };
}

/**
 * Before the content is read: `baseSize` is the size in the merge base (undefined: not there),
 * `recentlyUnstable` whether the file was seen being written lately.
 */
export function beforeRead(
  s: StatSample,
  baseSize: number | undefined,
  recentlyUnstable: boolean,
  now: number,
  settle = SETTLE_MS,
): Stability {
  const age = now - s.mtime;
  // A modification time in the future says nothing about a write in progress (another
  // machine's clock, `touch -d`): only a recent past one does.
  if (age < 0) return { stable: true };
  if (s.size === 0 && baseSize !== undefined && baseSize > 0 && age < EMPTIED_SETTLE_MS) {
    return wait(s, now, EMPTIED_SETTLE_MS, "it was just emptied; waiting for it to be written");
  }
  if (age >= settle) return { stable: true };
  if (recentlyUnstable) return wait(s, now, settle, "it is being written");
  if (age < QUIET_MS) return wait(s, now, QUIET_MS, "it changed a moment ago", false);
  return { stable: true };
}

/**
 * After the content was read: `before` is the stat the read started from, `after` a stat taken
 * right after (null: the file is gone), `readSize` how many bytes the read found.
 */
export function afterRead(
  before: StatSample,
  after: StatSample | null,
  readSize: number,
  now: number,
  settle = SETTLE_MS,
): Stability {
  const same = after !== null && after.size === before.size && after.mtime === before.mtime &&
    (after.ino === undefined || before.ino === undefined || after.ino === before.ino) &&
    readSize === before.size;
  if (same) return { stable: true };
  return wait(after ?? before, now, settle, "it changed while it was read");
}
