/**
 * `cloud-server`: the Cloud Sync server and its admin subcommands. Parses arguments and wires the
 * parts in `lib/server/` together; nothing else.
 *
 * @module
 */

import { debugMemory } from "./lib/util/debug.ts";
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { startServer } from "./lib/server/server.ts";
import {
  type OpenMeta,
  openMeta,
  type OpenStores,
  openStores,
  type StoreOptions,
} from "./lib/server/open_stores.ts";
import { verify } from "./lib/server/verify.ts";
import { secretHash } from "./lib/server/session.ts";
import { newSerial, normalizeSerial } from "./lib/util/crockford.ts";
import {
  fail,
  formatBytes,
  logStamp,
  onShutdown,
  surviveStrayRejections,
  versionLine,
} from "./lib/util/cli.ts";
import { EXIT } from "./lib/util/exit_codes.ts";
import { PROGRAM_VERSION, PROTOCOL_VERSION } from "./lib/protocol/messages.ts";
import { DEFAULT_LIMITS, describeSize, parseSize, type ServerLimits } from "./lib/server/limits.ts";
import { escapeForLog } from "./lib/util/log_text.ts";
import { parseKeepCount, type RetentionPolicy } from "./lib/core/retention_policy.ts";

/** `every version for 30 days, then the last of 7 days, 4 weeks` (the start-up line). */
function describeRetention(p: RetentionPolicy): string {
  const then = [[p.daily, "day"], [p.weekly, "week"], [p.monthly, "month"]]
    .filter(([n]) => Number(n) > 0)
    .map(([n, w]) => `${n} ${w}${n === 1 ? "" : "s"}`);
  return `every version for ${p.keepDays} days${
    then.length > 0 ? `, then the last of each of ${then.join(", ")}` : ", then none"
  }`;
}

const HELP = `cloud-server: the Cloud Sync server

Usage:
  cloud-server PORT [--host HOST] [--data DIR] [--meta URL] [--blobs URL] [--keep-days N]
                   [--keep-daily N] [--keep-weekly N] [--keep-monthly N]
                   [--cert FILE --key FILE] [--quota SIZE] [--max-connections-per-ip N]
                   [--max-connections N] [--registration open|closed]
                                                 serve on PORT (all interfaces by default), over TLS
  cloud-server invite [--data DIR]               print a one-time code that lets one new account
                                                 register (give it to the client as its SERIAL)
  cloud-server accounts [--data DIR]             list accounts: id, devices, last seen, files, bytes,
                                                 kept versions and their bytes, bytes stored
  cloud-server devices ACCOUNT [--data DIR]      list the devices of ACCOUNT: id, name, last seen, status
  cloud-server revoke-device ACCOUNT DEVICE [--data DIR]
                                                 revoke a device (lost or stolen): it cannot connect any
                                                 more; a running server drops it within seconds
  cloud-server reset-serial ACCOUNT [--data DIR] issue a new serial code for ACCOUNT (the old one stops working)
  cloud-server verify [--account ID] [--data DIR] check metadata and stored content; exit 1 on any problem
  cloud-server delete-account ACCOUNT --yes [--data DIR]
                                                 delete ACCOUNT and all its data (devices, files, kept
                                                 versions, content); without --yes, say what it would
                                                 delete and exit 1
  (every admin command takes --meta and --blobs too, and must be given the server's)

Options:
  --host HOST   address to listen on (default 0.0.0.0; 127.0.0.1 for this machine only)
  --data DIR    where accounts, metadata and file content are kept (default ./cloud-data); with
                --meta and --blobs only the TLS certificate (and an S3 pack index without --meta)
  --meta URL    keep metadata in PostgreSQL: postgres://USER:PASS@HOST:PORT/DB (created and
                migrated at start); default: SQLite in DIR/meta.db. Several servers may share one
                (behind a TCP load balancer; they push changes to each other's devices)
  --blobs URL   keep file content in S3-compatible storage:
                s3://BUCKET?endpoint=http://HOST:PORT&region=REGION, with the credentials in
                AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optional: &concurrency=N uploads at
                once, default 4; &prefix=P for the object keys); default: files in DIR
  --keep-days N how long overwritten and deleted versions are all kept (default 30)
  --keep-daily N, --keep-weekly N, --keep-monthly N
                after --keep-days, keep the last version of each of the N most recent days,
                weeks (Monday first) or months that have one, as restic's forget does (each
                file's versions, deleted files' too); default 0: older versions are forgotten
  --cert FILE   TLS certificate (PEM, with its chain) issued by an authority for this server's
                name; clients then verify the name as HTTPS does. Without --cert/--key the server
                creates a self-signed certificate in DIR/tls/ (with --meta: in the database,
                the same for every server on it) at first start and prints its fingerprint;
                clients pin it on first contact (or with --server-fingerprint)
  --key FILE    the private key (PEM) of --cert
  --quota SIZE  most content each account may store (as stored: compressed, deduplicated, old
                versions included), e.g. 10GiB, 500MB, 1TiB; default: no quota
  --max-connections-per-ip N
                most connections open at once from one address (default 32; 256 from one
                IPv4 /24 or IPv6 /64)
  --max-connections N
                most connections open at once in all (default 4096, or 3/4 of the open-file
                limit when that is lower); accepting pauses at this many
  --registration open|closed
                open (default): anybody who reaches the port may create an account; closed:
                only with a code from \`cloud-server invite\`
  --account ID  verify: check only this account
  --yes         delete-account: really delete
  -h, --help    show this help
  --version     print the program's version and the protocol version it speaks

Exit codes: 0 done (or stopped by a signal), 1 failed (a later try may work: the port is in use,
a store cannot be reached), 2 bad arguments (do not restart; see README "Exit codes")
`;

