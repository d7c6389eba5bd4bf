/**
 * Which account and device a folder syncs as, settled once at start:
 *
 * - a new folder registers a new account, or joins one with a serial code;
 * - an enrolled folder given a serial code asks the server whether that serial is its own
 *   account's (`checkSerial`): if so it is not needed; if not, the start stops (exit 1) unless
 *   `--rejoin` was given, which moves the folder to the other account: the merge base and the
 *   server mirror are forgotten, so every local file is "new" there and is merged with that
 *   account's files (a different file at the same path becomes a conflict copy, never a deletion);
 * - `--name` on an enrolled folder renames the device in `config.json` (the server learns the new
 *   name at the next sign-in, see `app.ts`).
 *
 * The server is dialed with backoff while it cannot be reached; errors only the user can fix
 * (a refused serial, a changed certificate) are {@link FatalError}s.
 *
 * @module
 */

import { hostname } from "node:os";
import { join } from "node:path";
import type { Peer } from "../protocol/peer.ts";
import { ConnectionClosedError, RemoteError } from "../protocol/peer.ts";
import {
  type ClientConfig,
  loadConfig,
  saveConfig,
  serverTrust,
  stateDir,
  withServerTrust,
} from "./config.ts";
import { CertificateError, describeConnectError, dial, type ServerTrust } from "./connection.ts";
import { EXIT, type ExitCode } from "../util/exit_codes.ts";

/** Errors after which retrying cannot help: the user must act. `exitCode` says which kind. */
export class FatalError extends Error {
  /** Creates the error with its user-facing message and the process's exit code. */
  constructor(message: string, readonly exitCode: ExitCode = EXIT.refused) {
    super(message);
    this.name = "FatalError";
  }
}

/** What enrollment needs from the command line and the running client. */
export interface EnrollOptions {
  host: string;
  port: number;
  /** Cap of the reconnect backoff, in seconds. */
  seconds: number;
  /** A serial code, already checked for format (normalized). */
  serial?: string;
  /** `--name`: this device's name. */
  name?: string;
  /** `--rejoin`: move an enrolled folder to the serial's account. */
  rejoin?: boolean;
  serverFingerprint?: string;
  /** `--server-ca`: PEM of the authority that issues the server's certificate. */
  serverCa?: string;
  /** How the user runs the client, for the join line (default `cloud-client`). */
  command?: string;
  log: (line: string) => void;
  warn: (line: string) => void;
  /** Waits `ms`, or less if the client is being stopped. */
  wait: (ms: number) => Promise<void>;
  /** True once the client is being stopped. */
  stopped: () => boolean;
}

/** State files of a folder's merge base and server mirror (`state.db` and its WAL files). */
const STATE_FILES = ["state.db", "state.db-wal", "state.db-shm"];

/**
 * Forgets the folder's merge base and server mirror, and its partial downloads: after this,
 * every local file is new to the next sync (nothing is deleted because of a missing base).
 */
