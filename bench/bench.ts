/**
 * Cloud Sync benchmark: a real server and two real clients on 127.0.0.1 (wire bytes from the
 * kernel's TCP counters of each client's sockets, or a counting relay if `ss` is not usable),
 * against `cp -a` and an rsync daemon on the same data in the same run; plus the rescan of an
 * unchanged tree (the scanner run in this process, against GNU find). See bench/README.md.
 *
 *   deno run -A bench/bench.ts [--quick] [--only=big,small,edit,latency,move,join,huge,rescan]
 *     [--storage=embedded|pg-s3]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cpus } from "node:os";
import process from "node:process";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  applyPatch,
  type Entry,
  makeBig,
  makePatch,
  makeSmall,
  type Patch,
  verifyTree,
  waitForTree,
} from "./data.ts";
import { durableCopy } from "./durable.ts";
import { Product, type Wire } from "./product.ts";
import { addProductV8Flags, type Cpu, RssSampler } from "./procs.ts";
import { RsyncDaemon, type RsyncRun, rsyncVersion } from "./rsync.ts";
import { SyncthingPair } from "./syncthing.ts";
import { describeStorage, PgS3Storage, type StorageDetail } from "./services_backend.ts";
import { chooseWireMethod, type WireChoice, type WireMethod } from "./wire.ts";
import {
  ctimes,
  DeadlineError,
  fmtBytes,
  fmtS,
  log,
  mbps,
  median,
  now,
  run,
  runOk,
  sleep,
  statKey,
  syncDisks,
  which,
} from "./util.ts";
import { scan } from "../lib/client/scanner.ts";
import { DenoFs } from "../lib/client/fs/deno_fs.ts";
import type { BaseEntry } from "../lib/core/types.ts";

const NAMES = ["big", "small", "edit", "latency", "move", "join", "huge", "rescan"] as const;
type Name = typeof NAMES[number];
const STORAGES = ["embedded", "pg-s3"] as const;
type Storage = typeof STORAGES[number];
/** The workloads that need the server and the two clients (`rescan` runs in this process). */
const PRODUCT_NAMES: readonly Name[] = ["big", "small", "edit", "latency", "move", "join", "huge"];

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));
const RESULTS_DIR = join(REPO, "bench", "results");
const SECONDS = 5;
const MiB = 1 << 20;
const RSS_LIMIT = 200e6;

interface Params {
  mode: "quick" | "full";
  bigBytes: number;
  /** the `huge` workload's file */
  hugeBytes: number;
  smallFiles: number;
  smallDirs: number;
  smallSize: number;
  latencyReps: number;
  /** rescan: files (of `rescanSize` bytes) spread over `rescanDirs` directories */
  rescanFiles: number;
  rescanDirs: number;
  rescanSize: number;
  clientSeconds: number;
  deadlineMs: number;
  /** how wire bytes were counted: kernel TCP counters read with ss, or the counting relay */
  wireMethod: WireMethod;
  /** the same in words (with the reason if the relay was the fallback) */
  wireMethodDetail: string;
}

/** Everything measured; written to bench/results/latest.json (latest-pg-s3.json for pg-s3). */
interface Results {
  date: string;
  /** where the server kept its data: its `--data` folder, or PostgreSQL + S3 (Swift) */
  storage: Storage;
  /** pg-s3: what the services did per workload, the bucket, the S3 probe */
  storageDetail?: StorageDetail;
  params: Params;
  only: Name[];
  machine: Record<string, unknown>;
  big?: {
    ours?: {
      seconds: number;
      mbPerS: number;
      wire: Wire;
      benchCpuS: number;
      productCpu: Record<string, Cpu>;
      /** CPU seconds per GiB of the file, per process and summed */
      cpuPerGiB: { perProcess: Record<string, number>; sum: number };
    } | { error: string };
    cp?: { seconds: number; mbPerS: number };
    /** the durable floor (`durable.ts`): temp file, fdatasync, rename, in Deno */
    durable?: { seconds: number; mbPerS: number };
    rsync?: RsyncRun & { mbPerS: number };
  };
  small?: {
    ours?: {
      seconds: number;
      filesPerS: number;
      wire: Wire;
      benchCpuS: number;
      productCpu: Record<string, Cpu>;
    } | {
      error: string;
    };
    cp?: { seconds: number; filesPerS: number };
    /** the durable floor (`durable.ts`): temp file, fdatasync, rename per file, in Deno */
    durable?: { seconds: number; filesPerS: number };
    rsync?: RsyncRun & { filesPerS: number };
  };
  edit?: {
    ours?: { seconds: number; wire: Wire; benchCpuS: number; productCpu: Record<string, Cpu> } | {
      error: string;
    };
    rsync?: RsyncRun;
    patch: { offset: number; bytes: number };
  };
  latency?: { samplesMs: number[]; medianMs: number; maxMs: number; timeouts: number } | {
    error: string;
  };
  move?: {
    ours?: { seconds: number; wire: Wire; benchCpuS: number; productCpu: Record<string, Cpu> } | {
      error: string;
    };
  };
  /** A third device's first sync of everything synced so far (the small files, the big file). */
  join?: {
    files: number;
    bytes: number;
    seconds: number;
    /** C's peak RSS (VmHWM: its whole life, which is this workload) */
    vmHWM: number;
  } | { error: string };
  /** One `hugeBytes` file A -> B; peak RSS sampled over this workload only. */
  huge?: {
    seconds: number;
    mbPerS: number;
    productCpu: Record<string, Cpu>;
    sampledMaxRss: Record<string, number>;
  } | { error: string };
  rescan?: Rescan;
  /** Syncthing (peer rows: same data, same placement, same end condition), where installed. */
  syncthing?: {
    version: string;
    big?: PeerRun | { error: string };
    small?: PeerRun | { error: string };
    edit?: PeerRun | { error: string };
  } | { error: string };
  rss?: Record<string, { vmHWM: number; sampledMaxVmRSS: number; pid: number }>;
  table?: Row[];
  logTails?: Record<string, string[]>;
  error?: string;
  totalSeconds?: number;
}

/** One Syncthing workload: t0 (rename) until B verified, CPU of both, bytes A sent. */
interface PeerRun {
  seconds: number;
  /** the synchronous `POST /rest/db/scan` on A, from t0 */
  scanSeconds: number;
  cpu: Record<string, Cpu>;
  /** CPU seconds per GiB of data moved, per process and summed */
  cpuPerGiB: { perProcess: Record<string, number>; sum: number };
  sentBytes: number;
}

/** The rescan workload's figures (see {@link runRescan}). */
interface Rescan {
  /** where it was measured: in the bench process, by the product's own scanner */
  where: string;
  files: number;
  dirs: number;
  fileBytes: number;
  /** untimed setup: writing the tree */
  createSeconds: number;
  /** `scan(new DenoFs(root), new Map())`: every file read and hashed (this builds the merge base) */
  firstScanSeconds: number;
  firstScanHashed: number;
  /** `scan(new DenoFs(root), base)` against that base, three times */
  runsSeconds: number[];
  medianSeconds: number;
  maxSeconds: number;
  filesPerS: number;
  /** file entries returned by each run (must be `files`) */
  filesReturned: number[];
  /** file entries of each run with `hash` set, i.e. rehashed (must be 0: no content read) */
  rehashed: number[];
  /** floor: `find ROOT -type f -printf '%s %T@ %i\n' > /dev/null`, three times */
  find: { runsSeconds: number[]; medianSeconds: number; maxSeconds: number } | { error: string };
  /** max of Deno.memoryUsage().rss of the bench process, sampled every 20 ms during the workload */
  peakRssBytes: number;
}

interface Row {
  workload: string;
  ours: string;
  cp: string;
  /** the durable floor (temp file, fdatasync, rename) */
  durable?: string;
  rsync: string;
  syncthing?: string;
  ratio: string;
  target: string;
  result: "pass" | "miss" | "n/a" | "-";
}

