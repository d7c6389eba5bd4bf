/**
 * The real-code simulator: N devices, each the real sync engine (`syncUntilStable`: scanner,
 * reconcile, executor, transfer, state database) on an in-memory filesystem (`MemFs`), against the
 * real server (`Session` and its SQLite and pack stores) over in-memory connections. A seeded
 * random schedule of user operations and faults runs; then everyone syncs until nothing is left
 * to do, and the world must have converged without losing anything.
 *
 * Operations: new, edited, empty, private and executable files; deletions; moves and renames of
 * files and folders (case-only ones too); folders deleted, moved into deleted folders, swapped
 * for files; metadata-only changes; the same file edited on two devices; mass deletions.
 * Passes: full, or scoped to what the user changed (as the watcher reports), mixed.
 * Faults: a connection dropped after some requests, a reply lost after the server did the work,
 * a full disk, a user edit while a download is written, an unreadable file, and a device killed
 * between any two filesystem steps (it restarts from its state database; content it had not
 * fsynced is lost, as after a real crash).
 *
 * @module
 */

import { join } from "node:path";
import { MemFs, type MemOp } from "../../lib/client/fs/mem_fs.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import { Staging } from "../../lib/client/staging.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { type EngineContext, syncUntilStable } from "../../lib/client/engine.ts";
import { Attention } from "../../lib/core/attention.ts";
import { parentPaths } from "../../lib/core/paths.ts";
import { applyAliases, type PlatformTraits } from "../../lib/core/local_names.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import type { MemPipe } from "../support/mem_pipe.ts";
import { MemServer } from "../support/mem_server.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";
import { madeProgress, summaryLine } from "../../lib/core/outcomes.ts";
import { setDebugTag } from "../../lib/util/debug.ts";

/** A small deterministic PRNG (mulberry32). */
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

const NAMES = ["a", "b", "c.txt", "C.txt", "d.txt", "e.md"];
const MAX_DEPTH = 3;
const enc = new TextEncoder();

/** Thrown inside a device's step when the schedule kills it. */
class Killed extends Error {
  constructor() {
    super("killed by the simulator");
  }
}

/** One simulated device (see the module doc). */
export class SimDevice {
  readonly fs: MemFs;
  state: StateDb;
  staging: Staging;
  attention = new Attention();
  peer: Peer | null = null;
  pipe: MemPipe | null = null;
  online = true;
  /** User changes since the last pass (what the watcher would report). */
  readonly changed = new Set<string>();
  /** Errors a pass threw that no fault explains. */
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  /** Let the next pass through the mass-delete guard (the user confirmed). */
  allowMassDelete = false;
  #fullNext = false;
  #account = "";
  #deviceId = "";
  #token = "";

  constructor(
    readonly name: string,
    readonly world: SimWorld,
    readonly dir: string,
    platform: PlatformTraits,
  ) {
    this.fs = new MemFs(platform);
    // Each machine's clock: apart, so that a write here never gets by chance the very
    // modification time (and size) of a version downloaded from another device.
    this.fs.time += world.devices.length * 1e9;
    this.fs.mkdirSync(".cloudsync/tmp", true);
    this.state = new StateDb(dir, { durable: false });
    this.staging = new Staging(this.fs, ".cloudsync/tmp");
  }

  /** Signs in (registers the account for the first device, else enrolls with its serial). */
  async join(serial: string | null): Promise<string | null> {
    const { peer, pipe } = await this.world.server.connect({
      afterHandle: (t, p) => this.world.afterHandle(this, t, p),
    });
    const h = serial
      ? (await peer.request({ t: "enroll", serial, device: this.name })).header
      : (await peer.request({ t: "register", device: this.name })).header;
    this.#account = String(h.account);
    this.#deviceId = String(h.deviceId);
    this.#token = String(h.token);
    this.peer = peer;
    this.pipe = pipe;
    return typeof h.serial === "string" ? h.serial : null;
  }

  get account(): string {
    return this.#account;
  }

