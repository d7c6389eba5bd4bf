/**
 * PostgreSQL and S3 for the benchmarks: {@link startServices} (the settings from the
 * `CLOUDSYNC_TEST_*` environment, or PostgreSQL 15 and Swift started here with
 * `scripts/services.sh`; used by `load.ts` and `bench.ts`), and {@link PgS3Storage}, the
 * `--storage=pg-s3` deployment of `bench.ts`: a fresh schema and a fresh bucket per run (removed
 * at the end), the server's `--meta`/`--blobs` arguments, and what the services did during a
 * workload:
 *
 * - **CPU** of the PostgreSQL processes (the postmaster and every backend below it) and of each
 *   Swift server (proxy, object, container, account), found by the ports in the settings (`ss
 *   -tlnp` names the listening process; Swift's other servers are those run with the proxy's
 *   configuration folder) and read from `/proc/PID/stat` like the product's (utime + stime, plus
 *   cutime + cstime so that a backend that exited meanwhile still counts);
 * - **PostgreSQL**: write transactions (transaction ids assigned) and WAL bytes;
 * - **S3 and SQL**: the server's PUTs and ranged GETs, and its PostgreSQL statements and commits,
 *   counted and timed inside the server (`traced_server.ts`); the objects in the bucket;
 * - {@link PgS3Storage.probe}: what a PUT and a GET of one pack cost against the same Swift with
 *   the server's own client code (`S3Objects`) alone.
 *
 * @module
 */

import { join, resolve } from "node:path";
import * as Minio from "minio";
import pg from "pg";
import { type Cpu, type Proc, PRODUCT_ENV, SERVER_PERMS } from "./procs.ts";
import type { ServerStorage } from "./product.ts";
import type { Calls, Trace } from "./traced_server.ts";
import { fmtBytes, fmtS, log, now, run, sleep } from "./util.ts";
import { parseS3Url } from "../lib/server/open_stores.ts";
import { S3_PACKS } from "../lib/server/s3_objects.ts";

const ROOT = resolve(new URL("..", import.meta.url).pathname);

/** The services' settings, and how to stop them (nothing to stop if they came from outside). */
export interface Services {
  env: Record<string, string>;
  /** true if started here */
  started: boolean;
  stop(): Promise<void>;
}

const SETTINGS = [
  "CLOUDSYNC_TEST_PG_URL",
  "CLOUDSYNC_TEST_S3_URL",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
];

/**
 * The services' settings: from the environment, or from a `scripts/services.sh` started here, in a
 * folder of its own under the system's temporary folder (PostgreSQL and Swift run as their own
 * users, who must reach it: a scratch folder made by `Deno.makeTempDir` is private to root).
 */
export async function startServices(): Promise<Services> {
  if (SETTINGS.every((k) => Deno.env.get(k))) {
    return {
      env: Object.fromEntries(SETTINGS.map((k) => [k, Deno.env.get(k)!])),
      started: false,
      stop: async () => {},
    };
  }
  const sdir = await Deno.makeTempDir({ prefix: "cloudsync-services-" });
  await Deno.remove(sdir); // services.sh makes it (and refuses one that exists)
  log(`starting PostgreSQL and Swift (scripts/services.sh start ${sdir})`);
  const r = await new Deno.Command("bash", {
    args: [join(ROOT, "scripts/services.sh"), "start", sdir],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) {
    throw new Error(`Cannot start the services: ${new TextDecoder().decode(r.stderr).trim()}`);
  }
  const env: Record<string, string> = {};
  for (const m of new TextDecoder().decode(r.stdout).matchAll(/^export (\w+)='([^']*)'$/gm)) {
    env[m[1]!] = m[2]!;
  }
  return {
    env,
    started: true,
    async stop() {
      await new Deno.Command("bash", { args: [join(ROOT, "scripts/services.sh"), "stop", sdir] })
        .output();
    },
  };
}

/** PostgreSQL's counters (database-wide: the bench's own queries add one transaction each). */
export interface PgCounters {
  /** transaction ids assigned: transactions that wrote */
  writeTx: number;
  walBytes: number;
}

/** What the services did between two {@link PgS3Storage.snapshot}s. */
export interface StorageFigures {
  pg: PgCounters;
  /** the server's S3 requests and SQL statements (null if its trace line did not come) */
  trace: Trace | null;
}

