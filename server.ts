/**
 * `cloud-server`: the Cloud Sync server and its admin subcommands. Parses arguments and wires the
 * parts in `lib/server/` together; nothing else.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { startServer } from "./lib/server/server.ts";
import { SqliteMetaStore } from "./lib/server/meta_store.ts";
import { secretHash } from "./lib/server/session.ts";
import { newSerial, normalizeSerial } from "./lib/util/crockford.ts";
import { fail, formatBytes, onShutdown } from "./lib/util/cli.ts";

const HELP = `cloud-server: the Cloud Sync server

Usage:
  cloud-server PORT [--host HOST] [--data DIR]   serve on PORT (all interfaces by default)
  cloud-server accounts [--data DIR]             list accounts: id, devices, last seen, files, bytes
  cloud-server reset-serial ACCOUNT [--data DIR] issue a new serial code for ACCOUNT (the old one stops working)

Options:
  --host HOST   address to listen on (default 0.0.0.0; 127.0.0.1 for this machine only)
  --data DIR    where accounts, metadata and file content are kept (default ./cloud-data)
  --keep-days N how long overwritten and deleted versions are kept (default 30)
  -h, --help    show this help
`;

function main(): Promise<void> | void {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        host: { type: "string", default: "0.0.0.0" },
        data: { type: "string", default: "cloud-data" },
        "keep-days": { type: "string", default: "30" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    fail(`Cannot read arguments: ${(e as Error).message}. Run cloud-server --help for usage.`, 2);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return;
  }
  const dataDir = resolve(values.data);
  const [first, ...rest] = positionals;
  if (first === "accounts") return listAccounts(dataDir);
  if (first === "reset-serial") return resetSerial(dataDir, rest[0]);
  if (first === undefined || !/^\d+$/.test(first) || Number(first) > 65535) {
    fail("Cannot start: give the port to listen on, e.g. `cloud-server 12345` (see --help)", 2);
  }
  const keepDays = Number(values["keep-days"]);
  if (!Number.isFinite(keepDays) || keepDays < 0) {
    fail(`Cannot start: --keep-days must be a number of days, not "${values["keep-days"]}"`, 2);
  }
  return serve(values.host, Number(first), dataDir, keepDays);
}

async function serve(
  hostname: string,
  port: number,
  dataDir: string,
  keepDays: number,
): Promise<void> {
  const stamp = () => new Date().toISOString().replace("T", " ").slice(0, 19);
  let server;
  try {
    server = await startServer({
      keepDays,
      hostname,
      port,
      dataDir,
      log: (l) => console.log(`${stamp()} ${l}`),
    });
  } catch (e) {
    fail((e as Error).message);
  }
  console.log(`Cloud Sync server listening on ${server.hostname}:${server.port}`);
  console.log(`Data directory: ${dataDir}`);
  onShutdown(async () => {
    console.log("Stopping server");
    await server.close();
  });
}

function listAccounts(dataDir: string): void {
  const meta = new SqliteMetaStore(dataDir);
  const rows = meta.accounts();
  meta.close();
  if (rows.length === 0) {
    console.log(`No accounts yet in ${dataDir}`);
    return;
  }
  const line = (cols: string[]) =>
    console.log(cols.map((c, i) => c.padEnd([12, 8, 20, 8, 0][i]!)).join(" "));
  line(["ACCOUNT", "DEVICES", "LAST SEEN", "FILES", "BYTES"]);
  for (const r of rows) {
    const seen = r.lastSeen
      ? new Date(r.lastSeen).toISOString().replace("T", " ").slice(0, 19)
      : "never";
    line([r.id, String(r.devices), seen, String(r.files), formatBytes(r.bytes)]);
  }
}

function resetSerial(dataDir: string, account: string | undefined): void {
  if (!account) fail("Cannot reset serial: give the account id (see `cloud-server accounts`)", 2);
  const meta = new SqliteMetaStore(dataDir);
  const serial = newSerial();
  const ok = meta.setSerialHash(account, secretHash(normalizeSerial(serial)!));
  meta.close();
  if (!ok) {
    fail(`Cannot reset serial: no account ${account} in ${dataDir}; see \`cloud-server accounts\``);
  }
  console.log(`New serial code for account ${account}:`);
  console.log(`Serial code: ${serial}`);
  console.log("The old code no longer enrolls devices; devices already enrolled keep working.");
}

if (import.meta.main) await main();