  async #connect(): Promise<void> {
    if (this.peer && !this.pipe?.broken) return;
    this.peer?.close();
    const { peer, pipe } = await this.world.server.connect({
      afterHandle: (t, p) => this.world.afterHandle(this, t, p),
    });
    await peer.request({
      t: "auth",
      account: this.#account,
      deviceId: this.#deviceId,
      token: this.#token,
    });
    this.peer = peer;
    this.pipe = pipe;
  }

  /** A pass (or several, until stable): full, or scoped to what the user changed. */
  async sync(scoped: boolean): Promise<boolean> {
    this.fs.advance(200); // the watcher's debounce: what was just written has settled a bit
    setDebugTag(this.name);
    const scopes = scoped && !this.#fullNext ? [...this.changed] : null;
    this.#fullNext = false;
    const taken = [...this.changed];
    this.changed.clear();
    let progress = false;
    try {
      await this.#connect();
      const ctx: EngineContext = {
        peer: this.peer!,
        fs: this.fs,
        staging: this.staging,
        state: this.state,
        device: this.name,
        stats: newStats(),
        log: () => {},
        warn: (l) => this.warnings.push(l),
        allowMassDelete: this.allowMassDelete,
        attention: this.attention,
      };
      const t = await syncUntilStable(ctx, scopes, 12);
      this.allowMassDelete = false;
      if (t && this.world.verbose) {
        const line = summaryLine(t, { up: 0, down: 0 }, 0);
        if (line) this.world.note(`  ${this.name}: ${line}`);
      }
      if (t) {
        progress = madeProgress(t) || t.refused > 0;
        for (const f of t.failures) {
          if (!this.world.faulty) this.errors.push(`${f.path}: ${f.reason}`);
        }
      }
    } catch (e) {
      if (!this.world.explains(e)) this.errors.push(`pass threw: ${(e as Error).stack ?? e}`);
      progress = true; // something was interrupted: look again
      // As the client: after a failed pass (a reconnection), the next one scans everything; the
      // watcher's reports are not lost.
      for (const p of taken) this.changed.add(p);
      this.#fullNext = true;
    } finally {
      if (this.fs.dead) await this.restart();
    }
    return progress;
  }

  /** After a kill: what was not fsynced is lost, the state database is reopened, caches gone. */
  async restart(): Promise<void> {
    this.fs.revive();
    this.fs.crash();
    this.state.close();
    this.state = new StateDb(this.dir, { durable: false });
    this.staging = new Staging(this.fs, ".cloudsync/tmp");
    this.attention = new Attention();
    this.peer?.close();
    this.peer = null;
    this.pipe = null;
    // The client's start: leftovers in tmp other than partial downloads go.
    for (const e of await this.fs.readDir(".cloudsync/tmp")) {
      if (!e.name.startsWith("partial-")) this.fs.removeSync(`.cloudsync/tmp/${e.name}`);
    }
  }

  /** The folder as `path -> description`, for comparisons. */
  tree(): Map<string, string> {
    const out = new Map<string, string>();
    for (
      const [p, v] of this.fs.snapshot({
        skip: (p) => p === ".cloudsync" || p.startsWith(".cloudsync/"),
      })
    ) {
      out.set(this.world.key(p), v === "dir" ? "dir" : v);
    }
    return out;
  }

  close(): void {
    this.peer?.close();
    this.state.close();
  }
}

/** The whole world: the server, the devices, the PRNG, the live contents. */
export class SimWorld {
  devices: SimDevice[] = [];
  readonly log: string[] = [];
  /** Contents that must still exist somewhere: written, and not deliberately removed since. */
  readonly live = new Set<string>();
  /** True while a fault is scheduled (its failures are expected). */
  faulty = false;
  /** Log every pass's summary too, and print the log as it goes (replaying one seed). */
  verbose = false;

  /** One line of the operation log. */
  note(line: string): void {
    this.log.push(line);
    if (this.verbose) console.error(line);
  }
  readonly rng: () => number;
  #counter = 0;
  #cutAfter: { device: SimDevice; type: string | null; countdown: number } | null = null;
  #top = "";

  private constructor(readonly seed: number, readonly server: MemServer, readonly faults: boolean) {
    this.rng = mulberry32(seed);
  }

