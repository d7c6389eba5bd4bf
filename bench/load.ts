/**
 * `deno task load`: the load test. Thousands of simulated devices (`sim_device.ts`: the real
 * protocol over real TLS, in this one process) against
 *
 * - **single**: one `server.ts` with the embedded default (SQLite and pack files in `--data`);
 * - **cluster**: two `server.ts` instances on PostgreSQL + Swift (S3) behind HAProxy in TCP mode
 *   (`haproxy.ts`), the services started with `scripts/services.sh` unless their settings are in
 *   the environment already.
 *
 * Accounts (two devices each) are made in the stores before the servers start, so neither the
 * registration budget nor the per-address connection limit of a default server stands in the way
 * (the servers run with `--max-connections-per-ip` raised; every connection comes from 127.0.0.1,
 * and behind HAProxy from HAProxy). Phases, each measured on its own:
 *
 * 1. **connect**: every device connects (TLS, `hello`, `auth`, `watch`), the first device of each
 *    account commits one small file and the other downloads it on the push; then 10 s idle:
 *    devices held, server RSS (per 1,000 idle devices) and CPU.
 * 2. **commits**: the devices of `--active` accounts commit small files (1-4 KiB, four paths per
 *    account, so the two devices of an account conflict now and then) and download each other's
 *    on every push; probe pairs (their own accounts; in the cluster A on instance 1, B on
 *    instance 2) measure push latency from a commit's reply at A to the notice at B.
 * 3. **chunks**: devices upload batches of 64 x 16 KiB chunks (a commit of 64 files each) and
 *    their partners download them: chunk throughput.
 * 4. **kill** (cluster): phase 2's load while instance 1 is killed (`kill -9`) and restarted 10 s
 *    later; devices reconnect through HAProxy (back-off from 0.5 s, doubling to 5 s, with
 *    jitter), and each reconnection time is recorded.
 * 5. **check**: every device pulls and its tree must equal the server's; every commit a device
 *    saw accepted must be in the server's history (entries and kept versions) with its content
 *    (none lost), no version twice (none duplicated); commits whose reply was cut by the kill
 *    are looked up there too.
 *
 * The table goes to stdout, progress to stderr, every figure to `bench/results/load.json`.
 * Heavy: run it alone. Options: `--devices=N` (5000), `--active=N` accounts (200), `--probes=N`
 * pairs (20), `--seconds=S` per load phase (20), `--only=single|cluster`, `--quick` (500
 * devices, 8 s), `--server-root=DIR` (run the single server from another checkout, e.g. the
 * code before a change, to compare).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { cpus, totalmem } from "node:os";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import { type Credential, fileItem, sha256, SimDevice } from "./sim_device.ts";
import { Haproxy } from "./haproxy.ts";
import { startServices } from "./services_backend.ts";
import { Proc, readCpu, readMemory, SERVER_PERMS } from "./procs.ts";
import { log, now, sleep } from "./util.ts";
import { RemoteError } from "../lib/protocol/peer.ts";
import type { MetaStore } from "../lib/server/stores.ts";
import { SqliteMetaStore } from "../lib/server/meta_store.ts";
import { PgMetaStore } from "../lib/server/pg_meta.ts";
import { secretHash } from "../lib/server/session.ts";

const ROOT = resolve(new URL("..", import.meta.url).pathname);

// ---------------------------------------------------------------------------------------------
// Figures

/** Median and 99th percentile of `xs` (ms), and how many. */
function spread(xs: number[]): { n: number; median: number | null; p99: number | null } {
  if (xs.length === 0) return { n: 0, median: null, p99: null };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { n: s.length, median: round(at(0.5)), p99: round(at(0.99)) };
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const mb = (b: number) => round(b / 1e6);

/** What one load phase did. */
class PhaseStats {
  accepted = 0;
  conflicts = 0;
  errors = 0;
  firstError = "";
  commitMs: number[] = [];
  /** The `putMany` before each commit (the content's upload). */
  putMs: number[] = [];
  /** From the commit request leaving A to the change notice at B. */
  pushMs: number[] = [];
  /** From the commit's reply at A to the notice at B (0 when the notice came first). */
  pushAfterReplyMs: number[] = [];
  pushLost = 0;
  upBytes = 0;
  downBytes = 0;
  downFiles = 0;
  started = now();
  seconds = 0;

  error(e: unknown): void {
    this.errors++;
    this.firstError ||= String((e as Error)?.message ?? e).slice(0, 200);
  }

  summary() {
    const s = this.seconds || (now() - this.started) / 1000;
    return {
      seconds: round(s),
      commitsAccepted: this.accepted,
      commitsPerSecond: round(this.accepted / s),
      conflicts: this.conflicts,
      conflictsPerSecond: round(this.conflicts / s),
      errors: this.errors,
      ...(this.firstError ? { firstError: this.firstError } : {}),
      commitLatencyMs: spread(this.commitMs),
      uploadLatencyMs: spread(this.putMs),
      pushLatencyMs: { ...spread(this.pushMs), lost: this.pushLost },
      pushAfterReplyMs: spread(this.pushAfterReplyMs),
      smallFilesDownloadedPerSecond: round(this.downFiles / s),
      upMBps: round(mb(this.upBytes) / s),
      downMBps: round(mb(this.downBytes) / s),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Devices

/** An accepted commit, as the device saw it. */
interface Acked {
  account: string;
  path: string;
  version: number;
  hash: string;
}

/** A simulated device with what the load test keeps about it. */
class FleetDevice {
  readonly dev: SimDevice;
  readonly cred: Credential;
  connected = false;
  /** Set while the fleet stops (a closed connection is then no drop). */
  stopping = false;
  droppedAt: number | null = null;
  reconnectMs: number[] = [];
  /** Commits whose reply never came (the connection broke meanwhile). */
  readonly inDoubt: { path: string; hash: string }[] = [];
  readonly acked: Acked[] = [];
  /** Content hashes this device has (made, or asked for). */
  readonly have = new Set<string>();
  /** Chunk hashes it downloaded. */
  readonly got = new Set<string>();
  stats: PhaseStats | null = null;
  #syncing: Promise<void> | null = null;
  #again = false;
  #reconnecting = false;

  constructor(opts: { port: number; ca: string }, cred: Credential) {
    this.cred = cred;
    this.dev = new SimDevice({
      host: "127.0.0.1",
      port: opts.port,
      ca: opts.ca,
      onChanged: () => this.kick(),
    });
    this.dev.credential = cred;
  }

  /** Connects, signs in, watches; from then on a dropped connection reconnects by itself. */
  async start(): Promise<void> {
    await this.dev.start();
    this.connected = true;
    const peer = this.dev.peer!;
    void peer.closed.then(() => {
      if (this.dev.peer !== peer) return;
      this.connected = false;
      if (!this.stopping) this.#dropped();
    });
  }

  #dropped(): void {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    const at = now();
    this.droppedAt = at;
    void (async () => {
      let backoff = 500;
      while (!this.stopping) {
        await sleep(backoff * (0.75 + Math.random() / 2));
        try {
          await this.start();
          this.reconnectMs.push(now() - at);
          await this.#resolveInDoubt();
          this.kick();
          break;
        } catch {
          backoff = Math.min(backoff * 2, 5000);
        }
      }
      this.#reconnecting = false;
    })();
  }

  /** After a reconnection: a commit whose reply was lost counts if the server has its content. */
  async #resolveInDoubt(): Promise<void> {
    if (this.inDoubt.length === 0) return;
    await this.dev.pull();
    for (let i = this.inDoubt.length - 1; i >= 0; i--) {
      const d = this.inDoubt[i]!;
      const e = this.dev.tree.get(d.path);
      if (e && e.hash === d.hash) {
        this.acked.push({
          account: this.cred.account,
          path: d.path,
          version: e.version,
          hash: d.hash,
        });
        this.inDoubt.splice(i, 1);
      }
    }
  }

  /** A push arrived: pull, and download what is new (one sync at a time, again if asked). */
  kick(): void {
    if (this.#syncing) {
      this.#again = true;
      return;
    }
    this.#syncing = (async () => {
      do {
        this.#again = false;
        if (!this.connected) break;
        try {
          await this.syncDown();
        } catch (e) {
          if (e instanceof RemoteError) this.stats?.error(e);
        }
      } while (this.#again);
    })().finally(() => this.#syncing = null);
  }

  /** Pulls the journal and downloads the files this device does not have. */
  async syncDown(): Promise<void> {
    await this.dev.pull();
    const want: string[] = [];
    for (const e of this.dev.tree.values()) {
      if (e.kind !== "file" || e.deleted || this.have.has(e.hash)) continue;
      for (const c of e.chunks) want.push(c.hash);
      this.have.add(e.hash);
    }
    for (let i = 0; i < want.length; i += 256) {
      const part = want.slice(i, i + 256);
      const bytes = await this.dev.download(part);
      for (const h of part) this.got.add(h);
      if (this.stats) {
        this.stats.downBytes += bytes;
        this.stats.downFiles += part.length;
      }
    }
  }

  /** Uploads and commits files at `paths` (their content `datas`); counts what happened. */
  async commit(paths: string[], datas: Uint8Array[], stats: PhaseStats): Promise<void> {
    const tp = now();
    await this.dev.put(datas);
    stats.putMs.push(now() - tp);
    stats.upBytes += datas.reduce((n, d) => n + d.length, 0);
    const items = paths.map((p, i) => fileItem(p, datas[i]!, this.dev.tree.get(p)?.version ?? 0));
    const t0 = now();
    let results;
    try {
      results = await this.dev.commit(items);
    } catch (e) {
      if (!(e instanceof RemoteError)) {
        for (const it of items) this.inDoubt.push({ path: it.path, hash: it.hash });
      }
      throw e;
    }
    stats.commitMs.push(now() - t0);
    results.forEach((r, i) => {
      const it = items[i]!;
      if (r.ok) {
        stats.accepted++;
        this.have.add(it.hash);
        this.acked.push({
          account: this.cred.account,
          path: it.path,
          version: r.version,
          hash: it.hash,
        });
      } else if (r.reason === "conflict") stats.conflicts++;
      else stats.error(new Error(`commit refused: ${r.reason} ${r.message}`));
    });
    if (results.some((r) => !r.ok)) await this.dev.pull();
  }

  close(): void {
    this.stopping = true;
    this.dev.close();
  }
}

/** Random bytes of `n` (fresh content: every file is new to the server). */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** Runs `fn` on every item, at most `limit` at once. */
async function pool<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** Makes `accounts` accounts of `per` devices in `meta` (straight in the store). */
async function seed(meta: MetaStore, accounts: number, per: number): Promise<Credential[][]> {
  const out: Credential[][] = [];
  const idx = Array.from({ length: accounts }, (_, i) => i);
  await pool(idx, 16, async (i) => {
    const account = await meta.createAccount(secretHash(`load-serial-${crypto.randomUUID()}`));
    const creds: Credential[] = [];
    for (let k = 0; k < per; k++) {
      const token = crypto.randomUUID() + crypto.randomUUID();
      const deviceId = await meta.addDevice(account, `load-${i}-${k}`, secretHash(token));
      creds.push({ account, deviceId, token });
    }
    out[i] = creds;
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Deployments

/** One row of the server's history: an entry or a kept version of a file. */
interface HistoryRow {
  account: string;
  path: string;
  version: number;
  hash: string;
  live: boolean;
}

/** What the phases need of a deployment. */
interface Target {
  name: string;
  instances: { name: string; proc: Proc }[];
  /** Where the fleet connects (the server, or HAProxy's round-robin frontend). */
  port: number;
  /** Where probe A and probe B connect. */
  probePorts: [number, number];
  ca: string;
  /** Accounts made for the fleet and for the probe pairs. */
  fleet: Credential[][];
  probes: Credential[][];
  history(): Promise<HistoryRow[]>;
  kill?(): Promise<void>;
  restart?(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether the server.ts in `root` takes `--max-connections` (older ones had no such cap). */
function knowsMaxConnections(root: string): boolean {
  try {
    return Deno.readTextFileSync(join(root, "server.ts")).includes('"max-connections"');
  } catch {
    return false;
  }
}

async function startServer(
  name: string,
  dir: string,
  port: number,
  extra: string[],
  root = ROOT,
): Promise<Proc> {
  const p = new Proc(
    name,
    Deno.execPath(),
    [
      "run",
      ...SERVER_PERMS,
      join(root, "server.ts"),
      String(port),
      "--host",
      "127.0.0.1",
      "--max-connections-per-ip",
      "1000000",
      // (an older checkout given with --server-root may not know it: its default is higher)
      ...(knowsMaxConnections(root) ? ["--max-connections", "8000"] : []),
      ...extra,
    ],
    root,
    join(dir, `${name}.log`),
  );
  await p.waitFor(/^TLS certificate fingerprint:/, 60_000);
  return p;
}

function portOf(p: Proc): number {
  const m = p.lines.join("\n").match(/listening on 127\.0\.0\.1:(\d+)/);
  if (!m) throw new Error(`${p.name}: no port in its output`);
  return Number(m[1]);
}

async function singleTarget(dir: string, n: number, probes: number, serverRoot: string) {
  const data = join(dir, "data");
  const meta = new SqliteMetaStore(data);
  const fleet = await seed(meta, n / 2, 2);
  const probeAccounts = await seed(meta, probes, 2);
  await meta.close();
  const server = await startServer("server", dir, 0, ["--data", data], serverRoot);
  const port = portOf(server);
  const target: Target = {
    name: "single",
    instances: [{ name: "server", proc: server }],
    port,
    probePorts: [port, port],
    ca: await Deno.readTextFile(join(data, "tls", "cert.pem")),
    fleet,
    probes: probeAccounts,
    // deno-lint-ignore require-await
    async history() {
      const db = new DatabaseSync(join(data, "meta.db"), { readOnly: true });
      try {
        return (db.prepare(
          `SELECT account, path, version, hash, 1 AS live FROM entries WHERE kind = 'file'
           UNION ALL SELECT account, path, version, hash, 0 FROM versions WHERE kind = 'file'`,
        ).all() as unknown as HistoryRow[]).map((r) => ({
          ...r,
          version: Number(r.version),
          live: Number(r.live) === 1,
        }));
      } finally {
        db.close();
      }
    },
    async stop() {
      await server.stop();
    },
  };
  return target;
}

async function clusterTarget(dir: string, n: number, probes: number): Promise<Target> {
  const svc = await startServices();
  for (const [k, v] of Object.entries(svc.env)) Deno.env.set(k, v);
  const url = svc.env.CLOUDSYNC_TEST_PG_URL!;
  const schema = `load_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const metaUrl = `${url}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const blobs = `${svc.env.CLOUDSYNC_TEST_S3_URL}&prefix=${schema}/${
    Deno.env.get("LOAD_S3_EXTRA") ?? ""
  }`;
  const meta = await PgMetaStore.open(url, { schema });
  const fleet = await seed(meta, n / 2, 2);
  const probeAccounts = await seed(meta, probes, 2);
  await meta.close();
  const flags = (
    name: string,
  ) => ["--data", join(dir, `data-${name}`), "--meta", metaUrl, "--blobs", blobs];
  const i1 = await startServer("i1", dir, 0, flags("i1"));
  const i2 = await startServer("i2", dir, 0, flags("i2"));
  const instances = [{ name: "i1", proc: i1 }, { name: "i2", proc: i2 }];
  const ports = [portOf(i1), portOf(i2)];
  const lb = await Haproxy.start({
    backends: [{ name: "i1", port: ports[0]! }, { name: "i2", port: ports[1]! }],
    preferred: true,
    maxconn: n + probes * 2 + 500,
  });
  const ca = (await admin.query(`SELECT cert FROM ${schema}.tls_certificate`)).rows[0]
    .cert as string;
  return {
    name: "cluster",
    instances,
    port: lb.port,
    probePorts: [lb.preferredPort("i1"), lb.preferredPort("i2")],
    ca,
    fleet,
    probes: probeAccounts,
    async history() {
      const r = await admin.query(
        `SELECT account, path, version::int AS version, hash, true AS live FROM ${schema}.entries
         WHERE kind = 'file' UNION ALL SELECT account, path, version::int, hash, false
         FROM ${schema}.versions WHERE kind = 'file'`,
      );
      return r.rows as HistoryRow[];
    },
    async kill() {
      await i1.kill("SIGKILL");
    },
    async restart() {
      const again = await startServer("i1", dir, ports[0]!, flags("i1"));
      instances[0] = { name: "i1", proc: again };
    },
    async stop() {
      await lb.stop();
      for (const i of instances) await i.proc.stop();
      await admin.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
      await admin.end();
      await svc.stop();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Phases

interface Params {
  devices: number;
  active: number;
  probes: number;
  seconds: number;
}

async function rss(t: Target): Promise<number[]> {
  const m = await readMemory(t.instances.map((i) => i.proc.pid));
  return t.instances.map((i) => m.get(i.proc.pid)?.rss ?? NaN);
}

async function cpuSeconds(t: Target): Promise<number> {
  let s = 0;
  for (const i of t.instances) {
    const c = await readCpu(i.proc.pid);
    if (c) s += c.user + c.sys;
  }
  return s;
}

/** Commits small files on the active devices, and push probes, until `until`. */
async function commitLoad(
  active: FleetDevice[][],
  probes: [FleetDevice, FleetDevice][],
  until: number,
  stats: PhaseStats,
): Promise<void> {
  const devLoop = async (d: FleetDevice) => {
    while (now() < until) {
      await sleep(20 + Math.random() * 80);
      if (!d.connected) continue;
      const path = `f${Math.floor(Math.random() * 4)}.txt`;
      try {
        await d.commit([path], [randomBytes(1024 + Math.floor(Math.random() * 3072))], stats);
      } catch (e) {
        if (e instanceof RemoteError) stats.error(e);
      }
    }
  };
  const probeLoop = async ([a, b]: [FleetDevice, FleetDevice]) => {
    const heard = new Map<number, number>();
    b.dev.opts.onChanged = (seq, at) => {
      if (!heard.has(seq)) heard.set(seq, at);
    };
    let k = 0;
    while (now() < until) {
      await sleep(200 + Math.random() * 100);
      if (!a.connected || !b.connected) continue;
      try {
        const path = `probe-${k++ % 4}.txt`;
        const data = randomBytes(100);
        await a.dev.put([data]);
        const item = fileItem(path, data, a.dev.tree.get(path)?.version ?? 0);
        const sent = now();
        const [r] = await a.dev.commit([item]);
        const done = now();
        if (!r!.ok) continue;
        stats.accepted++;
        a.acked.push({ account: a.cred.account, path, version: r!.version, hash: item.hash });
        const deadline = done + 5000;
        while (!heard.has(r!.version) && now() < deadline && b.connected) await sleep(1);
        const at = heard.get(r!.version);
        if (at === undefined) stats.pushLost++;
        else {
          stats.pushMs.push(at - sent);
          stats.pushAfterReplyMs.push(Math.max(0, at - done));
        }
      } catch (e) {
        if (e instanceof RemoteError) stats.error(e);
      }
    }
  };
  for (const pair of active) for (const d of pair) d.stats = stats;
  await Promise.all([
    ...active.flat().map(devLoop),
    ...probes.map(probeLoop),
  ]);
  stats.seconds = (now() - stats.started) / 1000;
}

/** Uploads batches of 64 x 16 KiB on the first device of each account, until `until`. */
async function chunkLoad(active: FleetDevice[][], until: number, stats: PhaseStats) {
  for (const pair of active) for (const d of pair) d.stats = stats;
  let batch = 0;
  const sent = active.map(() => [] as string[]);
  await Promise.all(active.map(async ([a], k) => {
    while (now() < until) {
      if (!a!.connected) {
        await sleep(100);
        continue;
      }
      const b = batch++;
      const datas = Array.from({ length: 64 }, () => randomBytes(16 * 1024));
      const paths = datas.map((_, i) => `chunks/${b}/${i}.bin`);
      try {
        await a!.commit(paths, datas, stats);
        for (const d of datas) sent[k]!.push(sha256(d));
      } catch (e) {
        if (e instanceof RemoteError) stats.error(e);
      }
    }
  }));
  const uploaded = now();
  // Let the partners finish their downloads (they are counted in the phase).
  const settle = now() + 30_000;
  while (now() < settle) {
    const missing = active.some(([, b], k) => sent[k]!.some((h) => !b!.got.has(h)));
    if (!missing) break;
    await sleep(50);
  }
  stats.seconds = (now() - stats.started) / 1000;
  return { uploadSeconds: (uploaded - stats.started) / 1000, seconds: stats.seconds };
}

/** The final check: trees, lost and duplicated commits. */
async function finalCheck(t: Target, devices: FleetDevice[]) {
  for (const d of devices) d.stats = null;
  await pool(devices, 64, async (d) => {
    for (let i = 0; i < 50 && !d.connected; i++) await sleep(200);
    if (d.connected) await d.dev.pull().catch(() => {});
  });
  const rows = await t.history();
  const live = new Map<string, Map<string, HistoryRow>>();
  const seen = new Map<string, number>();
  let duplicated = 0;
  for (const r of rows) {
    if (r.live) {
      let m = live.get(r.account);
      if (!m) live.set(r.account, m = new Map());
      m.set(r.path, r);
    }
    const key = `${r.account}@${r.version}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (seen.get(key) === 2) duplicated++;
  }
  const byVersion = new Map(rows.map((r) => [`${r.account}@${r.version}`, r]));
  let lost = 0;
  let acked = 0;
  const ackedVersions = new Set<string>();
  let ackedTwice = 0;
  let inDoubt = 0;
  let inDoubtFound = 0;
  const byContent = new Set(rows.map((r) => `${r.account} ${r.path} ${r.hash}`));
  let treesEqual = 0;
  let notConnected = 0;
  const firstDiff: string[] = [];
  for (const d of devices) {
    for (const a of d.acked) {
      acked++;
      const key = `${a.account}@${a.version}`;
      if (ackedVersions.has(key)) ackedTwice++;
      ackedVersions.add(key);
      const r = byVersion.get(key);
      if (!r || r.hash !== a.hash || r.path !== a.path) lost++;
    }
    for (const x of d.inDoubt) {
      inDoubt++;
      if (byContent.has(`${d.cred.account} ${x.path} ${x.hash}`)) inDoubtFound++;
    }
    if (!d.connected) {
      notConnected++;
      continue;
    }
    const server = live.get(d.cred.account) ?? new Map();
    let same = server.size === [...d.dev.tree.values()].filter((e) => e.kind === "file").length;
    for (const [p, r] of server) {
      const e = d.dev.tree.get(p);
      if (!e || e.version !== r.version || e.hash !== r.hash) {
        same = false;
        if (firstDiff.length < 3) {
          firstDiff.push(
            `${d.cred.account} ${p}: device ${e?.version}/${
              e?.hash.slice(0, 8)
            }, server ${r.version}/${r.hash.slice(0, 8)}`,
          );
        }
      }
    }
    if (same) treesEqual++;
  }
  return {
    devices: devices.length,
    treesEqualToServer: treesEqual,
    notConnectedAtEnd: notConnected,
    ...(firstDiff.length ? { firstDifferences: firstDiff } : {}),
    commitsAcked: acked,
    lost,
    duplicatedVersions: duplicated,
    versionsAckedTwice: ackedTwice,
    repliesLost: inDoubt,
    repliesLostButCommitted: inDoubtFound,
  };
}

async function run(t: Target, p: Params) {
  const out: Record<string, unknown> = { deployment: t.name };
  const base = await rss(t);
  log(
    `${t.name}: connecting ${p.devices} devices (server RSS before: ${
      base.map((x) => mb(x)).join(" + ")
    } MB)`,
  );
  const fleet = t.fleet.map((creds) =>
    creds.map((c) => new FleetDevice({ port: t.port, ca: t.ca }, c))
  );
  const probes = t.probes.map(([a, b]) =>
    [
      new FleetDevice({ port: t.probePorts[0], ca: t.ca }, a!),
      new FleetDevice({ port: t.probePorts[1], ca: t.ca }, b!),
    ] as [FleetDevice, FleetDevice]
  );
  const all = [...fleet.flat(), ...probes.flat()];
  const connect = new PhaseStats();
  for (const d of all) d.stats = connect;
  const t0 = now();
  let failed = 0;
  await pool(all, 64, async (d) => {
    try {
      await d.start();
    } catch (e) {
      failed++;
      connect.error(e);
    }
  });
  const connectS = (now() - t0) / 1000;
  log(`${t.name}: ${all.length - failed} connected in ${round(connectS)} s; first files`);
  await pool(fleet, 64, async ([a]) => {
    try {
      await a!.commit(["hello.txt"], [randomBytes(1000)], connect);
    } catch (e) {
      connect.error(e);
    }
  });
  await sleep(3000); // the partners download it on the push
  const cpu0 = await cpuSeconds(t);
  const idle0 = now();
  await sleep(10_000);
  const idleCpu = (await cpuSeconds(t) - cpu0) / ((now() - idle0) / 1000);
  const idle = await rss(t);
  const held = fleet.flat().filter((d) => d.connected).length;
  const perThousand = (idle.reduce((a, b) => a + b, 0) - base.reduce((a, b) => a + b, 0)) /
    (p.devices / 1000);
  out.connect = {
    devices: p.devices,
    connectSeconds: round(connectS),
    failed,
    held,
    serverRssIdleMB: idle.map((x) => mb(x)),
    serverRssBeforeMB: base.map((x) => mb(x)),
    serverRssPer1000IdleMB: mb(perThousand),
    serverCpuIdleCores: round(idleCpu, 3),
    firstFiles: connect.summary(),
    loadProcessRssMB: mb(Deno.memoryUsage().rss),
  };
  log(
    `${t.name}: held ${held}; RSS idle ${idle.map((x) => mb(x)).join(" + ")} MB (${
      mb(perThousand)
    } MB per 1,000), CPU ${round(idleCpu, 3)} cores`,
  );

  const active = fleet.slice(0, p.active);
  const commits = new PhaseStats();
  log(
    `${t.name}: commits for ${p.seconds} s (${
      active.length * 2
    } active devices, ${probes.length} probe pairs)`,
  );
  await commitLoad(active, probes, now() + p.seconds * 1000, commits);
  out.commits = commits.summary();
  log(`${t.name}: ${JSON.stringify(out.commits)}`);

  const chunks = new PhaseStats();
  log(`${t.name}: chunk throughput for ${Math.ceil(p.seconds / 2)} s`);
  const windows = await chunkLoad(
    active.slice(0, 50),
    now() + Math.ceil(p.seconds / 2) * 1000,
    chunks,
  );
  // Up: over the upload window; down: until the partners had everything.
  out.chunks = {
    ...chunks.summary(),
    upMBps: round(mb(chunks.upBytes) / windows.uploadSeconds),
    downMBps: round(mb(chunks.downBytes) / windows.seconds),
    chunksPerSecondUp: round(chunks.accepted / windows.uploadSeconds),
  };
  log(`${t.name}: ${JSON.stringify(out.chunks)}`);

  if (t.kill && t.restart) {
    const kill = new PhaseStats();
    const seconds = Math.max(p.seconds, 25);
    log(`${t.name}: commits for ${seconds} s; instance i1 killed after 5 s, restarted 10 s later`);
    const running = commitLoad(active, probes, now() + seconds * 1000, kill);
    await sleep(5000);
    for (const d of all) d.droppedAt = null;
    const killedAt = now();
    await t.kill();
    await sleep(10_000);
    await t.restart();
    log(`${t.name}: i1 restarted`);
    await running;
    // Wait (up to 60 s after the kill) for the last reconnections.
    while (all.some((d) => d.droppedAt !== null && !d.connected) && now() - killedAt < 60_000) {
      await sleep(200);
    }
    const dropped = all.filter((d) => d.droppedAt !== null);
    const back = dropped.filter((d) => d.connected);
    const times = back.map((d) => d.droppedAt! - killedAt + d.reconnectMs.at(-1)!);
    out.kill = {
      ...kill.summary(),
      devicesDropped: dropped.length,
      devicesReconnected: back.length,
      reconnectAfterKillMs: spread(times),
      lastReconnectAfterKillS: times.length ? round(Math.max(...times) / 1000) : null,
    };
    log(`${t.name}: ${JSON.stringify(out.kill)}`);
  }

  log(`${t.name}: final check`);
  out.check = await finalCheck(t, all);
  log(`${t.name}: ${JSON.stringify(out.check)}`);
  out.serverRssPeakMB = (await readMemory(t.instances.map((i) => i.proc.pid))).size
    ? (await Promise.all(t.instances.map((i) => i.proc.memory()))).map((m) => mb(m?.hwm ?? NaN))
    : [];
  for (const d of all) d.close();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Report

function table(results: Record<string, Record<string, unknown>>): string {
  const get = (r: Record<string, unknown> | undefined, path: string): unknown =>
    path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], r);
  const s = results.single;
  const c = results.cluster;
  const fmt = (v: unknown) => v === undefined || v === null ? "-" : String(v);
  const row = (what: string, f: (r: Record<string, unknown> | undefined) => string, target = "") =>
    `| ${what} | ${s ? f(s) : "-"} | ${c ? f(c) : "-"} | ${target} |`;
  const ms = (p: string) => (r: Record<string, unknown> | undefined) =>
    `${fmt(get(r, `${p}.median`))} / ${fmt(get(r, `${p}.p99`))} ms`;
  const lines = [
    "| figure | one instance (SQLite, packs) | two instances (PostgreSQL + S3, HAProxy) | target |",
    "| --- | --- | --- | --- |",
    row(
      "devices connected / held after 10 s idle",
      (r) => `${fmt(get(r, "connect.devices"))} / ${fmt(get(r, "connect.held"))}`,
      "5,000 on one instance",
    ),
    row(
      "connect time (TLS, hello, auth, watch; 64 at once)",
      (r) => `${fmt(get(r, "connect.connectSeconds"))} s`,
    ),
    row(
      "server RSS idle (per instance)",
      (r) =>
        `${(get(r, "connect.serverRssIdleMB") as number[] | undefined)?.join(" + ") ?? "-"} MB`,
      "< 300 MB for 5,000",
    ),
    row(
      "server RSS per 1,000 idle devices",
      (r) => `${fmt(get(r, "connect.serverRssPer1000IdleMB"))} MB`,
    ),
    row("server CPU while idle", (r) => `${fmt(get(r, "connect.serverCpuIdleCores"))} cores`),
    row(
      "commits/s accepted (conflicts/s)",
      (r) =>
        `${fmt(get(r, "commits.commitsPerSecond"))} (${fmt(get(r, "commits.conflictsPerSecond"))})`,
    ),
    row("commit latency median / p99", ms("commits.commitLatencyMs")),
    row(
      "push latency, A sends a commit to B hears of it, median / p99 (cluster: A on instance 1, B on 2)",
      ms("commits.pushLatencyMs"),
      "cross-instance median < 50 ms",
    ),
    row("small files downloaded/s", (r) => fmt(get(r, "commits.smallFilesDownloadedPerSecond"))),
    row(
      "chunk throughput up / down",
      (r) => `${fmt(get(r, "chunks.upMBps"))} / ${fmt(get(r, "chunks.downMBps"))} MB/s`,
    ),
    row(
      "kill: commits/s (conflicts/s)",
      (r) =>
        r?.kill
          ? `${fmt(get(r, "kill.commitsPerSecond"))} (${fmt(get(r, "kill.conflictsPerSecond"))})`
          : "-",
    ),
    row(
      "kill: commit / push latency median",
      (r) =>
        r?.kill
          ? `${fmt(get(r, "kill.commitLatencyMs.median"))} / ${
            fmt(get(r, "kill.pushLatencyMs.median"))
          } ms`
          : "-",
    ),
    row(
      "kill: devices dropped / reconnected, last after",
      (r) =>
        r?.kill
          ? `${fmt(get(r, "kill.devicesDropped"))} / ${fmt(get(r, "kill.devicesReconnected"))}, ${
            fmt(get(r, "kill.lastReconnectAfterKillS"))
          } s`
          : "-",
      "all within 30 s",
    ),
    row(
      "final: trees equal to the server's",
      (r) => `${fmt(get(r, "check.treesEqualToServer"))} / ${fmt(get(r, "check.devices"))}`,
    ),
    row(
      "final: lost / duplicated commits",
      (r) => `${fmt(get(r, "check.lost"))} / ${fmt(get(r, "check.duplicatedVersions"))}`,
      "0 / 0",
    ),
  ];
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      devices: { type: "string" },
      active: { type: "string" },
      probes: { type: "string" },
      seconds: { type: "string" },
      only: { type: "string" },
      quick: { type: "boolean", default: false },
      "server-root": { type: "string" },
      out: { type: "string" },
    },
  });
  const quick = values.quick;
  const p: Params = {
    devices: Number(values.devices ?? (quick ? 500 : 5000)),
    active: Number(values.active ?? (quick ? 50 : 200)),
    probes: Number(values.probes ?? (quick ? 5 : 20)),
    seconds: Number(values.seconds ?? (quick ? 8 : 20)),
  };
  if (p.devices % 2 !== 0 || p.active > p.devices / 2) {
    throw new Error("Cannot run: --devices must be even and --active at most half of it");
  }
  const only = new Set((values.only ?? "single,cluster").split(","));
  const serverRoot = resolve(values["server-root"] ?? ROOT);
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-load-" });
  const results: Record<string, Record<string, unknown>> = {};
  const started = now();
  const loadBefore = Deno.loadavg();
  try {
    if (only.has("single")) {
      const t = await singleTarget(join(dir, "single"), p.devices, p.probes, serverRoot).catch(
        async (e) => {
          await Deno.mkdir(join(dir, "single"), { recursive: true });
          throw e;
        },
      );
      try {
        results.single = await run(t, p);
      } finally {
        await t.stop();
      }
    }
    if (only.has("cluster")) {
      await Deno.mkdir(join(dir, "cluster"), { recursive: true });
      const t = await clusterTarget(join(dir, "cluster"), p.devices, p.probes);
      try {
        results.cluster = await run(t, p);
      } finally {
        await t.stop();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const commit = new TextDecoder().decode(
    (await new Deno.Command("git", {
      args: ["rev-parse", "HEAD"],
      cwd: serverRoot,
      stdout: "piped",
    })
      .output()).stdout,
  ).trim();
  const report = {
    date: new Date().toISOString(),
    params: { ...p, serverRoot, serverCommit: commit },
    machine: {
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      memoryGiB: round(totalmem() / 2 ** 30),
      deno: Deno.version.deno,
    },
    totalSeconds: round((now() - started) / 1000),
    // Other work on the machine meanwhile (1, 5, 15 min load averages; 2 cores).
    loadAverage: { before: loadBefore, after: Deno.loadavg() },
    ...results,
    table: table(results),
  };
  const out = values.out ?? join(ROOT, "bench", "results", "load.json");
  await Deno.writeTextFile(out, JSON.stringify(report, null, 2) + "\n");
  console.log(report.table);
  log(`wrote ${out}`);
}

if (import.meta.main) {
  try {
    await main();
    Deno.exit(0);
  } catch (e) {
    console.error(`Cannot finish the load test: ${(e as Error).stack ?? e}`);
    Deno.exit(1);
  }
}