export function forgetSyncState(root: string): void {
  const dir = stateDir(root);
  for (const f of STATE_FILES) {
    try {
      Deno.removeSync(join(dir, f));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  try {
    Deno.removeSync(join(dir, "tmp"), { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  Deno.mkdirSync(join(dir, "tmp"), { recursive: true });
}

/**
 * Dials the server (backoff while it cannot be reached, or while it throttles) and runs `fn` on
 * the connection. Connection problems are said once per kind and retried; other server refusals
 * are fatal.
 */
async function withServer<T>(
  o: EnrollOptions,
  start: ServerTrust,
  fn: (peer: Peer, trust: ServerTrust) => Promise<T>,
): Promise<T> {
  let backoff = 1000;
  let said = "";
  let trust = start;
  for (;;) {
    if (o.stopped()) throw new FatalError("Stopped before enrolling", EXIT.ok);
    let problem: string;
    let peer: Peer | null = null;
    try {
      peer = await dial({
        host: o.host,
        port: o.port,
        trust,
        ...(o.serverFingerprint ? { expectFingerprint: o.serverFingerprint } : {}),
        ...(o.serverCa ? { serverCa: o.serverCa } : {}),
        onTrust: (t, note) => {
          trust = t;
          o.log(note);
        },
      });
      return await fn(peer, trust);
    } catch (e) {
      if (e instanceof FatalError) throw e;
      if (e instanceof CertificateError) throw new FatalError(e.message, EXIT.certificate);
      if (e instanceof RemoteError && e.code !== "throttled") throw new FatalError(e.message);
      if (peer && !(e instanceof RemoteError || e instanceof ConnectionClosedError)) throw e;
      problem = e instanceof RemoteError
        ? e.message
        : `Cannot connect to ${o.host}:${o.port}: ${
          describeConnectError(e)
        }; retrying every ${o.seconds} s at most`;
    } finally {
      peer?.close();
    }
    if (problem !== said) o.warn(problem);
    said = problem;
    await o.wait(backoff);
    backoff = Math.min(backoff * 2, o.seconds * 1000);
  }
}

/**
 * Registers a new account (no serial) or joins the serial's account; first asks `proceed` on the
 * same connection, if given, and returns null if it says no.
 */
function signUp(
  o: EnrollOptions,
  deviceName: string,
  trust: ServerTrust,
  proceed?: (peer: Peer) => Promise<boolean>,
): Promise<{ config: ClientConfig; serial: string | null } | null> {
  return withServer(o, trust, async (peer, t) => {
    if (proceed && !(await proceed(peer))) return null;
    const r = o.serial
      ? await peer.request({ t: "enroll", serial: o.serial, device: deviceName })
      : await peer.request({ t: "register", device: deviceName });
    const h = r.header;
    const config = withServerTrust({
      host: o.host,
      port: o.port,
      account: String(h.account),
      deviceId: String(h.deviceId),
      token: String(h.token),
      deviceName,
      seconds: o.seconds,
    }, t);
    return { config, serial: typeof h.serial === "string" ? h.serial : null };
  });
}

/** Asks the server whether `serial` belongs to `account` (throws for an unknown serial). */
async function serialIsOf(peer: Peer, serial: string, account: string): Promise<boolean> {
  try {
    const r = await peer.request({ t: "checkSerial", serial, account });
    return r.header.sameAccount === true;
  } catch (e) {
    if (e instanceof RemoteError && e.code === "unsupported") {
      throw new FatalError(
        "Cannot check the serial code: the server is older than this client; upgrade the server, or run without the serial code",
      );
    }
    throw e;
  }
}

/**
 * Settles the folder's enrollment (see the module doc) and returns its config. `fresh` is true
 * when the folder was just enrolled or moved to another account: its sync state must be new.
 * The folder must already be taken (`folder_setup.ts`): checked, locked and writable.
 */
export async function enroll(
  root: string,
  o: EnrollOptions,
): Promise<{ config: ClientConfig; fresh: boolean }> {
  let existing: ClientConfig | null;
  try {
    existing = loadConfig(root);
  } catch (e) {
    throw new FatalError((e as Error).message, EXIT.folder);
  }
  if (!existing) {
    const deviceName = o.name ?? hostname();
    const { config, serial } = (await signUp(o, deviceName, {}))!;
    saveConfig(root, config);
    if (serial !== null) {
      o.log(`Registered a new account (${config.account}).`);
      o.log(`Serial code: ${serial}`);
      o.log(
        `To sync another computer with this one, run there: ${
          o.command ?? "cloud-client"
        } ${o.host} ${o.port} FOLDER ${o.seconds} ${serial}`,
      );
    } else {
      o.log(`Joined account ${config.account} as device "${deviceName}".`);
    }
    return { config, fresh: true };
  }
  let config: ClientConfig = existing;
  if (o.serial) {
    const serial = o.serial;
    const old = existing.account;
    const trust = serverTrust(existing);
    const deviceName = o.name ?? existing.deviceName;
    const moved = await signUp(o, deviceName, trust, async (peer) => {
      if (await serialIsOf(peer, serial, old)) return false;
      if (!o.rejoin) {
        throw new FatalError(
          `Cannot start: ${root} is synced with account ${old}, and this serial code belongs to another account. To move this folder to that account (every file is kept and merged with the account's files), run again with --rejoin; to keep syncing with account ${old}, run without the serial code.`,
          EXIT.usage,
        );
      }
      return true;
    });
    if (moved) {
      // Forget the old account's merge base before the new config exists: a crash in between
      // leaves the old account with no base, which only makes every local file new again.
      forgetSyncState(root);
      saveConfig(root, moved.config);
      o.log(
        `Moved ${root} from account ${old} to account ${moved.config.account} as device "${deviceName}"; every file here is kept and merged with the account's files.`,
      );
      o.log(
        `This device is still listed in account ${old}; remove it there with \`cloud-server revoke-device ${old} ${existing.deviceId}\`.`,
      );
      return { config: moved.config, fresh: true };
    }
    o.log(
      `This folder is already enrolled in the serial code's account (${old}); the serial code is not needed.`,
    );
  } else if (o.rejoin) {
    o.log("--rejoin is only needed with the serial code of another account; ignored.");
  }
  if (o.name !== undefined && o.name !== config.deviceName) {
    o.log(`Renamed this device from "${config.deviceName}" to "${o.name}".`);
    config = { ...config, deviceName: o.name };
    saveConfig(root, config);
  }
  if (config.host !== o.host || config.port !== o.port || config.seconds !== o.seconds) {
    config = { ...config, host: o.host, port: o.port, seconds: o.seconds };
    saveConfig(root, config);
  }
  return { config, fresh: false };
}