/** What a pg-s3 run records beside the product's figures (`storageDetail` in the results). */
export interface StorageDetail {
  label: string;
  workloads: Record<string, StorageFigures>;
  /** the bucket after the workloads */
  objects?: Awaited<ReturnType<PgS3Storage["objects"]>>;
  /** PUTs and GETs of pack-sized objects with the server's client code alone */
  probe?: ObjectProbe[];
}

/** A service process group: its name and the processes found for it. */
interface Group {
  name: string;
  pids: number[];
}

/** Pack uploads and reads with the server's client code alone, against the same Swift. */
export interface ObjectProbe {
  op: "PUT" | "GET";
  /** the probe's V8 flags: the server's, or Deno's defaults */
  flags: "server" | "default";
  objectBytes: number;
  concurrency: number;
  objects: number;
  seconds: number;
  /** mean duration of one request */
  msPerRequest: number;
  mibPerS: number;
  /** CPU seconds per GiB moved: the client (`s3_probe.ts`) and each Swift server */
  cpuPerGiB: Record<string, number>;
}

/** See the module doc. A {@link ServerStorage} for `product.ts`. */
export class PgS3Storage implements ServerStorage {
  readonly label = "PostgreSQL + S3";
  /** The server the product runs: `server.ts` with its S3 and SQL calls timed. */
  readonly script = "bench/traced_server.ts";
  /** The server's extra arguments: `--meta URL --blobs URL`. */
  readonly args: string[];
  readonly schema: string;
  readonly bucket: string;
  readonly #services: Services;
  readonly #admin: pg.Client;
  readonly #s3: Minio.Client;
  readonly #blobsUrl: string;
  readonly #pgPort: number;
  readonly #s3Port: number;

  private constructor(services: Services, admin: pg.Client, schema: string, bucket: string) {
    this.#services = services;
    this.#admin = admin;
    this.schema = schema;
    this.bucket = bucket;
    const env = services.env;
    const url = env.CLOUDSYNC_TEST_PG_URL!;
    const meta = `${url}${url.includes("?") ? "&" : "?"}options=${
      encodeURIComponent(`-c search_path=${schema}`)
    }`;
    this.#blobsUrl = env.CLOUDSYNC_TEST_S3_URL!.replace(/^s3:\/\/[^/?]+/, `s3://${bucket}`);
    this.args = ["--meta", meta, "--blobs", this.#blobsUrl];
    const s3 = parseS3Url(this.#blobsUrl);
    this.#s3 = new Minio.Client({
      endPoint: s3.endPoint,
      port: s3.port,
      useSSL: s3.useSSL,
      region: s3.region,
      accessKey: env.AWS_ACCESS_KEY_ID!,
      secretKey: env.AWS_SECRET_ACCESS_KEY!,
      pathStyle: true,
    });
    this.#pgPort = Number(new URL(url).port || 5432);
    this.#s3Port = s3.port;
  }

  /**
   * Starts (or takes) the services, makes a fresh schema and a fresh bucket, and sets the S3 credentials in this process's environment, which
   * the server inherits.
   */
  static async open(): Promise<PgS3Storage> {
    const services = await startServices();
    for (const k of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) {
      Deno.env.set(k, services.env[k]!);
    }
    const id = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    const admin = new pg.Client({ connectionString: services.env.CLOUDSYNC_TEST_PG_URL });
    try {
      await admin.connect();
      await admin.query(`CREATE SCHEMA bench_${id}`);
    } catch (e) {
      await admin.end().catch(() => {});
      await services.stop();
      throw new Error(`Cannot prepare PostgreSQL for the bench: ${(e as Error).message}`);
    }
    const storage = new PgS3Storage(services, admin, `bench_${id}`, `cloudsync-bench-${id}`);
    try {
      await storage.#makeBucket();
    } catch (e) {
      await storage.close();
      throw e;
    }
    log(
      `storage: PostgreSQL schema ${storage.schema}, S3 bucket ${storage.bucket} (${
        services.started ? "services started here" : "services from CLOUDSYNC_TEST_*"
      })`,
    );
    return storage;
  }

