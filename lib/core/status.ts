/**
 * What `cloud-client status` says about a folder, as pure functions: the record a running client
 * keeps of its folder ({@link StatusRecord}, written to `.cloudsync/status.json`), how a record
 * read back is checked (it is input like any other: {@link parseStatusRecord} bounds and checks
 * every field), and the two ways it is shown: lines for people ({@link statusText}) and one JSON
 * object for scripts ({@link statusJson}).
 *
 * @example
 * ```ts
 * const view = viewOf(parseStatusRecord(text), { running: true, folder: "/home/me/Sync" });
 * statusJson(view).state; // "in-sync"
 * ```
 *
 * @module
 */

import { formatBytes } from "../util/cli.ts";
import { escapeForLog } from "../util/log_text.ts";

/** The states of `status --json`. */
export type SyncState = "in-sync" | "syncing" | "offline" | "stopped" | "error";
const STATES: readonly SyncState[] = ["in-sync", "syncing", "offline", "stopped", "error"];

/** A path with the reason it is listed. */
export interface StatusItem {
  path: string;
  reason: string;
}

/** What is left to move. */
export interface Pending {
  /** Files to send or receive. */
  files: number;
  /** Content bytes left to move. */
  bytes: number;
  /** Of `files`, those to send. */
  uploads: number;
}

/** What a running client keeps about its folder (see the module doc). */
export interface StatusRecord {
  v: 1;
  /** The client's process id. */
  pid: number;
  /** The client's program version. */
  version: string;
  /** The state as the client sees it (`stopped` once it stopped cleanly). */
  state: SyncState;
  /** When that state began (epoch ms). */
  since: number;
  /** `HOST:PORT` of the server. */
  server: string;
  account: string;
  device: string;
  /** When the folder was last in sync (epoch ms), or null if never. */
  lastSync: number | null;
  /**
   * When the last full look at the folder that found it in sync began (epoch ms): `status
   * --wait` wants one that began after it asked.
   */
  checkedAt: number | null;
  pending: Pending;
  /** Why offline or in error, in one line; null otherwise. */
  message: string | null;
  /** The client stopped for good because of `message` (a revoked device, say). */
  fatal: boolean;
  /** Items whose step failed, with the reason (retried with back-off). */
  failed: StatusItem[];
  /** Items that are not synced here (symlinks, names this system cannot hold, unreadable). */
  skipped: StatusItem[];
  /** Conflict copies in the folder. */
  conflicts: string[];
  /** How many more of each list there are than it holds (lists hold {@link MAX_LISTED}). */
  more: { failed: number; skipped: number; conflicts: number };
  /** When the record was written (epoch ms). */
  updatedAt: number;
}

/** Most items kept in each list of a record. */
export const MAX_LISTED = 1000;
/** Most characters of a path in a record (wire paths are at most 4096 bytes). */
const MAX_PATH_CHARS = 4096;
/** Most characters of a reason or message. */
const MAX_TEXT_CHARS = 2000;
/** The largest status file read (records are far smaller; anything bigger is not one). */
export const MAX_STATUS_BYTES = 4 * 1024 * 1024;

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const count = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const time = (v: unknown): v is number => count(v) && v < 8.64e15;
const text = (v: unknown, max: number): v is string => typeof v === "string" && v.length <= max;

function items(v: unknown): StatusItem[] | null {
  if (!Array.isArray(v) || v.length > MAX_LISTED) return null;
  const out: StatusItem[] = [];
  for (const x of v) {
    if (!isObj(x) || !text(x.path, MAX_PATH_CHARS) || !text(x.reason, MAX_TEXT_CHARS)) return null;
    out.push({ path: x.path, reason: x.reason });
  }
  return out;
}

