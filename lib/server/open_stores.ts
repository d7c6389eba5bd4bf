/**
 * Opens the server's stores from `--meta` and `--blobs` (the server and every admin command use
 * this, so they always see the same data):
 *
 * - metadata: SQLite in `DATA/meta.db` by default; `postgres://USER:PASS@HOST:PORT/DB` for
 *   PostgreSQL (`pg_meta.ts`, loaded only then);
 * - chunks: local SQLite + pack files in `DATA/` by default;
 *   `s3://BUCKET?endpoint=http://HOST:PORT&region=R` for S3-compatible object storage
 *   (`s3_objects.ts`, credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`). Its pack
 *   index lives with the metadata in PostgreSQL (shared by every instance), or in
 *   `DATA/s3-packs.db` with SQLite.
 *
 * Admin commands open with `admin: true`: where there is no server data (no `meta.db`, no schema
 * in the database, no bucket) they fail and create nothing; {@link openMeta} opens the metadata
 * alone for the commands that need no chunks.
 *
 * @example
 * ```ts
 * const stores = await openStores({ dataDir: "./cloud-data", meta: "postgres://cs:pw@127.0.0.1:5432/cs" });
 * await stores.close();
 * ```
 *
 * @module
 */

import { join } from "node:path";
import type { BlobStore, MetaStore } from "./stores.ts";
import { SqliteMetaStore } from "./meta_store.ts";
import { TieredBlobStore } from "./blob_store.ts";
import { SqlitePackIndex } from "./pack_index.ts";
import type { ObjectStore } from "./object_store.ts";
import type { PackOptions } from "./packed_store.ts";
import type { PgMetaStore } from "./pg_meta.ts";

/** Where to keep things: `dataDir` always (TLS, SQLite files), `meta`/`blobs` as the flags say. */
export interface StoreOptions {
  dataDir: string;
  meta?: string;
  blobs?: string;
  /** Environment to read S3 credentials from (default `Deno.env`). */
  env?: (name: string) => string | undefined;
  /**
   * Opened by an admin command, beside a server that may be running: create nothing (no data
   * directory, database schema or bucket; where there is none, fail with a "Cannot start: no
   * server data …" error), and leave the server's writes in progress alone.
   */
  admin?: boolean;
}

/** The open stores and how to close them. */
export interface OpenStores {
  meta: MetaStore;
  blobs: BlobStore;
  /** Where each lives, for logs (no passwords). */
  describe: { meta: string; blobs: string };
  close(): Promise<void>;
}

/** The open metadata store alone (admin commands that need no chunks). */
export interface OpenMeta {
  meta: MetaStore;
  describe: string;
  close(): Promise<void>;
}

/** True for a PostgreSQL URL (`postgres://` or `postgresql://`). */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** Settings of `--blobs s3://BUCKET?endpoint=…&region=…`. */
export interface S3Settings {
  bucket: string;
  endPoint: string;
  port: number;
  useSSL: boolean;
  region: string;
  /** Most pack uploads at once (`&concurrency=N`, default 4). */
  concurrency: number;
  /** Key prefix inside the bucket (`&prefix=P`, default none). */
  prefix: string;
}

/** Parses `--blobs s3://…`; throws a "Cannot start: …" error for anything else. */
export function parseS3Url(url: string): S3Settings {
  const usage = "give --blobs as s3://BUCKET?endpoint=http://HOST:PORT&region=REGION (see --help)";
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`Cannot start: --blobs ${JSON.stringify(url)} is not a URL; ${usage}`);
  }
  if (u.protocol !== "s3:" || !u.hostname) {
    throw new Error(`Cannot start: --blobs ${JSON.stringify(url)} is not s3://BUCKET…; ${usage}`);
  }
  const endpoint = u.searchParams.get("endpoint");
  if (!endpoint) throw new Error(`Cannot start: --blobs has no endpoint; ${usage}`);
  let e: URL;
  try {
    e = new URL(endpoint);
  } catch {
    throw new Error(`Cannot start: the --blobs endpoint ${JSON.stringify(endpoint)} is not a URL`);
  }
  if (e.protocol !== "http:" && e.protocol !== "https:") {
    throw new Error(`Cannot start: the --blobs endpoint must be http://… or https://…`);
  }
  const useSSL = e.protocol === "https:";
  const concurrency = Number(u.searchParams.get("concurrency") ?? "4");
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new Error("Cannot start: --blobs concurrency must be a whole number from 1 to 64");
  }
  return {
    bucket: u.hostname,
    endPoint: e.hostname.replace(/^\[|\]$/g, ""),
    port: e.port ? Number(e.port) : useSSL ? 443 : 80,
    useSSL,
    region: u.searchParams.get("region") ?? "us-east-1",
    concurrency,
    prefix: u.searchParams.get("prefix") ?? "",
  };
}

/** `postgres://user:secret@host:5432/db` -> `PostgreSQL postgres://user@host:5432/db`. */
function describePostgres(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    return `PostgreSQL ${u.toString()}`;
  } catch {
    return "PostgreSQL";
  }
}

