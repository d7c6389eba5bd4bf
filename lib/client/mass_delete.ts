/**
 * The mass-delete guard in a running client, and its two one-time ways out:
 *
 * - `cloud-client bring-back FOLDER`: the vanished files come back onto this device from the
 *   server (their merge base is forgotten, so the next pass downloads them as new; nothing is
 *   deleted anywhere);
 * - `cloud-client confirm-delete FOLDER`: the deletion of exactly the files that vanished is
 *   confirmed, once: they are deleted on the server (which keeps their last versions: `restore`
 *   brings them back) and on the other devices.
 *
 * While the guard holds deletions back, the client records what it holds in
 * `.cloudsync/held-deletions.json` (path and base version of each vanished item) and says so once.
 * A command reads that record and leaves its request in `.cloudsync/requests/` (written
 * atomically); the running client (or the next one to start) acts on it in its next full pass,
 * for the items of the request whose base version is still the recorded one and that are still
 * missing, then removes the request. Neither is a setting that stays on: a later mass deletion
 * is held back again. (`--allow-mass-delete` still works for scripts that use it.) The commands
 * take no lock, and work whether or not the client runs.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { writeFileAtomicSync } from "../util/atomic.ts";
import {
  MASS_DELETE_MIN,
  massDeleteCheck,
  splitConfirmed,
  withVanishedKept,
} from "../core/guards.ts";
import { debug } from "../util/debug.ts";
import type { BaseEntry, LocalEntry } from "../core/types.ts";
import { REQUESTS_DIR, STATE_DIR, stateDir } from "./config.ts";
import { isGone, type LocalFs } from "./fs/local_fs.ts";
import { tempName } from "../util/atomic.ts";
import { CommandError, enrolledConfig } from "./folder_session.ts";
import { folderLocked } from "./folder_lock.ts";
import type { StateDb } from "./state_db.ts";

/** What the running client holds back, as it records it. */
export const HELD_FILE = "held-deletions.json";
const REQUEST = { bringBack: "bring-back.json", confirm: "confirm-delete.json" } as const;
type RequestKind = keyof typeof REQUEST;

/** The record of held deletions (and the body of a request). */
interface HeldRecord {
  /** When the guard tripped (ms). */
  since: number;
  files: number;
  total: number;
  /** [path, base version, kind] of every vanished item. */
  items: [string, number, "file" | "dir"][];
}

function heldPath(root: string): string {
  return join(stateDir(root), HELD_FILE);
}

function requestPath(root: string, kind: RequestKind): string {
  return join(stateDir(root), REQUESTS_DIR, REQUEST[kind]);
}

/** The record's path inside the folder (through the folder's {@link LocalFs}). */
const HELD_REL = `${STATE_DIR}/${HELD_FILE}`;
const requestRel = (kind: RequestKind) => `${STATE_DIR}/${REQUESTS_DIR}/${REQUEST[kind]}`;

function parse(text: string): HeldRecord | null {
  const r = JSON.parse(text) as HeldRecord;
  return Array.isArray(r?.items) ? r : null;
}

/** A record or request in the folder (null: none, or unreadable: then it is dropped). */
function readIn(fs: LocalFs, rel: string): HeldRecord | null {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(rel);
  } catch (e) {
    if (isGone(e)) return null;
    throw e;
  }
  try {
    return parse(new TextDecoder().decode(bytes));
  } catch {
    return null; // cut short by a crash: as if there were none
  }
}

/** Writes the record (temporary file, then rename: never half a record under its name). */
function writeIn(fs: LocalFs, rel: string, r: HeldRecord): void {
  const tmp = `${STATE_DIR}/${tempName("held")}`;
  const f = fs.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const data = new TextEncoder().encode(JSON.stringify(r));
    for (let off = 0; off < data.length;) off += f.writeSync(data.subarray(off));
  } finally {
    f.close();
  }
  fs.renameSync(tmp, rel);
}

function removeIn(fs: LocalFs, rel: string): void {
  try {
    fs.removeSync(rel);
  } catch (e) {
    if (!isGone(e)) throw e;
  }
}