  /** A world of `names.length` devices; the last one has Windows-like name rules when `windows`. */
  static async create(
    seed: number,
    opts: { names?: string[]; faults?: boolean; windows?: boolean } = {},
  ): Promise<SimWorld> {
    const server = await MemServer.start();
    const w = new SimWorld(seed, server, opts.faults ?? true);
    w.#top = await Deno.makeTempDir({ prefix: "cloudsync-sim-", dir: server.dir });
    const names = opts.names ?? ["alpha", "beta", "gamma"];
    let serial: string | null = null;
    for (const [i, n] of names.entries()) {
      const windows = opts.windows === true && i === names.length - 1 && names.length > 1;
      const platform = windows
        ? { caseInsensitive: true, windowsNames: true }
        : { caseInsensitive: false, windowsNames: false };
      await Deno.mkdir(join(w.#top, n), { recursive: true });
      const d = new SimDevice(n, w, join(w.#top, n), platform);
      const s = await d.join(serial);
      serial ??= s;
      w.devices.push(d);
    }
    return w;
  }

  /** How paths are compared across devices (as they are: devices here hold names as sent). */
  key(path: string): string {
    return path;
  }

  async close(): Promise<void> {
    for (const d of this.devices) d.close();
    await this.server.close();
  }

  /** Whether an error thrown by a pass is the doing of a scheduled fault. */
  explains(e: unknown): boolean {
    if (e instanceof Killed) return true;
    const m = e instanceof Error ? e.message : String(e);
    return this.faulty &&
      /closed|Broken pipe|killed|No space left|permission denied|Permission/i.test(m);
  }

  /** Called by the server after each request: a scheduled cut happens here. */
  afterHandle(dev: SimDevice, type: string, pipe: MemPipe): void {
    const c = this.#cutAfter;
    if (!c || c.device !== dev) return;
    if (c.type !== null && c.type !== type) return;
    if (--c.countdown > 0) return;
    this.#cutAfter = null;
    this.note(`  (fault: ${dev.name}'s connection cut after ${type})`);
    pipe.cut();
  }

  newContent(dev: SimDevice): string {
    return `${dev.name}#${++this.#counter}`;
  }

  // ---- user operations (they keep the bookkeeping) ----

  #touched(dev: SimDevice, path: string): void {
    dev.changed.add(path);
  }

  /** Writes a file in place (creating folders); the overwritten content was seen, so it may go. */
  write(dev: SimDevice, path: string, content: string, mode?: number): void {
    const st = dev.fs.lstat(path);
    if (st?.kind === "dir") return;
    const old = dev.fs.readText(path);
    if (old !== null) this.live.delete(old);
    dev.fs.writeBytes(path, enc.encode(content), mode ?? (st?.mode ?? 0o644));
    if (content !== "") this.live.add(content);
    this.#touched(dev, path);
    this.note(`${dev.name}: write ${path} = ${JSON.stringify(content)}`);
  }

  mkdir(dev: SimDevice, path: string): void {
    try {
      dev.fs.mkdirSync(path, true);
      this.#touched(dev, path);
      this.note(`${dev.name}: mkdir ${path}`);
    } catch { /* a file on the way */ }
  }

  /** Deletes a file or a whole tree; every content in it was seen, so it may go. */
  remove(dev: SimDevice, path: string): void {
    const walk = (p: string) => {
      const st = dev.fs.lstat(p);
      if (!st) return;
      if (st.kind === "dir") {
        for (const [q, v] of dev.fs.snapshot()) {
          if (q.startsWith(p + "/") && v.startsWith("file:")) this.live.delete(v.slice(5));
        }
        const all = [...dev.fs.snapshot().keys()].filter((q) => q.startsWith(p + "/")).reverse();
        for (const q of all) dev.fs.removeSync(q);
      } else {
        const t = dev.fs.readText(p);
        if (t !== null) this.live.delete(t);
      }
      dev.fs.removeSync(p);
    };
    walk(path);
    this.#touched(dev, path);
    this.note(`${dev.name}: rm -r ${path}`);
  }

  rename(dev: SimDevice, from: string, to: string): void {
    const there = dev.fs.lstat(to);
    // Never over something else (a user's mv over a file destroys it deliberately; not modelled).
    if (there && there.ino !== dev.fs.lstat(from)?.ino) return;
    try {
      const parents = parentPaths(to);
      const parent = parents[parents.length - 1];
      if (parent !== undefined) dev.fs.mkdirSync(parent, true);
      dev.fs.renameSync(from, to);
      this.#touched(dev, from);
      this.#touched(dev, to);
      this.note(`${dev.name}: mv ${from} ${to}`);
    } catch { /* not possible here (a file on the way): nothing happened */ }
  }

  /** A metadata-only change: permissions or modification time. */
  meta(dev: SimDevice, path: string): void {
    const st = dev.fs.lstat(path);
    if (st?.kind !== "file") return;
    if (this.rng() < 0.5) {
      const mode = st.mode === 0o755 ? 0o644 : this.rng() < 0.5 ? 0o755 : 0o600;
      dev.fs.chmodSync(path, mode);
      this.note(`${dev.name}: chmod ${mode.toString(8)} ${path}`);
    } else {
      const t = dev.fs.now() - Math.floor(this.rng() * 1e9);
      dev.fs.utimeSync(path, t);
      this.note(`${dev.name}: touch -d ${new Date(t).toISOString()} ${path}`);
    }
    this.#touched(dev, path);
  }

  // ---- random operations ----

  pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[Math.floor(this.rng() * xs.length)];
  }

  #items(dev: SimDevice, kind: "file" | "dir"): string[] {
    return [...dev.fs.snapshot({ skip: (p) => p === ".cloudsync" || p.startsWith(".cloudsync/") })]
      .filter(([, v]) => (kind === "dir") === (v === "dir")).map(([p]) => p).sort();
  }

  /** A path that does not exist yet on `dev`, under the root or an existing folder. */
  #freshPath(dev: SimDevice): string | undefined {
    for (let i = 0; i < 6; i++) {
      const dirs = [
        "",
        ...this.#items(dev, "dir").filter((d) => parentPaths(d).length < MAX_DEPTH - 1),
      ];
      const dir = this.pick(dirs) ?? "";
      const path = (dir === "" ? "" : dir + "/") + this.pick(NAMES)!;
      if (!dev.fs.lstat(path)) return path;
    }
    return undefined;
  }

