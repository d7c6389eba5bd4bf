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
import { type PackIndex, SqlitePackIndex } from "./pack_index.ts";

/** Where to keep things: `dataDir` always (TLS, SQLite files), `meta`/`blobs` as the flags say. */
export interface StoreOptions {
  dataDir: string;
  meta?: string;
  blobs?: string;
  /** Environment to read S3 credentials from (default `Deno.env`). */
  env?: (name: string) => string | undefined;
}

/** The open stores and how to close them. */
export interface OpenStores {
  meta: MetaStore;
  blobs: BlobStore;
  /** Where each lives, for logs (no passwords). */
  describe: { meta: string; blobs: string };
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

/** Opens the stores the options name. */
export async function openStores(opts: StoreOptions): Promise<OpenStores> {
  const env = opts.env ?? ((name: string) => Deno.env.get(name));
  const toClose: { close(): Promise<void> }[] = [];
  const close = async () => {
    for (const c of toClose.reverse()) await c.close();
  };
  try {
    let meta: MetaStore;
    let packIndex: () => PackIndex;
    let metaText: string;
    if (opts.meta === undefined || opts.meta === "" || opts.meta === "sqlite") {
      const sqlite = new SqliteMetaStore(opts.dataDir);
      meta = sqlite;
      packIndex = () => new SqlitePackIndex(join(opts.dataDir, "s3-packs.db"));
      metaText = `SQLite ${join(opts.dataDir, "meta.db")}`;
    } else if (isPostgresUrl(opts.meta)) {
      const { PgMetaStore } = await import("./pg_meta.ts");
      const pg = await PgMetaStore.open(opts.meta);
      meta = pg;
      packIndex = () => pg.packIndex();
      metaText = describePostgres(opts.meta);
    } else {
      throw new Error(
        `Cannot start: --meta ${
          JSON.stringify(opts.meta)
        } is not postgres://USER:PASS@HOST:PORT/DB (leave it out for SQLite in --data)`,
      );
    }
    toClose.push(meta);
    let blobs: BlobStore;
    let blobsText: string;
    if (opts.blobs === undefined || opts.blobs === "" || opts.blobs === "local") {
      blobs = new TieredBlobStore(opts.dataDir);
      blobsText = `local packs in ${opts.dataDir}`;
    } else {
      const s3 = parseS3Url(opts.blobs);
      const accessKey = env("AWS_ACCESS_KEY_ID");
      const secretKey = env("AWS_SECRET_ACCESS_KEY");
      if (!accessKey || !secretKey) {
        throw new Error(
          "Cannot start: --blobs s3://… needs the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        );
      }
      const { S3Objects, S3_PACKS } = await import("./s3_objects.ts");
      const { PackedStore } = await import("./packed_store.ts");
      const objects = await S3Objects.open({ ...s3, accessKey, secretKey });
      blobs = new PackedStore(packIndex(), objects, {
        ...S3_PACKS,
        maxWrites: s3.concurrency,
        maxReads: s3.concurrency,
      });
      blobsText = `S3 bucket ${s3.bucket} at ${
        s3.useSSL ? "https" : "http"
      }://${s3.endPoint}:${s3.port}`;
    }
    toClose.push(blobs);
    return { meta, blobs, describe: { meta: metaText, blobs: blobsText }, close };
  } catch (e) {
    await close();
    throw e;
  }
}
