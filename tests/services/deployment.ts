/**
 * A deployment of several server instances on the services' PostgreSQL and S3
 * (`scripts/services.sh`), for the scale-out tests: a schema and a key prefix of its own (removed
 * afterwards), instances in this process (`startServer`, the same code as `cloud-server`) or as
 * processes, and the deployment's certificate (kept in the database) for simulated devices.
 *
 * @module
 */

import { join } from "node:path";
import { type RunningServer, type ServerOptions, startServer } from "../../lib/server/server.ts";
import { adminQuery, adminRows, freshSchemaName, servicesEnv } from "./services_env.ts";

/** The settings a deployment needs, or why it cannot run here. */
export const deploymentEnv = servicesEnv([
  "CLOUDSYNC_TEST_PG_URL",
  "CLOUDSYNC_TEST_S3_URL",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
]);

/** One in-process instance and what it logged. */
export interface Instance {
  server: RunningServer;
  lines: string[];
  dir: string;
  close(): Promise<void>;
}

/** The shared stores of one deployment. */
export class Deployment {
  readonly url: string;
  readonly schema: string;
  /** `--meta` of its instances (the schema as search path). */
  readonly meta: string;
  /** `--blobs` of its instances (a key prefix of its own). */
  readonly blobs: string;
  readonly #instances = new Set<Instance>();
  readonly #dirs: string[] = [];

  private constructor(url: string, schema: string, s3: string) {
    this.url = url;
    this.schema = schema;
    this.meta = `${url}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    this.blobs = `${s3}&prefix=${schema}/`;
  }

  /** A fresh schema (and key prefix) on the services. */
  static async create(): Promise<Deployment> {
    const v = deploymentEnv.values!;
    const schema = freshSchemaName();
    await adminQuery(v.CLOUDSYNC_TEST_PG_URL, `CREATE SCHEMA ${schema}`);
    return new Deployment(v.CLOUDSYNC_TEST_PG_URL, schema, v.CLOUDSYNC_TEST_S3_URL);
  }

  /** `--meta URL --blobs URL`, for server processes. */
  get flags(): string[] {
    return ["--meta", this.meta, "--blobs", this.blobs];
  }

  /** A temporary directory removed with the deployment. */
  async tempDir(prefix = "cloudsync-instance-"): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix });
    this.#dirs.push(dir);
    return dir;
  }

  /** Starts an instance in this process (its own data directory unless `dataDir` is given). */
  async start(
    extra: Partial<Omit<ServerOptions, "meta" | "blobs">> = {},
  ): Promise<Instance> {
    const dir = extra.dataDir ?? join(await this.tempDir(), "data");
    const lines: string[] = [];
    const server = await startServer({
      hostname: "127.0.0.1",
      port: 0,
      ...extra,
      dataDir: dir,
      meta: this.meta,
      blobs: this.blobs,
      log: (l) => lines.push(l),
    });
    const inst: Instance = {
      server,
      lines,
      dir,
      close: async () => {
        if (!this.#instances.delete(inst)) return;
        await server.close();
      },
    };
    this.#instances.add(inst);
    return inst;
  }

  /** The certificate every instance presents (PEM), from the database. */
  async ca(): Promise<string> {
    const [r] = await adminRows<{ cert: string }>(
      this.meta,
      "SELECT cert FROM tls_certificate",
    );
    if (!r) throw new Error("no certificate in the database yet");
    return r.cert;
  }

  /** Rows of a query in the deployment's schema. */
  rows<R>(sql: string, params: unknown[] = []): Promise<R[]> {
    return adminRows<R>(this.meta, sql, params);
  }

  /** Stops the instances still running and removes everything. */
  async close(): Promise<void> {
    for (const i of [...this.#instances]) await i.close();
    await adminQuery(this.url, `DROP SCHEMA ${this.schema} CASCADE`);
    for (const d of this.#dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
