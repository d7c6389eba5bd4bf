/**
 * `cloud-client`: keeps a folder in sync with a Cloud Sync server. Parses arguments and wires the
 * parts in `lib/client/` together; nothing else.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SyncClient } from "./lib/client/app.ts";
import { fail, onShutdown } from "./lib/util/cli.ts";
import { normalizeFingerprint } from "./lib/transport/tls_cert.ts";
import { normalizeSerial } from "./lib/util/crockford.ts";
import { MAX_DEVICE_NAME } from "./lib/protocol/messages.ts";
import { unsafeTextProblem } from "./lib/util/log_text.ts";
import { runExclude, runInclude } from "./lib/client/selective.ts";

const HELP = `cloud-client: keep a folder in sync with a Cloud Sync server

Usage:
  cloud-client HOST PORT FOLDER SECONDS [SERIAL] [--name NAME] [--rejoin] [--allow-mass-delete]
               [--server-fingerprint FP]
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

  exclude FOLDER PATH  stop syncing PATH (relative to FOLDER) on this computer only, and free its
                       space: what the server holds is removed here, anything it does not have is
                       kept and listed; the server and other computers keep it all. Run it with
                       the client stopped. Ignore rules: see .cloudignore in the README
  include FOLDER PATH  sync PATH on this computer again (works beside a running client)

Options:
  --name NAME          this device's name, shown in conflict copies and by cloud-server devices
                       (default: the host name); on an enrolled folder, renames the device
  --rejoin             with the SERIAL of another account, on an enrolled folder: move the folder
                       to that account. Every file is kept: the folder's files are merged with the
                       account's (the same path with other content becomes a conflict copy)
  --allow-mass-delete  propagate deletions even when more than half of the synced files (and more
                       than 100) vanished at once; without it the client holds them back and warns
  --server-fingerprint FP
                       trust only a server whose TLS certificate has this SHA-256 fingerprint (the
                       "TLS certificate fingerprint" line cloud-server prints). Without it the
                       client trusts the certificate it sees first (or one a trusted authority
                       issued for HOST) and refuses to connect if it ever changes; give the new
                       fingerprint here after replacing the server's certificate on purpose
  -h, --help           show this help
`;

async function main(): Promise<void> {
  const command = Deno.args[0];
  if (command === "exclude" || command === "include") {
    const [, folder, path, ...extra] = Deno.args;
    if (!folder || !path || extra.length > 0 || path.startsWith("-")) {
      fail(`Cannot ${command}: usage is cloud-client ${command} FOLDER PATH (see --help)`, 2);
    }
    const out = { log: (l: string) => console.log(l), warn: (l: string) => console.error(l) };
    const run = command === "exclude" ? runExclude : runInclude;
    Deno.exit(await run(folder, path, out));
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
  });
  onShutdown(() => {
    console.log("Stopping client");
    client.stop();
  });
  Deno.exit(await client.run());
}

if (import.meta.main) await main();
