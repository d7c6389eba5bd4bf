/**
 * A deterministic, in-memory simulation of one server and several devices, built only on the pure
 * core (`reconcile`, `planCommit`). The server applies the real commit rule, `planCommit` (parents
 * revived as directories, nothing created under a live file), to in-memory maps; a device sync mirrors
 * `engine.ts`/`executor.ts` (pull, scan, reconcile, execute, with the same re-checks and the same
 * base updates), repeated until a pass has nothing to do.
 *
 * Content model: a file's content is a string; its hash is `h:` + content and it has one chunk
 * (none when empty). Every write gets a fresh mtime from a global clock, so (size, mtime) equal to
 * the base means the content is unchanged, as the real scanner assumes.
 *
 * @module
 */

import { type Action, reconcile } from "../../lib/core/reconcile.ts";
import {
  type CommitItem,
  type CommitReader,
  type CommitResult,
  planCommit,
} from "../../lib/core/commit_plan.ts";
import { parentPaths } from "../../lib/core/paths.ts";
import type { BaseEntry, ChunkRef, Kind, LocalEntry, RemoteEntry } from "../../lib/core/types.ts";

/** One item of a device's file system. Directories have content "" and exec false. */
export interface Node {
  kind: Kind;
  content: string;
  exec: boolean;
  mtime: number;
}

export const hashOf = (content: string): string => `h:${content}`;
export const chunksOf = (content: string): ChunkRef[] =>
  content === "" ? [] : [{ hash: hashOf(content), size: content.length }];

/** Seeded PRNG (mulberry32): a float in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const isUnderOrAt = (p: string, dir: string) => p === dir || p.startsWith(dir + "/");

/** The server: entries (tombstones included), the journal sequence and a chunk store. */
export class SimServer {
  readonly entries = new Map<string, RemoteEntry>();
  readonly blobs = new Map<string, string>();
  seq = 0;

  /** The server's own rule (`planCommit`), on these maps. */
  commit(device: string, items: CommitItem[]): CommitResult[] {
    const reader: CommitReader = {
      entry: (path) => this.entries.get(path),
      liveBelow: (dir) =>
        [...this.entries.values()].filter((e) => !e.deleted && e.path.startsWith(dir + "/"))
          .map((e) => e.path),
      chunkSize: (hash) => {
        const content = this.blobs.get(hash);
        return content === undefined ? undefined : content.length;
      },
    };
    const plan = planCommit(reader, this.seq, device, items);
    for (const e of plan.written) this.entries.set(e.path, e);
    this.seq = plan.seq;
    return plan.results;
  }

  /** Entries with version > since, oldest first, and the current sequence. */
  changes(since: number): { entries: RemoteEntry[]; seq: number } {
    const entries = [...this.entries.values()].filter((e) => e.version > since)
      .sort((a, b) => a.version - b.version);
    return { entries: entries.map((e) => structuredClone(e)), seq: this.seq };
  }

  /** The content of a live file entry, assembled from its chunks. */
  contentOf(e: RemoteEntry): string {
    let s = "";
    for (const c of e.chunks) {
      const data = this.blobs.get(c.hash);
      if (data === undefined) throw new Error(`server lost chunk ${c.hash} of ${e.path}`);
      s += data;
    }
    return s;
  }

  /** Live entries as a comparable tree. */
  tree(): Map<string, Node> {
    const out = new Map<string, Node>();
    for (const e of this.entries.values()) {
      if (e.deleted) continue;
      out.set(e.path, {
        kind: e.kind,
        content: e.kind === "file" ? this.contentOf(e) : "",
        exec: e.exec,
        mtime: 0,
      });
    }
    return out;
  }
}

/** What a device's executor did in one pass (only what the simulation needs). */
export interface PassReport {
  actions: Action[];
  deferred: number;
  errors: string[];
}

function baseOfDir(path: string, version: number): BaseEntry {
  return { path, kind: "dir", version, size: 0, mtime: 0, exec: false, hash: "", chunks: [] };
}

