/**
 * Wire-path rules. A wire path is how a file or directory is named between client and server:
 * relative, `/`-separated, NFC-normalized, no `.`/`..`/empty segments, no control characters,
 * within the byte limits, no ignorable code points, and never inside a client's private
 * `.cloudsync` folder (at any depth, under any of its aliases). The server
 * rejects anything {@link checkWirePath} rejects; clients convert local paths with
 * {@link toWirePath} and skip (with a warning) names they cannot represent.
 *
 * @module
 */

/** Longest single name (path segment), in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;
/** Longest whole path, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 4096;
/** The client's private folder at the root of a sync folder; never synced, any letter case. */
export const PRIVATE_DIR = ".cloudsync";

const encoder = new TextEncoder();

/** Length of `s` in UTF-8 bytes. */
export function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

// C0 controls and DEL.
// deno-lint-ignore no-control-regex
const CONTROL_RE = /[\x00-\x1f\x7f]/;

/**
 * Default-ignorable code points (zero-width spaces, joiners, bidi marks, soft hyphen...): HFS+
 * ignores many of them in names, so `.cloud\u200bsync` there is `.cloudsync`.
 */
const IGNORABLE_RE = /\p{Default_Ignorable_Code_Point}/gu;
/**
 * The ignorable code points a name may hold: the joiners (emoji sequences, Indic and Persian
 * scripts) and the variation selectors (emoji presentation). Every other one is refused.
 */
const ALLOWED_IGNORABLE_RE = /^[\u200c\u200d\ufe00-\ufe0f\u{e0100}-\u{e01ef}]$/u;

/** The first default-ignorable code point of `s` that names may not hold, or null. */
function refusedIgnorable(s: string): string | null {
  for (const m of s.matchAll(IGNORABLE_RE)) {
    if (!ALLOWED_IGNORABLE_RE.test(m[0])) return m[0];
  }
  return null;
}

/** The Windows 8.3 short name of `.cloudsync` and its siblings (`CLOUDS~1`, `CLOUDS~2`...). */
const SHORT_PRIVATE_RE = /^CLOUDS~\d+$/i;

/**
 * Whether `name` is, or is an alias of, the private folder on some file system: any letter case
 * (both case mappings: "ſ" upper-cases to "S"), with ignorable code points removed (HFS+), with
 * trailing dots and spaces removed (Windows), or its 8.3 short name (`CLOUDS~1`).
 */
export function isPrivateName(name: string): boolean {
  if (SHORT_PRIVATE_RE.test(name)) return true;
  const n = name.replace(IGNORABLE_RE, "").replace(/[. ]+$/, "");
  return n.toLowerCase() === PRIVATE_DIR || n.toUpperCase() === PRIVATE_DIR.toUpperCase();
}

/**
 * Checks a wire path. Returns null if it is valid, else an error message of the form
 * `Cannot use path "...": <reason>`.
 */
export function checkWirePath(p: string): string | null {
  if (typeof p !== "string") return "Cannot use path: it is not a string";
  const shown = JSON.stringify(p.length > 120 ? p.slice(0, 120) + "..." : p);
  const bad = (why: string) => `Cannot use path ${shown}: ${why}`;
  if (p === "") return "Cannot use path: it is empty";
  if (CONTROL_RE.test(p)) return bad("it contains a control character");
  if (!p.isWellFormed()) return bad("it contains an unpaired surrogate");
  // "c:x" is an ordinary name on Linux; Windows devices skip it (isWindowsUnsafeName).
  if (p.startsWith("/") || p.startsWith("\\")) return bad("it is absolute");
  if (p.includes("\\")) return bad("it contains a backslash");
  if (utf8Length(p) > MAX_PATH_BYTES) return bad(`it is longer than ${MAX_PATH_BYTES} bytes`);
  if (p.normalize("NFC") !== p) return bad("it is not NFC-normalized");
  const ignorable = refusedIgnorable(p);
  if (ignorable !== null) {
    const code = ignorable.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    return bad(`it contains the invisible, ignorable character U+${code}`);
  }
  const segments = p.split("/");
  for (const seg of segments) {
    if (seg === "") return bad("it has an empty segment");
    if (seg === "." || seg === "..") return bad(`it has a "${seg}" segment`);
    if (utf8Length(seg) > MAX_NAME_BYTES) {
      return bad(`it has a name longer than ${MAX_NAME_BYTES} bytes`);
    }
  }
  // Never at any depth: a sync folder nested in another must not leak its state (and token).
  if (segments.some(isPrivateName)) return bad(`it is inside a private ${PRIVATE_DIR} folder`);
  return null;
}

/**
 * Converts a path relative to the sync root, as the local OS spells it, to a wire path: splits on
 * `sep` (and also on `/` when `sep` is `\`), drops empty and `.` segments, joins with `/`, and
 * NFC-normalizes. The result is not validated: pass it to {@link checkWirePath}.
 */
export function toWirePath(localRelative: string, sep: string): string {
  const parts = sep === "\\" ? localRelative.split(/[\\/]/) : localRelative.split(sep);
  return parts.filter((s) => s !== "" && s !== ".").join("/").normalize("NFC");
}

/**
 * Reserved device names on Windows, with or without an extension (spaces before it are ignored):
 * CON, PRN, AUX, NUL, COM0-COM9, LPT0-LPT9 (and the superscript digits ¹²³), CONIN$, CONOUT$,
 * CLOCK$.
 */
export const WINDOWS_RESERVED_RE =
  /^(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³]|CONIN\$|CONOUT\$|CLOCK\$) *(\..*)?$/i;

/**
 * Reports whether `name` (one path segment) cannot be created on Windows: it contains one of
 * `< > : " | ? * \` or a control character, ends in a dot or a space, or is a reserved device name
 * (CON, PRN, AUX, NUL, COM0-9, LPT0-9, CONIN$, CONOUT$, CLOCK$), with or without an extension, in
 * any letter case.
 */
export function isWindowsUnsafeName(name: string): boolean {
  if (name === "") return true;
  // deno-lint-ignore no-control-regex
  if (/[<>:"|?*\\\x00-\x1f]/.test(name)) return true;
  if (name.endsWith(".") || name.endsWith(" ")) return true;
  return WINDOWS_RESERVED_RE.test(name);
}

/** The ancestors of a wire path, outermost first: `a/b/c` gives `["a", "a/b"]`. */
export function parentPaths(p: string): string[] {
  const out: string[] = [];
  let i = p.indexOf("/");
  while (i !== -1) {
    out.push(p.slice(0, i));
    i = p.indexOf("/", i + 1);
  }
  return out;
}

/**
 * Reports whether wire path `p` is strictly inside directory `dir` (`a/b` is under `a`; `a` is not
 * under itself; `ab` is not under `a`). Every non-empty path is under the root `""`. Comparison is
 * exact (case-sensitive); use `p === dir || isUnder(p, dir)` to include the directory itself.
 */
export function isUnder(p: string, dir: string): boolean {
  if (dir === "") return p !== "";
  return p.length > dir.length + 1 && p.startsWith(dir) && p.charCodeAt(dir.length) === 0x2f;
}