  /** One random local change on `dev`. */
  edit(dev: SimDevice): void {
    const files = this.#items(dev, "file");
    const dirs = this.#items(dev, "dir");
    const r = this.rng() * 100;
    if (r < 20) {
      const p = this.#freshPath(dev);
      const mode = this.rng() < 0.1 ? 0o755 : this.rng() < 0.1 ? 0o600 : 0o644;
      if (p) this.write(dev, p, this.rng() < 0.05 ? "" : this.newContent(dev), mode);
    } else if (r < 40) {
      const p = this.pick(files);
      if (p) this.write(dev, p, this.newContent(dev));
    } else if (r < 46) {
      const p = this.pick(files);
      if (p) this.remove(dev, p);
    } else if (r < 54) {
      const p = this.pick(files);
      if (!p) return;
      if (this.rng() < 0.2) {
        // A case-only rename of the last name.
        const i = p.lastIndexOf("/");
        const name = p.slice(i + 1);
        const other = name === name.toUpperCase() ? name.toLowerCase() : name.toUpperCase();
        if (other !== name) this.rename(dev, p, p.slice(0, i + 1) + other);
      } else {
        const to = this.#freshPath(dev);
        if (to) this.rename(dev, p, to);
      }
    } else if (r < 58) {
      const p = this.pick(files);
      if (p) this.meta(dev, p);
    } else if (r < 66) {
      const p = this.#freshPath(dev);
      if (p) {
        this.mkdir(dev, p);
        if (this.rng() < 0.6) this.write(dev, `${p}/${this.pick(NAMES)!}`, this.newContent(dev));
      }
    } else if (r < 71) {
      const p = this.pick(dirs);
      if (p) this.remove(dev, p);
    } else if (r < 77) {
      const p = this.pick(dirs);
      const to = this.#freshPath(dev);
      if (p && to && !(to === p || to.startsWith(p + "/"))) this.rename(dev, p, to);
    } else if (r < 82) {
      // A type swap: a file becomes a folder (with content) or a folder becomes a file.
      const p = this.pick([...files, ...dirs]);
      if (!p) return;
      if (dev.fs.lstat(p)?.kind === "file") {
        this.remove(dev, p);
        this.mkdir(dev, p);
        if (this.rng() < 0.7 && parentPaths(p).length < MAX_DEPTH - 1) {
          this.write(dev, `${p}/${this.pick(NAMES)!}`, this.newContent(dev));
        }
      } else {
        this.remove(dev, p);
        this.write(dev, p, this.newContent(dev));
      }
    } else if (r < 97) {
      // The same file edited on two devices between syncs (sometimes identically).
      const other = this.pick(this.devices.filter((d) => d !== dev))!;
      const p = this.pick(files.filter((f) => other.fs.lstat(f)?.kind === "file"));
      if (!p) return;
      const same = this.rng() < 0.25;
      const c1 = same ? `same#${this.newContent(dev)}` : this.newContent(dev);
      this.write(dev, p, c1);
      this.write(other, p, same ? c1 : this.newContent(other));
    } else {
      // A mass deletion (confirmed by the user half of the time, as a deliberate clean-up).
      for (const p of [...files, ...dirs].filter((x) => !x.includes("/"))) this.remove(dev, p);
      if (this.rng() < 0.5) dev.allowMassDelete = true;
      this.note(`${dev.name}: mass deletion${dev.allowMassDelete ? " (confirmed)" : ""}`);
    }
  }

