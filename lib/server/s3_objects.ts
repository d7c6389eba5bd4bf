/**
 * Pack objects in S3-compatible object storage (AWS S3, MinIO, Ceph, OpenStack Swift's `s3api`),
 * through the `minio` client (`npm:minio`: maintained, small, path-style requests work against
 * every server of this kind). {@link S3Objects} maps the {@link ObjectStore} calls onto
 * PutObject, ranged GetObject and DeleteObject; {@link S3Objects.open} adds retries with
 * back-off for transient failures ({@link RetryingObjects}) and checks (or creates) the bucket.
 *
 * Memory stays bounded: a pack is uploaded from the buffers it was assembled from (one copy when
 * it has several parts: the client signs the payload), at most `concurrency` requests run at
 * once, and a ranged read is streamed straight into the caller's buffers.
 *
 * Keys: `PREFIX` + `ACCOUNT/PACKID.pack`.
 *
 * @example
 * ```ts
 * const objects = await S3Objects.open({ bucket: "cloudsync", endPoint: "127.0.0.1", port: 9000,
 *   useSSL: false, region: "us-east-1", accessKey, secretKey, concurrency: 4, prefix: "" });
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as http from "node:http";
import * as https from "node:https";
import * as Minio from "minio";
import type { ObjectStore } from "./object_store.ts";
import { RetryingObjects } from "./object_retry.ts";
import type { S3Settings } from "./open_stores.ts";
import type { PackOptions } from "./packed_store.ts";

/** Packing for S3: bounded uploads (chunks arriving meanwhile share the next pack), 8 MiB packs. */
export const S3_PACKS: PackOptions = { maxWrites: 4, packBytes: 8 * 1024 * 1024, maxReads: 4 };

/** Keys removed per DeleteObjects request (the most S3 allows). */
const DELETE_PAGE = 1000;

/** Longest a single request may take before it counts as failed (and is retried). */
export const S3_REQUEST_TIMEOUT_MS = 60_000;

/** S3 error codes that are worth another try. */
const TRANSIENT_CODES = new Set([
  "",
  "InternalError",
  "ServiceUnavailable",
  "SlowDown",
  "RequestTimeout",
  "OperationAborted",
  "ServerError",
  "Timeout",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENOTFOUND",
]);

/** True for failures that another try may cure: network errors, timeouts, 5xx, throttling. */
export function isTransientS3Error(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string") return TRANSIENT_CODES.has(code);
  return /socket hang up|ECONN|EPIPE|timed? ?out|network|Retryable HTTP status|connection/i
    .test(e.message);
}

function notFound(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "NoSuchKey" || code === "NotFound";
}

/** Settings of {@link S3Objects.open}. */
export interface S3Options extends S3Settings {
  accessKey: string;
  secretKey: string;
  /** Create the bucket if it is missing (default true; admin commands create nothing). */
  create?: boolean;
}

/** Runs `fn`, failing it (transiently) after `ms`. */
async function deadline<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const e = new Error(`Cannot ${what}: no answer from the object store in ${ms / 1000} s`);
          (e as { code?: string }).code = "Timeout";
          reject(e);
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** An {@link ObjectStore} in one S3 bucket (no retries: see {@link S3Objects.open}). */
export class S3Objects implements ObjectStore {
  readonly #client: Minio.Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #agent: http.Agent;
  readonly #max: number;
  #running = 0;
  readonly #queue: (() => void)[] = [];