/** One device: a file system, a merge base, a remote mirror and a journal position. */
export class SimDevice {
  readonly fs = new Map<string, Node>();
  readonly base = new Map<string, BaseEntry>();
  readonly mirror = new Map<string, RemoteEntry>();
  seq = 0;
  online = true;
  /** Receives one line per pass that had work (the simulation's log). */
  trace: ((line: string) => void) | null = null;
  /** Chunks this device sent to the server. */
  chunksSent = 0;
  /** Errors of passes that ran undisturbed: there should be none. */
  readonly errors: string[] = [];
  /** Errors of passes during which something changed meanwhile. */
  readonly interruptedErrors: string[] = [];

  constructor(readonly name: string, readonly server: SimServer) {}

  // ---- file system helpers ----

  parentsAreDirs(path: string): boolean {
    return parentPaths(path).every((p) => {
      const n = this.fs.get(p);
      return n === undefined || n.kind === "dir";
    });
  }

  hasChildren(path: string): boolean {
    for (const p of this.fs.keys()) if (p.startsWith(path + "/")) return true;
    return false;
  }

  /** `mkdir -p`; throws (like Deno.mkdir) if something on the way is a file. */
  mkdirp(path: string): void {
    for (const p of [...parentPaths(path), path]) {
      const n = this.fs.get(p);
      if (n === undefined) this.fs.set(p, { kind: "dir", content: "", exec: false, mtime: 0 });
      else if (n.kind !== "dir") throw new Error(`cannot mkdir ${path}: ${p} is a file`);
    }
  }

  /** Mirrors `transfer.ts` `stillAsScanned`. */
  stillAsScanned(path: string, expect: LocalEntry | null): boolean {
    const n = this.fs.get(path);
    if (!n) return expect === null;
    if (!expect) return false;
    if (n.kind !== expect.kind) return false;
    return n.kind === "dir" || (n.content.length === expect.size && n.mtime === expect.mtime);
  }

  /** Moves `from` (and everything under it) to `to`. */
  move(from: string, to: string): void {
    const moved: [string, Node][] = [];
    for (const [p, n] of this.fs) if (isUnderOrAt(p, from)) moved.push([p, n]);
    for (const [p] of moved) this.fs.delete(p);
    for (const [p, n] of moved) this.fs.set(to + p.slice(from.length), n);
  }

  // ---- sync ----

  /** Mirrors `pullChanges`. */
  pull(): void {
    const { entries, seq } = this.server.changes(this.seq);
    for (const e of entries) {
      if (e.deleted) this.mirror.delete(e.path);
      else this.mirror.set(e.path, e);
    }
    this.seq = seq;
  }

  /** Mirrors `scanner.ts`: files whose size and mtime match the base are not rehashed. */
  scan(): Map<string, LocalEntry> {
    const out = new Map<string, LocalEntry>();
    for (const [path, n] of this.fs) {
      if (n.kind === "dir") {
        out.set(path, { path, kind: "dir", size: 0, mtime: 0, exec: false });
        continue;
      }
      const e: LocalEntry = {
        path,
        kind: "file",
        size: n.content.length,
        mtime: n.mtime,
        exec: n.exec,
      };
      const b = this.base.get(path);
      if (!(b && b.kind === "file" && b.size === e.size && b.mtime === e.mtime)) {
        e.hash = hashOf(n.content);
        e.chunks = chunksOf(n.content);
      }
      out.set(path, e);
    }
    return out;
  }

  /**
   * Called (then cleared) in the middle of the next pass that has work: `"planned"` after
   * reconcile, before anything ran; `"local"` after the local steps, before the commits. Lets the
   * simulation change things "meanwhile", as a user or another device would.
   */
  meanwhile: ((when: "planned" | "local") => void) | null = null;

  /** One pass: pull, scan, reconcile, execute. Returns null when there was nothing to do. */
  pass(now: Date): PassReport | null {
    this.pull();
    const actions = reconcile({
      base: this.base,
      local: this.scan(),
      remote: this.mirror,
      device: this.name,
      now,
    });
    if (actions.length === 0) return null;
    const report: PassReport = { actions, deferred: 0, errors: [] };
    const meanwhile = this.meanwhile;
    this.meanwhile = null;
    meanwhile?.("planned");
    this.#execute(actions, report, meanwhile);
    // A step that finds the disk changed under it may fail rather than defer (see the report);
    // such errors are kept apart: the next pass must still repair everything.
    (meanwhile ? this.interruptedErrors : this.errors).push(...report.errors);
    return report;
  }