  /** Schedules one fault for `dev`'s next sync (or none). */
  #fault(dev: SimDevice): string | null {
    if (!this.faults) return null;
    const r = this.rng() * 100;
    if (r < 6) {
      this.#cutAfter = { device: dev, type: null, countdown: 1 + Math.floor(this.rng() * 6) };
      return "connection drop";
    }
    if (r < 10) {
      this.#cutAfter = { device: dev, type: "commit", countdown: 1 };
      return "reply lost after commit";
    }
    if (r < 16) {
      // Killed before the n-th filesystem step of the pass.
      let n = 1 + Math.floor(this.rng() * 40);
      dev.fs.before = (_op: MemOp) => {
        if (--n > 0) return;
        dev.fs.before = null;
        const k = new Killed();
        dev.fs.kill(k);
        dev.pipe?.cut();
        throw k;
      };
      return "kill";
    }
    if (r < 19) {
      dev.fs.capacity = dev.fs.usedBytes() + Math.floor(this.rng() * 40);
      return "disk full";
    }
    if (r < 24) {
      // The user edits a file while a download is being written.
      let done = false;
      dev.fs.before = (op: MemOp, path: string) => {
        if (done || op !== "write" || !path.startsWith(".cloudsync/tmp/")) return;
        done = true;
        const p = this.pick(this.#items(dev, "file"));
        if (p) {
          this.note(`  (meanwhile ${dev.name} edits ${p})`);
          this.write(dev, p, this.newContent(dev));
        }
      };
      return "edit during transfer";
    }
    if (r < 27) {
      const p = this.pick(this.#items(dev, "file"));
      if (!p) return null;
      dev.fs.before = (op: MemOp, path: string) => {
        if (path === p && (op === "read" || op === "readDir")) {
          throw new Deno.errors.PermissionDenied(`Permission denied (os error 13): ${p}`);
        }
      };
      return `unreadable ${p}`;
    }
    return null;
  }

  #clearFaults(dev: SimDevice): void {
    dev.fs.before = null;
    dev.fs.capacity = Number.POSITIVE_INFINITY;
    this.#cutAfter = null;
    this.faulty = false;
  }

  /** One random step: a local change, a sync (maybe with a fault), or going offline/online. */
  async step(): Promise<void> {
    const dev = this.pick(this.devices)!;
    const r = this.rng() * 100;
    if (r < 60) this.edit(dev);
    else if (r < 94) {
      if (!dev.online) return;
      const fault = this.#fault(dev);
      this.faulty = fault !== null;
      const scoped = this.rng() < 0.5;
      this.note(
        `${dev.name}: sync (${scoped ? "scoped" : "full"})${fault ? ` with ${fault}` : ""}`,
      );
      await dev.sync(scoped);
      this.#clearFaults(dev);
    } else {
      dev.online = !dev.online;
      this.note(`${dev.name}: ${dev.online ? "online" : "offline"}`);
    }
  }

