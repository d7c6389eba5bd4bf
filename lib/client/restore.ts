/**
 * `cloud-client restore FOLDER PATH... [--at TIME] [--to DIR] [--dry-run] [--json]`: gives PATH
 * back as it was at TIME (the rules are `lib/core/restore_plan.ts`).
 *
 * - **In place** (the default) the restore is a commit on the server, sent in batches (`restore`
 *   requests of up to 1,000 items): each kept version becomes the current one again, checked
 *   against the current version the listing showed, as any commit is. No content is sent (every
 *   chunk is on the server already); the account's devices, this one's running client included,
 *   get it as a change from another device, and the normal rules keep a local change that is not
 *   synced yet as a conflict copy. The replaced versions stay kept: a restore can be undone.
 *   It takes no folder lock: it writes nothing in the folder or its `.cloudsync/` (the server's
 *   rule, not a lock, serializes it with the sync client's own commits, which a push then wakes).
 * - **`--to DIR`** writes a plain copy of PATH's tree as of TIME under DIR (each file streamed
 *   into a temporary file there, verified, fsynced, renamed: the downloads of the sync client,
 *   with chunks this device already holds read from the folder's files) and changes nothing on
 *   the server. It never overwrites what is already in DIR.
 * - **`--dry-run`** prints what would change and changes nothing.
 *
 * The listing (`listAt`) is read page by page and acted on page by page: memory stays bounded.
 *
 * @module
 */

import { EXIT } from "../util/exit_codes.ts";
import { DatabaseSync } from "node:sqlite";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { Peer } from "../protocol/peer.ts";
import { MAX_LIST, MAX_RESTORE } from "../protocol/messages.ts";
import {
  decideRestore,
  DefaultTime,
  type PointInTime,
  type RestoreCounts,
  type RestoreItem,
  restoreSummary,
} from "../core/restore_plan.ts";
import type { BaseEntry, RemoteEntry } from "../core/types.ts";
import type { CommitResult } from "../core/commit_plan.ts";
import { formatIso, formatLocal, LOCAL_ZONE, type Zone } from "../core/time_spec.ts";
import { formatBytes } from "../util/cli.ts";
import { STATE_DIR } from "./config.ts";
import {
  CommandError,
  type FolderSession,
  openFolderSession,
  wirePathOf,
} from "./folder_session.ts";
import { ask, fetchHistory, parsePointInTime } from "./history.ts";
import { type DownloadItem, type LocalChunkIndex, newStats } from "./transfer.ts";
import { downloadMany } from "./downloader.ts";
import { DenoFs } from "./fs/deno_fs.ts";
import { Staging } from "./staging.ts";
import { tempName } from "../util/atomic.ts";

/** Options of {@link runRestore}. */
export interface RestoreOptions {
  folder: string;
  /** PATHs as the user typed them. */
  paths: string[];
  /** `--at`: the instant, and the text the user gave. */
  at?: { ms: number; text: string };
  /** `--to DIR`. */
  to?: string;
  dryRun: boolean;
  json: boolean;
  out: (line: string) => void;
  warn: (line: string) => void;
  zone?: Zone;
  now?: () => number;
}

/** How many names of each kind of problem the final lines show. */
const NAMES = 5;

/** One restored (or not) item, for `--json` and the lines of a dry run. */
interface ItemReport {
  path: string;
  kind: "file" | "dir";
  version: number;
  size: number;
  made: number;
  at: number;
  change?: "deleted" | "changed";
  result:
    | "restored"
    | "would restore"
    | "copied"
    | "would copy"
    | "conflict"
    | "missing"
    | "exists"
    | "failed"
    | "skipped";
  message?: string;
}

/** Everything one command run keeps count of. */
class Tally {
  done: RestoreCounts = { files: 0, folders: 0, bytes: 0 };
  unchanged = 0;
  problems = new Map<string, { n: number; names: string[] }>();
  items = 0;

  constructor(readonly o: RestoreOptions, readonly zone: Zone) {
    if (o.json) o.out(`{"items":[`);
  }

  count(r: { kind: "file" | "dir"; size: number }): void {
    if (r.kind === "dir") this.done.folders++;
    else {
      this.done.files++;
      this.done.bytes += r.size;
    }
  }

