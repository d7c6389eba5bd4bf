/**
 * `cloud-client`: keeps a folder in sync with a Cloud Sync server, and tells how that goes
 * (`status`). Parses arguments and wires the parts in `lib/client/` together; nothing else.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { SyncClient } from "./lib/client/app.ts";
import {
  fail,
  logStamp,
  onShutdown,
  surviveStrayRejections,
  timeOfDay,
  versionLine,
} from "./lib/util/cli.ts";
import { EXIT } from "./lib/util/exit_codes.ts";
import { X509Certificate } from "node:crypto";
import { normalizeFingerprint } from "./lib/transport/tls_cert.ts";
import { normalizeSerial } from "./lib/util/crockford.ts";
import { runHistory } from "./lib/client/history.ts";
import { runRestore } from "./lib/client/restore.ts";
import { runBringBack, runConfirmDelete } from "./lib/client/mass_delete.ts";
import { CommandError } from "./lib/client/folder_session.ts";
import { parseTime, TIME_FORMS } from "./lib/core/time_spec.ts";
import { MAX_DEVICE_NAME, PROGRAM_VERSION, PROTOCOL_VERSION } from "./lib/protocol/messages.ts";
import { unsafeTextProblem } from "./lib/util/log_text.ts";
import { runExclude, runInclude } from "./lib/client/selective.ts";
import { loadConfig } from "./lib/client/config.ts";
import { statusCommand } from "./lib/client/status_command.ts";

const HELP = `cloud-client: keep a folder in sync with a Cloud Sync server

Usage:
  cloud-client HOST PORT FOLDER SECONDS [SERIAL] [--name NAME] [--rejoin] [--allow-mass-delete]
               [--server-fingerprint FP | --server-ca FILE] [-v]
  cloud-client FOLDER [--name NAME] [--allow-mass-delete] [--server-fingerprint FP] [-v]
                       an enrolled folder, with the server and SECONDS it was last started with
                       (what the systemd unit runs)
  cloud-client status FOLDER [--json] [--wait [--timeout S]]
                       what the folder's client is doing (it may be running or not): in sync,
                       syncing (what is left), offline since when, stopped, or an error; the
                       server and account, the last sync, what is pending, failed items, conflict
                       copies and skipped items
  cloud-client history FOLDER [PATH] [--deleted] [--since TIME] [--json]
  cloud-client restore FOLDER PATH... [--at TIME] [--to DIR] [--dry-run] [--json]
  cloud-client bring-back FOLDER
  cloud-client confirm-delete FOLDER
  cloud-client exclude FOLDER PATH
  cloud-client include FOLDER PATH
  cloud-client --version

  HOST, PORT  the server (as printed by cloud-server)
  FOLDER      the folder to sync; created if missing
  SECONDS     period of the full consistency pass, and the longest wait between reconnect attempts;
              changes themselves are sent within about a second
  SERIAL      the account's serial code, to add this computer to an existing account; without it
              the first run registers a new account and prints its serial code. Not needed again
              once the folder is enrolled (the enrollment lives in FOLDER/.cloudsync/). Lost it?
              On the server, \`cloud-server reset-serial ACCOUNT\` prints a new one

Options:
  --name NAME          this device's name, shown in conflict copies and by cloud-server devices
                       (default: the host name); on an enrolled folder, renames the device
  --rejoin             with the SERIAL of another account, on an enrolled folder: move the folder
                       to that account. Every file is kept: the folder's files are merged with the
                       account's (the same path with other content becomes a conflict copy)
  --allow-mass-delete  propagate deletions even when more than half of the synced files (and more
                       than 100) vanished at once, while this client runs; without it the client
                       holds them back and warns (the one-time ways out: bring-back,
                       confirm-delete, below)
  --server-fingerprint FP
                       trust only a server whose TLS certificate has this SHA-256 fingerprint (the
                       "TLS certificate fingerprint" line cloud-server prints). Without it the
                       client trusts the certificate it sees first (or one a trusted authority
                       issued for HOST) and refuses to connect if it ever changes; give the new
                       fingerprint here after replacing the server's certificate on purpose
  --server-ca FILE     trust a server whose TLS certificate this authority (PEM) issued for HOST,
                       as HTTPS does under a private root: for an organization's internal CA.
                       Kept in the folder; renewed certificates of that authority are fine
  -v, --verbose        one line per file sent, received, moved, deleted, conflicted or failed,
                       with the time of day
  --json               status: one JSON object (state: in-sync, syncing, offline, stopped or
                       error; pending; failed, conflicts and skipped paths; lastSync; ...)
  --wait               status: wait until the folder is in sync (exit 0), or until --timeout
                       (exit 1)
  --timeout S          status --wait: give up after S seconds (default: wait as long as it takes)
  --version            print the program's version and the protocol version it speaks
  -h, --help           show this help

Getting files back (these work whether or not the folder's client is running):
  history FOLDER [PATH]
                       every kept version of a file, or the changes under a folder (no PATH: the
                       whole folder), newest first: version, time, size, device, deleted
    --deleted          only deleted files and folders that are still kept
    --since TIME       only changes made since TIME
    --json             one JSON array (path, version, time, size, deleted, device, ...)
  restore FOLDER PATH...
                       give each PATH (a file, a folder, or . for the whole folder) back as it
                       was: deleted files come back, changed files go back, files made since are
                       left alone. In place, as new versions that reach every device (and can be
                       undone in turn); a change not yet synced here is kept as a conflict copy
    --at TIME          as it was at TIME; without it, a deleted path comes back as it was just
                       before it was deleted, a file goes back to the version before its current
    --to DIR           write a plain copy under DIR instead; nothing changes on the server
    --dry-run          say what would change; change nothing
    --json             one JSON object: every item and the totals
  TIME                 ${TIME_FORMS}
  bring-back FOLDER    when the client holds back a mass deletion: bring the vanished files back
                       onto this device from the server (once)
  confirm-delete FOLDER
                       when the client holds back a mass deletion: delete exactly the files that
                       vanished, on the server and the other devices (once)

Ignoring files:
  FOLDER/.cloudignore  rules in gitignore syntax (*, **, !re-include, a trailing / for folders,
                       a leading / anchors at FOLDER, # comments); it syncs, so every device
                       follows it. Built in: OS, office and editor litter (.DS_Store, Thumbs.db,
                       ~$*, .~lock.*#, .*.swp, *.part, ...; the README lists them), which
                       !pattern re-includes. An ignored path is never sent, and is never deleted
                       or overwritten here; a file that becomes ignored stays everywhere as it is.
                       A change takes effect at the next pass
  FOLDER/.cloudsync/ignore
                       the same, for this computer only (never synced)
  exclude FOLDER PATH  stop syncing PATH (relative to FOLDER) on this computer only, and free its
                       space: it is removed here where the server holds every byte of it; a
                       change or file the server does not have is kept and listed. The server
                       and the other computers keep it all. Run it with the client stopped
  include FOLDER PATH  sync PATH on this computer again: it is downloaded (works beside a running
                       client)

Log lines carry the date and time (UTC) when the output is not a terminal (nor the systemd journal,
which has its own).
Exit codes: 0 stopped on request, 1 failed (restarting may help), 2 bad arguments, 3 refused by
the server (revoked device, serial code refused, registration closed), 4 the server's certificate
changed, 5 the folder cannot be synced as it is (see README "Exit codes")
`;

/** How the user runs this program, for the line that tells how to join another computer. */
function commandName(): string {
  const given = Deno.env.get("CLOUDSYNC_COMMAND");
  if (given && given.length <= 200 && unsafeTextProblem(given) === null) return given;
  return "cloud-client";
}

