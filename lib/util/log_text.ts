/**
 * Untrusted text (device names, paths, error messages that quote a peer) on its way into a log
 * line or a terminal: {@link unsafeTextProblem} says why a string must be refused (control and
 * bidirectional-override characters can forge log lines or reorder what an admin reads), and
 * {@link escapeForLog} shows any string on one line, every such character escaped as `\uXXXX`.
 *
 * @example
 * ```ts
 * escapeForLog("evil\n2026-01-01 Revoked device"); // "evil\\u000a2026-01-01 Revoked device"
 * unsafeTextProblem("laptop"); // null
 * ```
 *
 * @module
 */

/**
 * C0 and C1 controls, DEL, the line and paragraph separators, and the bidirectional marks,
 * embeddings, overrides and isolates (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069).
 */
// deno-lint-ignore no-control-regex
const UNSAFE_RE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const UNSAFE_GLOBAL = new RegExp(UNSAFE_RE.source, "g");

/** Why `s` cannot be accepted as a name shown to people, or null if it can. */
export function unsafeTextProblem(s: string): string | null {
  if (!s.isWellFormed()) return "it contains an unpaired surrogate";
  const m = UNSAFE_RE.exec(s);
  if (!m) return null;
  const code = m[0].codePointAt(0)!.toString(16).padStart(4, "0");
  return `it contains the control or bidirectional character U+${code.toUpperCase()}`;
}

/** `s` on one line for a log: unsafe characters as `\uXXXX`, at most `max` characters shown. */
export function escapeForLog(s: string, max = 200): string {
  const cut = s.length > max ? s.slice(0, max) + "…" : s;
  return cut.toWellFormed().replace(
    UNSAFE_GLOBAL,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
