/**
 * What became of each planned step of a pass, and the pass's summary as a pure function of those
 * outcomes: the line a user reads counts exactly what happened, never a guess corrected later.
 *
 * @example
 * ```ts
 * const t = tally([{ path: "a.txt", kind: "sent" }, { path: "b", kind: "failed", reason: "denied" }]);
 * t.sent; // 1
 * summaryLine(t, { up: 20, down: 0 }, 300); // "Partly synced: 1 sent, 1 failed (b: denied) (20 B up, ...)"
 * ```
 *
 * @module
 */

import { formatBytes } from "../util/cli.ts";
import { escapeForLog } from "../util/log_text.ts";

/** The kinds of outcome of one step. */
export type OutcomeKind =
  /** A file's content reached the server. */
  | "sent"
  /** Only a file's metadata (modification time, permissions) reached the server. */
  | "sentMeta"
  /** A file's content arrived here. */
  | "received"
  /** Only a file's metadata changed here. */
  | "receivedMeta"
  /** A file another device moved was moved here (no content transferred). */
  | "movedHere"
  /** A file moved here reached the server as a move. */
  | "movedThere"
  | "deletedHere"
  | "deletedThere"
  /** A directory was created here or on the server (not counted in the summary). */
  | "dir"
  /** A local version was kept aside as a conflict copy (`path` is the copy). */
  | "conflict"
  /** The disk changed under the step: it waits for the next look. */
  | "deferred"
  /** The server had a newer version: the path is merged again at once. */
  | "refused"
  /** The step failed (`reason` says why); retried with back-off. */
  | "failed";

/** One step's outcome. */
export interface Outcome {
  /** The wire path concerned (for `conflict`, the copy's path). */
  path: string;
  kind: OutcomeKind;
  reason?: string;
  /** For `movedThere` and `movedHere`: where the file was before. */
  from?: string;
}

/** Counts of a pass (or of several), with the paths a user may want named. */
export interface Tally {
  sent: number;
  sentMeta: number;
  received: number;
  receivedMeta: number;
  movedHere: number;
  movedThere: number;
  deletedHere: number;
  deletedThere: number;
  conflicts: number;
  deferred: number;
  refused: number;
  failed: number;
  /** Folders created here or on the server (not in the summary line). */
  dirs: number;
  /** Failed paths with their reasons, in order. */
  failures: { path: string; reason: string }[];
  /** Conflict copies made, in order. */
  conflictCopies: string[];
  /** Up to a few paths per kind, for the summary line. */
  names: Partial<Record<OutcomeKind, string[]>>;
}

/** How many names per kind a tally keeps. */
const NAMES_KEPT = 3;

/** An empty tally. */
export function emptyTally(): Tally {
  return {
    sent: 0,
    sentMeta: 0,
    received: 0,
    receivedMeta: 0,
    movedHere: 0,
    movedThere: 0,
    deletedHere: 0,
    deletedThere: 0,
    conflicts: 0,
    deferred: 0,
    refused: 0,
    failed: 0,
    dirs: 0,
    failures: [],
    conflictCopies: [],
    names: {},
  };
}

/** Counts `outcomes` (added to `into` when given). */
export function tally(outcomes: Iterable<Outcome>, into: Tally = emptyTally()): Tally {
  for (const o of outcomes) {
    switch (o.kind) {
      case "dir":
        into.dirs++;
        continue;
      case "conflict":
        into.conflicts++;
        into.conflictCopies.push(o.path);
        break;
      case "failed":
        into.failed++;
        into.failures.push({ path: o.path, reason: o.reason ?? "unknown error" });
        break;
      default:
        into[o.kind]++;
    }
    const names = into.names[o.kind] ??= [];
    if (names.length < NAMES_KEPT) names.push(o.path);
  }
  return into;
}

/** Adds tally `b` into `a`. */
export function addTally(a: Tally, b: Tally): Tally {
  const out = { ...a, failures: [...a.failures], conflictCopies: [...a.conflictCopies] };
  for (
    const k of [
      "sent",
      "sentMeta",
      "received",
      "receivedMeta",
      "movedHere",
      "movedThere",
      "deletedHere",
      "deletedThere",
      "conflicts",
      "deferred",
      "refused",
      "failed",
      "dirs",
    ] as const
  ) out[k] += b[k];
  out.failures.push(...b.failures);
  out.conflictCopies.push(...b.conflictCopies);
  const names: Partial<Record<OutcomeKind, string[]>> = {};
  for (const [k, v] of Object.entries(a.names)) names[k as OutcomeKind] = [...v];
  for (const [k, v] of Object.entries(b.names)) {
    const list = names[k as OutcomeKind] ??= [];
    for (const p of v) if (list.length < NAMES_KEPT) list.push(p);
  }
  out.names = names;
  return out;
}