/** A record from the text of a status file; null if it is not a well-formed, bounded one. */
export function parseStatusRecord(raw: string): StatusRecord | null {
  if (raw.length > MAX_STATUS_BYTES) return null;
  let r: unknown;
  try {
    r = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!isObj(r) || r.v !== 1) return null;
  const p = r.pending;
  const more = r.more;
  const failed = items(r.failed);
  const skipped = items(r.skipped);
  const conflicts = r.conflicts;
  if (
    !count(r.pid) || !text(r.version, 100) || !STATES.includes(r.state as SyncState) ||
    !time(r.since) || !text(r.server, 400) || !text(r.account, 200) || !text(r.device, 400) ||
    !(r.lastSync === null || time(r.lastSync)) || !(r.checkedAt === null || time(r.checkedAt)) ||
    !isObj(p) || !count(p.files) || !count(p.bytes) || !count(p.uploads) ||
    !(r.message === null || text(r.message, MAX_TEXT_CHARS)) || typeof r.fatal !== "boolean" ||
    !failed || !skipped || !Array.isArray(conflicts) || conflicts.length > MAX_LISTED ||
    !conflicts.every((c) => text(c, MAX_PATH_CHARS)) || !isObj(more) || !count(more.failed) ||
    !count(more.skipped) || !count(more.conflicts) || !time(r.updatedAt)
  ) {
    return null;
  }
  return {
    v: 1,
    pid: r.pid,
    version: r.version,
    state: r.state as SyncState,
    since: r.since,
    server: r.server,
    account: r.account,
    device: r.device,
    lastSync: r.lastSync,
    checkedAt: r.checkedAt,
    pending: { files: p.files, bytes: p.bytes, uploads: p.uploads },
    message: r.message,
    fatal: r.fatal,
    failed,
    skipped,
    conflicts: conflicts as string[],
    more: { failed: more.failed, skipped: more.skipped, conflicts: more.conflicts },
    updatedAt: r.updatedAt,
  };
}

/** What the status command shows: a record (or what state.db says), and whether a client runs. */
export interface StatusView {
  folder: string;
  state: SyncState;
  /** When the state began, if known. */
  since: number | null;
  /** True while a client holds the folder. */
  running: boolean;
  server: string | null;
  account: string | null;
  device: string | null;
  lastSync: number | null;
  checkedAt: number | null;
  pending: Pending;
  message: string | null;
  failed: StatusItem[];
  skipped: StatusItem[];
  conflicts: string[];
  more: { failed: number; skipped: number; conflicts: number };
  /** The lists come from the client's last run, not a running one. */
  fromLastRun: boolean;
}

/** The enrollment, as `config.json` has it. */
export interface Enrollment {
  server: string;
  account: string;
  device: string;
}

/** What is known without a running client (see {@link viewOf}). */
export interface Offline {
  folder: string;
  /** A client holds the folder's lock. */
  running: boolean;
  enrollment: Enrollment | null;
  /** Files the last pull of the server's journal brought and this device does not have yet. */
  pendingDownloads?: number;
  /** Conflict copies found in the folder (when no record lists them). */
  conflicts?: string[];
}

/**
 * The view from a record and the lock: a running client's record is the truth; with no client
 * running, the state is `stopped` (or `error`, when the last client stopped for good because of
 * an error: its message is kept), and the lists are those of the last run.
 */
export function viewOf(record: StatusRecord | null, o: Offline): StatusView {
  const e = o.enrollment;
  const base = {
    folder: o.folder,
    server: record?.server ?? e?.server ?? null,
    account: record?.account ?? e?.account ?? null,
    device: e?.device ?? record?.device ?? null,
    lastSync: record?.lastSync ?? null,
    checkedAt: record?.checkedAt ?? null,
    failed: record?.failed ?? [],
    skipped: record?.skipped ?? [],
    conflicts: o.conflicts ?? record?.conflicts ?? [],
    more: record?.more ?? { failed: 0, skipped: 0, conflicts: 0 },
  };
  if (o.running && record) {
    return {
      ...base,
      state: record.state === "stopped" ? "syncing" : record.state,
      since: record.since,
      running: true,
      pending: record.pending,
      message: record.message,
      fromLastRun: false,
    };
  }
  const pending = { files: o.pendingDownloads ?? 0, bytes: 0, uploads: 0 };
  if (o.running) {
    // A client holds the folder but has not written its record yet: it is starting.
    return {
      ...base,
      state: "syncing",
      since: null,
      running: true,
      pending,
      message: "starting",
      fromLastRun: record !== null,
    };
  }
  const fatal = record !== null && record.fatal && record.message !== null;
  return {
    ...base,
    state: fatal ? "error" : "stopped",
    since: record && (fatal || record.state === "stopped") ? record.since : null,
    running: false,
    pending,
    message: fatal ? record!.message : null,
    fromLastRun: record !== null,
  };
}

const iso = (t: number | null) => t === null ? null : new Date(t).toISOString();

/**
 * The `--json` object: `state` (`in-sync`, `syncing`, `offline`, `stopped`, `error`), `pending`
 * (files left to move), `failed`, `conflicts` and `skipped` (arrays of paths), `lastSync` (ISO
 * 8601, or null), the server and account; and more detail beside (the reasons, bytes left).
 */
