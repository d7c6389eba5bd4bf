/**
 * What the running client tells `cloud-client status`: its life cycle (connected, offline since,
 * a pass moving content, in sync, an error, stopped) turned into the folder's
 * {@link StatusRecord}, kept by a {@link StatusKeeper} (`status_file.ts`). The states:
 *
 * - `syncing`: a pass has moved content for a while (with the files and bytes left), or items
 *   wait (being written, settling, changed under a step);
 * - `in-sync`: the last pass left nothing to do;
 * - `offline`: the server cannot be reached (since when, and why);
 * - `error`: a pass fails as a whole, items fail, deletions are held back, or (`fatal`) the client
 *   stopped for good (a revoked device, a changed certificate);
 * - `stopped`: the client stopped on request.
 *
 * @module
 */

import type { Attention } from "../core/attention.ts";
import { isConflictCopy } from "../core/conflict_name.ts";
import { madeProgress, type Tally } from "../core/outcomes.ts";
import type { StatusRecord, SyncState } from "../core/status.ts";
import { PROGRAM_VERSION } from "../protocol/messages.ts";
import type { ClientConfig } from "./config.ts";
import {
  bounded,
  itemsOf,
  readStatusFile,
  StatusKeeper,
  type StatusPatch,
  waitBellRungAt,
} from "./status_file.ts";
import type { TransferStats } from "./transfer.ts";

/** Most skipped items remembered (the record lists fewer; the rest are counted). */
const MAX_SKIPS_KEPT = 10_000;

/** A pass still running after this long is shown as `syncing`. */
const SYNCING_AFTER_MS = 1000;

/** What the end of a pass leaves, for {@link FolderStatus.passEnded}. */
export interface PassEnd {
  /** What the passes did (null: nothing to do). */
  tally: Tally | null;
  /** It began with a full scan. */
  full: boolean;
  /** When it began (epoch ms). */
  startedAt: number;
  attention: Attention;
  /** The merge base's paths (conflict copies are found among them). */
  synced: () => Iterable<string>;
  /** The mass-delete guard holds deletions back. */
  holdingDeletions: boolean;
}

/** The running client's status (see the module doc). */
export class FolderStatus {
  readonly #keeper: StatusKeeper;
  #skips = new Map<string, string>();
  /** Skipped items found by the full scan in progress (they replace the list when it ends). */
  #freshSkips: Map<string, string> | null = null;
  #conflictsKnown = false;
  #stopped = false;

  /** Starts the record of a client that just took `root` with `config`. */
  constructor(readonly root: string, config: ClientConfig) {
    const previous = readStatusFile(root);
    const now = Date.now();
    const first: StatusRecord = {
      v: 1,
      pid: Deno.pid,
      version: PROGRAM_VERSION,
      state: "syncing",
      since: now,
      server: `${config.host}:${config.port}`,
      account: config.account,
      device: config.deviceName,
      lastSync: previous?.lastSync ?? null,
      checkedAt: null,
      pending: { files: 0, bytes: 0, uploads: 0 },
      message: null,
      fatal: false,
      failed: [],
      skipped: previous?.skipped ?? [],
      conflicts: previous?.conflicts ?? [],
      more: { failed: 0, skipped: 0, conflicts: 0 },
      updatedAt: now,
    };
    this.#keeper = new StatusKeeper(root, first);
    this.#keeper.flush();
  }

  /** The current record. */
  get record(): Readonly<StatusRecord> {
    return this.#keeper.record;
  }

  /** Moves to `state` (`since` restarts only when the state changes), with `patch`. */
  #set(state: SyncState, patch: StatusPatch = {}, urgent = true): void {
    if (this.#stopped) return;
    const r = this.#keeper.record;
    const since = patch.since ?? (r.state === state ? r.since : Date.now());
    this.#keeper.update({ state, fatal: false, message: null, ...patch, since }, urgent);
  }