/** The program (exported so that `bench/traced_server.ts` can run it with its S3 and SQL calls timed). */
export function main(): Promise<void> | void {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        host: { type: "string", default: "0.0.0.0" },
        data: { type: "string", default: "cloud-data" },
        "keep-days": { type: "string", default: "30" },
        "keep-daily": { type: "string", default: "0" },
        "keep-weekly": { type: "string", default: "0" },
        "keep-monthly": { type: "string", default: "0" },
        cert: { type: "string" },
        key: { type: "string" },
        account: { type: "string" },
        yes: { type: "boolean", default: false },
        meta: { type: "string" },
        blobs: { type: "string" },
        quota: { type: "string" },
        "max-connections-per-ip": { type: "string" },
        "max-connections": { type: "string" },
        registration: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    fail(
      `Cannot read arguments: ${(e as Error).message}. Run cloud-server --help for usage.`,
      EXIT.usage,
    );
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (values.version) {
    console.log(versionLine("cloud-server", PROGRAM_VERSION, PROTOCOL_VERSION));
    return;
  }
  const dataDir = resolve(values.data);
  const where: StoreOptions = {
    dataDir,
    ...(values.meta !== undefined ? { meta: values.meta } : {}),
    ...(values.blobs !== undefined ? { blobs: values.blobs } : {}),
  };
  const [first, ...rest] = positionals;
  if (first === "accounts") return listAccounts(where);
  if (first === "reset-serial") return resetSerial(where, rest[0]);
  if (first === "devices") return listDevices(where, rest[0]);
  if (first === "revoke-device") return revokeDevice(where, rest[0], rest[1]);
  if (first === "verify") return verifyData(where, values.account);
  if (first === "delete-account") return deleteAccount(where, rest[0], values.yes);
  if (first === "invite") return invite(where);
  if (first === undefined || !/^\d+$/.test(first) || Number(first) > 65535) {
    fail(
      "Cannot start: give the port to listen on, e.g. `cloud-server 12345` (see --help)",
      EXIT.usage,
    );
  }
  const keepDays = Number(values["keep-days"]);
  if (!Number.isFinite(keepDays) || keepDays < 0) {
    fail(
      `Cannot start: --keep-days must be a number of days, not "${values["keep-days"]}"`,
      EXIT.usage,
    );
  }
  const keep: { daily: number; weekly: number; monthly: number } = {
    daily: 0,
    weekly: 0,
    monthly: 0,
  };
  for (const k of ["daily", "weekly", "monthly"] as const) {
    const text = values[`keep-${k}`];
    const n = parseKeepCount(text);
    if (n === null) {
      fail(`Cannot start: --keep-${k} must be a whole number (0 or more), not "${text}"`, 2);
    }
    keep[k] = n;
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    fail(
      "Cannot start: --cert and --key go together (the certificate and its private key)",
      EXIT.usage,
    );
  }
  const tls = values.cert !== undefined && values.key !== undefined
    ? { certFile: resolve(values.cert), keyFile: resolve(values.key) }
    : {};
  const limits: Partial<ServerLimits> = {};
  if (values.quota !== undefined) {
    const bytes = parseSize(values.quota);
    if (bytes === null) {
      fail(
        `Cannot start: --quota must be a size such as 10GiB, 500MB or 1TiB, not "${values.quota}"`,
        EXIT.usage,
      );
    }
    limits.quotaBytes = bytes;
  }
  const perIp = values["max-connections-per-ip"];
  if (perIp !== undefined) {
    if (!/^\d+$/.test(perIp) || Number(perIp) < 1 || Number(perIp) > 1_000_000) {
      fail(
        `Cannot start: --max-connections-per-ip must be a whole number from 1, not "${perIp}"`,
        EXIT.usage,
      );
    }
    limits.maxConnectionsPerIp = Number(perIp);
    // The address's group (its /24 or /64) holds at least as many: behind a load balancer every
    // connection comes from one address.
    limits.maxConnectionsPerGroup = Math.max(
      DEFAULT_LIMITS.maxConnectionsPerGroup,
      limits.maxConnectionsPerIp,
    );
  }
  const maxConns = values["max-connections"];
  if (maxConns !== undefined) {
    if (!/^\d+$/.test(maxConns) || Number(maxConns) < 1 || Number(maxConns) > 1_000_000) {
      fail(
        `Cannot start: --max-connections must be a whole number from 1, not "${maxConns}"`,
        EXIT.usage,
      );
    }
    limits.maxConnections = Number(maxConns);
  }
  const reg = values.registration;
  if (reg !== undefined) {
    if (reg !== "open" && reg !== "closed") {
      fail(`Cannot start: --registration must be open or closed, not "${reg}"`, EXIT.usage);
    }
    limits.registration = reg;
  }
  return serve(values.host, Number(first), where, { keepDays, ...keep }, tls, limits);
}