/** Runs a one-off command and exits with its code; a {@link CommandError} is said in one line. */
async function command(run: () => Promise<number> | number, what: string): Promise<never> {
  try {
    Deno.exit(await run());
  } catch (e) {
    if (e instanceof CommandError) fail(e.message, e.code);
    fail(`Cannot ${what}: ${(e as Error).message}`, EXIT.retry);
  }
}

/** A TIME option, or a one-line error naming the accepted forms (exit code 2, `EXIT.usage`). */
function timeOption(
  text: string | undefined,
  flag: string,
): { ms: number; text: string } | undefined {
  if (text === undefined) return undefined;
  const t = parseTime(text, Date.now());
  if (!t.ok) fail(t.message.replace("Cannot read the time", `Cannot read ${flag}`), EXIT.usage);
  return { ms: t.ms, text };
}

/** `history`, `restore`, `bring-back`, `confirm-delete`, `exclude`, `include`. */
function subcommand(name: string, args: string[]): Promise<never> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: name === "history"
        ? {
          deleted: { type: "boolean", default: false },
          since: { type: "string" },
          json: { type: "boolean", default: false },
        }
        : name === "restore"
        ? {
          at: { type: "string" },
          to: { type: "string" },
          "dry-run": { type: "boolean", default: false },
          json: { type: "boolean", default: false },
        }
        : {},
    });
  } catch (e) {
    fail(
      `Cannot read arguments: ${(e as Error).message}. Run cloud-client --help for usage.`,
      EXIT.usage,
    );
  }
  const { values, positionals } = parsed as {
    values: Record<string, string | boolean | undefined>;
    positionals: string[];
  };
  const [folder, ...paths] = positionals;
  const out = (l: string) => console.log(l);
  const warn = (l: string) => console.error(l);
  if (name === "history") {
    if (!folder || paths.length > 1) {
      fail(
        "Cannot list history: usage is cloud-client history FOLDER [PATH] (see --help)",
        EXIT.usage,
      );
    }
    const since = timeOption(values.since as string | undefined, "--since");
    return command(() =>
      runHistory({
        folder,
        ...(paths[0] !== undefined ? { path: paths[0] } : {}),
        deleted: values.deleted === true,
        ...(since ? { since } : {}),
        json: values.json === true,
        out,
      }), "list history");
  }
  if (name === "restore") {
    if (!folder || paths.length === 0) {
      fail(
        "Cannot restore: usage is cloud-client restore FOLDER PATH... (a file, a folder, or . for the whole folder; see --help)",
        EXIT.usage,
      );
    }
    const at = timeOption(values.at as string | undefined, "--at");
    return command(() =>
      runRestore({
        folder,
        paths,
        ...(at ? { at } : {}),
        ...(typeof values.to === "string" ? { to: values.to } : {}),
        dryRun: values["dry-run"] === true,
        json: values.json === true,
        out,
        warn,
      }), "restore");
  }
  if (name === "exclude" || name === "include") {
    if (!folder || paths.length !== 1) {
      fail(`Cannot ${name}: usage is cloud-client ${name} FOLDER PATH (see --help)`, EXIT.usage);
    }
    const o = { folder, path: paths[0]!, out, warn };
    return name === "exclude"
      ? command(() => runExclude(o), "exclude")
      : command(() => runInclude(o), "include");
  }
  if (!folder || paths.length > 0) {
    fail(`Cannot ${name}: usage is cloud-client ${name} FOLDER`, EXIT.usage);
  }
  return name === "bring-back"
    ? command(() => runBringBack({ folder, out }), "bring back vanished files")
    : command(() => runConfirmDelete({ folder, out }), "confirm the deletion");
}

