/**
 * The client's life cycle: take the folder (checked, locked, writable: `folder_setup.ts`), settle
 * its enrollment (`enrollment.ts`), then keep it in sync: connect with backoff, sync until
 * stable, and sync again on every local change (watcher, debounced), every server push, and every
 * SECONDS (full consistency pass).
 *
 * @module
 */

import { choosePass } from "../core/pass_choice.ts";
import { debug, debugMemory } from "../util/debug.ts";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { Peer } from "../protocol/peer.ts";
import { ConnectionClosedError, RemoteError } from "../protocol/peer.ts";
import {
  type ClientConfig,
  REQUESTS_DIR,
  saveConfig,
  serverTrust,
  STATE_DIR,
  stateDir,
  withServerTrust,
} from "./config.ts";
import { CertificateError, describeConnectError, dial } from "./connection.ts";
import { enroll, FatalError } from "./enrollment.ts";
import { type FolderPossession, FolderSetupError, takeFolder } from "./folder_setup.ts";
import { FolderInUseError } from "./folder_lock.ts";
import { EXIT, type ExitCode, REFUSAL_CODES } from "../util/exit_codes.ts";
import { StateDb } from "./state_db.ts";
import { type EngineContext, syncUntilStable } from "./engine.ts";
import { DenoFs } from "./fs/deno_fs.ts";
import { PARTIAL_PREFIX, Staging } from "./staging.ts";
import { FolderWatcher } from "./watcher.ts";
import { indexLocalChunks, newStats, type TransferStats } from "./transfer.ts";
import { STREAM_MIN } from "./executor.ts";
import { parseRemoteEntry } from "../protocol/messages.ts";
import { checkWirePath } from "../core/paths.ts";
import type { RemoteEntry } from "../core/types.ts";
import { ProgressLine } from "./progress.ts";
import { Attention } from "../core/attention.ts";
import { IgnoreFiles } from "./ignore_files.ts";
import { activityLine, summaryLine } from "../core/outcomes.ts";
import { FolderStatus } from "./folder_status.ts";
import { WAIT_FILE, WAIT_PATH } from "./status_file.ts";

/** Command-line settings of the client. */
export interface ClientOptions {
  host: string;
  port: number;
  folder: string;
  /** Period of the full consistency pass and cap of the reconnect backoff, in seconds. */
  seconds: number;
  /** A serial code, checked for format (see `normalizeSerial`). */
  serial?: string;
  /** `--rejoin`: move an enrolled folder to the account of `serial`. */
  rejoin?: boolean;
  /** Device name shown in conflict copies and on the server (default: host name). */
  name?: string;
  /** `--server-fingerprint`: the server's TLS certificate must have this fingerprint. */
  serverFingerprint?: string;
  /** `--server-ca`: PEM of the authority that issues the server's TLS certificate. */
  serverCa?: string;
  /** Propagate even when more than half of the synced files vanished at once. */
  allowMassDelete?: boolean;
  /** `-v`: one line per file sent, received, moved, deleted, conflicted or failed. */
  verbose?: boolean;
  /** How the user runs this program, for the join line (default `cloud-client`). */
  command?: string;
}

/** A wake-up signal: `wait` resolves on `fire` or after a timeout, whichever comes first. */
class Signal {
  #fired = false;
  #wake: (() => void) | null = null;

  fire(): void {
    this.#fired = true;
    this.#wake?.();
  }

  async wait(ms: number): Promise<void> {
    if (!this.#fired) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((res) => {
        this.#wake = res;
        timer = setTimeout(res, ms);
      });
      clearTimeout(timer);
      this.#wake = null;
    }
    this.#fired = false;
  }
}

function isFatal(e: unknown): boolean {
  return e instanceof FatalError || e instanceof CertificateError ||
    (e instanceof RemoteError && REFUSAL_CODES.includes(e.code));
}

