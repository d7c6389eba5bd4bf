/**
 * `cloud-client history FOLDER [PATH] [--deleted] [--since TIME] [--json]`: the kept versions of a
 * file, or the changes under a folder, newest first, fetched page by page (`history` requests)
 * and printed as they come, so that memory stays bounded whatever the history's length. Also the
 * client's reading of the server's history and point-in-time rows (`parseVersion`,
 * `parsePointInTime`): like everything from the network, checked before use.
 *
 * It uses the folder's device credential and takes no lock: it works whether or not the folder's
 * sync client runs.
 *
 * @module
 */

import type { Peer } from "../protocol/peer.ts";
import { RemoteError } from "../protocol/peer.ts";
import {
  bool,
  chunkList,
  hash,
  int,
  kind,
  MAX_HISTORY,
  modeFields,
  obj,
  str,
} from "../protocol/messages.ts";
import { checkWirePath } from "../core/paths.ts";
import type { PointInTime, VersionInfo } from "../core/restore_plan.ts";
import { formatIso, formatLocal, LOCAL_ZONE, type Zone } from "../core/time_spec.ts";
import { formatBytes } from "../util/cli.ts";
import { CommandError, openFolderSession, wirePathOf } from "./folder_session.ts";

/** A version as the server sent it, checked. */
export function parseVersion(v: unknown): VersionInfo {
  const o = obj(v, "versions[]");
  const path = str(o, "path");
  const problem = checkWirePath(path);
  if (problem) throw new Error(`Cannot read history: the server sent a bad path (${problem})`);
  return {
    path,
    kind: kind(o, "kind"),
    deleted: bool(o, "deleted"),
    version: int(o, "version"),
    size: int(o, "size"),
    mtime: int(o, "mtime"),
    ...modeFields(o),
    hash: o.hash === "" ? "" : hash(o, "hash"),
    device: str(o, "device", 200),
    made: int(o, "made"),
    replaced: o.replaced === null ? null : int(o, "replaced"),
  };
}

/** A point-in-time row (`listAt`) as the server sent it, checked. */
export function parsePointInTime(v: unknown): PointInTime {
  const o = obj(v, "entries[]");
  const c = obj(o.current, "current");
  return {
    ...parseVersion(o),
    chunks: chunkList(o.chunks, "chunks"),
    current: {
      kind: kind(c, "kind"),
      deleted: bool(c, "deleted"),
      version: int(c, "version"),
      size: int(c, "size"),
      mtime: int(c, "mtime"),
      ...modeFields(c),
      hash: c.hash === "" ? "" : hash(c, "hash"),
    },
  };
}

/** A `history --deleted` row: the deletion, and the last kept version. */
export interface DeletedRow extends VersionInfo {
  kept: VersionInfo;
}

/** Asks for a server feature; an older server's `unsupported` becomes a clear error. */
export async function ask(
  peer: Peer,
  header: Record<string, unknown>,
  what: string,
): Promise<Record<string, unknown>> {
  try {
    return (await peer.request(header)).header;
  } catch (e) {
    if (e instanceof RemoteError && e.code === "unsupported") {
      throw new CommandError(
        `Cannot ${what}: the server is older than this client and keeps no history it can show; upgrade the server`,
      );
    }
    if (e instanceof RemoteError) throw new CommandError(`Cannot ${what}: ${e.message}`);
    throw e;
  }
}

/** What to list. */
export interface HistoryQueryOptions {
  /** Wire path, "" for the whole folder. */
  path: string;
  deleted?: boolean;
  /** Only versions made from this instant (ms). */
  since?: number;
}

/** Streams the history of `q` from the server, page by page (newest first). */
export async function* fetchHistory(
  peer: Peer,
  q: HistoryQueryOptions,
  what = "list history",
  limit = MAX_HISTORY,
): AsyncIterable<VersionInfo | DeletedRow> {
  let before: number | undefined;
  for (;;) {
    const h = await ask(peer, {
      t: "history",
      path: q.path,
      limit,
      ...(q.deleted ? { deleted: true } : {}),
      ...(q.since !== undefined ? { since: q.since } : {}),
      ...(before !== undefined ? { before } : {}),
    }, what);
    const rows = h.versions;
    if (!Array.isArray(rows)) throw new Error(`Cannot ${what}: the server sent a malformed reply`);
    let last: number | undefined;
    for (const r of rows) {
      const v = parseVersion(r);
      if (before !== undefined && v.version >= before) {
        throw new Error(`Cannot ${what}: the server sent its history out of order`);
      }
      last = v.version;
      yield q.deleted ? { ...v, kept: parseVersion(obj(r, "versions[]").kept) } : v;
    }
    if (h.more !== true || last === undefined) return;
    before = last;
  }
}