async function serve(
  hostname: string,
  port: number,
  where: StoreOptions,
  retention: RetentionPolicy,
  tls: { certFile?: string; keyFile?: string },
  limits: Partial<ServerLimits>,
): Promise<void> {
  // Everything the server creates is for its own user only: files 0600, directories 0700.
  if (Deno.build.os !== "windows") Deno.umask(0o077);
  surviveStrayRejections((l) => console.error(`${logStamp()} ${l}`));
  let server;
  try {
    server = await startServer({
      keepDays: retention.keepDays,
      keep: retention,
      hostname,
      port,
      ...where,
      ...tls,
      limits,
      log: (l) => console.log(`${logStamp()} ${l}`),
    });
  } catch (e) {
    fail((e as Error).message);
  }
  // Before the first line: whoever waits for it may stop the server right away.
  onShutdown(async () => {
    console.log("Stopping server");
    await server.close();
  });
  console.log(`Cloud Sync server listening on ${server.hostname}:${server.port}`);
  debugMemory(2000); // CLOUDSYNC_DEBUG=1: the memory every 2 s
  console.log(`Data directory: ${where.dataDir}`);
  console.log(`Metadata: ${server.stores.meta}`);
  console.log(`Content: ${server.stores.blobs}`);
  const cert = server.certificate;
  const kept = cert.shared
    ? "in the --meta database, the same for every instance on it"
    : cert.certFile;
  console.log(`TLS certificate: ${kept}${cert.created ? " (created now, self-signed)" : ""}`);
  console.log(`TLS certificate fingerprint: ${cert.fingerprint}`);
  const quota = limits.quotaBytes ?? DEFAULT_LIMITS.quotaBytes;
  console.log(`Retention: ${describeRetention(retention)}`);
  console.log(
    `Limits: ${quota === null ? "no quota" : `quota ${describeSize(quota)} per account`}, ${
      limits.maxConnectionsPerIp ?? DEFAULT_LIMITS.maxConnectionsPerIp
    } connections per address, registration ${limits.registration ?? "open"}`,
  );
}