  /** Passes until one has nothing to do; throws if that never happens within `maxPasses`. */
  sync(now: Date, maxPasses = 12): number {
    const history: string[] = [];
    for (let i = 0; i < maxPasses; i++) {
      const r = this.pass(now);
      if (!r) return i;
      const line = `pass ${i + 1}: ${r.actions.map(describe).join(", ")}` +
        (r.deferred ? ` (${r.deferred} deferred)` : "") +
        (r.errors.length ? ` ERRORS: ${r.errors.join("; ")}` : "");
      history.push(line);
      this.trace?.(`  ${this.name} ${line}`);
    }
    throw new Error(
      `${this.name} did not settle after ${maxPasses} passes:\n  ${history.slice(-4).join("\n  ")}`,
    );
  }

  #setBase(path: string, entry: BaseEntry | null): void {
    if (entry) this.base.set(path, entry);
    else this.base.delete(path);
  }

  readonly #copiesSaved = new Set<string>();

  /** Mirrors `executor.ts` `execute`, sequentially. */
  #execute(
    actions: Action[],
    report: PassReport,
    meanwhile: ((when: "planned" | "local") => void) | null,
  ): void {
    for (const a of actions) {
      if (a.op === "upload" || a.op === "mkdirRemote" || a.op === "deleteRemote") continue;
      try {
        this.#local(a, report);
      } catch (e) {
        report.errors.push(`${a.path}: ${(e as Error).message}`);
      }
    }
    const remote = actions.filter((a): a is RemoteAction =>
      a.op === "upload" || a.op === "mkdirRemote" || a.op === "deleteRemote"
    );
    meanwhile?.("local");
    if (remote.length > 0) this.#pushRemote(remote, report);
    this.#copiesSaved.clear();
  }

  #local(a: Exclude<Action, RemoteAction>, report: PassReport): void {
    switch (a.op) {
      case "moveAside": {
        if (!this.stillAsScanned(a.path, a.expect) || !this.stillAsScanned(a.to, null)) {
          report.deferred++;
          return;
        }
        if (!this.parentsAreDirs(a.to) || parentPaths(a.to).some((p) => !this.fs.has(p))) {
          throw new Error(`cannot rename to ${a.to}: no such directory`);
        }
        this.move(a.path, a.to);
        return;
      }
      case "mkdirLocal": {
        if (!this.parentsAreDirs(a.path)) {
          report.deferred++;
          return;
        }
        if (!a.replace) {
          const there = this.fs.get(a.path);
          if (there && there.kind !== "dir") {
            report.deferred++; // as the executor: something appeared there since the scan
            return;
          }
        } else {
          if (!this.stillAsScanned(a.path, a.replace)) {
            report.deferred++;
            return;
          }
          if (this.hasChildren(a.path)) throw new Error(`cannot remove ${a.path}: not empty`);
          this.fs.delete(a.path);
        }
        this.mkdirp(a.path);
        if (a.remote) this.#setBase(a.path, baseOfDir(a.path, a.remote.version));
        return;
      }
      case "download": {
        if (!this.parentsAreDirs(a.path)) {
          report.deferred++;
          return;
        }
        const content = this.server.contentOf(a.remote);
        if (hashOf(content) !== a.remote.hash) {
          throw new Error(`the assembled file does not match its hash`);
        }
        if (!this.stillAsScanned(a.path, a.replace)) {
          report.deferred++;
          return;
        }
        if (a.replace?.kind === "dir") {
          if (this.hasChildren(a.path)) {
            report.deferred++; // "blocked": Deno.remove of a non-empty directory fails
            return;
          }
          this.fs.delete(a.path);
        }
        const parents = parentPaths(a.path);
        const parent = parents[parents.length - 1];
        if (parent !== undefined) this.mkdirp(parent);
        this.fs.set(a.path, {
          kind: "file",
          content,
          exec: a.remote.exec,
          mtime: a.remote.mtime,
        });
        if (a.path !== a.remote.path && a.replace === null) this.#copiesSaved.add(a.path);
        if (a.path === a.remote.path || a.follows !== undefined) {
          const path = a.follows ?? a.path;
          this.#setBase(path, {
            path,
            kind: "file",
            version: a.remote.version,
            size: content.length,
            mtime: a.remote.mtime,
            exec: a.remote.exec,
            hash: a.remote.hash,
            chunks: a.remote.chunks,
          });
        }
        return;
      }
      case "deleteLocal": {
        if (!this.stillAsScanned(a.path, a.expect)) {
          report.deferred++;
          return;
        }
        if (a.expect.kind === "dir" && this.hasChildren(a.path)) {
          report.deferred++; // as the executor: keep the folder and its base, retry next pass
          return;
        }
        this.fs.delete(a.path);
        this.#setBase(a.path, null);
        return;
      }
      case "moveLocal": {
        const n = this.fs.get(a.path);
        if (
          !n || !this.stillAsScanned(a.path, a.expect) || !this.stillAsScanned(a.to, null) ||
          !this.parentsAreDirs(a.to)
        ) {
          report.deferred++;
          return;
        }
        const parents = parentPaths(a.to);
        const parent = parents[parents.length - 1];
        if (parent !== undefined) this.mkdirp(parent);
        this.fs.set(a.to, n);
        this.fs.delete(a.path);
        this.#setBase(a.path, null);
        return;
      }
      case "setMeta": {
        const n = this.fs.get(a.path);
        if (!n || !this.stillAsScanned(a.path, a.expect)) {
          report.deferred++;
          return;
        }
        this.fs.set(a.path, { ...n, exec: a.remote.exec, mtime: a.remote.mtime });
        this.#setBase(a.path, {
          path: a.path,
          kind: "file",
          version: a.remote.version,
          size: n.content.length,
          mtime: a.remote.mtime,
          exec: a.remote.exec,
          hash: a.remote.hash,
          chunks: a.remote.chunks,
        });
        return;
      }
      case "setBase":
        this.#setBase(a.path, a.entry);
        return;
    }
  }

  /** Mirrors `executor.ts` `pushRemote` and `transfer.ts` `uploadChunks`. */
  #pushRemote(actions: RemoteAction[], report: PassReport): void {
    const chunksOfLocal = (l: LocalEntry) => l.chunks ?? this.base.get(l.path)?.chunks ?? [];
    const hashOfLocal = (l: LocalEntry) => l.hash ?? this.base.get(l.path)?.hash ?? "";
    const uploads = actions.filter((a) => a.op === "upload");
    const where = new Map<string, string>();
    for (const a of uploads) {
      for (const c of chunksOfLocal(a.local)) if (!where.has(c.hash)) where.set(c.hash, a.path);
    }
    const changed = new Set<string>();
    for (const [hash, path] of where) {
      if (this.server.blobs.has(hash) || changed.has(path)) continue;
      const n = this.fs.get(path);
      if (!n || n.kind !== "file" || hashOf(n.content) !== hash) {
        changed.add(path);
        continue;
      }
      this.server.blobs.set(hash, n.content);
      this.chunksSent++;
    }
    if (changed.size > 0) {
      for (const a of uploads) {
        if (chunksOfLocal(a.local).some((c) => changed.has(where.get(c.hash)!))) {
          changed.add(a.path);
        }
      }
    }
    const items: { item: CommitItem; action: RemoteAction }[] = [];
    for (const a of actions) {
      if (a.op === "upload") {
        if (changed.has(a.path) || !this.stillAsScanned(a.path, a.local)) {
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
            hash: hashOfLocal(a.local),
            chunks: chunksOfLocal(a.local),
          },
        });
      } else {
        if (
          a.op === "mkdirRemote" &&
          ((a.after !== undefined && !this.#copiesSaved.has(a.after)) ||
            this.fs.get(a.path)?.kind !== "dir")
        ) {
          report.deferred++; // as the executor: the replaced remote file must be saved first
          continue;
        }
        items.push({
          action: a,
          item: {
            path: a.path,
            baseVersion: a.baseVersion,
            kind: a.op === "mkdirRemote" ? "dir" : a.kind,
            deleted: a.op === "deleteRemote",
            size: 0,
            mtime: 0,
            exec: false,
            hash: "",
            chunks: [],
          },
        });
      }
    }
    const results = this.server.commit(this.name, items.map((x) => x.item));
    items.forEach(({ item, action }, j) => {
      const res = results[j];
      if (!res) return;
      if (!res.ok) {
        if (res.reason === "conflict") report.deferred++;
        else report.errors.push(`${item.path}: ${res.message}`);
        return;
      }
      // As the executor: the mirror gets the committed item (device "" is what it records).
      const entry: RemoteEntry = { ...item, version: res.version, device: "" };
      if (entry.deleted) this.mirror.delete(item.path);
      else this.mirror.set(item.path, entry);
      if (item.deleted) this.#setBase(item.path, null);
      else if (action.op === "upload") {
        this.#setBase(item.path, {
          path: action.local.path,
          kind: action.local.kind,
          size: action.local.size,
          mtime: action.local.mtime,
          exec: action.local.exec,
          version: res.version,
          hash: item.hash,
          chunks: item.chunks,
        });
      } else this.#setBase(item.path, baseOfDir(item.path, res.version));
    });
  }
}