function readJson(path: string): HeldRecord | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return parse(text);
}

function writeJson(path: string, r: HeldRecord): void {
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  writeFileAtomicSync(path, new TextEncoder().encode(JSON.stringify(r)));
}

/** What the guard needs of a pass's context. */
export interface GuardContext {
  /** The folder (its `.cloudsync/` holds the record and the requests). */
  fs: LocalFs;
  state: StateDb;
  log: (line: string) => void;
  warn: (line: string) => void;
  /** `--allow-mass-delete`: the guard lets everything through. */
  allowMassDelete?: boolean;
  /** Asks for a full pass about a second from now (a big deletion is still growing). */
  recheckSoon?: () => void;
  /**
   * Set by the guard: whether the last pass held vanished files back and said so (what
   * `cloud-client status` shows as an error until a way out is taken).
   */
  holdingMassDelete?: boolean;
}

/** What was last said per folder (the warning is said once per set held, not every pass). */
const said = new Map<string, string>();
/** How many files the last pass found vanished, per folder, and when that number last grew. */
const lastVanished = new Map<string, { files: number; grewAt: number }>();

/**
 * How long a deletion of more than {@link MASS_DELETE_MIN} files must stop growing before it is
 * judged: longer than a pause between two commands of a user still deleting, or than a loaded
 * machine's gap between two scans of one `rm -r`.
 */
export const MASS_DELETE_QUIET_MS = 3000;

/**
 * The guard for one pass: acts on a bring-back or confirm request (full passes only: a scoped
 * scan sees nothing outside its scopes), then holds back a mass deletion. Returns the base and
 * local views reconcile must use.
 *
 * A deletion of more than {@link MASS_DELETE_MIN} files is judged only once it stopped growing
 * for {@link MASS_DELETE_QUIET_MS} (by the folder's clock): until then every pass holds them all
 * back (silently) and asks for another look a second later. Otherwise a pass that looked while a
 * big `rm -r` was still running would find less than half gone and send those deletions, and so
 * on, each pass below the threshold.
 */
export function massDeleteGuard(
  ctx: GuardContext,
  base: ReadonlyMap<string, BaseEntry>,
  local: ReadonlyMap<string, LocalEntry>,
  fullPass: boolean,
): { base: ReadonlyMap<string, BaseEntry>; local: ReadonlyMap<string, LocalEntry> } {
  const seen = massDeleteCheck(base, local);
  const now = ctx.fs.now();
  const before = lastVanished.get(ctx.fs.where) ?? { files: 0, grewAt: now };
  const grewAt = seen.vanishedFiles > before.files ? now : before.grewAt;
  lastVanished.set(ctx.fs.where, { files: seen.vanishedFiles, grewAt });
  if (
    !ctx.allowMassDelete && seen.vanishedFiles > MASS_DELETE_MIN &&
    now - grewAt < MASS_DELETE_QUIET_MS
  ) {
    debug(() =>
      `mass-delete guard: ${seen.vanishedFiles} files gone (${before.files} before), last more ${
        now - grewAt
      } ms ago: looking again`
    );
    ctx.recheckSoon?.();
    return { base, local: withVanishedKept(base, local, seen.vanished) };
  }
  let confirmed = new Map<string, number>();
  if (fullPass) {
    const bring = readIn(ctx.fs, requestRel("bringBack"));
    if (bring) {
      const forget: [string, null][] = [];
      for (const [path, version] of bring.items) {
        if (base.get(path)?.version === version && !local.has(path)) forget.push([path, null]);
      }
      if (forget.length > 0) {
        ctx.state.setBase(forget);
        const b = new Map(base);
        for (const [p] of forget) b.delete(p);
        base = b;
        ctx.log(
          `Bringing back ${forget.length} vanished items from the server (cloud-client bring-back)`,
        );
      }
      removeIn(ctx.fs, requestRel("bringBack"));
    }
    const confirm = readIn(ctx.fs, requestRel("confirm"));
    if (confirm) {
      confirmed = new Map(confirm.items.map(([p, v]) => [p, v]));
      removeIn(ctx.fs, requestRel("confirm"));
    }
  }
  const check = massDeleteCheck(base, local);
  if (!check.tripped || ctx.allowMassDelete) {
    ctx.holdingMassDelete = false;
    if (fullPass) {
      removeIn(ctx.fs, HELD_REL);
      said.delete(ctx.fs.where);
    }
    return { base, local };
  }
  const { release, hold } = splitConfirmed(check, base, confirmed);
  if (release.length > 0) {
    ctx.log(
      `Deleting ${release.length} vanished items on the server and the other devices, as confirmed (cloud-client confirm-delete)`,
    );
  }
  if (hold.length === 0) {
    ctx.holdingMassDelete = false;
    removeIn(ctx.fs, HELD_REL);
    said.delete(ctx.fs.where);
    return { base, local };
  }
  const heldFiles = hold.filter((p) => base.get(p)?.kind === "file").length;
  const key = `${heldFiles}:${hold.length}:${hold[0]}:${hold[hold.length - 1]}`;
  if (said.get(ctx.fs.where) !== key) {
    said.set(ctx.fs.where, key);
    writeIn(ctx.fs, HELD_REL, {
      since: Date.now(),
      files: heldFiles,
      total: check.total,
      items: hold.map((p) => {
        const b = base.get(p)!;
        return [p, b.version, b.kind];
      }),
    });
    const folder = JSON.stringify(ctx.fs.where);
    ctx.warn(
      `Cannot propagate deletions: ${heldFiles} of ${check.total} synced files vanished at once (an unmounted drive or emptied folder?). Nothing is deleted on the server or other devices. To get them back here from the server, run: cloud-client bring-back ${folder}. If you deleted them on purpose, confirm it once with: cloud-client confirm-delete ${folder}`,
    );
  }
  ctx.holdingMassDelete = true;
  return { base, local: withVanishedKept(base, local, hold) };
}