function parseOptions(): {
  params: Omit<Params, "wireMethod" | "wireMethodDetail">;
  only: Set<Name>;
  keepLogs: string | undefined;
  syncthing: boolean;
  perf: string | undefined;
  storage: Storage;
} {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      "keep-logs": { type: "string" },
      syncthing: { type: "string", default: "auto" },
      perf: { type: "string" },
      storage: { type: "string", default: "embedded" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno run -A bench/bench.ts [--quick] [--only=" + NAMES.join(",") + "]\n" +
        "  --quick  64 MiB file, 1,000 small files, 256 MiB huge file, 10,000 files to rescan\n" +
        "           (smoke run)\n" +
        "  --only   run only these workloads (peak RSS comes with big/small; rescan alone starts\n" +
        "           no server or client)\n" +
        "  --keep-logs=DIR  copy the server's and clients' logs there before cleaning up (run with\n" +
        "           CLOUDSYNC_DEBUG=1 for each pass's phases)\n" +
        "  --syncthing=auto|off  run Syncthing's rows of big, small and edit where installed\n" +
        "           (default auto)\n" +
        "  --perf=DIR  profile the product's 1 GiB row: `perf record -a -g` while it runs, the\n" +
        "           product started with --perf-basic-prof; DIR/big.perf.data (perf report --sort\n" +
        "           pid,sym)\n" +
        "  --storage=embedded|pg-s3  the server's storage: its --data folder (default), or\n" +
        "           PostgreSQL + S3 (Swift), started with scripts/services.sh unless\n" +
        "           CLOUDSYNC_TEST_* are set; results in bench/results/latest-pg-s3.json",
    );
    Deno.exit(0);
  }
  const only = new Set<Name>();
  for (const n of (values.only ?? NAMES.join(",")).split(",").map((s) => s.trim())) {
    if (!n) continue;
    if (!(NAMES as readonly string[]).includes(n)) {
      console.error(`unknown workload "${n}"; known: ${NAMES.join(", ")}`);
      Deno.exit(2);
    }
    only.add(n as Name);
  }
  const quick = values.quick;
  if (values.syncthing !== "auto" && values.syncthing !== "off") {
    console.error(`--syncthing must be auto or off, not "${values.syncthing}"`);
    Deno.exit(2);
  }
  if (!(STORAGES as readonly string[]).includes(values.storage)) {
    console.error(`--storage must be ${STORAGES.join(" or ")}, not "${values.storage}"`);
    Deno.exit(2);
  }
  return {
    only,
    storage: values.storage as Storage,
    keepLogs: values["keep-logs"],
    syncthing: values.syncthing === "auto",
    perf: values.perf,
    params: {
      mode: quick ? "quick" : "full",
      bigBytes: quick ? 64 * MiB : 1024 * MiB,
      hugeBytes: quick ? 256 * MiB : 2048 * MiB,
      smallFiles: quick ? 1000 : 10000,
      smallDirs: 100,
      smallSize: 4096,
      latencyReps: 20,
      rescanFiles: quick ? 10000 : 100000,
      rescanDirs: quick ? 100 : 1000,
      rescanSize: 100,
      clientSeconds: SECONDS,
      deadlineMs: quick ? 45000 : 120000,
    },
  };
}

