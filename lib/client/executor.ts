/**
 * Carries out the actions decided by `core/reconcile.ts`: local changes first (conflict copies
 * set aside, directories, downloads, deletions), then remote ones (chunks, then batched commits).
 * Each step re-checks the disk just before it acts, so a change made meanwhile is never
 * overwritten: the step is skipped and the next pass sees the change. The merge base is updated
 * only after a step really happened on both sides.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { Peer } from "../protocol/peer.ts";
import type { Action } from "../core/reconcile.ts";
import type { BaseEntry, LocalEntry, RemoteEntry } from "../core/types.ts";
import type { CommitItem, CommitResult } from "../server/meta_store.ts";
import { MAX_COMMIT } from "../protocol/messages.ts";
import { fsyncDir } from "../util/atomic.ts";
import type { StateDb } from "./state_db.ts";
import { statToEntry } from "./scanner.ts";
import {
  downloadFile,
  indexLocalChunks,
  pool,
  stillAsScanned,
  type TransferStats,
  uploadChunks,
} from "./transfer.ts";

/** What one execution did, for the user and for deciding whether another pass is needed. */
export interface ExecutionReport {
  uploaded: number;
  downloaded: number;
  deletedLocal: number;
  deletedRemote: number;
  conflicts: number;
  /** Steps skipped because something changed meanwhile (another pass will handle them). */
  deferred: number;
  errors: string[];
}

/** Everything the executor needs. */
export interface ExecutorContext {
  peer: Peer;
  root: string;
  tmpDir: string;
  state: StateDb;
  base: Map<string, BaseEntry>;
  stats: TransferStats;
}