/** Options of {@link runHistory}. */
export interface HistoryOptions {
  folder: string;
  /** PATH as the user typed it (absent: the whole folder). */
  path?: string;
  deleted: boolean;
  since?: { ms: number; text: string };
  json: boolean;
  out: (line: string) => void;
  zone?: Zone;
}

/** One row of the table (fixed widths, so it prints as it streams). */
function tableRow(cols: string[], withPath: boolean): string {
  const [version, time, size, device, deleted, path] = cols;
  const line = `${version!.padStart(8)}  ${time!.padEnd(26)}  ${size!.padStart(10)}  ${
    device!.padEnd(14)
  }  ${deleted!.padEnd(7)}`;
  return withPath ? `${line}  ${path}` : line.trimEnd();
}

/** The `history` command; resolves with the exit code. */
export async function runHistory(o: HistoryOptions): Promise<number> {
  const zone = o.zone ?? LOCAL_ZONE;
  const what = "list history";
  const s = await openFolderSession(o.folder, what);
  try {
    const path = o.path === undefined ? "" : wirePathOf(s.root, o.path, "list the history of");
    const shown = path === "" ? "the folder" : path;
    let n = 0;
    let withPath: boolean | null = null;
    const head = () => {
      if (o.json) return o.out("[");
      const time = o.deleted ? "DELETED AT" : "TIME";
      o.out(tableRow(["VERSION", time, "SIZE", "DEVICE", "STATE", "PATH"], withPath!));
    };
    for await (
      const v of fetchHistory(s.peer, {
        path,
        deleted: o.deleted,
        ...(o.since ? { since: o.since.ms } : {}),
      })
    ) {
      // A file's own history has no PATH column; a folder's has.
      withPath ??= path === "" || v.path !== path || v.kind === "dir";
      if (n === 0) head();
      n++;
      const kept = (v as DeletedRow).kept;
      if (o.json) {
        const row = {
          path: v.path,
          version: v.version,
          time: formatIso(v.made, zone),
          size: kept ? kept.size : v.size,
          deleted: v.deleted,
          device: v.device,
          kind: v.kind,
          current: v.replaced === null,
          ...(v.deleted ? {} : { mtime: formatIso(v.mtime, zone), hash: v.hash }),
          ...(!v.deleted && v.kind === "file" && v.mode !== undefined ? { mode: v.mode } : {}),
          ...(kept ? { keptVersion: kept.version, keptTime: formatIso(kept.made, zone) } : {}),
        };
        o.out(`${n > 1 ? "," : ""}${JSON.stringify(row)}`);
        continue;
      }
      const size = v.kind === "dir"
        ? "-"
        : kept
        ? formatBytes(kept.size)
        : v.deleted
        ? "-"
        : formatBytes(v.size);
      o.out(tableRow([
        String(v.version),
        formatLocal(v.made, zone),
        size,
        v.device,
        v.deleted ? "deleted" : v.replaced === null ? "current" : "",
        v.kind === "dir" ? `${v.path}/` : v.path,
      ], withPath));
    }
    if (o.json) {
      o.out(n === 0 ? "[]" : "]");
      if (n === 0 && path !== "" && !o.deleted && !o.since) return nothingKept(path);
      return 0;
    }
    if (n > 0) return 0;
    if (o.deleted) o.out(`No deleted files or folders are kept in ${shown}`);
    else if (o.since) o.out(`No changes in ${shown} since ${o.since.text}`);
    else if (path !== "") return nothingKept(path);
    else o.out("No changes are kept yet");
    return 0;
  } finally {
    s.close();
  }
}

function nothingKept(path: string): never {
  throw new CommandError(
    `Cannot list the history of ${path}: nothing is kept for it (check the path; \`cloud-client history FOLDER\` lists every change)`,
  );
}