async function invite(where: StoreOptions): Promise<void> {
  if (Deno.build.os !== "windows") Deno.umask(0o077);
  const stores = await openMetaOnly(where, "make an invite code");
  const code = newSerial();
  await stores.meta.addInvite(secretHash(normalizeSerial(code)!)).finally(() => stores.close());
  console.log(`Invite code: ${code}`);
  console.log(
    "It lets one new account register, even with --registration closed: give it to the client in place of the serial code, e.g. `cloud-client HOST PORT FOLDER 10 CODE`. It works once.",
  );
}

/**
 * The stores the admin commands work on (the server's, as --data, --meta and --blobs say); where
 * there is no server data, says so and exits 1 instead of creating any.
 */
async function open(where: StoreOptions, what: string): Promise<OpenStores> {
  try {
    return await openStores({ ...where, admin: true });
  } catch (e) {
    fail((e as Error).message.replace(/^Cannot start:/, `Cannot ${what}:`));
  }
}

/** The metadata store alone, for the admin commands that touch no content (see {@link open}). */
async function openMetaOnly(where: StoreOptions, what: string): Promise<OpenMeta> {
  try {
    return await openMeta({ ...where, admin: true });
  } catch (e) {
    fail((e as Error).message.replace(/^Cannot start:/, `Cannot ${what}:`));
  }
}

/** "in DIR" or "in the PostgreSQL database", for messages. */
function place(where: StoreOptions): string {
  return where.meta ? "in the --meta database" : `in ${where.dataDir}`;
}

async function listAccounts(where: StoreOptions): Promise<void> {
  const stores = await openMetaOnly(where, "list accounts");
  const rows = await stores.meta.accounts().finally(() => stores.close());
  if (rows.length === 0) {
    console.log(`No accounts yet ${place(where)}`);
    return;
  }
  const line = (cols: string[]) =>
    console.log(cols.map((c, i) => c.padEnd([12, 8, 20, 8, 11, 9, 11, 0][i]!)).join(" "));
  line(["ACCOUNT", "DEVICES", "LAST SEEN", "FILES", "BYTES", "VERSIONS", "KEPT", "STORED"]);
  for (const r of rows) {
    const seen = r.lastSeen
      ? new Date(r.lastSeen).toISOString().replace("T", " ").slice(0, 19)
      : "never";
    line([
      r.id,
      String(r.devices),
      seen,
      String(r.files),
      formatBytes(r.bytes),
      String(r.versions),
      formatBytes(r.keptBytes),
      formatBytes(r.storedBytes),
    ]);
  }
}

async function listDevices(where: StoreOptions, account: string | undefined): Promise<void> {
  if (!account) {
    fail("Cannot list devices: give the account id (see `cloud-server accounts`)", EXIT.usage);
  }
  const stores = await openMetaOnly(where, "list devices");
  let known: boolean;
  let rows;
  try {
    known = await stores.meta.hasAccount(account);
    rows = known ? await stores.meta.devices(account) : [];
  } finally {
    await stores.close();
  }
  if (!known) {
    fail(
      `Cannot list devices: no account ${account} ${place(where)}; see \`cloud-server accounts\``,
    );
  }
  const when = (t: number | null) =>
    t === null ? "never" : new Date(t).toISOString().replace("T", " ").slice(0, 19);
  const line = (cols: string[]) =>
    console.log(cols.map((c, i) => c.padEnd([12, 20, 20, 20, 0][i]!)).join(" "));
  line(["DEVICE", "NAME", "ENROLLED", "LAST SEEN", "STATUS"]);
  for (const d of rows) {
    line([
      d.id,
      escapeForLog(d.name),
      when(d.created),
      when(d.lastSeen),
      d.revoked ? "revoked" : "active",
    ]);
  }
}