  problem(kind: string, path: string): void {
    const p = this.problems.get(kind) ?? { n: 0, names: [] };
    p.n++;
    if (p.names.length < NAMES) p.names.push(path);
    this.problems.set(kind, p);
  }

  report(r: ItemReport): void {
    const o = this.o;
    if (o.json) {
      o.out(`${this.items++ > 0 ? "," : ""}${
        JSON.stringify({
          path: r.path,
          kind: r.kind,
          version: r.version,
          size: r.kind === "dir" ? 0 : r.size,
          time: formatIso(r.made, this.zone),
          at: formatIso(r.at, this.zone),
          ...(r.change ? { change: r.change } : {}),
          result: r.result,
          ...(r.message ? { message: r.message } : {}),
        })
      }`);
      return;
    }
    if (r.result === "would restore" || r.result === "would copy") {
      const what = r.kind === "dir" ? `${r.path}/` : r.path;
      const since = r.change ? `${r.change} since; ` : "";
      const size = r.kind === "dir" ? "" : `, ${formatBytes(r.size)}`;
      o.out(
        `${r.result} ${what} (${since}version ${r.version} of ${
          formatLocal(r.made, this.zone)
        }${size})`,
      );
    }
  }
}

/** TIME as the summary says it: minutes, with seconds when the instant has them. */
function asOf(ms: number, zone: Zone): string {
  return formatLocal(ms, zone, ms % 60_000 !== 0);
}

/** The instant a restore of `path` without `--at` goes back to (see `DefaultTime`). */
async function defaultTime(
  s: FolderSession,
  path: string,
  copy: boolean,
  now: number,
): Promise<number> {
  const d = new DefaultTime(path);
  // The whole folder is always a live folder.
  if (path !== "") {
    for await (const v of fetchHistory(s.peer, { path }, "restore")) if (!d.add(v)) break;
  }
  const r: ReturnType<DefaultTime["result"]> = path === "" ? { none: "folder" } : d.result();
  if ("at" in r) return r.at;
  const shown = path === "" ? "the folder" : path;
  if (r.none === "folder") {
    if (copy) return now; // a copy of a live folder: as it is now
    throw new CommandError(
      `Cannot restore ${shown}: it is a folder that exists; say which time to go back to with --at TIME (\`cloud-client history FOLDER ${
        path || "."
      }\` shows its changes, \`--deleted\` its deleted files)`,
    );
  }
  if (r.none === "first") {
    throw new CommandError(
      `Cannot restore ${shown}: no earlier version of it is kept (its history: \`cloud-client history FOLDER ${path}\`)`,
    );
  }
  throw new CommandError(
    `Cannot restore ${shown}: nothing is kept for it (check the path: \`cloud-client history FOLDER\` lists what is kept)`,
  );
}

/** `Cannot restore PATH: nothing kept for it at TIME`, with the oldest time that is kept. */
async function nothingAt(
  s: FolderSession,
  path: string,
  at: number,
  atText: string,
  zone: Zone,
): Promise<CommandError> {
  // A listing as of the epoch is empty and says when the oldest kept version was made.
  const h = await ask(s.peer, { t: "listAt", path, at: 0, limit: 1 }, "restore");
  const oldest = typeof h.oldest === "number" ? h.oldest : null;
  const shown = path === "" ? "the folder" : path;
  const when = atText || formatLocal(at, zone);
  return new CommandError(
    oldest === null
      ? `Cannot restore ${shown}: nothing kept for it at ${when}; nothing is kept for it at all (check the path: \`cloud-client history FOLDER\` lists what is kept)`
      : `Cannot restore ${shown}: nothing kept for it at ${when}; the oldest kept version is from ${
        formatLocal(oldest, zone)
      }`,
  );
}

/**
 * Streams the listing of `path` at `at` (`listAt`), page by page, checked. `what` names the
 * action in errors (`Cannot restore: …`).
 */