  constructor(opts: S3Options) {
    this.#bucket = opts.bucket;
    this.#prefix = opts.prefix;
    // Requests of each kind are bounded by the packing layer; this bounds them all together.
    this.#max = opts.concurrency * 2;
    const Agent = opts.useSSL ? https.Agent : http.Agent;
    this.#agent = new Agent({ keepAlive: true, maxSockets: this.#max });
    this.#client = new Minio.Client({
      endPoint: opts.endPoint,
      port: opts.port,
      useSSL: opts.useSSL,
      region: opts.region,
      accessKey: opts.accessKey,
      secretKey: opts.secretKey,
      pathStyle: true,
      transportAgent: this.#agent,
      retryOptions: { disableRetry: true }, // retried by RetryingObjects, with our back-off
    });
  }

  /** Connects, creates the bucket if it is missing, and returns the store with retries. */
  static async open(opts: S3Options): Promise<ObjectStore> {
    const raw = new S3Objects(opts);
    const objects = new RetryingObjects(raw, { transient: isTransientS3Error });
    let missing = false;
    try {
      missing = !await raw.#ensureBucket(opts.region, opts.create ?? true);
    } catch (e) {
      await raw.close();
      throw new Error(
        `Cannot start: the object store at ${opts.endPoint}:${opts.port} refused bucket ${opts.bucket}: ${
          (e as Error).message
        }; check --blobs and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY credentials`,
      );
    }
    if (missing) {
      await raw.close();
      throw new Error(
        `Cannot start: the object store at ${opts.endPoint}:${opts.port} has no bucket ${opts.bucket}, so it holds no Cloud Sync content; check --blobs`,
      );
    }
    return objects;
  }

  /** True if the bucket exists (or was made now, with `create`). */
  async #ensureBucket(region: string, create: boolean): Promise<boolean> {
    const exists = await this.#slot(() => this.#client.bucketExists(this.#bucket), "check bucket");
    if (exists) return true;
    if (!create) return false;
    await this.#slot(() => this.#client.makeBucket(this.#bucket, region), "make bucket");
    return true;
  }

  /** Runs `fn` when one of the request slots is free, with a deadline. */
  async #slot<T>(fn: () => Promise<T>, what: string): Promise<T> {
    while (this.#running >= this.#max) {
      await new Promise<void>((resolve) => this.#queue.push(resolve));
    }
    this.#running++;
    try {
      return await deadline(S3_REQUEST_TIMEOUT_MS, what, fn);
    } finally {
      this.#running--;
      this.#queue.shift()?.();
    }
  }

  put(key: string, parts: readonly Uint8Array[]): Promise<void> {
    const body = parts.length === 1
      ? Buffer.from(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.byteLength)
      : Buffer.concat(parts);
    return this.#slot(async () => {
      await this.#client.putObject(this.#bucket, this.#prefix + key, body, body.length);
    }, `store ${key}`);
  }

  read(key: string, offset: number, into: readonly Uint8Array[]): Promise<boolean> {
    const length = into.reduce((n, b) => n + b.length, 0);
    if (length === 0) return Promise.resolve(true);
    return this.#slot(async () => {
      let stream;
      try {
        stream = await this.#client.getPartialObject(
          this.#bucket,
          this.#prefix + key,
          offset,
          length,
        );
      } catch (e) {
        if (notFound(e)) return false;
        throw e;
      }
      // Scatter the body into the buffers as it arrives.
      let buf = 0;
      let at = 0;
      let got = 0;
      try {
        for await (const piece of stream as AsyncIterable<Uint8Array>) {
          let p = 0;
          while (p < piece.length) {
            const out = into[buf];
            if (!out) throw new Error(`Cannot read ${key}: the object store sent too many bytes`);
            const n = Math.min(out.length - at, piece.length - p);
            out.set(piece.subarray(p, p + n), at);
            p += n;
            at += n;
            got += n;
            if (at === out.length) {
              buf++;
              at = 0;
            }
          }
        }
      } catch (e) {
        stream.destroy();
        throw e;
      }
      return got === length;
    }, `read ${key}`);
  }

  remove(key: string): Promise<void> {
    return this.#slot(async () => {
      try {
        await this.#client.removeObject(this.#bucket, this.#prefix + key);
      } catch (e) {
        if (!notFound(e)) throw e;
      }
    }, `remove ${key}`);
  }

  async removeAll(prefix: string): Promise<void> {
    // A page of keys at a time (memory stays bounded), each page one DeleteObjects request;
    // listing again from the start finds what is left, until nothing is.
    for (;;) {
      const keys = await this.#slot(async () => {
        const names: string[] = [];
        const stream = this.#client.listObjects(this.#bucket, this.#prefix + prefix, true);
        try {
          for await (const o of stream as AsyncIterable<{ name?: string }>) {
            if (o.name) names.push(o.name);
            if (names.length >= DELETE_PAGE) break;
          }
        } finally {
          stream.destroy();
        }
        return names;
      }, `list ${prefix}`);
      if (keys.length === 0) return;
      const failed = await this.#slot(
        () => this.#client.removeObjects(this.#bucket, keys),
        `remove ${keys.length} objects of ${prefix}`,
      ) as unknown as { Code?: string; Key?: string; Message?: string }[];
      const bad = (failed ?? []).find((f) => f?.Code && f.Code !== "NoSuchKey");
      if (bad?.Code) {
        const e = new Error(`Cannot remove ${bad.Key}: ${bad.Code} ${bad.Message ?? ""}`.trim());
        (e as { code?: string }).code = bad.Code;
        throw e;
      }
    }
  }

  close(): Promise<void> {
    this.#agent.destroy();
    return Promise.resolve();
  }
}
