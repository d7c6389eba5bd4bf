/**
 * `cloud-client`: keeps a folder in sync with a Cloud Sync server. Parses arguments and wires the
 * parts in `lib/client/` together; nothing else.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SyncClient } from "./lib/client/app.ts";
import { fail, onShutdown, surviveStrayRejections } from "./lib/util/cli.ts";
import { X509Certificate } from "node:crypto";
import { normalizeFingerprint } from "./lib/transport/tls_cert.ts";
import { normalizeSerial } from "./lib/util/crockford.ts";
import { runHistory } from "./lib/client/history.ts";
import { runRestore } from "./lib/client/restore.ts";
import { runBringBack, runConfirmDelete } from "./lib/client/mass_delete.ts";
import { CommandError } from "./lib/client/folder_session.ts";
import { parseTime, TIME_FORMS } from "./lib/core/time_spec.ts";
import { MAX_DEVICE_NAME } from "./lib/protocol/messages.ts";
import { unsafeTextProblem } from "./lib/util/log_text.ts";
import { runExclude, runInclude } from "./lib/client/selective.ts";

const HELP = `cloud-client: keep a folder in sync with a Cloud Sync server

Usage:
  cloud-client HOST PORT FOLDER SECONDS [SERIAL] [--name NAME] [--rejoin] [--allow-mass-delete]
               [--server-fingerprint FP | --server-ca FILE]
  cloud-client history FOLDER [PATH] [--deleted] [--since TIME] [--json]
  cloud-client restore FOLDER PATH... [--at TIME] [--to DIR] [--dry-run] [--json]
  cloud-client bring-back FOLDER
  cloud-client confirm-delete FOLDER
  cloud-client exclude FOLDER PATH
  cloud-client include FOLDER PATH

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
`;

/** Runs a one-off command and exits with its code; a {@link CommandError} is said in one line. */
async function command(run: () => Promise<number> | number, what: string): Promise<never> {
  try {
    Deno.exit(await run());
  } catch (e) {
    if (e instanceof CommandError) fail(e.message, e.code);
    fail(`Cannot ${what}: ${(e as Error).message}`);
  }
}

/** A TIME option, or a one-line error naming the accepted forms (exit code 2). */
function timeOption(
  text: string | undefined,
  flag: string,
): { ms: number; text: string } | undefined {
  if (text === undefined) return undefined;
  const t = parseTime(text, Date.now());
  if (!t.ok) fail(t.message.replace("Cannot read the time", `Cannot read ${flag}`), 2);
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
    fail(`Cannot read arguments: ${(e as Error).message}. Run cloud-client --help for usage.`, 2);
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
      fail("Cannot list history: usage is cloud-client history FOLDER [PATH] (see --help)", 2);
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
        2,
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
      fail(`Cannot ${name}: usage is cloud-client ${name} FOLDER PATH (see --help)`, 2);
    }
    const o = { folder, path: paths[0]!, out, warn };
    return name === "exclude"
      ? command(() => runExclude(o), "exclude")
      : command(() => runInclude(o), "include");
  }
  if (!folder || paths.length > 0) fail(`Cannot ${name}: usage is cloud-client ${name} FOLDER`, 2);
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

async function main(): Promise<void> {
  const first = Deno.args[0];
  if (
    first !== undefined && SUBCOMMANDS.has(first) && !Deno.args.includes("--help") &&
    !Deno.args.includes("-h")
  ) {
    await subcommand(first, Deno.args.slice(1));
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        name: { type: "string" },
        rejoin: { type: "boolean", default: false },
        "allow-mass-delete": { type: "boolean", default: false },
        "server-fingerprint": { type: "string" },
        "server-ca": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    fail(`Cannot read arguments: ${(e as Error).message}. Run cloud-client --help for usage.`, 2);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return;
  }
  const [host, portText, folder, secondsText, serial, ...extra] = positionals;
  if (!host || !portText || !folder || !secondsText || extra.length > 0) {
    fail("Cannot start: usage is cloud-client HOST PORT FOLDER SECONDS [SERIAL] (see --help)", 2);
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    fail(`Cannot start: PORT must be a number from 1 to 65535, not "${portText}"`, 2);
  }
  const seconds = Number(secondsText);
  if (!Number.isFinite(seconds) || seconds < 1) {
    fail(`Cannot start: SECONDS must be a number of seconds (1 or more), not "${secondsText}"`, 2);
  }
  let normalized: string | null = null;
  if (serial !== undefined) {
    normalized = normalizeSerial(serial);
    if (!normalized) {
      fail(
        `Cannot join account: ${
          JSON.stringify(serial)
        } is not a serial code (32 letters and digits, in groups of four: XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX); copy it again, or print a new one on the server with \`cloud-server reset-serial ACCOUNT\``,
        2,
      );
    }
  } else if (values.rejoin) {
    fail("Cannot start: --rejoin needs the SERIAL of the account to move this folder to", 2);
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
        2,
      );
    }
  }
  let serverFingerprint: string | null = null;
  if (values["server-fingerprint"] !== undefined) {
    serverFingerprint = normalizeFingerprint(values["server-fingerprint"]);
    if (!serverFingerprint) {
      fail(
        "Cannot start: --server-fingerprint must be a SHA-256 fingerprint: 32 hex pairs like AB:CD:… (as cloud-server prints it)",
        2,
      );
    }
  }
  let serverCa: string | null = null;
  if (values["server-ca"] !== undefined) {
    if (serverFingerprint) {
      fail("Cannot start: give --server-fingerprint or --server-ca, not both", 2);
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
        2,
      );
    }
  }
  surviveStrayRejections((l) => console.error(l));
  const client = new SyncClient({
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
  });
  onShutdown(() => {
    console.log("Stopping client");
    client.stop();
  });
  Deno.exit(await client.run());
}

if (import.meta.main) await main();