type RemoteAction = Extract<Action, { op: "upload" | "mkdirRemote" | "deleteRemote" }>;

/** A short human-readable form of an action, for failure messages. */
export function describe(a: Action): string {
  switch (a.op) {
    case "moveAside":
      return `moveAside ${a.path} -> ${a.to}`;
    case "download":
      return a.path === a.remote.path
        ? `download ${a.path}@${a.remote.version}`
        : `download ${a.remote.path}@${a.remote.version} as ${a.path}`;
    case "mkdirLocal":
      return `mkdirLocal ${a.path}${a.replace ? " (replacing)" : ""}`;
    case "deleteLocal":
      return `deleteLocal ${a.path}`;
    case "setBase":
      return `setBase ${a.path}${a.entry ? "@" + a.entry.version : " (forget)"}`;
    case "setMeta":
      return `setMeta ${a.path}@${a.remote.version}`;
    case "moveLocal":
      return `moveLocal ${a.path} -> ${a.to}`;
    case "upload":
      return `upload ${a.path} base ${a.baseVersion}`;
    case "mkdirRemote":
      return `mkdirRemote ${a.path} base ${a.baseVersion}`;
    case "deleteRemote":
      return `deleteRemote ${a.path} base ${a.baseVersion}`;
  }
}

/** A tree as sorted lines, for comparisons with readable diffs. */
export function treeLines(tree: ReadonlyMap<string, Node>): string[] {
  return [...tree].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([p, n]) =>
    n.kind === "dir" ? `${p}/` : `${p} = ${JSON.stringify(n.content)}${n.exec ? " +x" : ""}`
  );
}

