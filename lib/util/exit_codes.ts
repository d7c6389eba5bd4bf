/**
 * The exit codes of both programs, in one place: a service manager must tell "try again later"
 * from "restarting cannot help, a person must act". `systemd`'s `Restart=on-failure` restarts on
 * every code but 0; the units in `contrib/systemd/` list {@link PERMANENT_EXIT_CODES} in
 * `RestartPreventExitStatus=`, so a revoked device or a changed certificate does not loop.
 *
 * 1 stays "retry": it is also what Deno exits with on an uncaught error (a crash deserves a
 * restart).
 *
 * @example
 * ```ts
 * Deno.exit(EXIT.certificate); // the server's certificate changed: do not restart
 * ```
 *
 * @module
 */

/** Exit codes (see the module doc and README "Exit codes"). */
export const EXIT = {
  /** Stopped on request (Ctrl-C, SIGTERM), or a command did what it was asked. */
  ok: 0,
  /** Failed, and a later try may work (a crash, a port in use, `status --wait` timed out). */
  retry: 1,
  /** Bad arguments: the command line must change. */
  usage: 2,
  /**
   * The server refused this device or account for good: revoked device, credentials or serial
   * code refused, registration closed, a protocol version the server does not speak.
   */
  refused: 3,
  /** The server's TLS certificate is not the one this folder trusts (or cannot be trusted). */
  certificate: 4,
  /**
   * FOLDER cannot be synced as it is: another client syncs it, it lies inside another synced
   * folder or holds one, it cannot be written, or it (or its `.cloudsync/`) vanished while syncing.
   */
  folder: 5,
} as const;

/** A code of {@link EXIT}. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];

/** The codes after which restarting cannot help (the units' `RestartPreventExitStatus=`). */
export const PERMANENT_EXIT_CODES: readonly ExitCode[] = [
  EXIT.usage,
  EXIT.refused,
  EXIT.certificate,
  EXIT.folder,
];

/**
 * The error codes of the server's replies that refuse this device or account for good (exit
 * code {@link EXIT.refused}): anything else it says may pass.
 */
export const REFUSAL_CODES: readonly string[] = [
  "bad-serial",
  "bad-credentials",
  "revoked",
  "unsupported-protocol",
];