/** What the options ask for, checked before anything is opened or created. */
interface StorePlan {
  meta: { kind: "sqlite" } | { kind: "postgres"; url: string };
  blobs:
    | { kind: "local" }
    | { kind: "s3"; s3: S3Settings; accessKey: string; secretKey: string };
}

/** Checks the options (URLs, credentials, admin's "there is data"); opens nothing. */
async function plan(opts: StoreOptions, withBlobs: boolean): Promise<StorePlan> {
  const env = opts.env ?? ((name: string) => Deno.env.get(name));
  let meta: StorePlan["meta"];
  if (opts.meta === undefined || opts.meta === "" || opts.meta === "sqlite") {
    meta = { kind: "sqlite" };
    if (opts.admin && !await exists(join(opts.dataDir, "meta.db"))) {
      throw new Error(`Cannot start: no server data in ${opts.dataDir} (no meta.db); check --data`);
    }
  } else if (isPostgresUrl(opts.meta)) {
    meta = { kind: "postgres", url: opts.meta };
  } else {
    throw new Error(
      `Cannot start: --meta ${
        JSON.stringify(opts.meta)
      } is not postgres://USER:PASS@HOST:PORT/DB (leave it out for SQLite in --data)`,
    );
  }
  let blobs: StorePlan["blobs"] = { kind: "local" };
  if (!withBlobs || opts.blobs === undefined || opts.blobs === "" || opts.blobs === "local") {
    if (withBlobs && opts.admin && !await exists(opts.dataDir)) {
      throw new Error(`Cannot start: no server data in ${opts.dataDir}; check --data`);
    }
  } else {
    const s3 = parseS3Url(opts.blobs);
    const accessKey = env("AWS_ACCESS_KEY_ID");
    const secretKey = env("AWS_SECRET_ACCESS_KEY");
    if (!accessKey || !secretKey) {
      throw new Error(
        "Cannot start: --blobs s3://… needs the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
      );
    }
    blobs = { kind: "s3", s3, accessKey, secretKey };
  }
  return { meta, blobs };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Opens the metadata store the options name (nothing of the chunk store). */
export async function openMeta(opts: StoreOptions): Promise<OpenMeta> {
  const p = await plan(opts, false);
  if (p.meta.kind === "postgres") {
    const { PgMetaStore } = await import("./pg_meta.ts");
    const meta = await PgMetaStore.open(p.meta.url, { create: !opts.admin });
    return { meta, describe: describePostgres(p.meta.url), close: () => meta.close() };
  }
  const meta = new SqliteMetaStore(opts.dataDir);
  return { meta, describe: `SQLite ${join(opts.dataDir, "meta.db")}`, close: () => meta.close() };
}

/**
 * Opens the stores the options name: the options are checked first, then the remote stores
 * (PostgreSQL, S3) are opened, the local ones in `dataDir` last, so that an unreachable database
 * or bucket leaves nothing behind in `dataDir`.
 */
export async function openStores(opts: StoreOptions): Promise<OpenStores> {
  const p = await plan(opts, true);
  const toClose: { close(): Promise<void> }[] = [];
  const close = async () => {
    for (const c of toClose.reverse()) await c.close();
  };
  try {
    // Remote first.
    let pg: PgMetaStore | null = null;
    if (p.meta.kind === "postgres") {
      const { PgMetaStore } = await import("./pg_meta.ts");
      pg = await PgMetaStore.open(p.meta.url, { create: !opts.admin });
      toClose.push(pg);
    }
    let objects: ObjectStore | null = null;
    let s3Packs: PackOptions | null = null;
    if (p.blobs.kind === "s3") {
      const { S3Objects, S3_PACKS } = await import("./s3_objects.ts");
      const { s3, accessKey, secretKey } = p.blobs;
      objects = await S3Objects.open({ ...s3, accessKey, secretKey, create: !opts.admin });
      toClose.push(objects);
      s3Packs = { ...S3_PACKS, maxWrites: s3.concurrency, maxReads: s3.concurrency };
    }
    // Then what lives in the data directory.
    const meta: MetaStore = pg ?? new SqliteMetaStore(opts.dataDir);
    if (!pg) toClose.push(meta);
    let blobs: BlobStore;
    let blobsText: string;
    if (p.blobs.kind === "s3" && objects && s3Packs) {
      const index = pg ? pg.packIndex() : new SqlitePackIndex(join(opts.dataDir, "s3-packs.db"));
      const { PackedStore } = await import("./packed_store.ts");
      blobs = new PackedStore(index, objects, s3Packs);
      toClose.splice(toClose.indexOf(objects), 1); // the packed store closes its objects
      const { s3 } = p.blobs;
      blobsText = `S3 bucket ${s3.bucket} at ${
        s3.useSSL ? "https" : "http"
      }://${s3.endPoint}:${s3.port}`;
    } else {
      blobs = new TieredBlobStore(opts.dataDir, { admin: opts.admin ?? false });
      blobsText = `local packs in ${opts.dataDir}`;
    }
    toClose.push(blobs);
    const metaText = p.meta.kind === "postgres"
      ? describePostgres(p.meta.url)
      : `SQLite ${join(opts.dataDir, "meta.db")}`;
    return { meta, blobs, describe: { meta: metaText, blobs: blobsText }, close };
  } catch (e) {
    await close();
    throw e;
  }
}