export async function* fetchPointInTime(
  peer: Peer,
  path: string,
  at: number,
  what = "restore",
): AsyncIterable<PointInTime[]> {
  let after: string | undefined;
  for (;;) {
    const h = await ask(peer, {
      t: "listAt",
      path,
      at,
      limit: MAX_LIST,
      ...(after !== undefined ? { after } : {}),
    }, what);
    if (!Array.isArray(h.entries)) {
      throw new Error(`Cannot ${what}: the server sent a malformed reply`);
    }
    const rows = h.entries.map(parsePointInTime);
    for (const r of rows) {
      if (after !== undefined && compareUtf8(r.path, after) <= 0) {
        throw new Error(`Cannot ${what}: the server sent its listing out of order`);
      }
      if (path !== "" && r.path !== path && !r.path.startsWith(path + "/")) {
        throw new Error(`Cannot ${what}: the server sent a path outside the one asked for`);
      }
    }
    yield rows;
    const last = rows[rows.length - 1];
    if (h.more !== true || !last) return;
    after = last.path;
  }
}

/** Byte order of the UTF-8 encodings (the server's order), which is code point order. */
function compareUtf8(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** The `restore` results of a batch, checked: one well-formed result per item. */
function results(v: unknown, n: number): CommitResult[] {
  if (!Array.isArray(v) || v.length !== n) {
    throw new Error("Cannot restore: the server sent a malformed reply");
  }
  return v.map((x) => {
    const o = x as Record<string, unknown>;
    if (o?.ok === true && typeof o.version === "number") return { ok: true, version: o.version };
    if (o?.ok === false && typeof o.reason === "string" && typeof o.message === "string") {
      return { ok: false, reason: o.reason as "conflict", message: o.message };
    }
    throw new Error("Cannot restore: the server sent a malformed reply");
  });
}

/** Where chunks of this folder's synced files are (for `--to`), with paths relative to `dir`. */
function folderChunks(root: string, dir: string): LocalChunkIndex {
  const index: LocalChunkIndex = new Map();
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(join(root, STATE_DIR, "state.db"), { readOnly: true });
  } catch {
    return index; // never synced here: everything comes from the server
  }
  try {
    for (const r of db.prepare("SELECT data FROM base").iterate() as Iterable<{ data: string }>) {
      const b = JSON.parse(r.data) as BaseEntry;
      if (b.kind !== "file") continue;
      const at = relative(dir, join(root, b.path));
      let offset = 0;
      for (const c of b.chunks) {
        if (!index.has(c.hash)) index.set(c.hash, { path: at, offset });
        offset += c.size;
      }
    }
  } catch {
    // state.db busy or of another shape: the server has every chunk anyway
  } finally {
    db.close();
  }
  return index;
}

/** True when `inner` is `outer` or inside it. */
function within(outer: string, inner: string): boolean {
  const r = relative(outer, inner);
  return r === "" || (!isAbsolute(r) && r !== ".." && !r.startsWith(".." + sep));
}