async function machineInfo(rsync: string | null): Promise<Record<string, unknown>> {
  const git = await run("git", ["rev-parse", "HEAD"], { cwd: REPO }).catch(() => null);
  const dirty = await run("git", ["status", "--porcelain", "--", ".", ":!bench"], { cwd: REPO })
    .catch(() => null);
  const cp = await run("cp", ["--version"]).catch(() => null);
  const diff = await run("git", ["diff", "HEAD", "--", ".", ":!bench"], { cwd: REPO })
    .catch(() => null);
  return {
    date: new Date().toISOString(),
    nproc: navigator.hardwareConcurrency,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memTotalBytes: Deno.systemMemoryInfo().total,
    kernel: Deno.osRelease(),
    platform: `${Deno.build.os}-${Deno.build.arch}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    cp: cp?.stdout.split("\n")[0] ?? null,
    rsync: rsync ? await rsyncVersion(rsync) : null,
    productCommit: git?.code === 0 ? git.stdout.trim() : null,
    productDirty: dirty?.code === 0 ? dirty.stdout.trim() !== "" : null,
    /** Identifies uncommitted product changes the figures were measured with. */
    productDiffSha256: diff?.code === 0 && diff.stdout
      ? createHash("sha256").update(diff.stdout).digest("hex")
      : null,
  };
}

/**
 * t0 of a workload: the change time the kernel gave `path` when the bench placed it (the clock
 * of {@link waitForTree}'s answer), or `before` (taken just before) where find is unavailable.
 */
async function placedAt(path: string, before: number): Promise<number> {
  return (await ctimes(path, true))?.get("") ?? before;
}

/** CPU seconds used by this process (polling, ss reads, hashing; relay if used) so far. */
const cpuS = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const round2 = (x: number) => Math.round(x * 100) / 100;

/** CPU seconds (user + sys) per GiB moved, per process and summed over them. */
export function cpuPerGiB(
  cpu: Record<string, Cpu>,
  bytes: number,
): { perProcess: Record<string, number>; sum: number } {
  const gib = bytes / 2 ** 30;
  const perProcess: Record<string, number> = {};
  let sum = 0;
  for (const [n, c] of Object.entries(cpu)) {
    perProcess[n] = round2((c.user + c.sys) / gib);
    sum += c.user + c.sys;
  }
  return { perProcess, sum: round2(sum / gib) };
}

const isErr = (x: unknown): x is { error: string } =>
  typeof x === "object" && x !== null && "error" in x;

/** Runs `fn`; a DeadlineError becomes `{ error }` (the workload missed), anything else aborts. */
async function attempt<T>(what: string, fn: () => Promise<T>): Promise<T | { error: string }> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof DeadlineError) {
      log(`${what}: MISSED DEADLINE: ${e.message}`);
      return { error: e.message };
    }
    throw e;
  }
}

async function main(): Promise<number> {
  const opts = parseOptions();
  const only = opts.only;
  if (opts.perf) addProductV8Flags("--perf-basic-prof,--logfile=/dev/null");
  const t00 = now();
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log("interrupted; cleaning up");
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const rsync = await which("rsync");
  if (!rsync) console.log("rsync: not installed");
  const syncthing = opts.syncthing ? await which("syncthing") : null;
  if (opts.syncthing && !syncthing) console.log("syncthing: not installed (no peer rows)");
  const wire = await chooseWireMethod();
  const params: Params = { ...opts.params, wireMethod: wire.method, wireMethodDetail: wire.detail };
  log(`wire bytes: ${wire.detail}`);
  const res: Results = {
    date: new Date().toISOString(),
    storage: opts.storage,
    params,
    only: [...only],
    machine: await machineInfo(rsync),
  };
  const root = await Deno.makeTempDir({ prefix: "cloudsync-bench-" });
  log(`mode ${params.mode}; scratch ${root}; workloads ${[...only].join(",")}`);
  let product: Product | null = null;
  let rsyncd: RsyncDaemon | null = null;
  let sampler: RssSampler | null = null;
  let storage: PgS3Storage | null = null;
  let code = 0;
  try {
    const ctx = {
      root,
      params,
      only,
      rsync,
      syncthing,
      perf: opts.perf ?? null,
      res,
      interrupted: () => interrupted,
      wire,
      setProduct: (p: Product) => product = p,
      setRsyncd: (d: RsyncDaemon) => rsyncd = d,
      setSampler: (s: RssSampler) => sampler = s,
      storage: opts.storage,
      setStorage: (s: PgS3Storage) => storage = s,
    };
    await runAll(ctx);
  } catch (e) {
    code = 1;
    res.error = (e as Error).message ?? String(e);
    console.error(`bench failed: ${res.error}`);
  } finally {
    (sampler as RssSampler | null)?.stop();
    const p = product as Product | null;
    if (p) {
      res.logTails = Object.fromEntries(p.procs().map((x) => [x.name, x.tail(20)]));
      await p.stop().catch((e) => log(`stopping product: ${e}`));
      const keep = opts.keepLogs;
      if (keep) {
        await Deno.mkdir(keep, { recursive: true });
        for (const e of Deno.readDirSync(join(root, "logs"))) {
          Deno.copyFileSync(join(root, "logs", e.name), join(keep, e.name));
        }
        log(`logs copied to ${keep}`);
      }
    }
    await (rsyncd as RsyncDaemon | null)?.stop().catch((e) => log(`stopping rsyncd: ${e}`));
    await (storage as PgS3Storage | null)?.close().catch((e) => log(`stopping storage: ${e}`));
    await Deno.remove(root, { recursive: true }).catch((e) => log(`removing ${root}: ${e}`));
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  res.totalSeconds = (now() - t00) / 1000;
  res.table = table(res);
  printTable(res);
  await Deno.mkdir(RESULTS_DIR, { recursive: true });
  const file = opts.storage === "embedded" ? "latest.json" : `latest-${opts.storage}.json`;
  await Deno.writeTextFile(join(RESULTS_DIR, file), JSON.stringify(res, null, 2) + "\n");
  log(`wrote bench/results/${file} (total ${res.totalSeconds.toFixed(0)} s)`);
  return interrupted ? 130 : code;
}

interface Ctx {
  root: string;
  params: Params;
  only: Set<Name>;
  rsync: string | null;
  syncthing: string | null;
  /** --perf: directory for the 1 GiB row's `perf record` */
  perf: string | null;
  res: Results;
  interrupted: () => boolean;
  wire: WireChoice;
  setProduct: (p: Product) => void;
  setRsyncd: (d: RsyncDaemon) => void;
  setSampler: (s: RssSampler) => void;
  storage: Storage;
  /** pg-s3: set once the services are up (stopped and cleaned by main) */
  setStorage: (s: PgS3Storage) => void;
}

async function runAll(ctx: Ctx): Promise<void> {
  if (PRODUCT_NAMES.some((n) => ctx.only.has(n))) {
    const product = await runProductWorkloads(ctx);
    // Idle clients still rescan their folders every few seconds: stop them so they do not compete
    // with the rescan for the 2 cores (the log tails stay readable; main's stop is then a no-op).
    if (ctx.only.has("rescan")) await product.stop();
  }
  if (ctx.only.has("rescan")) await runRescan(ctx);
}

/** `perf record -a -g -F 499 -o OUT` until `stop()` (SIGINT, then it writes its file). */
async function startPerf(out: string): Promise<{ stop: () => Promise<void> }> {
  await Deno.mkdir(dirname(out), { recursive: true });
  const child = new Deno.Command("perf", {
    args: ["record", "-a", "-g", "-F", "499", "-o", out],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  await sleep(500); // perf needs a moment to set up its buffers
  return {
    stop: async () => {
      child.kill("SIGINT");
      const r = await child.output();
      log(`perf: ${new TextDecoder().decode(r.stderr).trim().split("\n").slice(-1)[0]} (${out})`);
    },
  };
}

/** Workloads 1-6: the server and the two clients, started here. Returns the running product. */
async function runProductWorkloads(ctx: Ctx): Promise<Product> {
  const { root, params, only, rsync, res } = ctx;
  const needBig = only.has("big") || only.has("edit") || only.has("move");
  const needSmall = only.has("small");
  const master = join(root, "master");
  const stage = join(root, "stage");
  await Deno.mkdir(join(master, "small"), { recursive: true });
  await Deno.mkdir(stage, { recursive: true });

  // ---- data (untimed)
  const patch: Patch = makePatch(params.bigBytes, "cloudsync-bench-edit");
  let big: { sha256: string; patchedSha256: string } | null = null;
  if (needBig) {
    const t = now();
    big = await makeBig(join(master, "big.bin"), params.bigBytes, "cloudsync-bench-big", patch);
    log(`made ${fmtBytes(params.bigBytes)} file in ${((now() - t) / 1000).toFixed(1)} s`);
  }
  let small: Entry[] = [];
  if (needSmall) {
    const t = now();
    small = await makeSmall(
      join(master, "small"),
      "small",
      params.smallFiles,
      params.smallDirs,
      params.smallSize,
      "cloudsync-bench-small",
    );
    log(`made ${small.length} small files in ${((now() - t) / 1000).toFixed(1)} s`);
  }
  const bigEntry = (sha: string, rel = "big.bin"): Entry => ({
    rel,
    size: params.bigBytes,
    sha256: sha,
  });

  // ---- Syncthing (peer rows), before the product starts, alone on the machine
  if (ctx.syncthing && (only.has("big") || only.has("edit") || needSmall)) {
    await runSyncthing(ctx, master, big, small, patch);
  }

  // ---- rsync daemon (floor)
  let rsyncd: RsyncDaemon | null = null;
  const rsyncFor = (n: Name) => rsync !== null && only.has(n);
  if (rsync && (only.has("big") || only.has("edit") || needSmall)) {
    rsyncd = await RsyncDaemon.start(rsync, join(root, "rsync"));
    ctx.setRsyncd(rsyncd);
    log(`rsync daemon on 127.0.0.1:${rsyncd.port}`);
  }
  const rsSrc = join(root, "rsync", "src");
  await Deno.mkdir(rsSrc, { recursive: true });

  // ---- the product (with pg-s3: the services, a fresh schema and bucket, the traced server)
  const storage = ctx.storage === "pg-s3" ? await PgS3Storage.open() : null;
  if (storage) ctx.setStorage(storage);
  const detail: StorageDetail | null = storage && (res.storageDetail = storage.detail());
  const product = new Product(REPO, root, params.clientSeconds, ctx.interrupted, ctx.wire, storage);
  ctx.setProduct(product);
  await product.start();
  /** pg-s3: what the services did from a mark (`storageMark()`) to now, as workload `name`. */
  const storageMark = async () => storage && await storage.snapshot(product.server!);
  const storageSince = async (name: string, s0: Awaited<ReturnType<typeof storageMark>>) => {
    if (storage && s0) detail!.workloads[name] = await storage.since(s0, product.server!);
  };
  await product.quiet(1000, 10000);
  const sampler = new RssSampler(product.procs(), 100);
  ctx.setSampler(sampler);
  if (needBig || needSmall) sampler.start();
  const deadline = () => now() + params.deadlineMs;
  const check = () => product.check();

  /** Moves prepared data in with one rename at t0 and waits until B has `entries`. */
  const oursPlace = async (
    from: string,
    to: string,
    entries: Entry[],
    perfData?: string,
  ): Promise<
    { seconds: number; wire: Wire; benchCpuS: number; productCpu: Record<string, Cpu> }
  > => {
    await syncDisks();
    await product.quiet();
    const m = await product.mark();
    const c0 = cpuS();
    const perf = perfData ? await startPerf(perfData) : null;
    const pc0 = await product.cpu();
    const before = Date.now();
    await Deno.rename(from, to);
    const t0 = await placedAt(to, before);
    const t1 = await waitForTree(product.folderB, entries, {
      deadline: deadline(),
      pollMs: entries.length > 1 ? 500 : 10,
      check,
    }).finally(() => perf?.stop());
    const seconds = (t1 - t0) / 1000;
    const benchCpuS = cpuS() - c0;
    const productCpu = await product.cpuSince(pc0);
    await product.quiet();
    return { seconds, wire: await product.wireSince(m), benchCpuS, productCpu };
  };

  // ---- 1. one big file
  let bigOnB: string | null = null; // sha256 of the big file B has
  if (needBig && big) {
    const bigSha = big.sha256;
    res.big = {};
    // cp -a floor: master -> stage (this copy is then what moves into A)
    await syncDisks();
    const cpRun = await runOk("cp", ["-a", join(master, "big.bin"), join(stage, "big.bin")]);
    if (only.has("big")) {
      res.big.cp = { seconds: cpRun.seconds, mbPerS: mbps(params.bigBytes, cpRun.seconds) };
      log(`big  cp -a   ${fmtS(cpRun.seconds)}`);
      await syncDisks();
      const d = await durableCopy(join(stage, "big.bin"), join(root, "durable", "big.bin"));
      res.big.durable = { seconds: d, mbPerS: mbps(params.bigBytes, d) };
      log(`big  durable ${fmtS(d)}`);
    }
    if (rsyncd && rsync && (rsyncFor("big") || rsyncFor("edit"))) {
      await Deno.mkdir(join(rsSrc, "big"), { recursive: true });
      await syncDisks();
      const t0 = now();
      await Deno.rename(join(master, "big.bin"), join(rsSrc, "big", "big.bin"));
      const r = await rsyncd.sync(rsync, join(rsSrc, "big"), "big");
      const seconds = (now() - t0) / 1000;
      const bad = await verifyTree(join(rsyncd.dst, "big"), [bigEntry(bigSha)]);
      if (bad) throw new Error(`rsync big: ${bad}`);
      if (only.has("big")) {
        res.big.rsync = { ...r, seconds, mbPerS: mbps(params.bigBytes, seconds) };
        log(`big  rsync   ${fmtS(seconds)} (${r.sent} B sent)`);
      }
    }
    const sBig = await storageMark();
    const ours = await attempt(
      "big",
      () =>
        oursPlace(
          join(stage, "big.bin"),
          join(product.folderA, "big.bin"),
          [bigEntry(bigSha)],
          ctx.perf ? join(ctx.perf, "big.perf.data") : undefined,
        ),
    );
    await storageSince("big", sBig);
    if (!isErr(ours)) bigOnB = bigSha;
    if (only.has("big")) {
      res.big.ours = isErr(ours) ? ours : {
        ...ours,
        mbPerS: mbps(params.bigBytes, ours.seconds),
        cpuPerGiB: cpuPerGiB(ours.productCpu, params.bigBytes),
      };
      if (!isErr(ours)) {
        log(`big  ours    ${fmtS(ours.seconds)}, wire ${fmtBytes(ours.wire.total)}`);
      }
    } else {
      log("big file placed on A and B (setup)");
    }
  }

  // ---- 2. many small files
  if (needSmall) {
    res.small = {};
    const n = small.length;
    await syncDisks();
    const cpRun = await runOk("cp", ["-a", join(master, "small"), join(stage, "small")]);
    res.small.cp = { seconds: cpRun.seconds, filesPerS: n / cpRun.seconds };
    log(`small cp -a  ${fmtS(cpRun.seconds)}`);
    await syncDisks();
    const d = await durableCopy(join(stage, "small"), join(root, "durable", "small"));
    res.small.durable = { seconds: d, filesPerS: n / d };
    log(`small durable ${fmtS(d)}`);
    if (rsyncd && rsync) {
      await syncDisks();
      const t0 = now();
      await Deno.rename(join(master, "small"), join(rsSrc, "small"));
      const r = await rsyncd.sync(rsync, join(rsSrc, "small"), "small");
      const seconds = (now() - t0) / 1000;
      const bad = await verifyTree(
        rsyncd.dst,
        small,
      );
      if (bad) throw new Error(`rsync small: ${bad}`);
      res.small.rsync = { ...r, seconds, filesPerS: n / seconds };
      log(`small rsync  ${fmtS(seconds)} (${r.sent} B sent)`);
    }
    const sSmall = await storageMark();
    const ours = await attempt(
      "small",
      () => oursPlace(join(stage, "small"), join(product.folderA, "small"), small),
    );
    await storageSince("small", sSmall);
    res.small.ours = isErr(ours) ? ours : { ...ours, filesPerS: n / ours.seconds };
    if (!isErr(ours)) {
      log(`small ours   ${fmtS(ours.seconds)}, wire ${fmtBytes(ours.wire.total)}`);
    }
  }

  // ---- 6. peak RSS during 1 and 2
  if (needBig || needSmall) {
    sampler.stop();
    await sampler.sample();
    res.rss = {};
    for (const p of product.procs()) {
      const m = await p.memory();
      res.rss[p.name] = {
        pid: p.pid,
        vmHWM: m?.hwm ?? NaN,
        sampledMaxVmRSS: sampler.max.get(p.name) ?? NaN,
      };
    }
  }

  // ---- 3. 1 MiB overwritten in the middle of the big file, in place
  if (only.has("edit") && big) {
    res.edit = { patch: { offset: patch.offset, bytes: patch.bytes.length } };
    if (rsyncd && rsync && rsyncFor("edit")) {
      await syncDisks();
      const src = join(rsSrc, "big");
      const t0 = now();
      await applyPatch(join(src, "big.bin"), patch);
      const r = await rsyncd.sync(rsync, src, "big");
      const seconds = (now() - t0) / 1000;
      const bad = await verifyTree(join(rsyncd.dst, "big"), [bigEntry(big.patchedSha256)]);
      if (bad) throw new Error(`rsync edit: ${bad}`);
      res.edit.rsync = { ...r, seconds };
      log(`edit rsync   ${fmtS(seconds)} (${r.sent} B sent, ${r.received} B received)`);
    }
    if (bigOnB) {
      const patched = big.patchedSha256;
      const sEdit = await storageMark();
      const ours = await attempt("edit", async () => {
        await syncDisks();
        await product.quiet();
        const old = await statKey(join(product.folderB, "big.bin"));
        const m = await product.mark();
        const c0 = cpuS();
        const pc0 = await product.cpu();
        const before = Date.now();
        await applyPatch(join(product.folderA, "big.bin"), patch);
        const t0 = await placedAt(join(product.folderA, "big.bin"), before);
        const t1 = await waitForTree(product.folderB, [bigEntry(patched)], {
          deadline: deadline(),
          staleKeys: new Set(old ? [old.key] : []),
          check,
        });
        const seconds = (t1 - t0) / 1000;
        const benchCpuS = cpuS() - c0;
        const productCpu = await product.cpuSince(pc0);
        await product.quiet();
        return { seconds, wire: await product.wireSince(m), benchCpuS, productCpu };
      });
      await storageSince("edit", sEdit);
      res.edit.ours = ours;
      if (!isErr(ours)) {
        bigOnB = patched;
        log(`edit ours    ${fmtS(ours.seconds)}, wire ${fmtBytes(ours.wire.total)}`);
      } else bigOnB = null;
    } else {
      res.edit.ours = { error: "skipped: the big file never reached B" };
    }
  }

  // ---- 4. latency of one new 100-byte file
  if (only.has("latency")) {
    await product.quiet();
    const sLatency = await storageMark();
    res.latency = await attempt("latency", async () => {
      const samples: number[] = [];
      let timeouts = 0;
      const rng = new Uint8Array(100);
      for (let i = 0; i < params.latencyReps; i++) {
        crypto.getRandomValues(rng);
        const data = rng.slice();
        const name = `lat-${String(i).padStart(2, "0")}.txt`;
        const dst = join(product.folderB, name);
        const t0 = now();
        await Deno.writeFile(join(product.folderA, name), data);
        const end = t0 + 10000;
        let ms = NaN;
        while (now() < end) {
          try {
            const got = await Deno.readFile(dst);
            if (got.length === data.length && got.every((b, j) => b === data[j])) {
              ms = now() - t0;
              break;
            }
          } catch {
            // not there yet
          }
          await sleep(2);
        }
        check();
        if (Number.isNaN(ms)) timeouts++;
        else samples.push(ms);
        await sleep(500 + (i * 97) % 500); // isolated changes, not locked to a timer
      }
      if (samples.length === 0) throw new DeadlineError("no 100-byte file reached B within 10 s");
      log(
        `latency      median ${median(samples).toFixed(0)} ms, max ${
          Math.max(...samples).toFixed(0)
        } ms, ${timeouts} timeouts`,
      );
      return {
        samplesMs: samples.map((x) => Math.round(x * 10) / 10),
        medianMs: median(samples),
        maxMs: timeouts > 0 ? Infinity : Math.max(...samples),
        timeouts,
      };
    });
    await storageSince("latency", sLatency);
  }

  // ---- 5. move of the big file into a subdirectory
  if (only.has("move")) {
    res.move = {};
    if (bigOnB) {
      const sha = bigOnB;
      res.move.ours = await attempt("move", async () => {
        await product.quiet();
        const m = await product.mark();
        const c0 = cpuS();
        const pc0 = await product.cpu();
        const before = Date.now();
        await Deno.mkdir(join(product.folderA, "moved"));
        const t0 = await placedAt(join(product.folderA, "moved"), before);
        await Deno.rename(
          join(product.folderA, "big.bin"),
          join(product.folderA, "moved", "big.bin"),
        );
        const t1 = await waitForTree(product.folderB, [bigEntry(sha, "moved/big.bin")], {
          deadline: deadline(),
          absent: ["big.bin"],
          check,
        });
        const seconds = (t1 - t0) / 1000;
        const benchCpuS = cpuS() - c0;
        const productCpu = await product.cpuSince(pc0);
        await product.quiet();
        const wire = await product.wireSince(m);
        log(`move ours    ${fmtS(seconds)}, wire ${fmtBytes(wire.total)}`);
        return { seconds, wire, benchCpuS, productCpu };
      });
    } else {
      res.move.ours = { error: "skipped: the big file is not in sync on B" };
    }
  }
  // ---- 7. a third device joins: its first sync of everything above
  if (only.has("join")) {
    res.join = await attempt("join", async () => {
      const entries: Entry[] = [...small];
      if (bigOnB) {
        const rel = only.has("move") && res.move?.ours && !isErr(res.move.ours)
          ? "moved/big.bin"
          : "big.bin";
        entries.push(bigEntry(bigOnB, rel));
      }
      if (entries.length === 0) {
        throw new DeadlineError("nothing to join: run it with small or big");
      }
      await product.quiet();
      const folderC = join(root, "C");
      const t0 = Date.now(); // the clock of waitForTree's answer (file change times)
      const c = product.joinThird(folderC);
      const t1 = await waitForTree(folderC, entries, {
        deadline: now() + 2 * params.deadlineMs,
        pollMs: 500,
        check,
      });
      const seconds = (t1 - t0) / 1000;
      const vmHWM = (await c.memory())?.hwm ?? NaN;
      const bytes = entries.reduce((n, e) => n + e.size, 0);
      log(
        `join ours    ${fmtS(seconds)} for ${entries.length} files (${fmtBytes(bytes)}), ` +
          `C peak RSS ${(vmHWM / 1e6).toFixed(0)} MB`,
      );
      await product.quiet();
      return { files: entries.length, bytes, seconds, vmHWM };
    });
  }

  // ---- 8. one huge file A -> B (memory must not grow with the size)
  if (only.has("huge")) {
    res.huge = await attempt("huge", async () => {
      const file = join(root, "huge.bin");
      const made = await makeBig(file, params.hugeBytes, "cloudsync-bench-huge", patch);
      await syncDisks();
      await product.quiet();
      const rss = new RssSampler(product.procs(), 100);
      // Peaks of this workload alone: VmHWM reset where Linux allows, else sampled every 100 ms.
      const reset = (await Promise.all(product.procs().map((p) => p.resetPeak()))).every((x) => x);
      rss.start();
      try {
        const pc0 = await product.cpu();
        const before = Date.now();
        await Deno.rename(file, join(product.folderA, "huge.bin"));
        const t0 = await placedAt(join(product.folderA, "huge.bin"), before);
        const t1 = await waitForTree(
          product.folderB,
          [{ rel: "huge.bin", size: params.hugeBytes, sha256: made.sha256 }],
          { deadline: now() + 2 * params.deadlineMs, check },
        );
        const seconds = (t1 - t0) / 1000;
        const productCpu = await product.cpuSince(pc0);
        await product.quiet();
        await rss.sample();
        if (reset) {
          for (const p of product.procs()) {
            const hwm = (await p.memory())?.hwm;
            if (hwm !== undefined) rss.max.set(p.name, Math.max(rss.max.get(p.name) ?? 0, hwm));
          }
        }
        const sampledMaxRss = Object.fromEntries(rss.max);
        log(
          `huge ours    ${fmtS(seconds)}; peak RSS ${
            [...rss.max].map(([n, b]) => `${n} ${(b / 1e6).toFixed(0)} MB`).join(", ")
          }`,
        );
        return { seconds, mbPerS: mbps(params.hugeBytes, seconds), productCpu, sampledMaxRss };
      } finally {
        rss.stop();
      }
    });
  }
  if (storage) await storage.finish(detail!, () => product.stop(), params.mode === "quick");
  return product;
}

/**
 * Syncthing's rows of big, small and edit (see syncthing.ts): the same data as the product's,
 * copied to a stage of its own (untimed), placed with one rename, then A scans (REST) and B is
 * polled like the product's B. Runs before the product starts, so that the two never compete for
 * the CPUs; its folders stay until the scratch directory goes (deleting 10,000 files right before
 * the product's rows would slow their file creation, see bench/README.md).
 */
async function runSyncthing(
  ctx: Ctx,
  master: string,
  big: { sha256: string; patchedSha256: string } | null,
  small: Entry[],
  patch: Patch,
): Promise<void> {
  const { root, params, only, res } = ctx;
  const stRoot = join(root, "syncthing");
  const stage = join(stRoot, "stage");
  await Deno.mkdir(stage, { recursive: true });
  if (big) await runOk("cp", ["-a", join(master, "big.bin"), join(stage, "big.bin")]);
  if (small.length > 0) await runOk("cp", ["-a", join(master, "small"), join(stage, "small")]);
  let pair: SyncthingPair;
  try {
    pair = await SyncthingPair.start(ctx.syncthing!, stRoot);
  } catch (e) {
    log(`syncthing: cannot start the pair: ${(e as Error).message}`);
    res.syncthing = { error: (e as Error).message };
    return;
  }
  const out: { version: string } & Record<string, unknown> = { version: pair.version };
  res.syncthing = out;
  const check = () => {
    if (ctx.interrupted()) throw new Error("interrupted");
    pair.check();
  };
  const cpu = () => pair.cpu();
  const timed = async (
    place: () => Promise<string>,
    bytes: number,
    entries: Entry[],
    pollMs: number,
    staleKeys?: Set<string>,
  ): Promise<PeerRun> => {
    await syncDisks();
    await pair.idle();
    const c0 = await cpu();
    const sent0 = await pair.sentByA();
    const before = Date.now();
    const placed = await place();
    const t0 = await placedAt(placed, before);
    await pair.scanA();
    const scanSeconds = (Date.now() - t0) / 1000;
    const t1 = await waitForTree(pair.b.folder, entries, {
      deadline: now() + params.deadlineMs,
      pollMs,
      check,
      ...(staleKeys ? { staleKeys } : {}),
    });
    const c1 = await cpu();
    const cpuUsed: Record<string, Cpu> = {};
    for (const [n, c] of Object.entries(c1)) {
      const m = c0[n];
      if (m) cpuUsed[n] = { user: round2(c.user - m.user), sys: round2(c.sys - m.sys) };
    }
    await pair.idle();
    return {
      seconds: (t1 - t0) / 1000,
      scanSeconds,
      cpu: cpuUsed,
      cpuPerGiB: cpuPerGiB(cpuUsed, bytes),
      sentBytes: (await pair.sentByA()) - sent0,
    };
  };
  try {
    const bigEntry = (sha: string): Entry => ({
      rel: "big.bin",
      size: params.bigBytes,
      sha256: sha,
    });
    if (big && (only.has("big") || only.has("edit"))) {
      out.big = await attempt("syncthing big", () =>
        timed(
          async () => {
            const to = join(pair.a.folder, "big.bin");
            await Deno.rename(join(stage, "big.bin"), to);
            return to;
          },
          params.bigBytes,
          [bigEntry(big.sha256)],
          10,
        ));
      if (!isErr(out.big)) log(`big  syncthing ${fmtS((out.big as PeerRun).seconds)}`);
    }
    if (small.length > 0) {
      out.small = await attempt("syncthing small", () =>
        timed(
          async () => {
            const to = join(pair.a.folder, "small");
            await Deno.rename(join(stage, "small"), to);
            return to;
          },
          small.length * params.smallSize,
          small,
          500,
        ));
      if (!isErr(out.small)) log(`small syncthing ${fmtS((out.small as PeerRun).seconds)}`);
    }
    if (big && only.has("edit") && out.big && !isErr(out.big)) {
      const old = await statKey(join(pair.b.folder, "big.bin"));
      out.edit = await attempt("syncthing edit", () =>
        timed(
          async () => {
            const to = join(pair.a.folder, "big.bin");
            await applyPatch(to, patch);
            return to;
          },
          patch.bytes.length,
          [bigEntry(big.patchedSha256)],
          10,
          new Set(old ? [old.key] : []),
        ));
      if (!isErr(out.edit)) log(`edit syncthing ${fmtS((out.edit as PeerRun).seconds)}`);
    }
  } finally {
    await pair.stop();
  }
}

/**
 * Workload 9: rescan of an unchanged tree. The scanner is a library function and the product's
 * full pass (at start and periodically) is exactly `scan(new DenoFs(folder), base)`, so it runs here in the
 * bench process, no server or client involved. Setup (untimed): `rescanFiles` files written with
 * synchronous calls, then one `scan(new DenoFs(root), new Map())` that hashes them all (timed for information)
 * and becomes the merge base as the client keeps it. Timed: `scan(new DenoFs(root), base)` three times, each
 * followed by the GNU find floor.
 */
async function runRescan(ctx: Ctx): Promise<void> {
  const { root, params, res } = ctx;
  const n = params.rescanFiles;
  const nDirs = params.rescanDirs;
  const tree = join(root, "rescan");
  const stopIfInterrupted = () => {
    if (ctx.interrupted()) throw new Error("interrupted");
  };
  let peakRss = Deno.memoryUsage().rss;
  const sampleRss = () => peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
  const timer = setInterval(sampleRss, 20);
  try {
    // ---- setup (untimed): n files of rescanSize bytes in nDirs directories
    let t = now();
    const enc = new TextEncoder();
    const data = new Uint8Array(params.rescanSize);
    const perDir = Math.ceil(n / nDirs);
    for (let d = 0; d < nDirs; d++) {
      const dir = join(tree, `d${String(d).padStart(4, "0")}`);
      Deno.mkdirSync(dir, { recursive: true });
      for (let i = d * perDir; i < Math.min(n, (d + 1) * perDir); i++) {
        data.fill(0x2e);
        data.set(enc.encode(`rescan file ${i}\n`).subarray(0, data.length));
        Deno.writeFileSync(join(dir, `f${String(i).padStart(6, "0")}`), data);
      }
      if (d % 50 === 49) {
        sampleRss();
        await sleep(0); // lets a Ctrl-C be seen
        stopIfInterrupted();
      }
    }
    const createSeconds = (now() - t) / 1000;
    await syncDisks();
    log(
      `made ${n} files of ${params.rescanSize} B in ${nDirs} directories in ${
        createSeconds.toFixed(1)
      } s`,
    );

    // ---- the merge base, as the client builds it: a first scan hashes every file
    t = now();
    const first = await scan(new DenoFs(tree), new Map());
    const firstScanSeconds = (now() - t) / 1000;
    const base = new Map<string, BaseEntry>();
    let firstScanHashed = 0;
    for (const [path, e] of first) {
      if (e.kind === "file" && e.hash !== undefined) firstScanHashed++;
      // directories carry no hash: "" and [] as the client's own base entries of directories
      base.set(path, { ...e, version: 1, hash: e.hash ?? "", chunks: e.chunks ?? [] });
    }
    if (firstScanHashed !== n) {
      throw new Error(`rescan setup: the first scan hashed ${firstScanHashed} of ${n} files`);
    }
    log(`rescan first scan (hashing) ${fmtS(firstScanSeconds)}`);
    stopIfInterrupted();

    // ---- timed: scan(new DenoFs(root), base) x3, each followed by the find floor
    const find = await which("find");
    const runsSeconds: number[] = [];
    const filesReturned: number[] = [];
    const rehashed: number[] = [];
    const findRuns: number[] = [];
    let findError: string | null = find ? null : "find: not installed";
    for (let r = 0; r < 3; r++) {
      sampleRss();
      const t0 = now();
      const got = await scan(new DenoFs(tree), base);
      runsSeconds.push((now() - t0) / 1000);
      sampleRss();
      let files = 0;
      let hashed = 0;
      for (const e of got.values()) {
        if (e.kind !== "file") continue;
        files++;
        if (e.hash !== undefined) hashed++;
      }
      filesReturned.push(files);
      rehashed.push(hashed);
      log(`rescan run ${r + 1}     ${fmtS(runsSeconds[r]!)}, ${files} files, ${hashed} rehashed`);
      stopIfInterrupted();
      if (find && !findError) {
        // GNU find stats every file in C: the floor for a stat-only pass over the tree
        // (stdout to /dev/null, as `> /dev/null`; timed from spawn to exit like cp -a)
        const t0 = now();
        const f = await new Deno.Command(find, {
          args: [tree, "-type", "f", "-printf", "%s %T@ %i\\n"],
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).output();
        const seconds = (now() - t0) / 1000;
        if (f.code !== 0) {
          const err = new TextDecoder().decode(f.stderr).trim().slice(-200);
          findError = `find failed (${f.code}): ${err}`;
        } else {
          findRuns.push(seconds);
          log(`rescan find ${r + 1}    ${fmtS(seconds)}`);
        }
      }
      stopIfInterrupted();
    }
    const medianSeconds = median(runsSeconds);
    res.rescan = {
      where:
        "bench process: scan(new DenoFs(root), base) of lib/client/scanner.ts, the product's full pass",
      files: n,
      dirs: nDirs,
      fileBytes: params.rescanSize,
      createSeconds,
      firstScanSeconds,
      firstScanHashed,
      runsSeconds,
      medianSeconds,
      maxSeconds: Math.max(...runsSeconds),
      filesPerS: n / medianSeconds,
      filesReturned,
      rehashed,
      find: findError !== null ? { error: findError } : {
        runsSeconds: findRuns,
        medianSeconds: median(findRuns),
        maxSeconds: Math.max(...findRuns),
      },
      peakRssBytes: peakRss,
    };
  } finally {
    clearInterval(timer);
  }
}

// ---------------------------------------------------------------- table

function table(res: Results): Row[] {
  const rows: Row[] = [];
  const quick = res.params.mode === "quick";
  const pf = (ok: boolean | null): Row["result"] => ok === null ? "n/a" : ok ? "pass" : "miss";
  const ratio = (a: number, b: number | undefined) => b ? `${(a / b).toFixed(2)}x` : "-";
  const size = fmtBytes(res.params.bigBytes).replace(".00", "");
  const st = res.syncthing && !isErr(res.syncthing) ? res.syncthing : null;
  const peer = (r: PeerRun | { error: string } | undefined): PeerRun | null =>
    r && !isErr(r) ? r : null;
  const stCell = (r: PeerRun | { error: string } | undefined) =>
    r ? (isErr(r) ? "FAILED" : fmtS(r.seconds)) : "-";
  if (res.big) {
    const { ours, cp, rsync, durable } = res.big;
    const cps = cp ? `${fmtS(cp.seconds)} (${cp.mbPerS.toFixed(0)} MB/s)` : "-";
    const dur = durable ? `${fmtS(durable.seconds)} (${durable.mbPerS.toFixed(0)} MB/s)` : "-";
    const rss = rsync ? `${fmtS(rsync.seconds)} (${rsync.mbPerS.toFixed(0)} MB/s)` : "-";
    const stBig = peer(st?.big);
    if (ours && !isErr(ours)) {
      rows.push({
        workload: `${size} file`,
        ours: `${fmtS(ours.seconds)} (${ours.mbPerS.toFixed(0)} MB/s)`,
        cp: cps,
        durable: dur,
        rsync: rss,
        syncthing: stCell(st?.big),
        ratio: ratio(ours.seconds, rsync?.seconds),
        target: stBig ? "<= Syncthing" : "<= 2x rsync",
        result: pf(
          stBig ? ours.seconds <= stBig.seconds : rsync ? ours.seconds <= 2 * rsync.seconds : null,
        ),
      });
      rows.push({
        workload: `${size} file: CPU s/GiB, all`,
        ours: ours.cpuPerGiB.sum.toFixed(2),
        cp: "-",
        rsync: "-",
        syncthing: stBig ? stBig.cpuPerGiB.sum.toFixed(2) : "-",
        ratio: "-",
        target: "<= 5",
        result: pf(ours.cpuPerGiB.sum <= 5),
      });
    } else if (ours) {
      rows.push(errRow(`${size} file`, ours.error, cps, rss, "<= 2x rsync"));
    }
  }
  if (res.small) {
    const { ours, cp, rsync, durable } = res.small;
    const n = res.params.smallFiles;
    const limit = 5.7 * n / 10000; // scaled in quick mode
    const target = `<= 2x rsync, < ${limit.toFixed(2)} s`;
    const cps = cp ? `${fmtS(cp.seconds)} (${cp.filesPerS.toFixed(0)} f/s)` : "-";
    const rss = rsync ? `${fmtS(rsync.seconds)} (${rsync.filesPerS.toFixed(0)} f/s)` : "-";
    const wl = `${n.toLocaleString("en-US")} x 4 KiB`;
    if (ours && !isErr(ours)) {
      rows.push({
        workload: wl,
        ours: `${fmtS(ours.seconds)} (${ours.filesPerS.toFixed(0)} f/s)`,
        cp: cps,
        durable: durable ? `${fmtS(durable.seconds)} (${durable.filesPerS.toFixed(0)} f/s)` : "-",
        rsync: rss,
        syncthing: stCell(st?.small),
        ratio: ratio(ours.seconds, rsync?.seconds),
        target,
        result: pf(
          ours.seconds < limit && (rsync ? ours.seconds <= 2 * rsync.seconds : true),
        ),
      });
    } else if (ours) rows.push(errRow(wl, ours.error, cps, rss, target));
  }
  if (res.edit) {
    const { ours, rsync } = res.edit;
    const rsWire = rsync ? rsync.sent + rsync.received : undefined;
    if (ours && !isErr(ours)) {
      rows.push({
        workload: "1 MiB edit: time",
        ours: fmtS(ours.seconds),
        cp: "-",
        rsync: rsync ? fmtS(rsync.seconds) : "-",
        syncthing: stCell(st?.edit),
        ratio: ratio(ours.seconds, rsync?.seconds),
        target: "<= rsync time",
        result: pf(rsync ? ours.seconds <= rsync.seconds : null),
      });
      rows.push({
        workload: "1 MiB edit: wire",
        ours: fmtBytes(ours.wire.total),
        cp: "-",
        rsync: rsWire !== undefined ? fmtBytes(rsWire) : "-",
        syncthing: peer(st?.edit) ? `${fmtBytes(peer(st?.edit)!.sentBytes)} sent` : "-",
        ratio: ratio(ours.wire.total, rsWire),
        target: "<= 4 MiB",
        result: pf(ours.wire.total <= 4 * MiB),
      });
    } else if (ours) {
      rows.push(errRow("1 MiB edit", ours.error, "-", rsync ? fmtS(rsync.seconds) : "-", "-"));
    }
  }
  if (res.latency) {
    const l = res.latency;
    if (!isErr(l)) {
      rows.push({
        workload: `latency median (${l.samplesMs.length + l.timeouts}x)`,
        ours: `${l.medianMs.toFixed(0)} ms`,
        cp: "-",
        rsync: "-",
        ratio: "-",
        target: "<= 300 ms",
        result: pf(l.medianMs <= 300),
      });
      rows.push({
        workload: "latency max",
        ours: l.timeouts ? `${l.timeouts} timeouts` : `${l.maxMs.toFixed(0)} ms`,
        cp: "-",
        rsync: "-",
        ratio: "-",
        target: "<= 1000 ms",
        result: pf(l.maxMs <= 1000),
      });
    } else rows.push(errRow("latency", l.error, "-", "-", "<= 300 / 1000 ms"));
  }
  if (res.move?.ours) {
    const o = res.move.ours;
    if (!isErr(o)) {
      rows.push({
        workload: `move ${size} file: wire`,
        ours: fmtBytes(o.wire.total),
        cp: "-",
        rsync: "-",
        ratio: "-",
        target: "< 1 MiB",
        result: pf(o.wire.total < MiB),
      });
      rows.push({
        workload: `move ${size} file: time`,
        ours: fmtS(o.seconds),
        cp: "-",
        rsync: "-",
        ratio: "-",
        target: "(info)",
        result: "-",
      });
    } else rows.push(errRow(`move ${size} file`, o.error, "-", "-", "< 1 MiB"));
  }
  if (res.rescan) {
    const r = res.rescan;
    const limit = 5 * r.files / 100000; // scaled in quick mode
    const target = quick
      ? `<= ${limit.toFixed(2)} s, 0 rehashed`
      : `few seconds (<= ${limit.toFixed(0)} s), 0 rehashed`;
    const rehashed = Math.max(...r.rehashed);
    const complete = r.filesReturned.every((x) => x === r.files);
    rows.push({
      workload: `rescan ${r.files.toLocaleString("en-US")} unchanged`,
      ours: `${fmtS(r.medianSeconds)} (${r.filesPerS.toFixed(0)} f/s)` +
        (rehashed ? `, ${rehashed} rehashed` : "") + (complete ? "" : ", files missing"),
      cp: isErr(r.find) ? "find: -" : `find: ${fmtS(r.find.medianSeconds)}`,
      rsync: "-",
      ratio: "-",
      target,
      result: pf(r.medianSeconds <= limit && rehashed === 0 && complete),
    });
  }
  if (res.join) {
    const j = res.join;
    if (!isErr(j)) {
      const wl = `join: 3rd device, ${j.files.toLocaleString("en-US")} files`;
      rows.push({
        workload: `${wl}: time`,
        ours: `${fmtS(j.seconds)} (${fmtBytes(j.bytes)})`,
        cp: "-",
        rsync: "-",
        ratio: "-",
        target: "(info)",
        result: "-",
      });
      rows.push({
        workload: `${wl}: peak RSS C`,
        ours: `${(j.vmHWM / 1e6).toFixed(0)} MB`,
        cp: "-",
        rsync: "-",
        ratio: "-",
        target: "<= 200 MB",
        result: pf(j.vmHWM <= RSS_LIMIT),
      });
    } else rows.push(errRow("join: 3rd device", j.error, "-", "-", "<= 200 MB"));
  }
  if (res.huge) {
    const h = res.huge;
    const hs = fmtBytes(res.params.hugeBytes).replace(".00", "");
    if (!isErr(h)) {
      rows.push({
        workload: `${hs} file: time`,
        ours: `${fmtS(h.seconds)} (${h.mbPerS.toFixed(0)} MB/s)`,
        cp: "-",
        rsync: "-",
        ratio: "-",
        target: "(info)",
        result: "-",
      });
      for (const [name, b] of Object.entries(h.sampledMaxRss)) {
        rows.push({
          workload: `${hs} file: peak RSS ${name === "server" ? "server" : `client ${name}`}`,
          ours: `${(b / 1e6).toFixed(0)} MB`,
          cp: "-",
          rsync: "-",
          ratio: "-",
          target: "<= 200 MB",
          result: pf(b <= RSS_LIMIT),
        });
      }
    } else rows.push(errRow(`${hs} file`, h.error, "-", "-", "<= 200 MB"));
  }
  for (const [name, r] of Object.entries(res.rss ?? {})) {
    rows.push({
      workload: `peak RSS ${name === "server" ? "server" : `client ${name}`}`,
      ours: `${(r.vmHWM / 1e6).toFixed(0)} MB`,
      cp: "-",
      rsync: "-",
      ratio: "-",
      target: "<= 200 MB",
      result: pf(r.vmHWM <= RSS_LIMIT),
    });
  }
  if (quick) {
    for (const r of rows) if (r.result === "pass" || r.result === "miss") r.target += " *";
  }
  return rows;
}

function errRow(workload: string, error: string, cp: string, rsync: string, target: string): Row {
  return { workload, ours: `FAILED: ${error}`, cp, rsync, ratio: "-", target, result: "miss" };
}

function printTable(res: Results): void {
  const rows = res.table ?? [];
  const head: Row = {
    workload: "workload",
    ours: res.storageDetail ? `ours (${res.storageDetail.label})` : "ours",
    cp: "cp -a",
    durable: "durable floor",
    rsync: "rsync",
    syncthing: "syncthing",
    ratio: "vs rsync",
    target: "target",
    result: "-",
  };
  const keys = [
    "workload",
    "ours",
    "cp",
    "durable",
    "rsync",
    "syncthing",
    "ratio",
    "target",
    "result",
  ] as const;
  const all = [head, ...rows].map((r) =>
    keys.map((k) => (r === head && k === "result" ? "pass/miss" : r[k] ?? "-"))
  );
  const w = keys.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(w[i]!)).join(" | ") + " |";
  const m = res.machine;
  console.log("");
  console.log(
    `Cloud Sync benchmark, ${res.params.mode} mode, ${res.date} — ${m.nproc} CPU (${m.cpuModel}), ${
      (Number(m.memTotalBytes) / 2 ** 30).toFixed(1)
    } GiB RAM, deno ${m.deno}, ${m.rsync ?? "rsync: not installed"}`,
  );
  console.log(line(all[0]!));
  console.log("|" + w.map((x) => "-".repeat(x + 2)).join("|") + "|");
  for (const r of all.slice(1)) console.log(line(r));
  if (res.params.mode === "quick") {
    console.log(
      "* quick mode: smaller data, targets only indicative (10k-file and rescan limits scaled)",
    );
  }
  // details: wire bytes per leg
  const wires = [
    ["big", res.big?.ours],
    ["small", res.small?.ours],
    ["edit", res.edit?.ours],
    ["move", res.move?.ours],
  ] as const;
  for (const [n, o] of wires) {
    if (!o || isErr(o)) continue;
    const wv = o.wire;
    const changed = wv.connChanged?.length
      ? `; connection of client ${
        wv.connChanged.join(", ")
      } changed meanwhile: may miss a few bytes`
      : "";
    console.log(
      `wire ${n.padEnd(5)}: A up ${fmtBytes(wv.aUp)}, A down ${fmtBytes(wv.aDown)}, B up ${
        fmtBytes(wv.bUp)
      }, B down ${fmtBytes(wv.bDown)} (bench process CPU meanwhile ${
        o.benchCpuS.toFixed(2)
      } s${changed})`,
    );
  }
  for (const [n, o] of wires) {
    if (!o || isErr(o)) continue;
    const parts = Object.entries(o.productCpu).map(([name, c]) =>
      `${name} ${c.user.toFixed(2)} user + ${c.sys.toFixed(2)} sys`
    );
    console.log(`cpu  ${n.padEnd(5)}: ${parts.join(", ")} (s, t0 until B matched)`);
  }
  const perGiB = (c: { perProcess: Record<string, number>; sum: number }) =>
    Object.entries(c.perProcess).map(([n, x]) => `${n} ${x.toFixed(2)}`).join(", ") +
    `; sum ${c.sum.toFixed(2)}`;
  if (res.big?.ours && !isErr(res.big.ours)) {
    console.log(`cpu/GiB big  : ${perGiB(res.big.ours.cpuPerGiB)} (s per GiB of the file)`);
  }
  if (res.small?.ours && !isErr(res.small.ours)) {
    const c = cpuPerGiB(res.small.ours.productCpu, res.params.smallFiles * res.params.smallSize);
    console.log(`cpu/GiB small: ${perGiB(c)} (s per GiB of file content)`);
  }
  if (res.syncthing) {
    const s = res.syncthing;
    if (isErr(s)) console.log(`syncthing  : FAILED: ${s.error}`);
    else {
      for (const n of ["big", "small", "edit"] as const) {
        const r = s[n];
        if (!r) continue;
        if (isErr(r)) {
          console.log(`syncthing ${n.padEnd(5)}: FAILED: ${r.error}`);
          continue;
        }
        const parts = Object.entries(r.cpu).map(([name, c]) =>
          `${name} ${c.user.toFixed(2)} user + ${c.sys.toFixed(2)} sys`
        );
        console.log(
          `syncthing ${n.padEnd(5)}: ${fmtS(r.seconds)} (A's scan ${fmtS(r.scanSeconds)}), cpu ${
            parts.join(", ")
          }; cpu/GiB ${perGiB(r.cpuPerGiB)}; A sent ${fmtBytes(r.sentBytes)} (${s.version})`,
        );
      }
    }
  }
  if (res.only.some((n) => PRODUCT_NAMES.includes(n))) {
    console.log(`wire bytes counted by: ${res.params.wireMethodDetail}`);
  }
  const er = res.edit?.rsync;
  if (er) {
    console.log(
      `rsync edit : sent ${er.sent} B, received ${er.received} B, literal ${er.literal} B, matched ${er.matched} B`,
    );
  }
  for (const [name, r] of Object.entries(res.rss ?? {})) {
    console.log(
      `rss ${name.padEnd(6)}: VmHWM ${(r.vmHWM / 1e6).toFixed(1)} MB, max sampled VmRSS ${
        (r.sampledMaxVmRSS / 1e6).toFixed(1)
      } MB (pid ${r.pid})`,
    );
  }
  if (!isErr(res.latency) && res.latency) {
    console.log(`latency ms : ${res.latency.samplesMs.map((x) => x.toFixed(0)).join(" ")}`);
  }
  if (res.rescan) {
    const r = res.rescan;
    const list = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(" / ");
    console.log(
      `rescan     : scan(new DenoFs(root), base) of lib/client/scanner.ts in the bench process (the product's ` +
        `full pass is this scan; no server or client involved), ${
          r.files.toLocaleString("en-US")
        } files of ${r.fileBytes} B in ${r.dirs} dirs`,
    );
    console.log(
      `rescan     : runs ${list(r.runsSeconds)} s (median ${fmtS(r.medianSeconds)}, max ${
        fmtS(r.maxSeconds)
      }), rehashed ${r.rehashed.join(" / ")}, files returned ${
        r.filesReturned.join(" / ")
      }; first scan (hashing) ${fmtS(r.firstScanSeconds)}; bench process peak RSS ${
        (r.peakRssBytes / 1e6).toFixed(0)
      } MB (sampled)`,
    );
    console.log(
      isErr(r.find)
        ? `rescan find: ${r.find.error}`
        : `rescan find: floor in the cp -a column: find ROOT -type f -printf '%s %T@ %i\\n' ` +
          `> /dev/null, runs ${list(r.find.runsSeconds)} s (median ${
            fmtS(r.find.medianSeconds)
          }, max ${fmtS(r.find.maxSeconds)})`,
    );
  }
  if (res.storageDetail) {
    for (const l of describeStorage(res.storageDetail, res.params.bigBytes)) console.log(l);
  }
  if (res.error) console.log(`RUN FAILED: ${res.error}`);
  console.log(`total ${(res.totalSeconds ?? 0).toFixed(0)} s`);
}

if (import.meta.main) Deno.exit(await main());