  /** Connected (again): a pass follows. */
  connected(): void {
    if (this.#keeper.record.state === "offline") this.#set("syncing");
  }

  /** The server cannot be reached, since `since` (epoch ms), because of `why`. */
  offline(since: number, why: string): void {
    if (this.#stopped) return;
    this.#keeper.update({ state: "offline", since, message: why, fatal: false }, true);
  }

  /** A pass is running, `ms` after it began: shown as `syncing` once it moves content a while. */
  passProgress(stats: TransferStats, ms: number): void {
    const moving = stats.filesTotal > stats.filesDone;
    if (!moving && ms < SYNCING_AFTER_MS) return;
    const wasSyncing = this.#keeper.record.state === "syncing";
    this.#set("syncing", { pending: pendingOf(stats) }, !wasSyncing);
  }

  /** A pass failed as a whole (`message`); it is retried. */
  passFailed(message: string): void {
    this.#set("error", { message });
  }

  /** What the scans skip: `null` at the start of a full scan, then each skipped item. */
  skipped(path: string | null, reason = ""): void {
    if (path === null) {
      this.#freshSkips = new Map();
      return;
    }
    for (const m of [this.#skips, this.#freshSkips]) {
      if (m && (m.size < MAX_SKIPS_KEPT || m.has(path))) m.set(path, reason);
    }
  }

  /** The passes ended: in sync, waiting, or in error (see the module doc). */
  passEnded(end: PassEnd): void {
    if (this.#stopped) return;
    const now = Date.now();
    if (end.full && this.#freshSkips) {
      this.#skips = this.#freshSkips;
      this.#freshSkips = null;
    }
    const moved = end.tally !== null && madeProgress(end.tally);
    const patch: StatusPatch = {
      pending: { files: 0, bytes: 0, uploads: 0 },
      ...this.#lists(end, moved),
    };
    const failures = new Map<string, string>();
    for (const [path, t] of end.attention.troubled()) {
      if (t.kind === "failed") failures.set(path, t.reason);
    }
    const f = itemsOf(failures);
    patch.failed = f.list;
    patch.more = { ...(patch.more ?? this.#keeper.record.more), failed: f.more };
    let waiting = 0;
    let localWaiting = 0; // files seen being written here: uploads to come, not downloads
    for (const h of end.attention.heldAt(now).values()) {
      if (h.kind === "failed") continue;
      waiting++;
      if (h.kind === "unstable" || h.kind === "settling") localWaiting++;
    }
    if (end.holdingDeletions) {
      this.#set("error", {
        ...patch,
        message:
          "deletions are held back: more than half of the synced files vanished at once (cloud-client bring-back FOLDER gets them back here; cloud-client confirm-delete FOLDER deletes them everywhere)",
      });
    } else if (failures.size > 0) {
      this.#set("error", {
        ...patch,
        message: `${failures.size} item${failures.size === 1 ? "" : "s"} cannot be synced`,
      });
    } else if (waiting > 0) {
      this.#set("syncing", {
        ...patch,
        pending: { files: waiting, bytes: 0, uploads: localWaiting },
      });
    } else {
      const r = this.#keeper.record;
      const entering = r.state !== "in-sync";
      if (entering || moved) patch.lastSync = now;
      if (moved) patch.since = now; // in sync again since now
      // The moment of a full look is written when it is news anyway, or when someone waits.
      const rung = waitBellRungAt(this.root);
      const asked = rung !== null && rung >= (r.checkedAt ?? 0);
      if (end.full && (entering || moved || asked)) patch.checkedAt = end.startedAt;
      this.#set("in-sync", patch, entering || asked);
    }
  }

  /** The skipped and conflict lists, for a patch (conflicts looked for when content moved). */
  #lists(end: PassEnd, moved: boolean): StatusPatch {
    const skips = itemsOf(this.#skips);
    const more = { ...this.#keeper.record.more, skipped: skips.more };
    const out: StatusPatch = { skipped: skips.list, more };
    if (moved || !this.#conflictsKnown) {
      const copies: string[] = [];
      for (const p of end.synced()) if (isConflictCopy(p)) copies.push(p);
      copies.sort();
      const c = bounded(copies);
      out.conflicts = c.list;
      more.conflicts = c.more;
      this.#conflictsKnown = true;
    }
    return out;
  }

  /** The client stops for good because of `message` (exits right after). */
  fatal(message: string): void {
    if (this.#stopped) return;
    this.#keeper.update(
      { state: "error", since: Date.now(), message, fatal: true, pending: zero() },
      true,
    );
    this.#stopped = true;
  }

  /** The client stops on request. */
  stop(): void {
    if (this.#stopped) return;
    this.#keeper.update(
      { state: "stopped", since: Date.now(), message: null, fatal: false, pending: zero() },
      true,
    );
    this.#stopped = true;
    this.#keeper.close();
  }

  /** Writes what is pending and stops the timer. */
  close(): void {
    this.#keeper.flush();
    this.#keeper.close();
  }
}

const zero = () => ({ files: 0, bytes: 0, uploads: 0 });

/** What a pass still has to move. */
function pendingOf(s: TransferStats): StatusRecord["pending"] {
  return {
    files: Math.max(0, s.filesTotal - s.filesDone),
    bytes: Math.max(0, s.bytesTotal - s.bytesDone),
    uploads: Math.max(0, s.uploadsTotal - s.uploadsDone),
  };
}