const NAMES = ["a", "b", "c.txt", "d.txt", "e.md"];
const MAX_DEPTH = 3;

/** The whole world: a server, devices, a clock, a PRNG and the "live contents" bookkeeping. */
export class Sim {
  readonly server = new SimServer();
  readonly devices: SimDevice[];
  readonly rng: () => number;
  /** Contents that must still exist somewhere: written, and not deliberately removed since. */
  readonly live = new Set<string>();
  readonly log: string[] = [];
  #clock = 0;
  #counter = 0;
  #seconds = 0;

  constructor(readonly seed: number, names = ["alpha", "beta", "gamma"]) {
    this.rng = mulberry32(seed);
    this.devices = names.map((n) => new SimDevice(n, this.server));
    for (const d of this.devices) d.trace = (line) => this.log.push(line);
  }

  /** The wall clock reconcile sees (conflict names); advances one second per operation. */
  get now(): Date {
    return new Date(Date.UTC(2026, 0, 1) + this.#seconds * 1000);
  }

  tick(): void {
    this.#seconds++;
  }

  device(name: string): SimDevice {
    const d = this.devices.find((x) => x.name === name);
    if (!d) throw new Error(`no device ${name}`);
    return d;
  }

  newContent(dev: SimDevice): string {
    return `${dev.name}#${++this.#counter}`;
  }

  // ---- user operations (they keep the bookkeeping) ----

  /** Writes a file (creating parents); the overwritten content was seen, so it may go. */
  write(dev: SimDevice, path: string, content: string, exec = false): void {
    const old = dev.fs.get(path);
    if (old?.kind === "dir") throw new Error(`sim: ${path} is a directory on ${dev.name}`);
    if (old) this.live.delete(old.content);
    const parents = parentPaths(path);
    const parent = parents[parents.length - 1];
    if (parent !== undefined) dev.mkdirp(parent);
    dev.fs.set(path, { kind: "file", content, exec, mtime: ++this.#clock });
    this.live.add(content);
    this.log.push(`${dev.name}: write ${path} = ${JSON.stringify(content)}${exec ? " +x" : ""}`);
  }

  mkdir(dev: SimDevice, path: string): void {
    dev.mkdirp(path);
    this.log.push(`${dev.name}: mkdir ${path}`);
  }

  /** Deletes a file or a whole directory tree; every content in it was seen, so it may go. */
  remove(dev: SimDevice, path: string): void {
    for (const [p, n] of [...dev.fs]) {
      if (!isUnderOrAt(p, path)) continue;
      if (n.kind === "file") this.live.delete(n.content);
      dev.fs.delete(p);
    }
    this.log.push(`${dev.name}: rm -r ${path}`);
  }

  rename(dev: SimDevice, from: string, to: string): void {
    const parents = parentPaths(to);
    const parent = parents[parents.length - 1];
    if (parent !== undefined) dev.mkdirp(parent);
    dev.move(from, to);
    this.log.push(`${dev.name}: mv ${from} ${to}`);
  }

  chmod(dev: SimDevice, path: string): void {
    const n = dev.fs.get(path);
    if (!n || n.kind !== "file") throw new Error(`sim: cannot chmod ${path}`);
    n.exec = !n.exec; // like chmod: the mtime does not change
    this.log.push(`${dev.name}: chmod ${n.exec ? "+x" : "-x"} ${path}`);
  }

  sync(dev: SimDevice): number {
    const passes = dev.sync(this.now);
    this.log.push(`${dev.name}: sync (${passes} passes)`);
    return passes;
  }

  // ---- random operations ----

  pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[Math.floor(this.rng() * xs.length)];
  }

  #files(dev: SimDevice): string[] {
    return [...dev.fs].filter(([, n]) => n.kind === "file").map(([p]) => p).sort();
  }

  #dirs(dev: SimDevice): string[] {
    return [...dev.fs].filter(([, n]) => n.kind === "dir").map(([p]) => p).sort();
  }

