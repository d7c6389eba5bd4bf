/**
 * The client's life cycle: enroll the folder (register a new account, or join one with a serial
 * code), then keep it in sync: connect with backoff, sync until stable, and sync again on every
 * local change (watcher, debounced), every server push, and every SECONDS (full consistency pass).
 *
 * @module
 */

import { hostname } from "node:os";
import { debug } from "../util/debug.ts";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import type { Peer } from "../protocol/peer.ts";
import { ConnectionClosedError, RemoteError } from "../protocol/peer.ts";
import {
  type ClientConfig,
  loadConfig,
  saveConfig,
  serverTrust,
  STATE_DIR,
  stateDir,
  withServerTrust,
} from "./config.ts";
import { CertificateError, dial, type ServerTrust } from "./connection.ts";
import { StateDb } from "./state_db.ts";
import { type EngineContext, hostPlatform, syncUntilStable } from "./engine.ts";
import { FolderWatcher } from "./watcher.ts";
import type { ExecutionReport } from "./executor.ts";
import {
  indexLocalChunks,
  newStats,
  PARTIAL_PREFIX,
  prefetchBusy,
  prefetchFile,
  type TransferStats,
} from "./transfer.ts";
import { STREAM_MIN } from "./executor.ts";
import { parseRemoteEntry } from "../protocol/messages.ts";
import { checkWirePath } from "../core/paths.ts";
import type { RemoteEntry } from "../core/types.ts";
import { ProgressLine } from "./progress.ts";
import { formatBytes } from "../util/cli.ts";

/** Command-line settings of the client. */
export interface ClientOptions {
  host: string;
  port: number;
  folder: string;
  /** Period of the full consistency pass and cap of the reconnect backoff, in seconds. */
  seconds: number;
  serial?: string;
  /** Device name shown in conflict copies and on the server (default: host name). */
  name?: string;
  /** `--server-fingerprint`: the server's TLS certificate must have this fingerprint. */
  serverFingerprint?: string;
  /** Propagate even when more than half of the synced files vanished at once. */
  allowMassDelete?: boolean;
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

/** Errors after which retrying cannot help: the user must act. */
class FatalError extends Error {}

function isFatal(e: unknown): boolean {
  return e instanceof FatalError || e instanceof CertificateError ||
    (e instanceof RemoteError &&
      ["bad-serial", "bad-credentials", "revoked", "unsupported-protocol"].includes(e.code));
}

function summary(r: ExecutionReport, stats: TransferStats, ms: number): string {
  const parts: string[] = [];
  if (r.uploaded) parts.push(`${r.uploaded} sent`);
  if (r.movedRemote) parts.push(`${r.movedRemote} moved on server`);
  if (r.downloaded) parts.push(`${r.downloaded} received`);
  if (r.movedLocal) parts.push(`${r.movedLocal} moved here`);
  if (r.deletedLocal) parts.push(`${r.deletedLocal} deleted here`);
  if (r.deletedRemote) parts.push(`${r.deletedRemote} deleted on server`);
  if (r.conflicts) parts.push(`${r.conflicts} conflict copies`);
  if (parts.length === 0) parts.push("metadata updated");
  return `Synced: ${parts.join(", ")} (${formatBytes(stats.bytesUp)} up, ${
    formatBytes(stats.bytesDown)
  } down, ${(ms / 1000).toFixed(1)} s)`;
}

/** A running client; `stop()` ends it cleanly. */
export class SyncClient {
  readonly #opts: ClientOptions;
  readonly #root: string;
  readonly #wake = new Signal();
  #stopped = false;
  #scopes = new Set<string>();
  #fullScan = true;
  #lastFullScan = 0;
  #peer: Peer | null = null;
  #watcher: FolderWatcher | null = null;
  #state: StateDb | null = null;
  readonly #log: (line: string) => void;
  readonly #warn: (line: string) => void;

  constructor(
    opts: ClientOptions,
    log = (l: string) => console.log(l),
    warn = (l: string) => console.error(l),
  ) {
    this.#opts = opts;
    this.#root = resolve(opts.folder);
    this.#log = log;
    this.#warn = warn;
  }