  /**
   * Creates the bucket, trying again for up to 30 s: a Swift that just started answers its
   * health check a moment before its account and container servers take requests (503).
   */
  async #makeBucket(): Promise<void> {
    const end = now() + 30_000;
    for (;;) {
      try {
        await this.#s3.makeBucket(this.bucket, parseS3Url(this.#blobsUrl).region);
        return;
      } catch (e) {
        if (now() > end) {
          throw new Error(`Cannot create bucket ${this.bucket}: ${(e as Error).message}`);
        }
        await sleep(500);
      }
    }
  }

  /** The services' processes, found now (PostgreSQL's backends come and go). */
  async #groups(): Promise<Group[]> {
    const ps = await run("ps", ["-e", "-o", "pid=,ppid=,args="]);
    const procs = ps.stdout.split("\n").map((l) => l.trim().match(/^(\d+)\s+(\d+)\s+(.*)$/))
      .filter((m): m is RegExpMatchArray => m !== null)
      .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! }));
    const listener = async (port: number): Promise<number | null> => {
      const r = await run("ss", ["-tlnpH", `sport = :${port}`]);
      const m = r.stdout.match(/pid=(\d+)/);
      return m ? Number(m[1]) : null;
    };
    const groups: Group[] = [];
    const postmaster = await listener(this.#pgPort);
    if (postmaster !== null) {
      const tree = new Set([postmaster]);
      for (let grew = true; grew;) {
        grew = false;
        for (const p of procs) {
          if (tree.has(p.ppid) && !tree.has(p.pid)) grew = tree.add(p.pid) !== null;
        }
      }
      groups.push({ name: "postgres", pids: [...tree] });
    }
    const proxy = await listener(this.#s3Port);
    const conf = procs.find((p) => p.pid === proxy)?.args.match(/(\S+)\/proxy-server\.conf/)?.[1];
    if (conf) {
      for (const kind of ["proxy", "object", "container", "account"]) {
        const pids = procs.filter((p) => p.args.includes(`${conf}/${kind}-server.conf`))
          .map((p) => p.pid);
        if (pids.length > 0) groups.push({ name: `swift-${kind}`, pids });
      }
    }
    return groups;
  }

  /**
   * CPU used so far by each service (postgres, swift-proxy, swift-object, swift-container,
   * swift-account), summed over its processes: utime + stime + cutime + cstime.
   */
  async cpu(): Promise<Record<string, Cpu>> {
    const groups = await this.#groups();
    const pids = groups.flatMap((g) => g.pids);
    if (pids.length === 0) return {};
    // One cat for all (Deno lets only --allow-all read /proc/PID); a process gone meanwhile is
    // skipped (cat still prints the others).
    const r = await run("cat", pids.map((p) => `/proc/${p}/stat`));
    const byPid = new Map<number, Cpu>();
    for (const line of r.stdout.split("\n")) {
      const pid = Number(line.slice(0, line.indexOf(" ")));
      const f = line.slice(line.lastIndexOf(")") + 2).split(" ");
      const [u, s, cu, cs] = [f[11], f[12], f[13], f[14]].map(Number);
      if (!Number.isFinite(pid) || ![u, s, cu, cs].every(Number.isFinite)) continue;
      byPid.set(pid, { user: (u! + cu!) / 100, sys: (s! + cs!) / 100 });
    }
    const out: Record<string, Cpu> = {};
    for (const g of groups) {
      const c = { user: 0, sys: 0 };
      for (const p of g.pids) {
        c.user += byPid.get(p)?.user ?? 0;
        c.sys += byPid.get(p)?.sys ?? 0;
      }
      out[g.name] = { user: round2(c.user), sys: round2(c.sys) };
    }
    return out;
  }

  /** PostgreSQL's counters now. */
  async pgCounters(): Promise<PgCounters> {
    const r = await this.#admin.query(
      `SELECT pg_current_xact_id()::text AS xid,
              pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS wal`,
    );
    return { writeTx: Number(r.rows[0].xid), walBytes: Number(r.rows[0].wal) };
  }

  /**
   * What the services have done so far: PostgreSQL's counters and the server's trace (it prints
   * one on SIGUSR2, see `traced_server.ts`). Take it outside timed intervals.
   */
  async snapshot(server: Proc): Promise<StorageFigures> {
    const from = server.lineCount;
    let trace: Trace | null = null;
    try {
      Deno.kill(server.pid, "SIGUSR2");
      trace = JSON.parse((await server.waitFor(/^trace (\{.*\})$/, 5000, from))[1]!);
    } catch (e) {
      log(`storage: no trace from the server: ${(e as Error).message}`);
    }
    return { pg: await this.pgCounters(), trace };
  }

  /** What the services did since `mark` (a {@link snapshot}). */
  async since(mark: StorageFigures, server: Proc): Promise<StorageFigures> {
    const n = await this.snapshot(server);
    // Totals are differences; the longest request and the span are the interval's already.
    const calls = (a: Calls, b: Calls): Calls => ({
      ...a,
      n: a.n - b.n,
      bytes: a.bytes - b.bytes,
      ms: a.ms - b.ms,
      busyMs: a.busyMs - b.busyMs,
    });
    const [t, m] = [n.trace, mark.trace];
    return {
      // minus the transaction id the mark's own query took
      pg: {
        writeTx: n.pg.writeTx - mark.pg.writeTx - 1,
        walBytes: n.pg.walBytes - mark.pg.walBytes,
      },
      trace: t && m
        ? {
          put: calls(t.put, m.put),
          get: calls(t.get, m.get),
          pg: { ...calls(t.pg, m.pg), commits: t.pg.commits - m.pg.commits },
          lag: {
            ticks: t.lag.ticks - m.lag.ticks,
            ms: t.lag.ms - m.lag.ms,
            maxMs: t.lag.maxMs,
            over20: t.lag.over20 - m.lag.over20,
          },
        }
        : null,
    };
  }

  /** The bucket's objects: how many, their bytes, the largest and the median size. */
  async objects(): Promise<
    { count: number; bytes: number; maxBytes: number; medianBytes: number }
  > {
    const sizes: number[] = [];
    const stream = this.#s3.listObjects(this.bucket, "", true);
    for await (const o of stream as AsyncIterable<{ size?: number }>) sizes.push(o.size ?? 0);
    sizes.sort((a, b) => a - b);
    return {
      count: sizes.length,
      bytes: sizes.reduce((a, b) => a + b, 0),
      maxBytes: sizes.at(-1) ?? 0,
      medianBytes: sizes[sizes.length >> 1] ?? 0,
    };
  }

  /**
   * For each size in `sizes`, one at a time and `S3_PACKS.maxWrites` at once: `count` PUTs of
   * objects of that size, then `count` ranged GETs of them whole, each run one `s3_probe.ts`
   * process with the server's flags (the server's client code alone), under the bucket's key
   * prefix `probe/`, with the client's and Swift's CPU; then the first size, at once, with
   * Deno's default V8 flags (what `--optimize-for-size` costs there). Run it when the product
   * is stopped.
   */
  async probe(sizes: number[], count: number): Promise<ObjectProbe[]> {
    const out: ObjectProbe[] = [];
    const runs: [ObjectProbe["flags"], number, number][] = sizes.flatMap((size) =>
      [1, S3_PACKS.maxWrites].map((
        c,
      ): [ObjectProbe["flags"], number, number] => ["server", size, c])
    );
    if (sizes[0]) runs.push(["default", sizes[0], S3_PACKS.maxWrites]);
    for (const [flags, size, concurrency] of runs) {
      for (const op of ["PUT", "GET"] as const) {
        const perms = flags === "server" ? SERVER_PERMS : SERVER_PERMS.slice(1);
        const args = ["run", ...perms, "bench/s3_probe.ts", op.toLowerCase(), this.#blobsUrl];
        const c0 = await this.cpu();
        const r = await new Deno.Command(Deno.execPath(), {
          args: [...args, String(size), String(count), String(concurrency)],
          cwd: ROOT,
          env: PRODUCT_ENV,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const c1 = await this.cpu();
        const text = new TextDecoder().decode(r.stdout);
        const m = text.match(/^probe (\{.*\})$/m);
        if (!r.success || !m) {
          throw new Error(
            `Cannot probe S3 (${op} ${size} x ${count}): ${new TextDecoder().decode(r.stderr)}`,
          );
        }
        const run = JSON.parse(m[1]!) as { seconds: number; cpuS: number };
        const gib = count * size / 2 ** 30;
        const cpuPerGiB: Record<string, number> = { client: round2(run.cpuS / gib) };
        for (const [n, c] of Object.entries(c1)) {
          const was = c0[n];
          if (was && n !== "postgres") {
            cpuPerGiB[n] = round2((c.user + c.sys - was.user - was.sys) / gib);
          }
        }
        out.push({
          op,
          flags,
          objectBytes: size,
          concurrency,
          objects: count,
          seconds: round2(run.seconds),
          msPerRequest: round2(run.seconds * 1000 / count * concurrency),
          mibPerS: round2(count * size / 2 ** 20 / run.seconds),
          cpuPerGiB,
        });
      }
    }
    return out;
  }

  /** A fresh record for the results (the workloads' figures go in as they are measured). */
  detail(): StorageDetail {
    return { label: this.label, workloads: {} };
  }

  /**
   * After the workloads: the bucket's objects, then (`stopProduct` first, so nothing competes)
   * the {@link probe} with the size of the largest pack the server wrote and the most a pack may
   * hold (32 objects each, 8 with `quick`).
   */
  async finish(detail: StorageDetail, stopProduct: () => Promise<void>, quick: boolean) {
    detail.objects = await this.objects();
    await stopProduct();
    const sizes = [detail.objects.maxBytes, S3_PACKS.packBytes].filter((b) => b > 0);
    detail.probe = await this.probe([...new Set(sizes)], quick ? 8 : 32);
  }

  /** Drops the schema, empties and removes the bucket, and stops the services started here. */
  async close(): Promise<void> {
    try {
      await this.#admin.query(`DROP SCHEMA ${this.schema} CASCADE`);
    } catch (e) {
      log(`storage: cannot drop schema ${this.schema}: ${(e as Error).message}`);
    }
    await this.#admin.end().catch(() => {});
    try {
      if (await this.#s3.bucketExists(this.bucket)) {
        for (;;) {
          const keys: string[] = [];
          const stream = this.#s3.listObjects(this.bucket, "", true);
          for await (const o of stream as AsyncIterable<{ name?: string }>) {
            if (o.name) keys.push(o.name);
            if (keys.length >= 1000) break;
          }
          stream.destroy();
          if (keys.length === 0) break;
          await this.#s3.removeObjects(this.bucket, keys);
        }
        await this.#s3.removeBucket(this.bucket);
      }
    } catch (e) {
      log(`storage: cannot remove bucket ${this.bucket}: ${(e as Error).message}`);
    }
    await this.#services.stop();
  }
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** The lines printed below the table (`bigBytes`: the big file's size, for the per-GiB counts). */
export function describeStorage(d: StorageDetail, bigBytes: number): string[] {
  const lines = [
    `storage    : ${d.label} (server with --meta/--blobs; services' CPU on the cpu lines)`,
  ];
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const gib: Record<string, number> = { big: bigBytes / 2 ** 30 };
  for (const [name, f] of Object.entries(d.workloads)) {
    const head = `pg-s3 ${name.padEnd(7)}:`;
    const t = f.trace;
    const spans = t ? [t.put, t.get, t.pg].map((c) => c.firstStart).filter((x) => x !== null) : [];
    const start = Math.min(...spans);
    const calls = (what: string, c: Calls, size: boolean) => {
      if (c.n === 0) return `0 ${what}`;
      const span = c.firstStart !== null && c.lastEnd !== null
        ? `, +${sec(c.firstStart - start)} to +${sec(c.lastEnd - start)}`
        : "";
      const per = gib[name] ? ` (${(c.n / gib[name]!).toFixed(0)}/GiB)` : "";
      return `${c.n} ${what}${per}${size ? ` of ${mib(c.bytes / c.n)}` : ""}: ${
        (c.ms / c.n).toFixed(c.ms / c.n < 10 ? 1 : 0)
      } ms each (max ${c.maxMs}), busy ${sec(c.busyMs)}${span}`;
    };
    lines.push(
      `${head} PostgreSQL ${f.pg.writeTx} write transactions, WAL ${mib(f.pg.walBytes)}` +
        (t ? `; server: ${t.pg.commits} COMMITs, ${calls("statements", t.pg, false)}` : ""),
    );
    lines.push(
      t
        ? `${head} S3 ${calls("PUT", t.put, true)}; ${calls("GET", t.get, true)}`
        : `${head} no trace from the server`,
    );
    if (t && t.lag.ticks > 0) {
      lines.push(
        `${head} server event loop: a 20 ms timer ${(t.lag.ms / t.lag.ticks).toFixed(1)} ms late ` +
          `on average (max ${t.lag.maxMs}), ${t.lag.over20} of ${t.lag.ticks} ticks > 20 ms late`,
      );
    }
  }
  const o = d.objects;
  if (o) {
    lines.push(
      `pg-s3 bucket : ${o.count} objects, ${fmtBytes(o.bytes)} (largest ${
        fmtBytes(o.maxBytes)
      }, median ${fmtBytes(o.medianBytes)})`,
    );
  }
  for (const r of d.probe ?? []) {
    lines.push(
      `pg-s3 probe  : ${r.op} ${r.objects} x ${
        fmtBytes(r.objectBytes)
      }, ${r.concurrency} at once, ${r.flags} V8 flags: ${fmtS(r.seconds)}, ${
        r.msPerRequest.toFixed(0)
      } ms each, ${r.mibPerS.toFixed(0)} MiB/s; CPU s/GiB ${
        Object.entries(r.cpuPerGiB).map(([n, x]) => `${n} ${x.toFixed(2)}`).join(", ")
      }`,
    );
  }
  return lines;
}