/** True when the pass moved something (content, metadata, a move, a deletion, a copy, a folder). */
export function madeProgress(t: Tally): boolean {
  return t.sent + t.sentMeta + t.received + t.receivedMeta + t.movedHere + t.movedThere +
      t.deletedHere + t.deletedThere + t.conflicts + t.dirs > 0;
}

/** A path as a log line shows it: one line, control and bidirectional characters escaped. */
export function shownPath(path: string): string {
  return escapeForLog(path, 1000);
}

/** The part of a summary for one kind: `3 sent (a.txt, b.txt, c.txt)`, `12 sent (a.txt, ...)`. */
function part(n: number, words: string, names: string[] | undefined, named: boolean): string {
  if (!named || !names || names.length === 0) return `${n} ${words}`;
  const more = n > names.length ? ", ..." : "";
  return `${n} ${words} (${names.map(shownPath).join(", ")}${more})`;
}

/**
 * The one line a pass prints. `Synced: ...` only when nothing failed; `Partly synced: ...` when
 * something failed beside progress; `Not synced: ...` when only failures happened; `Waiting: ...`
 * when bytes moved only for steps that must wait (a file that changed while it was sent); null
 * when there is nothing to tell. New conflict copies are always named; other kinds name up to three
 * files.
 */
export function summaryLine(
  t: Tally,
  bytes: { up: number; down: number },
  ms: number,
): string | null {
  const parts: string[] = [];
  const n = t.names;
  if (t.sent) parts.push(part(t.sent, "sent", n.sent, true));
  if (t.movedThere) parts.push(part(t.movedThere, "moved on server", n.movedThere, true));
  if (t.received) parts.push(part(t.received, "received", n.received, true));
  if (t.movedHere) parts.push(part(t.movedHere, "moved here", n.movedHere, true));
  if (t.deletedHere) parts.push(part(t.deletedHere, "deleted here", n.deletedHere, true));
  if (t.deletedThere) {
    parts.push(part(t.deletedThere, "deleted on server", n.deletedThere, true));
  }
  const meta = t.sentMeta + t.receivedMeta;
  if (meta) {
    parts.push(
      part(meta, "metadata updated", [...(n.sentMeta ?? []), ...(n.receivedMeta ?? [])], true),
    );
  }
  if (t.conflicts) {
    const copies = t.conflictCopies;
    parts.push(
      `${t.conflicts} conflict ${t.conflicts === 1 ? "copy" : "copies"} (${
        copies.map(shownPath).join(", ")
      })`,
    );
  }
  if (t.failed) {
    const first = t.failures[0]!;
    parts.push(`${t.failed} failed (${shownPath(first.path)}: ${escapeForLog(first.reason)})`);
  }
  const progress = parts.length > (t.failed ? 1 : 0);
  // Bytes spent on steps that must wait (a file changed while it was sent) are said too.
  if (t.deferred && bytes.up + bytes.down > 0 && !progress) {
    parts.push(part(t.deferred, "to retry, changed meanwhile", n.deferred, true));
  }
  if (parts.length === 0) return null;
  const head = !progress
    ? (t.failed ? "Not synced" : "Waiting")
    : t.failed
    ? "Partly synced"
    : "Synced";
  return `${head}: ${parts.join(", ")} (${formatBytes(bytes.up)} up, ${
    formatBytes(bytes.down)
  } down, ${(ms / 1000).toFixed(1)} s)`;
}

/**
 * The `-v` line of one outcome (without the time of day, which the caller adds): one line per
 * file sent, received, moved, deleted, set aside as a conflict copy, or failed. Null for steps
 * a user need not follow (folders, steps deferred or refused: they are retried at once).
 *
 * @example
 * ```ts
 * activityLine({ path: "b.txt", kind: "movedThere", from: "a.txt" }); // "moved a.txt -> b.txt (on the server)"
 * ```
 */
export function activityLine(o: Outcome): string | null {
  const p = shownPath(o.path);
  const from = o.from !== undefined ? `${shownPath(o.from)} -> ` : "";
  switch (o.kind) {
    case "sent":
      return `sent ${p}`;
    case "sentMeta":
      return `sent ${p} (modification time or permissions only)`;
    case "received":
      return `received ${p}`;
    case "receivedMeta":
      return `received ${p} (modification time or permissions only)`;
    case "movedThere":
      return `moved ${from}${p} (on the server)`;
    case "movedHere":
      return `moved ${from}${p} (here)`;
    case "deletedHere":
      return `deleted ${p} (here)`;
    case "deletedThere":
      return `deleted ${p} (on the server)`;
    case "conflict":
      return `conflict copy ${p} (both versions are kept)`;
    case "failed":
      return `failed ${p}: ${escapeForLog(o.reason ?? "unknown error")}`;
    case "dir":
    case "deferred":
    case "refused":
      return null;
  }
}