  /** A path that does not exist yet on `dev`, under the root or an existing directory. */
  #freshPath(dev: SimDevice): string | undefined {
    for (let i = 0; i < 6; i++) {
      const dirs = ["", ...this.#dirs(dev).filter((d) => parentPaths(d).length < MAX_DEPTH - 1)];
      const dir = this.pick(dirs) ?? "";
      const path = (dir === "" ? "" : dir + "/") + this.pick(NAMES)!;
      if (!dev.fs.has(path)) return path;
    }
    return undefined;
  }

  /** One random operation. */
  step(): void {
    this.tick();
    const dev = this.pick(this.devices)!;
    const r = this.rng() * 100;
    if (r < 64) this.#edit(dev, r);
    else if (r < 72) this.#concurrentEdit(dev);
    else if (r < 78) {
      // A single pass only: the device is interrupted before it settles.
      if (dev.online) {
        const report = dev.pass(this.now);
        this.log.push(`${dev.name}: one pass (${report ? report.actions.length : 0} actions)`);
      }
    } else if (r < 94) {
      if (!dev.online) return;
      if (this.rng() < 0.3) this.#interrupt(dev);
      this.sync(dev);
      dev.meanwhile = null;
    } else {
      dev.online = !dev.online;
      this.log.push(`${dev.name}: ${dev.online ? "online" : "offline"}`);
    }
  }

