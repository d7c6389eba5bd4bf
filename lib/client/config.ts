/**
 * The device's enrollment, kept in `FOLDER/.cloudsync/config.json` (written atomically, readable
 * by the owner only, in a folder only the owner can enter): which server, which account, this
 * device's id and its secret credential.
 *
 * @module
 */

import { join } from "node:path";
import { writeFileAtomicSync } from "../util/atomic.ts";
import type { ServerTrust } from "../transport/dial.ts";

/** Name of the private folder inside every synced folder; never synced, never scanned. */
export const STATE_DIR = ".cloudsync";
/** `STATE_DIR/requests/`: requests of one-time commands to the running client (`mass_delete.ts`). */
export const REQUESTS_DIR = "requests";

/** What a device needs to sign in again. */
export interface ClientConfig {
  host: string;
  port: number;
  account: string;
  deviceId: string;
  token: string;
  deviceName: string;
  /** Pinned SHA-256 fingerprint of the server's TLS certificate (trust on first use). */
  serverFingerprint?: string;
  /** The server's certificate was issued by an authority the system trusts (no pin needed). */
  serverCaVerified?: boolean;
  /** PEM of the authority (`--server-ca`) that issues the server's certificate (no pin needed). */
  serverCa?: string;
  /** SECONDS of the last start (`cloud-client FOLDER` starts with it again). */
  seconds?: number;
}

/** Path of the state folder of `root`. */
export function stateDir(root: string): string {
  return join(root, STATE_DIR);
}

/**
 * Creates `.cloudsync/` for the owner only (0700), and makes an existing one so (folders made by
 * older versions were 0755): it holds the device's credential and the names of every file.
 */
export function ensureStateDir(root: string): void {
  Deno.mkdirSync(stateDir(root), { recursive: true, mode: 0o700 });
  if (Deno.build.os !== "windows") Deno.chmodSync(stateDir(root), 0o700);
}

/** Reads the enrollment, or null if this folder was never enrolled. */
export function loadConfig(root: string): ClientConfig | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(join(stateDir(root), "config.json"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  ensureStateDir(root);
  if (Deno.build.os !== "windows") Deno.chmodSync(join(stateDir(root), "config.json"), 0o600);
  const c = JSON.parse(text) as Partial<ClientConfig>;
  if (
    typeof c.host !== "string" || typeof c.port !== "number" || typeof c.account !== "string" ||
    typeof c.deviceId !== "string" || typeof c.token !== "string" ||
    typeof c.deviceName !== "string" ||
    (c.serverFingerprint !== undefined && typeof c.serverFingerprint !== "string") ||
    (c.serverCaVerified !== undefined && typeof c.serverCaVerified !== "boolean") ||
    (c.serverCa !== undefined && typeof c.serverCa !== "string") ||
    (c.seconds !== undefined && (typeof c.seconds !== "number" || !(c.seconds >= 1)))
  ) {
    throw new Error(
      `Cannot read ${
        join(stateDir(root), "config.json")
      }: it is incomplete; delete ${STATE_DIR}/ and join again with the serial code`,
    );
  }
  return c as ClientConfig;
}

/**
 * Writes the enrollment atomically, creating `.cloudsync/` (0700) if needed. The temporary file
 * is created 0600, so the credential is never readable by others, not even for a moment.
 */
export function saveConfig(root: string, config: ClientConfig): void {
  ensureStateDir(root);
  const path = join(stateDir(root), "config.json");
  const text = new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n");
  writeFileAtomicSync(path, text, 0o600);
  if (Deno.build.os !== "windows") Deno.chmodSync(path, 0o600);
}

/** What `config` trusts about the server's certificate. */
export function serverTrust(config: ClientConfig): ServerTrust {
  return {
    ...(config.serverFingerprint ? { fingerprint: config.serverFingerprint } : {}),
    ...(config.serverCaVerified ? { caVerified: true } : {}),
    ...(config.serverCa ? { ca: config.serverCa } : {}),
  };
}

/** `config` with its server trust replaced by `trust`. */
export function withServerTrust(config: ClientConfig, trust: ServerTrust): ClientConfig {
  const { serverFingerprint: _f, serverCaVerified: _c, serverCa: _a, ...rest } = config;
  return {
    ...rest,
    ...(trust.fingerprint ? { serverFingerprint: trust.fingerprint } : {}),
    ...(trust.caVerified ? { serverCaVerified: true } : {}),
    ...(trust.ca ? { serverCa: trust.ca } : {}),
  };
}