/** The exit code for an error that ends the client (see `util/exit_codes.ts`). */
export function exitCodeOf(e: unknown): ExitCode {
  if (e instanceof FatalError) return e.exitCode;
  if (e instanceof CertificateError) return EXIT.certificate;
  if (e instanceof RemoteError && REFUSAL_CODES.includes(e.code)) return EXIT.refused;
  if (e instanceof FolderSetupError || e instanceof FolderInUseError) return EXIT.folder;
  return EXIT.retry;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** A running client; `stop()` ends it cleanly. */
export class SyncClient {
  readonly #opts: ClientOptions;
  readonly #root: string;
  readonly #wake = new Signal();
  #stopped = false;
  #scopes = new Set<string>();
  #fullScan = true;
  /** The due full pass was put off once for a change's pass (`core/pass_choice.ts`). */
  #fullDeferred = false;
  /** The server said something changed since the last pass began. */
  #pushed = false;
  #lastFullScan = 0;
  #peer: Peer | null = null;
  #watcher: FolderWatcher | null = null;
  #state: StateDb | null = null;
  #fs: DenoFs | null = null;
  #staging: Staging | null = null;
  #ignore: IgnoreFiles | null = null;
  #saidNoRename = false;
  #recheckTimer: ReturnType<typeof setTimeout> | undefined;
  /** The folder, while this client holds it. */
  #folder: FolderPossession | null = null;
  /** What to look at again and what to leave alone, kept across reconnections. */
  readonly #attention = new Attention();
  readonly #stats: TransferStats = newStats();
  readonly #progress = new ProgressLine(this.#stats);
  /** What `cloud-client status` reads, once the folder is enrolled. */
  #status: FolderStatus | null = null;
  readonly #log: (line: string) => void;
  readonly #warn: (line: string) => void;
  readonly #activity: (line: string) => void;

  /**
   * `log` and `warn` print lines (stdout, stderr); `activity` prints the `-v` lines (the caller
   * adds the time of day). The progress line is erased before each.
   */
  constructor(
    opts: ClientOptions,
    log = (l: string) => console.log(l),
    warn = (l: string) => console.error(l),
    activity = log,
  ) {
    this.#opts = opts;
    this.#root = resolve(opts.folder);
    const clearing = (f: (l: string) => void) => (l: string) => {
      this.#progress.clear();
      f(l);
    };
    this.#log = clearing(log);
    this.#warn = clearing(warn);
    this.#activity = clearing(activity);
  }

  /** Enrolls if needed, then syncs until stopped. Resolves with the process exit code. */
  async run(): Promise<number> {
    let folder: FolderPossession;
    const enrolled = isFile(join(stateDir(this.#root), "config.json"));
    try {
      folder = takeFolder(this.#root, { probe: !enrolled, log: this.#log });
    } catch (e) {
      this.#warn((e as Error).message);
      return exitCodeOf(e);
    }
    this.#folder = folder;
    try {
      return await this.#run(folder);
    } finally {
      this.#folder = null;
      folder.release();
    }
  }

  async #run(folder: FolderPossession): Promise<number> {
    let config: ClientConfig;
    try {
      ({ config } = await enroll(this.#root, {
        host: this.#opts.host,
        port: this.#opts.port,
        seconds: this.#opts.seconds,
        ...(this.#opts.serial ? { serial: this.#opts.serial } : {}),
        ...(this.#opts.name !== undefined ? { name: this.#opts.name } : {}),
        ...(this.#opts.rejoin ? { rejoin: true } : {}),
        ...(this.#opts.serverFingerprint
          ? { serverFingerprint: this.#opts.serverFingerprint }
          : {}),
        ...(this.#opts.serverCa ? { serverCa: this.#opts.serverCa } : {}),
        ...(this.#opts.command !== undefined ? { command: this.#opts.command } : {}),
        log: this.#log,
        warn: this.#warn,
        wait: (ms) => this.#wake.wait(ms),
        stopped: () => this.#stopped,
      }));
    } catch (e) {
      if (!isFile(join(stateDir(this.#root), "config.json"))) folder.undo();
      if (this.#stopped) return EXIT.ok;
      this.#warn((e as Error).message);
      return exitCodeOf(e);
    }
    if (this.#stopped) return 0;
    const dir = stateDir(this.#root);
    const tmpDir = join(dir, "tmp");
    // Leftovers of a previous run: partial downloads younger than a week are kept (they resume),
    // everything else goes.
    for (const e of Deno.readDirSync(tmpDir)) {
      const path = join(tmpDir, e.name);
      const age = Date.now() - (Deno.statSync(path).mtime?.getTime() ?? 0);
      if (e.isFile && e.name.startsWith(PARTIAL_PREFIX) && age < 7 * 24 * 3600 * 1000) continue;
      Deno.removeSync(path, { recursive: true });
    }
    this.#state = new StateDb(dir);
    this.#fs = new DenoFs(this.#root);
    this.#staging = new Staging(this.#fs, `${STATE_DIR}/tmp`);
    this.#ignore = new IgnoreFiles(this.#fs, this.#warn);
    this.#watcher = new FolderWatcher(this.#root, (paths) => this.#changed(paths), {
      onError: this.#warn,
      bells: [WAIT_FILE],
    });
    this.#watcher.start();
    this.#status = new FolderStatus(this.#root, config);
    this.#log(`Syncing ${this.#root} with ${config.host}:${config.port} as "${config.deviceName}"`);
    try {
      return await this.#loop(config);
    } finally {
      clearTimeout(this.#recheckTimer);
      this.#watcher.close();
      this.#state.close();
      this.#status.close();
    }
  }

  /** Watcher paths (absolute) become scopes of the next pass; null asks for a full rescan. */
  #changed(paths: string[] | null): void {
    debug(() =>
      `changed: ${
        paths === null
          ? "everything"
          : paths.length > 20
          ? `${paths.length} paths`
          : paths.join(", ")
      }`
    );
    if (paths === null) this.#fullScan = true;
    else {
      for (const p of paths) {
        const rel = relative(this.#root, p).split(sep).join("/").normalize("NFC");
        if (rel === WAIT_PATH) this.#fullScan = true; // `status --wait` asks for a full look
        else if (rel === "" || rel === ".." || rel.startsWith("../") || isAbsolute(rel)) {
          this.#fullScan = true;
        } else if (rel.startsWith(`${STATE_DIR}/${REQUESTS_DIR}`)) {
          this.#fullScan = true; // bring-back or confirm-delete: acted on in a full pass
        } else if (rel.split("/")[0] !== STATE_DIR) this.#scopes.add(rel);
      }
      if (this.#scopes.size > 2000) this.#fullScan = true;
    }
    this.#wake.fire();
  }

  /**
   * Another device announced a big upload: start filling its partial file now (see
   * `prefetchFile`), so the real download, once the upload is committed, has little left to do.
   */
  #prefetch(peer: Peer, raw: unknown): void {
    if (this.#staging?.busy() !== false) return; // a flood of notices costs nothing
    let entry: RemoteEntry;
    try {
      entry = parseRemoteEntry(raw);
    } catch {
      return;
    }
    const fs = this.#fs;
    // Cheap checks first: a flood of notices must not load the merge base once each.
    if (checkWirePath(entry.path) || entry.size < STREAM_MIN || !this.#state || !fs) return;
    if (fs.platform.caseInsensitive || fs.platform.windowsNames) return; // local names may differ
    if (this.#ignore?.current?.ignores(entry.path, false) !== false) return; // not for this device
    const base = this.#state.loadBase();
    if (base.get(entry.path)?.hash === entry.hash) return;
    this.#staging!.prefetch(
      { fs, peer, local: indexLocalChunks(base.values()), stats: newStats() },
      entry.path,
      entry,
      base.get(entry.path) ?? null, // its unchanged chunks are copied if the file is as synced
    );
  }

  /** What the next pass must scan: null for everything, else the changed subtrees. */
  #takeScopes(): string[] | null {
    const due = performance.now() - this.#lastFullScan >= this.#opts.seconds * 1000;
    const scopes = [...this.#scopes];
    this.#scopes.clear();
    const choice = choosePass({
      due,
      asked: this.#fullScan,
      changed: scopes.length,
      pushed: this.#pushed,
      deferred: this.#fullDeferred,
    });
    this.#pushed = false;
    this.#fullDeferred = choice.deferred;
    if (choice.again) this.#wake.fire(); // the full pass it put off runs right after
    this.#fullScan = false;
    if (choice.full) {
      this.#lastFullScan = performance.now();
      return null;
    }
    return scopes;
  }

  /** A full pass about a second from now (one at a time). */
  #recheckSoon(): void {
    clearTimeout(this.#recheckTimer);
    this.#recheckTimer = setTimeout(() => {
      this.#fullScan = true;
      this.#wake.fire();
    }, 1000);
  }

  /** Stops syncing: closes the connection and the watcher. */
  stop(): void {
    this.#stopped = true;
    this.#status?.stop();
    clearTimeout(this.#recheckTimer);
    this.#peer?.close();
    this.#wake.fire();
    // Stopped while still waiting to enroll (the process exits right after this): leave nothing.
    if (this.#folder && !isFile(join(stateDir(this.#root), "config.json"))) this.#folder.undo();
  }

  async #loop(config: ClientConfig): Promise<number> {
    const stats = this.#stats;
    const progress = this.#progress;
    const status = this.#status!;
    let backoff = 1000;
    let down = false;
    let downSince = Date.now();
    let saidDown = "";
    let current: Peer | null = null;
    while (!this.#stopped) {
      try {
        const peer = await dial({
          host: config.host,
          port: config.port,
          trust: serverTrust(config),
          ...(this.#opts.serverFingerprint
            ? { expectFingerprint: this.#opts.serverFingerprint }
            : {}),
          ...(this.#opts.serverCa ? { serverCa: this.#opts.serverCa } : {}),
          onTrust: (t, note) => {
            config = withServerTrust(config, t);
            saveConfig(this.#root, config);
            this.#log(note);
          },
          onNotice: (h) => {
            if (h.t === "changed") {
              this.#pushed = true;
              this.#wake.fire();
            } else if (h.t === "incoming" && current) this.#prefetch(current, h.entry);
          },
        });
        this.#peer = peer;
        current = peer;
        const signedIn = await peer.request({
          t: "auth",
          account: config.account,
          deviceId: config.deviceId,
          token: config.token,
        });
        if (signedIn.header.device !== config.deviceName) await this.#rename(peer, config);
        await peer.request({ t: "watch" });
        if (down) this.#log(`Connected to ${config.host}:${config.port} again`);
        status.connected();
        down = false;
        saidDown = "";
        backoff = 1000;
        let closed = false;
        let passBackoff = 1000;
        let lastPassError = "";
        this.#fullScan = true; // after every (re)connection: one full pass
        peer.closed.then(() => {
          closed = true;
          this.#wake.fire();
        });
        const ctx: EngineContext = {
          peer,
          fs: this.#fs!,
          staging: this.#staging!,
          state: this.#state!,
          device: config.deviceName,
          stats,
          log: this.#log,
          warn: this.#warn,
          allowMassDelete: this.#opts.allowMassDelete ?? false,
          recheckSoon: () => this.#recheckSoon(),
          watch: this.#watcher!,
          attention: this.#attention,
          ignore: this.#ignore!,
          onSkip: (path, why) => status.skipped(path, why),
          ...(this.#opts.verbose
            ? {
              onOutcome: (o) => {
                const line = activityLine(o);
                if (line !== null) this.#activity(line);
              },
            }
            : {}),
        };
        while (!this.#stopped && !closed) {
          this.#assertFolder();
          const t0 = performance.now();
          const startedAt = Date.now();
          Object.assign(stats, newStats());
          progress.start();
          const watching = setInterval(
            () => status.passProgress(stats, performance.now() - t0),
            500,
          );
          let r;
          const stopMemory = debugMemory();
          const scopes = this.#takeScopes();
          try {
            r = await syncUntilStable(ctx, scopes);
          } catch (e) {
            // A broken connection reconnects (outer loop); anything else (a full disk, a refused
            // request) is said once and retried with backoff on the same connection.
            if (closed || e instanceof ConnectionClosedError || isFatal(e)) throw e;
            const msg = `Cannot sync: ${(e as Error).message}`;
            if (msg !== lastPassError) {
              this.#warn(`${msg}; retrying (every ${this.#opts.seconds} s at most)`);
            }
            status.passFailed(msg);
            lastPassError = msg;
            this.#fullScan = true;
            await this.#wake.wait(passBackoff);
            passBackoff = Math.min(passBackoff * 2, this.#opts.seconds * 1000);
            continue;
          } finally {
            clearInterval(watching);
            progress.stop();
            stopMemory();
          }
          passBackoff = 1000;
          lastPassError = "";
          if (r) {
            const bytes = { up: stats.bytesUp, down: stats.bytesDown };
            const line = summaryLine(r, bytes, performance.now() - t0);
            if (line) this.#log(line);
          }
          status.passEnded({
            tally: r,
            full: scopes === null,
            startedAt,
            attention: this.#attention,
            synced: () => this.#state!.loadBase().keys(),
            holdingDeletions: ctx.holdingMassDelete === true,
          });
          // Wake for the next change, push or period, or when a held item is due again.
          const period = this.#opts.seconds * 1000;
          const due = this.#attention.nextWake(Date.now());
          await this.#wake.wait(due === null ? period : Math.min(period, due - Date.now()));
        }
        peer.close();
        if (!this.#stopped) throw (await peer.closed) ?? new ConnectionClosedError("closed");
      } catch (e) {
        this.#peer?.close();
        if (this.#stopped) break;
        if (isFatal(e)) {
          this.#warn((e as Error).message);
          status.fatal((e as Error).message);
          return exitCodeOf(e);
        }
        // Said once per kind of problem while it lasts (refused, then closed, ...).
        const why = e instanceof RemoteError
          ? e.message
          : `Cannot connect to ${config.host}:${config.port}: ${describeConnectError(e)}`;
        if (why !== saidDown) {
          this.#warn(`${why}; retrying every ${this.#opts.seconds} s at most`);
          saidDown = why;
        }
        if (!down) downSince = Date.now();
        status.offline(downSince, why);
        down = true;
        // Jitter: the devices of a server that just went away do not all come back at once.
        await this.#wake.wait(backoff * (0.75 + Math.random() / 2));
        backoff = Math.min(backoff * 2, this.#opts.seconds * 1000);
      }
    }
    return EXIT.ok;
  }

  /** Tells the server this device's new name (`--name` on an enrolled folder). */
  async #rename(peer: Peer, config: ClientConfig): Promise<void> {
    try {
      await peer.request({ t: "setDeviceName", device: config.deviceName });
    } catch (e) {
      if (!(e instanceof RemoteError) || e.code !== "unsupported") throw e;
      if (!this.#saidNoRename) {
        this.#warn(
          `Cannot rename this device on the server: it is older than this client; it keeps the old name`,
        );
      }
      this.#saidNoRename = true;
    }
  }

  /** The folder vanishing (unmounted drive, deleted) must never read as "delete everything". */
  #assertFolder(): void {
    try {
      Deno.statSync(join(this.#root, STATE_DIR));
    } catch {
      throw new FatalError(
        `Cannot sync ${this.#root}: the folder (or its ${STATE_DIR}/) disappeared; nothing was deleted on the server. Restore it and start the client again.`,
        EXIT.folder,
      );
    }
  }
}