/** The `restore` command; resolves with the exit code. */
export async function runRestore(o: RestoreOptions): Promise<number> {
  const zone = o.zone ?? LOCAL_ZONE;
  const now = (o.now ?? Date.now)();
  const s = await openFolderSession(o.folder, "restore");
  const tally = new Tally(o, zone);
  let to: CopyTarget | null = null;
  try {
    const paths = o.paths.map((p) => wirePathOf(s.root, p, "restore"));
    if (o.to !== undefined) {
      const dir = resolve(o.to);
      if (within(s.root, dir) || within(dir, s.root)) {
        throw new CommandError(
          `Cannot restore to ${dir}: it ${
            within(s.root, dir) ? "is inside" : "holds"
          } the synced folder ${s.root}; choose a folder outside it (a copy there would sync to every device)`,
          EXIT.usage,
        );
      }
      const fs = new DenoFs(dir);
      to = { dir, fs, tmp: "", staging: new Staging(fs, ""), local: new Map() };
      if (!o.dryRun) {
        await Deno.mkdir(dir, { recursive: true });
        to.tmp = tempName("cloudsync-restore"); // in DIR: the same file system as the copies
        await Deno.mkdir(join(dir, to.tmp));
        to.staging = new Staging(fs, to.tmp);
        to.local = folderChunks(s.root, dir);
      }
    }
    const lines: string[] = [];
    let failed = false;
    for (const path of paths) {
      let at: number;
      try {
        at = o.at ? o.at.ms : await defaultTime(s, path, to !== null, now);
      } catch (e) {
        if (!(e instanceof CommandError)) throw e;
        o.warn(e.message);
        failed = true;
        continue;
      }
      const before = { ...tally.done };
      const r = to
        ? await copyPath(s, tally, path, at, to, o.dryRun)
        : await restorePath(s, tally, path, at, o.dryRun);
      if (r.live === 0) {
        o.warn((await nothingAt(s, path, at, o.at?.text ?? "", zone)).message);
        failed = true;
        continue;
      }
      const c = {
        files: tally.done.files - before.files,
        folders: tally.done.folders - before.folders,
        bytes: tally.done.bytes - before.bytes,
      };
      const shown = path === "" ? "the folder" : path;
      const verb = o.dryRun ? (to ? "Would copy" : "Would restore") : to ? "Copied" : "Restored";
      if (c.files + c.folders === 0 && r.changes === 0) {
        lines.push(
          to
            ? `Nothing to copy: ${shown} held nothing at ${asOf(at, zone)}`
            : `Nothing to restore: ${shown} is as it was at ${asOf(at, zone)}`,
        );
      } else {
        lines.push(
          restoreSummary(verb, c, asOf(at, zone)) +
            (to && !o.dryRun ? ` into ${to.dir}` : "") + (o.dryRun ? "; nothing was changed" : ""),
        );
      }
    }
    const problems = [...tally.problems];
    if (o.json) {
      o.out(`],${
        JSON.stringify({
          dryRun: o.dryRun,
          to: to?.dir ?? null,
          files: tally.done.files,
          folders: tally.done.folders,
          bytes: tally.done.bytes,
          notRestored: problems.reduce((n, [, p]) => n + p.n, 0),
        }).slice(1)
      }`);
    } else for (const l of lines) o.out(l);
    for (const [kind, p] of problems) {
      o.warn(problemLine(kind, p, to?.dir));
      if (kind !== "skipped") failed = true;
    }
    return failed ? 1 : 0;
  } finally {
    if (to?.tmp) await Deno.remove(join(to.dir, to.tmp), { recursive: true }).catch(() => {});
    s.close();
  }
}

/** The line for one kind of item not restored. */
function problemLine(kind: string, p: { n: number; names: string[] }, dir?: string): string {
  const names = `${p.names.join(", ")}${p.n > p.names.length ? ", ..." : ""}`;
  const n = `${p.n} ${p.n === 1 ? "item" : "items"}`;
  switch (kind) {
    case "conflict":
      return `Cannot restore ${n} (${names}): changed on another device meanwhile; nothing of theirs was overwritten (run the restore again to restore over those changes)`;
    case "missing":
      return `Cannot restore ${n} (${names}): the server no longer keeps that version`;
    case "exists":
      return `Did not copy ${n} (${names}): something is already there in ${dir}; nothing was overwritten (choose an empty folder)`;
    case "skipped":
      return `Left ${n} alone (${names}): a file is a folder now, or the other way round`;
    default:
      return `Cannot restore ${n} (${names}): ${kind}`;
  }
}