async function revokeDevice(
  where: StoreOptions,
  account: string | undefined,
  device: string | undefined,
): Promise<void> {
  if (!account || !device) {
    fail(
      "Cannot revoke device: give the account id and the device id, e.g. `cloud-server revoke-device ACCOUNT DEVICE` (see `cloud-server devices ACCOUNT`)",
      EXIT.usage,
    );
  }
  const stores = await openMetaOnly(where, "revoke device");
  let known: boolean;
  let ok: boolean;
  let name: string | undefined;
  try {
    known = await stores.meta.hasAccount(account);
    ok = known && await stores.meta.revokeDevice(account, device);
    name = ok ? (await stores.meta.devices(account)).find((d) => d.id === device)?.name : undefined;
  } finally {
    await stores.close();
  }
  if (!known) {
    fail(
      `Cannot revoke device: no account ${account} ${place(where)}; see \`cloud-server accounts\``,
    );
  }
  if (!ok) {
    fail(
      `Cannot revoke device: account ${account} has no device ${device}; see \`cloud-server devices ${account}\``,
    );
  }
  console.log(
    `Revoked device ${escapeForLog(device)} ("${escapeForLog(name ?? "")}") of account ${account}.`,
  );
  console.log(
    "It can no longer connect; a running server closes its connection within a few seconds. Other devices are not affected.",
  );
  console.log(
    "If whoever has the device may also know the serial code, run `cloud-server reset-serial` too, so that it cannot join again.",
  );
}

async function resetSerial(where: StoreOptions, account: string | undefined): Promise<void> {
  if (!account) {
    fail("Cannot reset serial: give the account id (see `cloud-server accounts`)", EXIT.usage);
  }
  const stores = await openMetaOnly(where, "reset serial");
  const serial = newSerial();
  const ok = await stores.meta.setSerialHash(account, secretHash(normalizeSerial(serial)!))
    .finally(() => stores.close());
  if (!ok) {
    fail(
      `Cannot reset serial: no account ${account} ${place(where)}; see \`cloud-server accounts\``,
    );
  }
  console.log(`New serial code for account ${account}:`);
  console.log(`Serial code: ${serial}`);
  console.log("The old code no longer enrolls devices; devices already enrolled keep working.");
}

async function verifyData(where: StoreOptions, account: string | undefined): Promise<void> {
  // The same stores the server uses.
  const stores = await open(where, "verify");
  let r;
  try {
    r = await verify(stores.meta, stores.blobs, account === undefined ? {} : { account });
  } catch (e) {
    await stores.close();
    fail(`Cannot verify ${where.meta ? "the stores" : where.dataDir}: ${(e as Error).message}`);
  }
  await stores.close();
  const label = where.meta ? "the stores" : where.dataDir;
  if (r.problems.length > 0) {
    for (const p of r.problems) console.log(p);
    fail(`${r.problems.length} problems found in ${label}`);
  }
  console.log(`OK: ${r.accounts} accounts, ${r.entries} entries, ${r.chunks} chunks verified`);
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}

async function deleteAccount(
  where: StoreOptions,
  account: string | undefined,
  yes: boolean,
): Promise<void> {
  if (!account) {
    fail("Cannot delete account: give the account id (see `cloud-server accounts`)", EXIT.usage);
  }
  const stores = await open(where, "delete account");
  const { meta, blobs } = stores;
  const fp = await meta.accountFootprint(account).catch(async (e) => {
    await stores.close();
    fail(`Cannot delete account ${account}: ${(e as Error).message}`);
  });
  if (!fp) {
    await stores.close();
    fail(
      `Cannot delete account: no account ${account} ${place(where)}; see \`cloud-server accounts\``,
    );
  }
  const what = `${count(fp.devices, "device")}, ${count(fp.files, "file")}, ${
    count(fp.versions, "kept version")
  }, ${count(fp.chunks, "chunk")} (${formatBytes(fp.storedBytes)} stored)`;
  if (!yes) {
    await stores.close();
    console.log(`Would delete account ${account}: ${what}.`);
    console.log("Nothing was deleted. This cannot be undone; the account's devices stop syncing.");
    fail(`To delete it, run: cloud-server delete-account ${account} --yes`);
  }
  try {
    // Its devices first: a running server (every instance) drops their connections within
    // seconds, so nothing is added while the content goes. Then the content, then the rows: a
    // crash in between leaves the account listed, and running the command again finishes it.
    for (const d of await meta.devices(account)) await meta.revokeDevice(account, d.id);
    await blobs.deleteAccount(account);
    await meta.deleteAccount(account);
  } catch (e) {
    await stores.close();
    fail(`Cannot delete account ${account}: ${(e as Error).message}; run the command again`);
  }
  await stores.close();
  console.log(`Deleted account ${account}: ${what}.`);
}

if (import.meta.main) await main();