  /** Enrolls if needed, then syncs until stopped. Resolves with the process exit code. */
  async run(): Promise<number> {
    let config: ClientConfig;
    try {
      config = await this.#enroll();
    } catch (e) {
      this.#warn((e as Error).message);
      return 1;
    }
    if (this.#stopped) return 0;
    const dir = stateDir(this.#root);
    const tmpDir = join(dir, "tmp");
    Deno.mkdirSync(tmpDir, { recursive: true });
    // Leftovers of a previous run: partial downloads younger than a week are kept (they resume),
    // everything else goes.
    for (const e of Deno.readDirSync(tmpDir)) {
      const path = join(tmpDir, e.name);
      const age = Date.now() - (Deno.statSync(path).mtime?.getTime() ?? 0);
      if (e.isFile && e.name.startsWith(PARTIAL_PREFIX) && age < 7 * 24 * 3600 * 1000) continue;
      Deno.removeSync(path, { recursive: true });
    }
    this.#state = new StateDb(dir);
    this.#watcher = new FolderWatcher(this.#root, (paths) => this.#changed(paths), {
      onError: this.#warn,
    });
    this.#watcher.start();
    this.#log(`Syncing ${this.#root} with ${config.host}:${config.port} as "${config.deviceName}"`);
    try {
      return await this.#loop(config, tmpDir);
    } finally {
      this.#watcher.close();
      this.#state.close();
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
        if (rel === "" || rel === ".." || rel.startsWith("../") || isAbsolute(rel)) {
          this.#fullScan = true;
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
  #prefetch(peer: Peer, tmpDir: string, raw: unknown): void {
    let entry: RemoteEntry;
    try {
      entry = parseRemoteEntry(raw);
    } catch {
      return;
    }
    const platform = hostPlatform();
    // Cheap checks first: a flood of notices must not load the merge base once each.
    if (prefetchBusy() || checkWirePath(entry.path) || entry.size < STREAM_MIN || !this.#state) {
      return;
    }
    if (platform.caseInsensitive || platform.windowsNames) return; // local names may differ
    const base = this.#state.loadBase();
    if (base.get(entry.path)?.hash === entry.hash) return;
    prefetchFile(
      {
        peer,
        root: this.#root,
        tmpDir,
        local: indexLocalChunks(base.values()),
        stats: newStats(),
      },
      entry.path,
      entry,
      base.get(entry.path) ?? null, // its unchanged chunks are copied if the file is as synced
    );
  }

  /** What the next pass must scan: null for everything, else the changed subtrees. */
  #takeScopes(): string[] | null {
    const due = performance.now() - this.#lastFullScan >= this.#opts.seconds * 1000;
    const full = this.#fullScan || due;
    const scopes = [...this.#scopes];
    this.#scopes.clear();
    this.#fullScan = false;
    if (full) {
      this.#lastFullScan = performance.now();
      return null;
    }
    return scopes;
  }

  /** Stops syncing: closes the connection and the watcher. */
  stop(): void {
    this.#stopped = true;
    this.#peer?.close();
    this.#wake.fire();
  }

  async #enroll(): Promise<ClientConfig> {
    const o = this.#opts;
    let existing: ClientConfig | null = null;
    try {
      existing = loadConfig(this.#root);
    } catch (e) {
      throw new FatalError((e as Error).message);
    }
    if (existing) {
      if (o.serial) {
        this.#log(
          `This folder is already enrolled (account ${existing.account}); the serial code is not needed.`,
        );
      }
      if (existing.host !== o.host || existing.port !== o.port) {
        existing = { ...existing, host: o.host, port: o.port };
        saveConfig(this.#root, existing);
      }
      return existing;
    }
    const deviceName = o.name ?? hostname();
    let backoff = 1000;
    let said = false;
    let saidThrottled = false;
    let trust: ServerTrust = {};
    for (;;) {
      let peer: Peer;
      try {
        peer = await dial({
          host: o.host,
          port: o.port,
          trust,
          ...(o.serverFingerprint ? { expectFingerprint: o.serverFingerprint } : {}),
          onTrust: (t, note) => {
            trust = t;
            this.#log(note);
          },
        });
      } catch (e) {
        if (e instanceof CertificateError) throw new FatalError(e.message);
        if (this.#stopped) throw new FatalError("Stopped before enrolling");
        if (!said) {
          this.#warn(
            `Cannot reach server ${o.host}:${o.port} (${
              (e as Error).message
            }); retrying every ${o.seconds} s at most`,
          );
          said = true;
        }
        await this.#wake.wait(backoff);
        backoff = Math.min(backoff * 2, o.seconds * 1000);
        continue;
      }
      try {
        const r = o.serial
          ? await peer.request({ t: "enroll", serial: o.serial, device: deviceName })
          : await peer.request({ t: "register", device: deviceName });
        const h = r.header;
        const config: ClientConfig = withServerTrust({
          host: o.host,
          port: o.port,
          account: String(h.account),
          deviceId: String(h.deviceId),
          token: String(h.token),
          deviceName,
        }, trust);
        try {
          Deno.statSync(this.#root);
        } catch {
          Deno.mkdirSync(this.#root, { recursive: true });
          this.#log(`Created folder ${this.#root}`);
        }
        saveConfig(this.#root, config);
        if (typeof h.serial === "string") {
          this.#log(`Registered a new account (${config.account}).`);
          this.#log(`Serial code: ${h.serial}`);
          this.#log(
            `To sync another computer with this one, run there: cloud-client ${o.host} ${o.port} FOLDER ${o.seconds} ${h.serial}`,
          );
        } else {
          this.#log(`Joined account ${config.account} as device "${deviceName}".`);
        }
        return config;
      } catch (e) {
        if (!(e instanceof RemoteError)) throw e;
        if (e.code !== "throttled") throw new FatalError(e.message);
        // Too many failed attempts from here: wait as told (backoff), then try again.
        if (!saidThrottled) this.#warn(e.message);
        saidThrottled = true;
      } finally {
        peer.close();
      }
      await this.#wake.wait(backoff);
      backoff = Math.min(backoff * 2, o.seconds * 1000);
      if (this.#stopped) throw new FatalError("Stopped before enrolling");
    }
  }

  async #loop(config: ClientConfig, tmpDir: string): Promise<number> {
    const stats: TransferStats = newStats();
    const progress = new ProgressLine(stats);
    let backoff = 1000;
    let down = false;
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
          onTrust: (t, note) => {
            config = withServerTrust(config, t);
            saveConfig(this.#root, config);
            this.#log(note);
          },
          onNotice: (h) => {
            if (h.t === "changed") this.#wake.fire();
            else if (h.t === "incoming" && current) this.#prefetch(current, tmpDir, h.entry);
          },
        });
        this.#peer = peer;
        current = peer;
        await peer.request({
          t: "auth",
          account: config.account,
          deviceId: config.deviceId,
          token: config.token,
        });
        await peer.request({ t: "watch" });
        if (down) this.#log(`Connected to ${config.host}:${config.port} again`);
        down = false;
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
          root: this.#root,
          tmpDir,
          state: this.#state!,
          device: config.deviceName,
          stats,
          log: this.#log,
          warn: this.#warn,
          allowMassDelete: this.#opts.allowMassDelete ?? false,
          watch: this.#watcher!,
        };
        while (!this.#stopped && !closed) {
          this.#assertFolder();
          const t0 = performance.now();
          Object.assign(stats, newStats());
          progress.start();
          let r;
          try {
            r = await syncUntilStable(ctx, this.#takeScopes());
          } catch (e) {
            // A broken connection reconnects (outer loop); anything else (a full disk, a refused
            // request) is said once and retried with backoff on the same connection.
            if (closed || e instanceof ConnectionClosedError || isFatal(e)) throw e;
            const msg = `Cannot sync: ${(e as Error).message}`;
            if (msg !== lastPassError) {
              this.#warn(`${msg}; retrying (every ${this.#opts.seconds} s at most)`);
            }
            lastPassError = msg;
            this.#fullScan = true;
            await this.#wake.wait(passBackoff);
            passBackoff = Math.min(passBackoff * 2, this.#opts.seconds * 1000);
            continue;
          } finally {
            progress.stop();
          }
          passBackoff = 1000;
          lastPassError = "";
          if (r) this.#log(summary(r, stats, performance.now() - t0));
          await this.#wake.wait(this.#opts.seconds * 1000);
        }
        peer.close();
        if (!this.#stopped) throw new Error((await peer.closed)?.message ?? "connection closed");
      } catch (e) {
        this.#peer?.close();
        if (this.#stopped) break;
        if (isFatal(e)) {
          this.#warn((e as Error).message);
          return 1;
        }
        if (!down) {
          this.#warn(
            `Cannot sync with ${config.host}:${config.port}: ${
              (e as Error).message
            }; retrying every ${this.#opts.seconds} s at most`,
          );
          down = true;
        }
        await this.#wake.wait(backoff);
        backoff = Math.min(backoff * 2, this.#opts.seconds * 1000);
      }
    }
    return 0;
  }

  /** The folder vanishing (unmounted drive, deleted) must never read as "delete everything". */
  #assertFolder(): void {
    try {
      Deno.statSync(join(this.#root, STATE_DIR));
    } catch {
      throw new FatalError(
        `Cannot sync ${this.#root}: the folder (or its ${STATE_DIR}/) disappeared; nothing was deleted on the server. Restore it and start the client again.`,
      );
    }
  }
}