/** Refuses to touch anything whose parent folders are not plain directories inside the root. */
async function parentsAreDirs(root: string, path: string): Promise<boolean> {
  let dir = dirname(path);
  while (dir !== "." && dir !== "") {
    try {
      const st = await Deno.lstat(join(root, dir));
      if (!st.isDirectory || st.isSymlink) return false;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    dir = dirname(dir);
  }
  return true;
}

function baseOfDir(path: string, version: number): BaseEntry {
  return { path, kind: "dir", version, size: 0, mtime: 0, exec: false, hash: "", chunks: [] };
}

/** Runs `actions` (already ordered) and reports what happened. */
export async function execute(ctx: ExecutorContext, actions: Action[]): Promise<ExecutionReport> {
  const report: ExecutionReport = {
    uploaded: 0,
    downloaded: 0,
    deletedLocal: 0,
    deletedRemote: 0,
    conflicts: 0,
    deferred: 0,
    errors: [],
  };
  const baseUpdates: [string, BaseEntry | null][] = [];
  const setBase = (path: string, entry: BaseEntry | null) => {
    baseUpdates.push([path, entry]);
    if (entry) ctx.base.set(path, entry);
    else ctx.base.delete(path);
  };
  const flush = () => {
    if (baseUpdates.length > 0) ctx.state.setBase(baseUpdates.splice(0));
  };
  const fail = (path: string, e: unknown) => report.errors.push(`${path}: ${(e as Error).message}`);
  const full = (p: string) => join(ctx.root, p);

  const local = actions.filter((a) =>
    a.op !== "upload" && a.op !== "mkdirRemote" && a.op !== "deleteRemote"
  );
  const remote = actions.filter((a) =>
    a.op === "upload" || a.op === "mkdirRemote" || a.op === "deleteRemote"
  );
  const chunkIndex = indexLocalChunks(ctx.base.values());
  for (const a of actions) {
    if (a.op === "download") {
      ctx.stats.filesTotal++;
      ctx.stats.bytesTotal += a.remote.size;
    } else if (a.op === "upload") {
      ctx.stats.filesTotal++;
      ctx.stats.bytesTotal += a.local.size;
    }
  }

  const downloads: Extract<Action, { op: "download" }>[] = [];
  const runDownloads = async () => {
    await pool(downloads.splice(0), 8, async (a) => {
      try {
        if (!(await parentsAreDirs(ctx.root, a.path))) {
          report.deferred++;
          return;
        }
        const r = await downloadFile(
          ctx.peer,
          ctx.root,
          ctx.tmpDir,
          a.path,
          a.remote,
          a.replace,
          chunkIndex,
          ctx.stats,
        );
        if (!r.ok) {
          report.deferred++;
          return;
        }
        report.downloaded++;
        ctx.stats.filesDone++;
        if (a.path === a.remote.path) setBase(a.path, r.entry);
      } catch (e) {
        fail(a.path, e);
      }
    });
    flush();
  };

  for (const a of local) {
    if (a.op !== "download" && downloads.length > 0) await runDownloads();
    try {
      switch (a.op) {
        case "moveAside": {
          if (
            !(await stillAsScanned(full(a.path), a.expect)) ||
            !(await stillAsScanned(full(a.to), null))
          ) {
            report.deferred++;
            break;
          }
          await Deno.rename(full(a.path), full(a.to));
          await fsyncDir(dirname(full(a.to)));
          report.conflicts++;
          break;
        }
        case "mkdirLocal": {
          if (!(await parentsAreDirs(ctx.root, a.path))) {
            report.deferred++;
            break;
          }
          if (a.replace) {
            if (!(await stillAsScanned(full(a.path), a.replace))) {
              report.deferred++;
              break;
            }
            await Deno.remove(full(a.path));
          }
          await Deno.mkdir(full(a.path), { recursive: true });
          if (a.remote) setBase(a.path, baseOfDir(a.path, a.remote.version));
          break;
        }
        case "download":
          downloads.push(a);
          break;
        case "deleteLocal": {
          if (!(await stillAsScanned(full(a.path), a.expect))) {
            report.deferred++;
            break;
          }
          try {
            await Deno.remove(full(a.path)); // never recursive: a directory goes only when empty
          } catch (e) {
            if (a.expect.kind === "dir" && !(e instanceof Deno.errors.NotFound)) {
              // Something we do not sync (or do not know yet) is inside: keep the folder.
              report.deferred++;
              setBase(a.path, null);
              break;
            }
            if (!(e instanceof Deno.errors.NotFound)) throw e;
          }
          report.deletedLocal++;
          setBase(a.path, null);
          break;
        }
        case "setBase":
          setBase(a.path, a.entry);
          break;
      }
    } catch (e) {
      fail(a.path, e);
    }
  }
  if (downloads.length > 0) await runDownloads();
  flush();

  if (remote.length > 0) await pushRemote(ctx, remote, report, setBase);
  flush();
  return report;
}

type RemoteAction = Extract<Action, { op: "upload" | "mkdirRemote" | "deleteRemote" }>;

async function pushRemote(
  ctx: ExecutorContext,
  actions: RemoteAction[],
  report: ExecutionReport,
  setBase: (path: string, entry: BaseEntry | null) => void,
): Promise<void> {
  const chunksOf = (l: LocalEntry) => l.chunks ?? ctx.base.get(l.path)?.chunks ?? [];
  const hashOf = (l: LocalEntry) => l.hash ?? ctx.base.get(l.path)?.hash ?? "";
  const uploads = actions.filter((a): a is Extract<RemoteAction, { op: "upload" }> =>
    a.op === "upload"
  );
  const changed = await uploadChunks(
    ctx.peer,
    ctx.root,
    uploads.map((a) => ({ path: a.path, chunks: chunksOf(a.local) })),
    ctx.stats,
  );
  const items: { item: CommitItem; action: RemoteAction }[] = [];
  for (const a of actions) {
    if (a.op === "upload") {
      if (changed.has(a.path) || !(await stillAsScanned(join(ctx.root, a.path), a.local))) {
        report.deferred++;
        continue;
      }
      items.push({
        action: a,
        item: {
          path: a.path,
          baseVersion: a.baseVersion,
          kind: "file",
          deleted: false,
          size: a.local.size,
          mtime: a.local.mtime,
          exec: a.local.exec,
          hash: hashOf(a.local),
          chunks: chunksOf(a.local),
        },
      });
    } else if (a.op === "mkdirRemote") {
      items.push({
        action: a,
        item: {
          path: a.path,
          baseVersion: a.baseVersion,
          kind: "dir",
          deleted: false,
          size: 0,
          mtime: 0,
          exec: false,
          hash: "",
          chunks: [],
        },
      });
    } else {
      items.push({
        action: a,
        item: {
          path: a.path,
          baseVersion: a.baseVersion,
          kind: a.kind,
          deleted: true,
          size: 0,
          mtime: 0,
          exec: false,
          hash: "",
          chunks: [],
        },
      });
    }
  }
  for (let i = 0; i < items.length; i += MAX_COMMIT) {
    const batch = items.slice(i, i + MAX_COMMIT);
    const r = await ctx.peer.request({ t: "commit", items: batch.map((b) => b.item) });
    const results = r.header.results as CommitResult[];
    batch.forEach(({ item, action }, j) => {
      const res = results[j];
      if (!res) return;
      if (!res.ok) {
        if (res.reason === "conflict") report.deferred++;
        else report.errors.push(`${item.path}: ${res.message}`);
        return;
      }
      const entry: RemoteEntry = { ...item, version: res.version, device: "" };
      ctx.state.setRemote(entry);
      if (item.deleted) {
        report.deletedRemote++;
        setBase(item.path, null);
      } else if (action.op === "upload") {
        report.uploaded++;
        ctx.stats.filesDone++;
        setBase(item.path, {
          ...statToEntryBase(action.local),
          version: res.version,
          hash: item.hash,
          chunks: item.chunks,
        });
      } else {
        setBase(item.path, baseOfDir(item.path, res.version));
      }
    });
  }
}

function statToEntryBase(l: LocalEntry): Omit<BaseEntry, "version" | "hash" | "chunks"> {
  return { path: l.path, kind: l.kind, size: l.size, mtime: l.mtime, exec: l.exec };
}

export { statToEntry };