const SUBCOMMANDS = new Set([
  "history",
  "restore",
  "bring-back",
  "confirm-delete",
  "exclude",
  "include",
]);

function parse() {
  try {
    return parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        name: { type: "string" },
        rejoin: { type: "boolean", default: false },
        "allow-mass-delete": { type: "boolean", default: false },
        "server-fingerprint": { type: "string" },
        "server-ca": { type: "string" },
        verbose: { type: "boolean", short: "v", default: false },
        json: { type: "boolean", default: false },
        wait: { type: "boolean", default: false },
        timeout: { type: "string" },
        version: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    fail(
      `Cannot read arguments: ${(e as Error).message}. Run cloud-client --help for usage.`,
      EXIT.usage,
    );
  }
}

type Parsed = ReturnType<typeof parse>;

async function status(values: Parsed["values"], rest: string[]): Promise<never> {
  const [folder, ...extra] = rest;
  if (!folder || extra.length > 0) {
    fail("Cannot show status: usage is cloud-client status FOLDER [--json] [--wait]", EXIT.usage);
  }
  let timeoutS: number | null = null;
  if (values.timeout !== undefined) {
    timeoutS = Number(values.timeout);
    if (!values.wait || !Number.isFinite(timeoutS) || timeoutS < 0) {
      fail(
        `Cannot show status: --timeout goes with --wait and is a number of seconds, not "${values.timeout}"`,
        EXIT.usage,
      );
    }
  }
  Deno.exit(await statusCommand({ folder, json: values.json, wait: values.wait, timeoutS }));
}