export function statusJson(v: StatusView): Record<string, unknown> {
  return {
    folder: v.folder,
    state: v.state,
    since: iso(v.since),
    running: v.running,
    server: v.server,
    account: v.account,
    device: v.device,
    lastSync: iso(v.lastSync),
    pending: v.pending.files,
    pendingBytes: v.pending.bytes,
    pendingUploads: v.pending.uploads,
    pendingDownloads: v.pending.files - v.pending.uploads,
    message: v.message,
    failed: v.failed.map((i) => i.path),
    conflicts: v.conflicts,
    skipped: v.skipped.map((i) => i.path),
    failures: v.failed,
    skips: v.skipped,
    more: v.more,
  };
}

/** `13:04:05` today, else `2026-12-01 13:04:05` (local time). */
export function localTime(t: number, now: number): string {
  const d = new Date(t);
  const pad = (n: number) => String(n).padStart(2, "0");
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const n = new Date(now);
  const sameDay = d.getFullYear() === n.getFullYear() && d.getMonth() === n.getMonth() &&
    d.getDate() === n.getDate();
  return sameDay ? hms : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

/** `just now`, `5 min ago`, `3 h ago`, `2 days ago`. */
function ago(t: number, now: number): string {
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const d = Math.floor(s / 86400);
  return `${d} day${d === 1 ? "" : "s"} ago`;
}

function pendingText(p: Pending): string {
  if (p.files === 0 && p.bytes === 0) return "nothing";
  const downloads = p.files - p.uploads;
  const split = [
    p.uploads > 0 ? `${p.uploads} to send` : "",
    downloads > 0 ? `${downloads} to receive` : "",
  ].filter((x) => x !== "").join(", ");
  const files = `${p.files} file${p.files === 1 ? "" : "s"}`;
  return `${files}${p.bytes > 0 ? ` (${formatBytes(p.bytes)})` : ""}${split ? `: ${split}` : ""}`;
}

/** The lines `cloud-client status` prints for people. */
export function statusText(v: StatusView, now: number): string[] {
  const show = (s: string) => escapeForLog(s, 1000);
  const since = v.since !== null ? ` since ${localTime(v.since, now)}` : "";
  const why = v.message !== null ? `: ${show(v.message)}` : "";
  let head: string;
  switch (v.state) {
    case "in-sync":
      head = `in sync${since}`;
      break;
    case "syncing":
      head = v.message === "starting" ? "starting" : `syncing, ${pendingText(v.pending)} left`;
      break;
    case "offline":
      head = `offline${since}${why}`;
      break;
    case "stopped":
      head = `stopped (no client is running on this folder)`;
      break;
    case "error":
      head = v.running ? `error${why}` : `stopped by an error${since}${why}`;
      break;
  }
  const lines = [`${show(v.folder)}: ${head}`];
  if (v.server !== null) {
    lines.push(
      `Server: ${show(v.server)}, account ${show(v.account ?? "?")}${
        v.device !== null ? `, as device "${show(v.device)}"` : ""
      }`,
    );
  } else lines.push("Not enrolled yet: no client has synced this folder.");
  lines.push(
    `Last sync: ${
      v.lastSync === null ? "never" : `${localTime(v.lastSync, now)} (${ago(v.lastSync, now)})`
    }`,
  );
  if (v.state !== "syncing") lines.push(`Pending: ${pendingText(v.pending)}`);
  const when = v.fromLastRun && !v.running ? " (as the last run left them)" : "";
  const list = (title: string, rows: string[], more: number) => {
    if (rows.length === 0) return;
    lines.push(`${title} (${rows.length + more})${when}:`);
    for (const r of rows) lines.push(`  ${r}`);
    if (more > 0) lines.push(`  ... and ${more} more`);
  };
  list(
    "Failed",
    v.failed.map((i) => `${show(i.path)}: ${show(i.reason)}`),
    v.more.failed,
  );
  list("Conflict copies", v.conflicts.map(show), v.more.conflicts);
  list(
    "Skipped",
    v.skipped.map((i) => `${show(i.path)}: ${show(i.reason)}`),
    v.more.skipped,
  );
  return lines;
}

/**
 * Whether `status --wait` may stop waiting: a running client says the folder is in sync, after a
 * full look at the folder that began once the wait had started (`askedAt`, epoch ms).
 */
export function waitSatisfied(v: StatusView, askedAt: number): boolean {
  return v.running && v.state === "in-sync" && v.checkedAt !== null && v.checkedAt >= askedAt;
}
