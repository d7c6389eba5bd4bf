/**
 * End-to-end test harness: runs the real `server.ts` and `client.ts` as child processes on
 * 127.0.0.1, reads their output, snapshots folders, and waits for conditions with deadlines
 * (never fixed sleeps).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseTask } from "../../scripts/install.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** The date and time a client puts before each log line when its output is not a terminal. */
export const LOG_STAMP_RE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /;

/** Options of {@link Proc}. */
export interface ProcOptions {
  /** `args` is the whole command line, not arguments of `deno run --allow-all`. */
  raw?: boolean;
}

/**
 * A child process whose output lines are collected: `lines` without the client's log stamp
 * (tests match what a line says), `raw` as printed.
 */
export class Proc {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly raw: string[] = [];
  readonly #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly #done: Promise<void>;
  #status: Deno.CommandStatus | null = null;

  /** `as`: run as that unprivileged user (see {@link unprivileged}) instead of as this one. */
  constructor(
    readonly name: string,
    args: string[],
    env: Record<string, string> = {},
    as?: Unprivileged,
    opts: ProcOptions = {},
  ) {
    const deno = opts.raw ? args : [Deno.execPath(), "run", "--allow-all", ...args];
    const [cmd, ...rest] = as ? as.wrap(deno) : deno;
    this.child = new Deno.Command(cmd!, {
      args: rest,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...env },
    }).spawn();
    this.#done = Promise.all([this.#pump(this.child.stdout), this.#pump(this.child.stderr)]).then(
      () => {},
    );
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      rest += dec.decode(chunk, { stream: true });
      let i;
      while ((i = rest.indexOf("\n")) >= 0) {
        this.#line(rest.slice(0, i));
        rest = rest.slice(i + 1);
      }
    }
    if (rest) this.#line(rest);
  }

  #line(raw: string): void {
    this.raw.push(raw);
    const line = raw.replace(LOG_STAMP_RE, "");
    this.lines.push(line);
    if (Deno.env.get("E2E_VERBOSE")) console.error(`[${this.name}] ${line}`);
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i]!;
      const m = line.match(w.re);
      if (m) {
        this.#waiters.splice(i, 1);
        w.resolve(m);
      }
    }
  }

  /** Resolves with the first output line (past or future) matching `re`. */
  waitForLine(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    for (const l of this.lines) {
      const m = l.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `${this.name}: no line matching ${re} within ${timeoutMs} ms. Output:\n${this.output()}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** Everything the process printed so far. */
  output(): string {
    return this.lines.join("\n");
  }

  /** Waits for the process to exit by itself. */
  async exited(): Promise<Deno.CommandStatus> {
    if (!this.#status) {
      this.#status = await this.child.status;
      await this.#done;
    }
    return this.#status;
  }

  /**
   * Waits for the process to exit by itself and returns its exit code; one still running after
   * `timeoutMs` is stopped and the wait fails with its output (a test never hangs on it).
   */
  async exitCode(timeoutMs = 20_000): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<null>((r) => timer = setTimeout(() => r(null), timeoutMs));
    try {
      const status = await Promise.race([this.exited(), late]);
      if (status) return status.code;
    } finally {
      clearTimeout(timer);
    }
    await this.stop();
    throw new Error(`${this.name}: still running after ${timeoutMs} ms. Output:\n${this.output()}`);
  }

  /**
   * Stops the process (SIGTERM by default; SIGKILL simulates a crash) and reaps it. A process
   * still running 10 s after SIGTERM gets it again (the product then exits at once), then SIGKILL
   * after 10 s more: a test never hangs on a process that does not stop.
   */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    const send = (s: Deno.Signal) => {
      try {
        this.child.kill(s);
      } catch { /* already exited */ }
    };
    if (this.#status) return this.#status;
    send(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const escalate = (after: Deno.Signal, then?: Deno.Signal) => {
      timer = setTimeout(() => {
        console.error(`${this.name} still running 10 s after ${signal}: sending ${after}`);
        send(after);
        if (then) escalate(then);
      }, 10_000);
    };
    if (signal !== "SIGKILL") escalate(signal, "SIGKILL");
    try {
      return await this.exited();
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A way to run a command as an unprivileged user (root's permission checks do not apply). */
export interface Unprivileged {
  uid: number;
  gid: number;
  /** The command line that runs `argv` as that user. */
  wrap(argv: string[]): string[];
}

/**
 * Runs commands as `nobody` when this process is root and `setpriv` exists, with a copy of Deno's
 * npm cache that user can read (under `dir`, which must be removed by the caller). Returns a
 * reason instead when privileges cannot be dropped here.
 */
export async function unprivileged(dir: string): Promise<Unprivileged | string> {
  if (Deno.uid() !== 0) return "not running as root: cannot switch to another user";
  const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!setpriv) return "setpriv is not installed";
  const home = Deno.env.get("DENO_DIR") ??
    join(Deno.env.get("HOME") ?? "/root", ".cache", "deno");
  const denoDir = join(dir, "deno-dir");
  await Deno.mkdir(denoDir, { recursive: true });
  const cp = await new Deno.Command("cp", { args: ["-r", join(home, "npm"), denoDir] }).output();
  if (!cp.success) return `cannot copy Deno's npm cache from ${home} for another user`;
  const uid = 65534;
  const gid = 65534;
  await new Deno.Command("chown", { args: ["-R", `${uid}:${gid}`, dir] }).output();
  return {
    uid,
    gid,
    wrap: (argv) => [
      setpriv,
      `--reuid=${uid}`,
      `--regid=${gid}`,
      "--clear-groups",
      "env",
      `DENO_DIR=${denoDir}`,
      `HOME=${denoDir}`,
      argv[0]!,
      argv[1]!,
      "--cached-only",
      ...argv.slice(2),
    ],
  };
}

/** A running server process. */
export class ServerProc extends Proc {
  port = 0;

  /** `extra`: more arguments (e.g. `--meta URL`); `env`: more environment variables. */
  static async start(
    dataDir: string,
    port = 0,
    extra: string[] = [],
    env: Record<string, string> = {},
  ): Promise<ServerProc> {
    const p = new ServerProc("server", [
      "server.ts",
      String(port),
      "--host",
      "127.0.0.1",
      "--data",
      dataDir,
      ...extra,
    ], env);
    const m = await p.waitForLine(/listening on 127\.0\.0\.1:(\d+)/);
    p.port = Number(m[1]);
    return p;
  }
}

/** Starts a client process on `folder`. */
export function startClient(
  name: string,
  port: number,
  folder: string,
  opts: {
    serial?: string;
    seconds?: number;
    env?: Record<string, string>;
    as?: Unprivileged;
    /** More options (e.g. `-v`). */
    args?: string[];
  } = {},
): Proc {
  const args = ["client.ts", "127.0.0.1", String(port), folder, String(opts.seconds ?? 2)];
  if (opts.serial) args.push(opts.serial);
  args.push("--name", name, ...(opts.args ?? []));
  return new Proc(name, args, opts.env, opts.as);
}

/** Starts a registering client and returns it with the account's serial code. */
export async function startFirstClient(
  name: string,
  port: number,
  folder: string,
  env?: Record<string, string>,
  args?: string[],
): Promise<[Proc, string]> {
  const c = startClient(name, port, folder, { ...(env ? { env } : {}), ...(args ? { args } : {}) });
  const m = await c.waitForLine(/^Serial code: ([0-9A-Z-]+)$/);
  return [c, m[1]!];
}

/** One item of a folder snapshot. */
export interface Item {
  kind: "file" | "dir";
  sha?: string;
  exec?: boolean;
  mtime?: number;
}

/** Snapshot of a folder (without `.cloudsync/`): path -> kind, content hash, exec bit, mtime. */
export async function tree(root: string): Promise<Map<string, Item>> {
  const out = new Map<string, Item>();
  const walk = async (dir: string, prefix: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (prefix === "" && e.name === ".cloudsync") continue;
      const path = prefix + e.name;
      const full = join(dir, e.name);
      if (e.isDirectory) {
        out.set(path, { kind: "dir" });
        await walk(full, path + "/");
      } else if (e.isFile) {
        const st = await Deno.stat(full);
        const h = createHash("sha256");
        const f = await Deno.open(full);
        try {
          for await (const c of f.readable) h.update(c);
        } catch { /* readable closes the file */ }
        out.set(path, {
          kind: "file",
          sha: h.digest("hex"),
          exec: ((st.mode ?? 0) & 0o100) !== 0,
          mtime: Math.floor((st.mtime?.getTime() ?? 0) / 1000),
        });
      }
    }
  };
  try {
    await walk(root, "");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

/** Human-readable difference between two snapshots ("" when equal). */
export function diffTrees(a: Map<string, Item>, b: Map<string, Item>, mtimes = false): string {
  const lines: string[] = [];
  for (const [p, x] of a) {
    const y = b.get(p);
    if (!y) lines.push(`only in first: ${p}`);
    else if (
      x.kind !== y.kind || x.sha !== y.sha || x.exec !== y.exec || (mtimes && x.mtime !== y.mtime)
    ) {
      lines.push(`differs: ${p} ${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
    }
  }
  for (const p of b.keys()) if (!a.has(p)) lines.push(`only in second: ${p}`);
  return lines.join("\n");
}

/** Waits until `check` returns true, polling; throws with `describe()` after the deadline. */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  describe: () => Promise<string> | string,
  timeoutMs = 20_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  let delay = 20;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
  throw new Error(`Condition not met within ${timeoutMs} ms: ${await describe()}`);
}

/** Waits until every folder has the same tree as the first one (byte for byte). */
export async function waitConverged(
  folders: string[],
  timeoutMs = 20_000,
  procs: Proc[] = [],
): Promise<void> {
  let last = "";
  await waitFor(
    async () => {
      const first = await tree(folders[0]!);
      for (const f of folders.slice(1)) {
        last = diffTrees(first, await tree(f));
        if (last) return false;
      }
      return true;
    },
    () => `${last}\n${procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n")}`,
    timeoutMs,
  );
}

/** Waits until `folder` has `path` with `content`. */
export async function waitForContent(
  folder: string,
  path: string,
  content: string,
  timeoutMs = 20_000,
): Promise<void> {
  let seen = "";
  await waitFor(
    async () => {
      try {
        seen = await Deno.readTextFile(join(folder, path));
        return seen === content;
      } catch {
        seen = "(missing)";
        return false;
      }
    },
    () => `${folder}/${path} is ${JSON.stringify(seen.slice(0, 100))}`,
    timeoutMs,
  );
}

/** A temporary directory removed by `using`. */
export async function tempDir(): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix: "cloudsync-e2e-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Writes a file, creating parent directories. */
export async function put(root: string, path: string, data: string | Uint8Array): Promise<void> {
  const full = join(root, path);
  await Deno.mkdir(join(full, ".."), { recursive: true });
  if (typeof data === "string") await Deno.writeTextFile(full, data);
  else await Deno.writeFile(full, data);
}

/** Whether `path` exists (a symlink counts, followed or not). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs the admin command `cloud-server ARGS --data DATA` to its end: exit code and output. */
export async function admin(
  data: string,
  ...args: string[]
): Promise<{ code: number; output: string }> {
  const p = new Proc(args[0] ?? "admin", ["server.ts", ...args, "--data", data]);
  const code = await p.exitCode();
  return { code, output: p.output() };
}

/** Creates a file whose name is the raw byte 0xFF (not UTF-8) in `dir`, through the shell. */
export function createNonUtf8File(dir: string): void {
  const r = new Deno.Command("sh", {
    args: ["-c", `printf 'x' > "$1/bad-$(printf '\\377')-name"`, "sh", dir],
  }).outputSync();
  if (r.code !== 0) throw new Error(new TextDecoder().decode(r.stderr));
}

/** `n` random bytes (getRandomValues gives at most 64 KiB a call). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** What a one-off command printed, and its exit code. */
export interface CommandRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** What `cloud-client status FOLDER ARGS...` printed, and its exit code. */
export interface StatusRun extends CommandRun {
  /** stdout as JSON, when `--json` was given. */
  json: Record<string, unknown> | null;
}

/** The `deno run` flags of a task of `deno.json` (its permissions and V8 flags). */
export function taskFlags(task: "client" | "server"): string[] {
  const config = JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json")));
  return parseTask(config.tasks[task]).flags;
}

/**
 * Runs a one-off `cloud-client` command (`status`, `history`, `restore`, ...) to its end, with a
 * deadline, with the permissions of `deno task client` (what an installed command has).
 * `env` adds environment variables (e.g. `TZ`); `as` runs it as that unprivileged user.
 */
export async function clientCommand(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; as?: Unprivileged } = {},
): Promise<CommandRun> {
  const argv = [Deno.execPath(), "run", ...taskFlags("client"), "client.ts"];
  const [cmd, ...rest] = opts.as ? opts.as.wrap(argv) : argv;
  const child = new Deno.Command(cmd!, {
    args: [...rest, ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...opts.env },
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, opts.timeoutMs ?? 60_000);
  try {
    const r = await child.output();
    const dec = new TextDecoder();
    const out = { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
    if (Deno.env.get("E2E_VERBOSE")) console.error(`[cloud-client ${args.join(" ")}]`, out);
    return out;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `cloud-client status FOLDER ...args` (see {@link clientCommand}). */
export async function clientStatus(
  folder: string,
  args: string[] = ["--json"],
  timeoutMs = 60_000,
  as?: Unprivileged,
): Promise<StatusRun> {
  const r = await clientCommand(["status", folder, ...args], { timeoutMs, ...(as ? { as } : {}) });
  let json: Record<string, unknown> | null = null;
  if (args.includes("--json")) {
    try {
      json = JSON.parse(r.stdout);
    } catch { /* not JSON: the caller's assertion says so */ }
  }
  return { ...r, json };
}