  /** Brings every device online and syncs them all until a whole round has nothing to do. */
  async settle(maxRounds = 12): Promise<void> {
    for (const d of this.devices) {
      d.online = true;
      // Whatever the guard held back, the user confirms now (the one way out without restore).
      d.allowMassDelete = true;
    }
    for (let round = 0; round < maxRounds; round++) {
      this.note(`(settle round ${round + 1})`);
      let busy = false;
      for (const d of this.devices) {
        d.fs.advance(10_000); // holds and settle times run out
        if (await d.sync(false)) busy = true;
      }
      if (!busy) return;
    }
    throw new Error(`the devices did not settle after ${maxRounds} rounds`);
  }

  /** What the server holds: `key(path) -> "dir"` or `"file:HASH"`. */
  async serverTree(): Promise<Map<string, string>> {
    const meta = this.server.stores.meta;
    const out = new Map<string, string>();
    const account = this.devices[0]!.account;
    let since = 0;
    for (;;) {
      const page = await meta.changes(account, since, 5000);
      for (const e of page) {
        if (e.deleted) out.delete(this.key(e.path));
        else out.set(this.key(e.path), e.kind === "dir" ? "dir" : `file:${e.hash}`);
      }
      if (page.length < 5000) break;
      since = page[page.length - 1]!.version;
    }
    return out;
  }

  /** Problems with the settled world (empty when everything converged and nothing was lost). */
  async problems(): Promise<string[]> {
    const out: string[] = [];
    const server = await this.serverTree();
    for (const d of this.devices) {
      const mine = new Map<string, string>();
      for (const [p, v] of d.tree()) {
        mine.set(p, v === "dir" ? "dir" : `file:${sha256Hex(enc.encode(v.slice(5)))}`);
      }
      // A case-insensitive device holds some wire paths under other local names (its aliases).
      const aliases = d.state.loadAliases();
      const expected = new Map<string, string>();
      for (const [p, v] of server) expected.set(applyAliases(p, aliases), v);
      const diff: string[] = [];
      for (const [p, v] of expected) {
        if (mine.get(p) !== v) diff.push(`${p}: server ${v}, ${d.name} ${mine.get(p) ?? "-"}`);
      }
      for (const [p, v] of mine) if (!expected.has(p)) diff.push(`${p}: only on ${d.name} (${v})`);
      if (diff.length > 0) {
        out.push(`${d.name} differs from the server: ${diff.slice(0, 6).join("; ")}`);
      }
      for (const e of d.errors) out.push(`${d.name} had an error: ${e}`);
    }
    const contents = new Set<string>();
    for (const d of this.devices) {
      for (const v of d.tree().values()) if (v.startsWith("file:")) contents.add(v.slice(5));
    }
    const lost = [...this.live].filter((c) => !contents.has(c)).sort();
    if (lost.length > 0) out.push(`content lost: ${JSON.stringify(lost)}`);
    return out;
  }
}

/**
 * Runs one seed of `ops` random steps, then settles; returns null when the world converged
 * without losing anything, else a message naming the seed, its problems and how to replay it.
 * `verbose` prints every operation, fault and pass summary as it goes.
 */
export async function runSeed(
  seed: number,
  ops: number,
  opts: { verbose?: boolean; windows?: boolean } = {},
): Promise<string | null> {
  const windows = opts.windows ?? false;
  const w = await SimWorld.create(seed, { windows });
  w.verbose = opts.verbose ?? false;
  const replay =
    `replay: deno test --allow-all tests/sim/convergence_test.ts -- --seed=${seed} --ops=${ops}${
      windows ? " --windows" : ""
    }`;
  try {
    for (let i = 0; i < ops; i++) await w.step();
    await w.settle();
    const problems = await w.problems();
    if (problems.length === 0) return null;
    return `seed ${seed}:\n  ${problems.join("\n  ")}\n${replay}`;
  } catch (e) {
    return `seed ${seed}: ${(e as Error).stack}\n${replay}`;
  } finally {
    await w.close();
  }
}
