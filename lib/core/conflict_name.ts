/**
 * Names for conflict copies. When both sides changed a file, the loser is kept next to it as
 * `NAME (conflict from DEVICE YYYY-MM-DD HHMMSS).EXT` (UTC); when two names differ only in letter
 * case on a case-insensitive file system, one becomes `NAME (case conflict).EXT`. If a name is
 * taken, a counter goes inside the parentheses: `(conflict from X 2026-01-02 030405 2)`, ` 3`, ...
 * Names are deterministic given their inputs, NFC-normalized, and kept within
 * {@link MAX_NAME_BYTES} by shortening NAME. Inside a git repository's `.git` folder, conflict
 * copies go to `.git/cloudsync-conflicts/` (see {@link gitSafePlace}), where git never looks.
 *
 * @module
 */

import { MAX_NAME_BYTES, utf8Length } from "./paths.ts";

/** Longest device name used in a conflict name, in characters (code points). */
export const MAX_DEVICE_CHARS = 40;
/** How many counters to try before giving up. */
const MAX_ATTEMPTS = 100_000;

/**
 * Cleans a device name for use inside a file name: replaces `/`, `\`, control characters and the
 * characters Windows forbids (`< > : " | ? *`) with `_`, trims, and keeps the first
 * {@link MAX_DEVICE_CHARS} code points. An empty result becomes `unknown`.
 */
export function sanitizeDeviceName(device: string): string {
  // deno-lint-ignore no-control-regex
  const cleaned = device.normalize("NFC").replace(/[/\\<>:"|?*\x00-\x1f\x7f-\x9f]/g, "_").trim();
  const short = Array.from(cleaned).slice(0, MAX_DEVICE_CHARS).join("").trim();
  return short === "" ? "unknown" : short;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** `YYYY-MM-DD HHMMSS` in UTC. */
function formatUtc(when: Date): string {
  const t = when.getTime();
  if (!Number.isFinite(t)) throw new Error("Cannot name conflict copy: the date is invalid");
  return `${pad(when.getUTCFullYear(), 4)}-${pad(when.getUTCMonth() + 1, 2)}-${
    pad(when.getUTCDate(), 2)
  } ${pad(when.getUTCHours(), 2)}${pad(when.getUTCMinutes(), 2)}${pad(when.getUTCSeconds(), 2)}`;
}

/**
 * Splits `dir/base` into the directory prefix (with its trailing `/`, or ""), the name and the
 * extension (with its dot, or ""). The extension starts at the last dot of the base name, not
 * counting leading dots, and is never just "." (`.bashrc` and `name.` have none).
 */
function splitPath(path: string): { dir: string; name: string; ext: string } {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash + 1);
  const base = path.slice(slash + 1);
  const lead = base.length - base.replace(/^\.+/, "").length;
  const dot = base.lastIndexOf(".");
  if (dot >= lead && dot < base.length - 1) {
    return { dir, name: base.slice(0, dot), ext: base.slice(dot) };
  }
  return { dir, name: base, ext: "" };
}

/** Shortens `name` (by whole code points) so that `name + rest` fits in MAX_NAME_BYTES. */
function fit(name: string, rest: string): string {
  const budget = MAX_NAME_BYTES - utf8Length(rest);
  if (utf8Length(name) <= budget) return name;
  let out = "";
  let used = 0;
  for (const ch of name) {
    const n = utf8Length(ch);
    if (used + n > budget) break;
    out += ch;
    used += n;
  }
  return out;
}

function pick(
  path: string,
  label: string,
  taken: (candidate: string) => boolean,
): string {
  let { dir, name, ext } = splitPath(path.normalize("NFC"));
  // A huge extension would leave no room for the name: treat it as part of the name.
  if (utf8Length(ext) + utf8Length(` (${label} ${MAX_ATTEMPTS})`) >= MAX_NAME_BYTES - 8) {
    name += ext;
    ext = "";
  }
  for (let n = 1; n <= MAX_ATTEMPTS; n++) {
    const suffix = n === 1 ? ` (${label})${ext}` : ` (${label} ${n})${ext}`;
    const candidate = `${dir}${fit(name, suffix)}${suffix}`;
    if (!taken(candidate)) return candidate;
  }
  throw new Error(`Cannot name conflict copy: ${MAX_ATTEMPTS} names for "${path}" are all taken`);
}

/**
 * Returns the path for the conflict copy of `path` made by `device` at `when` (UTC):
 * `dir/NAME (conflict from DEVICE YYYY-MM-DD HHMMSS).EXT`, the first one for which `taken` returns
 * false, trying ` 2`, ` 3`, ... inside the parentheses.
 */
export function conflictName(
  path: string,
  device: string,
  when: Date,
  taken: (candidate: string) => boolean,
): string {
  const label = `conflict from ${sanitizeDeviceName(device)} ${formatUtc(when)}`;
  return pick(gitSafePlace(path), label, taken);
}

/** Where conflict copies of a git repository's internal files go, inside its `.git` folder. */
export const GIT_CONFLICTS_DIR = "cloudsync-conflicts";

/**
 * Where a conflict copy of `path` may go. Inside a `.git` folder a copy beside the original
 * breaks git (`refs/heads/main (conflict ...)` is a malformed ref, `git fsck` fails), so copies of
 * anything under `X/.git/` go to `X/.git/cloudsync-conflicts/` + the rest of the path, a folder
 * git does not look into. Elsewhere: `path` itself.
 */
export function gitSafePlace(path: string): string {
  const segs = path.split("/");
  const i = segs.indexOf(".git");
  if (i < 0 || i >= segs.length - 1 || segs[i + 1] === GIT_CONFLICTS_DIR) return path;
  return [...segs.slice(0, i + 1), GIT_CONFLICTS_DIR, ...segs.slice(i + 1)].join("/");
}

/**
 * Returns the path for a copy of `path` that clashes with another name differing only in letter
 * case: `dir/NAME (case conflict).EXT`, with the same counter rule as {@link conflictName}.
 */
export function caseConflictName(path: string, taken: (candidate: string) => boolean): string {
  return pick(path, "case conflict", taken);
}

/**
 * Returns the local name for a file that arrives where an item that does not sync (a symlink, a
 * special file) already holds its name: `dir/NAME (blocked here by a symlink).EXT`, with the same
 * counter rule as {@link conflictName}. `what` names the blocker ("symlink", "special file").
 */
export function blockedName(
  path: string,
  what: string,
  taken: (candidate: string) => boolean,
): string {
  return pick(path, `blocked here by a ${what}`, taken);
}

/** The label of a conflict copy's name, as {@link conflictName} and {@link caseConflictName} make it. */
const CONFLICT_LABEL_RE =
  / \((?:conflict from .+ \d{4}-\d\d-\d\d \d{6}|case conflict)(?: \d+)?\)(?:\.[^./]*)?$/u;

/**
 * Whether the name of `path` is that of a conflict copy (`NAME (conflict from DEVICE
 * YYYY-MM-DD HHMMSS).EXT`, `NAME (case conflict).EXT`, with or without a counter): what
 * `cloud-client status` lists as conflict copies present in the folder.
 */
export function isConflictCopy(path: string): boolean {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.includes("conflict") && CONFLICT_LABEL_RE.test(base);
}
