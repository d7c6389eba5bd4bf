/**
 * A one-off connection for a command on an enrolled folder (`history`, `restore`): the folder's
 * own device credential and pinned certificate from `FOLDER/.cloudsync/config.json`, one dial,
 * one sign-in. It takes no lock and writes nothing in the folder, so it works beside a running
 * `cloud-client` of that folder (see `folder_lock.ts`). Also: a path as the user typed it, as the
 * wire path it names.
 *
 * @module
 */

import { isAbsolute, posix, relative, resolve, sep } from "node:path";
import type { Peer } from "../protocol/peer.ts";
import { RemoteError } from "../protocol/peer.ts";
import { type ClientConfig, loadConfig, serverTrust, STATE_DIR } from "./config.ts";
import { CertificateError, describeConnectError, dial } from "./connection.ts";
import { checkWirePath } from "../core/paths.ts";
import { EXIT, type ExitCode, REFUSAL_CODES } from "../util/exit_codes.ts";

/**
 * An error the user must act on: its message is the one line to print, `code` the exit code
 * (`util/exit_codes.ts`: 1 may pass on a later try, 2 bad arguments, 3 refused by the server,
 * 4 the server's certificate changed, 5 not a synced folder).
 */
export class CommandError extends Error {
  readonly code: ExitCode;
  constructor(message: string, code: ExitCode = EXIT.retry) {
    super(message);
    this.name = "CommandError";
    this.code = code;
  }
}

/** A signed-in connection for a command. */
export interface FolderSession {
  root: string;
  config: ClientConfig;
  peer: Peer;
  close(): void;
}

/** The enrollment of `folder`, or a {@link CommandError} saying it is not a synced folder. */
export function enrolledConfig(root: string, what: string): ClientConfig {
  let config: ClientConfig | null;
  try {
    config = loadConfig(root);
  } catch (e) {
    throw new CommandError(`Cannot ${what}: ${(e as Error).message}`, EXIT.folder);
  }
  if (!config) {
    throw new CommandError(
      `Cannot ${what}: ${root} is not a synced folder (it has no ${STATE_DIR}/config.json); give the folder you sync with cloud-client`,
      EXIT.folder,
    );
  }
  return config;
}

/**
 * Connects to the server of `folder` and signs in as its device. `what` names the action in
 * errors (`Cannot list history: …`).
 */
export async function openFolderSession(folder: string, what: string): Promise<FolderSession> {
  const root = resolve(folder);
  const config = enrolledConfig(root, what);
  let peer: Peer;
  try {
    peer = await dial({
      host: config.host,
      port: config.port,
      trust: serverTrust(config),
      // A folder enrolled before pinning: trusted as first seen, not written (read-only here).
      onTrust: () => {},
    });
  } catch (e) {
    if (e instanceof CertificateError) throw new CommandError(e.message, EXIT.certificate);
    throw new CommandError(
      `Cannot ${what}: cannot connect to ${config.host}:${config.port}: ${
        describeConnectError(e)
      }; try again when the server is reachable`,
    );
  }
  try {
    await peer.request({
      t: "auth",
      account: config.account,
      deviceId: config.deviceId,
      token: config.token,
    });
  } catch (e) {
    peer.close();
    if (e instanceof RemoteError) {
      throw new CommandError(
        e.message,
        REFUSAL_CODES.includes(e.code) ? EXIT.refused : EXIT.retry,
      );
    }
    throw new CommandError(
      `Cannot ${what}: the connection to ${config.host}:${config.port} failed: ${
        describeConnectError(e)
      }; try again`,
    );
  }
  return { root, config, peer, close: () => peer.close() };
}

/**
 * The wire path a user's PATH names: `.` (or nothing) is the whole folder (""); an absolute path
 * must lie inside the folder; any other is relative to the folder. Throws a {@link CommandError}
 * (exit code 2) for a path that names nothing in it.
 */
export function wirePathOf(root: string, arg: string, what: string): string {
  let rel: string;
  if (isAbsolute(arg)) {
    rel = relative(root, resolve(arg));
    if (rel === ".." || rel.startsWith(".." + sep) || isAbsolute(rel)) {
      throw new CommandError(`Cannot ${what} ${arg}: it is not inside ${root}`, EXIT.usage);
    }
  } else rel = arg;
  rel = rel.split(sep).join("/"); // Windows: backslashes; elsewhere a backslash is a name's
  let p = posix.normalize(rel).replace(/\/+$/, "").normalize("NFC");
  if (p === "." || p === "") return "";
  if (p.startsWith("./")) p = p.slice(2);
  if (p === ".." || p.startsWith("../")) {
    throw new CommandError(`Cannot ${what} ${arg}: it is not inside ${root}`, EXIT.usage);
  }
  const problem = checkWirePath(p);
  if (problem) {
    const why = problem.replace(/^Cannot use path(?: "(?:[^"\\]|\\.)*")?: /, "");
    throw new CommandError(`Cannot ${what} ${arg}: ${why}`, EXIT.usage);
  }
  return p;
}