/** In place (or a dry run of it): returns how many paths were live at `at`, and changed since. */
async function restorePath(
  s: FolderSession,
  t: Tally,
  path: string,
  at: number,
  dryRun: boolean,
): Promise<{ live: number; changes: number }> {
  let live = 0;
  let changes = 0;
  const batch: { item: RestoreItem; row: PointInTime; change: "deleted" | "changed" }[] = [];
  const base = (row: PointInTime) => ({
    path: row.path,
    kind: row.kind,
    version: row.version,
    size: row.size,
    made: row.made,
    at,
  });
  const flush = async () => {
    const list = batch.splice(0);
    if (list.length === 0) return;
    if (dryRun) {
      for (const b of list) {
        t.count(b.row);
        t.report({ ...base(b.row), change: b.change, result: "would restore" });
      }
      return;
    }
    const h = await ask(s.peer, { t: "restore", items: list.map((b) => b.item) }, "restore");
    results(h.results, list.length).forEach((r, i) => {
      const b = list[i]!;
      if (r.ok) {
        t.count(b.row);
        t.report({ ...base(b.row), change: b.change, result: "restored" });
        return;
      }
      const kind = r.reason === "conflict"
        ? "conflict"
        : r.reason === "missing"
        ? "missing"
        : r.message;
      t.problem(kind, b.row.path);
      t.report({
        ...base(b.row),
        change: b.change,
        result: r.reason === "conflict"
          ? "conflict"
          : r.reason === "missing"
          ? "missing"
          : "failed",
        message: r.message,
      });
    });
  };
  for await (const rows of fetchPointInTime(s.peer, path, at)) {
    for (const row of rows) {
      if (!row.deleted) live++;
      const d = decideRestore(row);
      if (d.action === "skip" && d.why === "kind") {
        t.problem("skipped", row.path);
        t.report({ ...base(row), result: "skipped", message: "its kind changed since" });
      }
      if (d.action !== "restore") continue;
      changes++;
      batch.push({
        item: { path: row.path, version: row.version, baseVersion: row.current.version },
        row,
        change: d.why,
      });
      if (batch.length >= MAX_RESTORE) await flush();
    }
  }
  await flush();
  return { live, changes };
}

/** Where `--to DIR` writes: DIR, its temporary folder in it, the chunks this folder holds. */
interface CopyTarget {
  dir: string;
  fs: DenoFs;
  /** The temporary folder, relative to DIR ("" in a dry run: none). */
  tmp: string;
  staging: Staging;
  local: LocalChunkIndex;
}

/** What `--to` reports of one row it copies (or would copy). */
function copyReport(row: PointInTime, at: number) {
  return {
    path: row.path,
    kind: row.kind,
    version: row.version,
    size: row.size,
    made: row.made,
    at,
  };
}

/** `--to DIR` (or a dry run of it): every path live at `at`, copied under the directory. */
async function copyPath(
  s: FolderSession,
  t: Tally,
  path: string,
  at: number,
  to: CopyTarget,
  dryRun: boolean,
): Promise<{ live: number; changes: number }> {
  let live = 0;
  const stats = newStats();
  for await (const rows of fetchPointInTime(s.peer, path, at)) {
    const downloads: DownloadItem[] = [];
    const byPath = new Map<string, PointInTime>();
    for (const row of rows) {
      if (row.deleted) continue;
      live++;
      const report = copyReport(row, at);
      if (dryRun) {
        t.count(row);
        t.report({ ...report, result: "would copy" });
        continue;
      }
      const full = join(to.dir, row.path);
      const there = await Deno.lstat(full).catch(() => null);
      if (row.kind === "dir") {
        if (there && !there.isDirectory) {
          t.problem("exists", row.path);
          t.report({ ...report, result: "exists" });
          continue;
        }
        if (!there) {
          await Deno.mkdir(full, { recursive: true });
          t.count(row);
        }
        t.report({ ...report, result: "copied" });
        continue;
      }
      if (there) {
        t.problem("exists", row.path);
        t.report({ ...report, result: "exists" });
        continue;
      }
      const remote: RemoteEntry = {
        path: row.path,
        kind: "file",
        deleted: false,
        version: row.version,
        size: row.size,
        mtime: row.mtime,
        exec: row.exec,
        ...(row.mode !== undefined ? { mode: row.mode } : {}),
        hash: row.hash,
        chunks: row.chunks,
        device: row.device,
      };
      byPath.set(row.path, row);
      downloads.push({ path: row.path, remote, replace: null });
    }
    if (downloads.length === 0) continue;
    await downloadMany(
      { fs: to.fs, staging: to.staging, peer: s.peer, local: to.local, stats },
      downloads,
      (item, r) => {
        const row = byPath.get(item.path)!;
        const report = copyReport(row, at);
        if (r instanceof Error) {
          t.problem(r.message, row.path);
          t.report({ ...report, result: "failed", message: r.message });
        } else if (!r.ok) {
          t.problem("exists", row.path);
          t.report({ ...report, result: "exists" });
        } else {
          t.count(row);
          t.report({ ...report, result: "copied" });
        }
      },
    );
  }
  return { live, changes: live };
}