/** Options of the two commands. */
export interface GuardCommandOptions {
  folder: string;
  out: (line: string) => void;
}

function heldOrFail(root: string, what: string): HeldRecord {
  enrolledConfig(root, what);
  const held = readJson(heldPath(root));
  if (!held || held.items.length === 0) {
    throw new CommandError(
      `Cannot ${what}: no deletions are held back in ${root} (the client holds them back when more than half of the synced files, and more than 100, vanish at once, and says so)`,
    );
  }
  return held;
}

function when(root: string): string {
  return folderLocked(root)
    ? "The running client does it now"
    : `cloud-client does it when it next starts on ${root}`;
}

/** `cloud-client bring-back FOLDER`. */
export function runBringBack(o: GuardCommandOptions): number {
  const root = resolve(o.folder);
  const held = heldOrFail(root, "bring back vanished files");
  writeJson(requestPath(root, "bringBack"), held);
  o.out(
    `Bringing back ${held.files} vanished files (and their folders) onto this device from the server; nothing is deleted anywhere. ${
      when(root)
    }.`,
  );
  return 0;
}

/** `cloud-client confirm-delete FOLDER`: only the held items still missing are confirmed. */
export function runConfirmDelete(o: GuardCommandOptions): number {
  const root = resolve(o.folder);
  const held = heldOrFail(root, "confirm the deletion");
  const gone = held.items.filter(([p]) => {
    try {
      Deno.lstatSync(join(root, p));
      return false;
    } catch {
      return true;
    }
  });
  if (gone.length === 0) {
    throw new CommandError(
      `Cannot confirm the deletion: every held file is back in ${root}; nothing to delete`,
    );
  }
  const files = gone.filter(([, , k]) => k === "file").length;
  writeJson(requestPath(root, "confirm"), { ...held, files, items: gone });
  o.out(
    `Confirmed, once: ${files} vanished files (and their folders) will be deleted on the server and the other devices. The server keeps their last versions (\`cloud-client history ${
      JSON.stringify(root)
    } --deleted\`; \`cloud-client restore\` brings them back). ${when(root)}.`,
  );
  return 0;
}