  /** Makes something happen in the middle of `dev`'s next pass: a local edit or another sync. */
  #interrupt(dev: SimDevice): void {
    const at = this.rng() < 0.5 ? "planned" : "local";
    const local = this.rng() < 0.5;
    const other = this.pick(this.devices.filter((d) => d !== dev && d.online));
    dev.meanwhile = (when) => {
      if (when !== at) {
        dev.meanwhile = null;
        return;
      }
      this.log.push(`  (meanwhile, ${when === "planned" ? "before" : "after"} local steps)`);
      if (local || !other) this.#edit(dev, this.rng() * 64);
      else this.sync(other);
    };
  }

  /** One random local edit on `dev`; `r` in [0, 64) picks the kind. */
  #edit(dev: SimDevice, r: number): void {
    const files = this.#files(dev);
    const dirs = this.#dirs(dev);
    if (r < 16) {
      const p = this.#freshPath(dev);
      if (p) this.write(dev, p, this.newContent(dev), this.rng() < 0.15);
    } else if (r < 32) {
      const p = this.pick(files);
      if (p) this.write(dev, p, this.newContent(dev), dev.fs.get(p)!.exec);
    } else if (r < 38) {
      const p = this.pick(files);
      if (p) this.remove(dev, p);
    } else if (r < 44) {
      const p = this.pick(files);
      const to = this.#freshPath(dev);
      if (p && to) this.rename(dev, p, to);
    } else if (r < 46) {
      const p = this.pick(files);
      if (p) this.chmod(dev, p);
    } else if (r < 52) {
      const p = this.#freshPath(dev);
      if (p) {
        this.mkdir(dev, p);
        if (this.rng() < 0.6) this.write(dev, `${p}/${this.pick(NAMES)!}`, this.newContent(dev));
      }
    } else if (r < 56) {
      const p = this.pick(dirs);
      if (p) this.remove(dev, p);
    } else if (r < 60) {
      const p = this.pick(dirs);
      const to = this.#freshPath(dev);
      if (p && to && !isUnderOrAt(to, p)) this.rename(dev, p, to);
    } else {
      // Type change: a file becomes a directory (with content) or a directory becomes a file.
      const p = this.pick([...files, ...dirs]);
      if (p && dev.fs.get(p)!.kind === "file") {
        this.remove(dev, p);
        this.mkdir(dev, p);
        if (this.rng() < 0.7 && parentPaths(p).length < MAX_DEPTH - 1) {
          this.write(dev, `${p}/${this.pick(NAMES)!}`, this.newContent(dev));
        }
      } else if (p) {
        this.remove(dev, p);
        this.write(dev, p, this.newContent(dev));
      }
    }
  }

  /** Concurrent edits of one file on `dev` and another device between syncs (sometimes equal). */
  #concurrentEdit(dev: SimDevice): void {
    const other = this.pick(this.devices.filter((d) => d !== dev))!;
    const p = this.pick(this.#files(dev).filter((f) => other.fs.get(f)?.kind === "file"));
    if (!p) return;
    const same = this.rng() < 0.25;
    const c1 = same ? `same#${this.newContent(dev)}` : this.newContent(dev);
    this.write(dev, p, c1, dev.fs.get(p)!.exec);
    this.write(other, p, same ? c1 : this.newContent(other), other.fs.get(p)!.exec);
  }

  /** Brings every device online and syncs them all until a whole round has nothing to do. */
  settle(maxRounds = 10): void {
    for (const d of this.devices) d.online = true;
    for (let round = 0; round < maxRounds; round++) {
      this.tick();
      let busy = false;
      for (const d of this.devices) if (this.sync(d) > 0) busy = true;
      if (!busy) return;
    }
    throw new Error(`the devices did not settle after ${maxRounds} rounds`);
  }

  /** Problems with the settled world (empty when everything converged and nothing was lost). */
  problems(): string[] {
    const out: string[] = [];
    const server = treeLines(this.server.tree());
    for (const d of this.devices) {
      const mine = treeLines(d.fs);
      if (mine.join("\n") !== server.join("\n")) {
        const onlyMine = mine.filter((l) => !server.includes(l));
        const onlyServer = server.filter((l) => !mine.includes(l));
        out.push(
          `${d.name} differs from the server: only on ${d.name}: ${JSON.stringify(onlyMine)}; ` +
            `only on the server: ${JSON.stringify(onlyServer)}`,
        );
      }
      for (const e of d.errors) out.push(`${d.name} had an error: ${e}`);
    }
    for (const e of this.server.entries.values()) {
      if (e.deleted) continue;
      for (const p of parentPaths(e.path)) {
        const parent = this.server.entries.get(p);
        if (!parent || parent.deleted || parent.kind !== "dir") {
          out.push(`server: ${e.path} is live but its parent ${p} is not a live directory`);
        }
      }
    }
    const contents = new Set<string>();
    for (const n of this.server.tree().values()) if (n.kind === "file") contents.add(n.content);
    for (const d of this.devices) {
      for (const n of d.fs.values()) if (n.kind === "file") contents.add(n.content);
    }
    const lost = [...this.live].filter((c) => !contents.has(c)).sort();
    if (lost.length > 0) out.push(`content lost: ${JSON.stringify(lost)}`);
    return out;
  }
}