async function main(): Promise<void> {
  const first = Deno.args[0];
  if (
    first !== undefined && SUBCOMMANDS.has(first) && !Deno.args.includes("--help") &&
    !Deno.args.includes("-h")
  ) {
    await subcommand(first, Deno.args.slice(1));
  }
  const { values, positionals } = parse();
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (values.version) {
    console.log(versionLine("cloud-client", PROGRAM_VERSION, PROTOCOL_VERSION));
    return;
  }
  if (positionals[0] === "status") return status(values, positionals.slice(1));
  if (values.json || values.wait || values.timeout !== undefined) {
    fail("Cannot start: --json, --wait and --timeout go with cloud-client status", EXIT.usage);
  }
  let [host, portText, folder, secondsText, serial, ...extra] = positionals;
  if (positionals.length === 1) {
    // An enrolled folder, started as it was last time.
    folder = positionals[0]!;
    let config;
    try {
      config = loadConfig(resolve(folder));
    } catch (e) {
      fail((e as Error).message, EXIT.folder);
    }
    if (!config) {
      fail(
        `Cannot start: ${
          resolve(folder)
        } is not enrolled yet; run cloud-client HOST PORT FOLDER SECONDS [SERIAL] once first`,
        EXIT.usage,
      );
    }
    [host, portText, secondsText] = [
      config.host,
      String(config.port),
      String(config.seconds ?? 60),
    ];
    serial = undefined;
    extra = [];
  }
  if (!host || !portText || !folder || !secondsText || extra.length > 0) {
    fail(
      "Cannot start: usage is cloud-client HOST PORT FOLDER SECONDS [SERIAL] (see --help)",
      EXIT.usage,
    );
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    fail(`Cannot start: PORT must be a number from 1 to 65535, not "${portText}"`, EXIT.usage);
  }
  const seconds = Number(secondsText);
  if (!Number.isFinite(seconds) || seconds < 1) {
    fail(
      `Cannot start: SECONDS must be a number of seconds (1 or more), not "${secondsText}"`,
      EXIT.usage,
    );
  }
  let normalized: string | null = null;
  if (serial !== undefined) {
    normalized = normalizeSerial(serial);
    if (!normalized) {
      fail(
        `Cannot join account: ${
          JSON.stringify(serial)
        } is not a serial code (32 letters and digits, in groups of four: XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX); copy it again, or print a new one on the server with \`cloud-server reset-serial ACCOUNT\``,
        EXIT.usage,
      );
    }
  } else if (values.rejoin) {
    fail(
      "Cannot start: --rejoin needs the SERIAL of the account to move this folder to",
      EXIT.usage,
    );
  }
  const name = values.name;
  if (name !== undefined) {
    const problem = name.trim() === ""
      ? "it is empty"
      : name.length > MAX_DEVICE_NAME
      ? `it is longer than ${MAX_DEVICE_NAME} characters`
      : unsafeTextProblem(name);
    if (problem) {
      fail(
        `Cannot start: --name must be 1 to ${MAX_DEVICE_NAME} characters, without control or bidirectional characters (${problem})`,
        EXIT.usage,
      );
    }
  }
  let serverFingerprint: string | null = null;
  if (values["server-fingerprint"] !== undefined) {
    serverFingerprint = normalizeFingerprint(values["server-fingerprint"]);
    if (!serverFingerprint) {
      fail(
        "Cannot start: --server-fingerprint must be a SHA-256 fingerprint: 32 hex pairs like AB:CD:… (as cloud-server prints it)",
        EXIT.usage,
      );
    }
  }
  let serverCa: string | null = null;
  if (values["server-ca"] !== undefined) {
    if (serverFingerprint) {
      fail("Cannot start: give --server-fingerprint or --server-ca, not both", EXIT.usage);
    }
    const file = values["server-ca"];
    try {
      serverCa = Deno.readTextFileSync(file);
      new X509Certificate(serverCa); // throws unless it holds a certificate
    } catch (e) {
      fail(
        `Cannot start: --server-ca ${file} is not a readable PEM certificate (${
          (e as Error).message
        }); give the file of the authority that issued the server's certificate`,
        EXIT.usage,
      );
    }
  }
  // Lines read later (a log file) carry the date and time; a terminal shows them as they
  // happen, and the -v lines there carry the time of day. The systemd journal (JOURNAL_STREAM
  // set) stamps every line itself.
  const journal = Deno.env.get("JOURNAL_STREAM") !== undefined;
  const stampOut = !Deno.stdout.isTerminal() && !journal;
  const stampErr = !Deno.stderr.isTerminal() && !journal;
  const log = (l: string) => console.log(stampOut ? `${logStamp()} ${l}` : l);
  const warn = (l: string) => console.error(stampErr ? `${logStamp()} ${l}` : l);
  const activity = (l: string) => stampOut ? log(l) : console.log(`${timeOfDay()} ${l}`);
  surviveStrayRejections(warn);
  const client = new SyncClient(
    {
      host,
      port,
      folder,
      seconds,
      ...(normalized ? { serial: normalized } : {}),
      ...(name !== undefined ? { name } : {}),
      ...(values.rejoin ? { rejoin: true } : {}),
      allowMassDelete: values["allow-mass-delete"],
      ...(serverFingerprint ? { serverFingerprint } : {}),
      ...(serverCa ? { serverCa } : {}),
      verbose: values.verbose,
      command: commandName(),
    },
    log,
    warn,
    activity,
  );
  onShutdown(() => {
    log("Stopping client");
    client.stop();
  });
  Deno.exit(await client.run());
}

if (import.meta.main) await main();
