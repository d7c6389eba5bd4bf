/**
 * Child processes of the benchmark (the product's server and clients): spawn with
 * `Deno.execPath()`, keep their output (last lines in memory, everything in a log file), wait for
 * a line, sample memory from /proc, stop them by their own handle (TERM, then KILL).
 *
 * @module
 */

import { DeadlineError, now, sleep } from "./util.ts";

/** The product's own permission set (deno.json tasks "server" / "client"). */
/** The stamp of a line that does not go to a terminal (`2026-12-01 13:04:05 `). */
const LOG_STAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /;

/** The client's `deno run` flags (deno.json task "client"). */
export const PRODUCT_PERMS = [
  "--v8-flags=--max-semi-space-size=2",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];

/**
 * The server's `deno run` flags (deno.json task "server"): the client's, and V8's
 * `--optimize-for-size` (5,000 idle connections: 286 MB instead of 455 MB, for about 6 % more
 * CPU per GiB on the server; see README "Running at scale").
 */
export const SERVER_PERMS = [
  "--v8-flags=--max-semi-space-size=2,--optimize-for-size",
  ...PRODUCT_PERMS.slice(1),
];

/**
 * Profiling: adds V8 flags to the product's `--v8-flags` (e.g. `--perf-basic-prof`, so that `perf`
 * names JIT-compiled functions), for the benchmark's `--perf` option.
 */
export function addProductV8Flags(flags: string): void {
  PRODUCT_PERMS[0] = `${PRODUCT_PERMS[0]},${flags}`;
  SERVER_PERMS[0] = `${SERVER_PERMS[0]},${flags}`;
}

/** The product's environment (deno.json tasks "server" / "client": glibc malloc settings). */
export const PRODUCT_ENV: Record<string, string> = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "262144",
};

const KEEP_LINES = 400;

/** One running child. */
export class Proc {
  readonly name: string;
  readonly pid: number;
  readonly lines: string[] = [];
  exit: Deno.CommandStatus | null = null;
  readonly #child: Deno.ChildProcess;
  readonly #log: Deno.FsFile;
  readonly #done: Promise<unknown>;
  readonly #enc = new TextEncoder();

  constructor(name: string, cmd: string, args: string[], cwd: string, logPath: string) {
    this.name = name;
    this.#log = Deno.openSync(logPath, { write: true, create: true, append: true });
    this.#child = new Deno.Command(cmd, {
      args,
      cwd,
      env: PRODUCT_ENV,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#done = Promise.all([
      this.#drain(this.#child.stdout, ""),
      this.#drain(this.#child.stderr, "! "),
      this.#child.status.then((s) => {
        this.exit = s;
      }),
    ]);
  }

  async #drain(stream: ReadableStream<Uint8Array>, mark: string): Promise<void> {
    let rest = "";
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        rest += text;
        let i;
        while ((i = rest.indexOf("\n")) >= 0) {
          this.#line(mark + rest.slice(0, i));
          rest = rest.slice(i + 1);
        }
      }
    } catch {
      // stream cut when the child is killed
    }
    if (rest) this.#line(mark + rest);
  }

  #line(raw: string): void {
    // `lines` as the program says them: without the log stamp both programs put on lines that do
    // not go to a terminal (the log file keeps them).
    const l = raw.replace(LOG_STAMP, "");
    this.lineCount++;
    this.lines.push(l);
    if (this.lines.length > KEEP_LINES) this.lines.splice(0, this.lines.length - KEEP_LINES);
    try {
      this.#log.writeSync(this.#enc.encode(raw + "\n"));
    } catch {
      // log file closed during shutdown
    }
  }

  /** Throws if the child has exited. */
  assertAlive(): void {
    if (this.exit) {
      throw new Error(
        `${this.name} exited (code ${this.exit.code}, signal ${this.exit.signal}); last output:\n  ` +
          this.tail(15).join("\n  "),
      );
    }
  }

  /** Number of output lines so far (to wait for lines after a point). */
  lineCount = 0;

  /** Waits until an output line (number `from` or later) matches `re`; returns the match. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const deadline = now() + timeoutMs;
    for (;;) {
      const first = this.lineCount - this.lines.length;
      for (let i = Math.max(0, from - first); i < this.lines.length; i++) {
        const m = this.lines[i]!.match(re);
        if (m) return m;
      }
      this.assertAlive();
      if (now() > deadline) {
        throw new DeadlineError(`${this.name}: no line matching ${re} within ${timeoutMs} ms`);
      }
      await sleep(20);
    }
  }

  /** Last `n` output lines. */
  tail(n: number): string[] {
    return this.lines.slice(-n);
  }

  /** CPU seconds (all threads) the child used so far, from /proc; null once it is gone. */
  async cpu(): Promise<Cpu | null> {
    return await readCpu(this.pid);
  }

  /** VmRSS and VmHWM (bytes) of the child from /proc; null once it is gone. */
  async memory(): Promise<Memory | null> {
    return (await readMemory([this.pid])).get(this.pid) ?? null;
  }

  /** Sends `sig` (SIGKILL: a crash) and waits until the child is gone; keeps the log open. */
  async kill(sig: Deno.Signal = "SIGKILL"): Promise<void> {
    if (this.exit) return;
    try {
      this.#child.kill(sig);
    } catch {
      // already gone
    }
    await this.#child.status.catch(() => {});
  }

  /**
   * Resets the child's VmHWM to its current RSS (Linux: `5` into /proc/PID/clear_refs), so that
   * the next {@link memory} reports the peak of what follows. False where that is not possible.
   */
  async resetPeak(): Promise<boolean> {
    try {
      await Deno.writeTextFile(`/proc/${this.pid}/clear_refs`, "5");
      return true;
    } catch {
      return false;
    }
  }

  /** SIGTERM, wait up to `graceMs`, then SIGKILL; always closes the log. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.exit) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // already gone
      }
      const t = setTimeout(() => {
        try {
          if (!this.exit) this.#child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, graceMs);
      await this.#child.status.catch(() => {});
      clearTimeout(t);
    }
    await this.#done.catch(() => {});
    try {
      this.#log.close();
    } catch {
      // closed
    }
  }
}

/** Samples VmRSS of some processes every `everyMs` while running; keeps the maximum per name. */
export class RssSampler {
  readonly max = new Map<string, number>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #busy = false;
  constructor(readonly procs: Proc[], readonly everyMs = 50) {}

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#busy) return;
      this.#busy = true;
      this.sample().finally(() => {
        this.#busy = false;
      });
    }, this.everyMs);
  }

  async sample(): Promise<void> {
    const mem = await readMemory(this.procs.map((p) => p.pid));
    for (const p of this.procs) {
      const m = mem.get(p.pid);
      if (m) this.max.set(p.name, Math.max(this.max.get(p.name) ?? 0, m.rss));
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** Resident memory of a process, bytes. */
export interface Memory {
  /** VmRSS: resident now */
  rss: number;
  /** VmHWM: peak resident since start */
  hwm: number;
}

let directProc: boolean | null = null;

/**
 * VmRSS/VmHWM of `pids` from /proc/PID/status. Deno only lets `--allow-all` read /proc/PID, so with
 * explicit permissions this falls back to one `cat` of all the files (covered by --allow-run).
 */
export async function readMemory(pids: number[]): Promise<Map<number, Memory>> {
  const out = new Map<number, Memory>();
  const files = pids.map((p) => `/proc/${p}/status`);
  const texts: string[] = [];
  if (directProc !== false) {
    for (const f of files) {
      try {
        texts.push(await Deno.readTextFile(f));
        directProc = true;
      } catch (e) {
        if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
          directProc = false;
          texts.length = 0;
          break;
        }
      }
    }
  }
  if (directProc === false) {
    try {
      const r = await new Deno.Command("cat", { args: files, stdout: "piped", stderr: "null" })
        .output();
      texts.push(...new TextDecoder().decode(r.stdout).split(/^(?=Name:)/m));
    } catch {
      // cat missing: no figures
    }
  }
  for (const t of texts) {
    const kb = (k: string) => Number(t.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
    const pid = Number(t.match(/^Pid:\s+(\d+)/m)?.[1] ?? NaN);
    if (Number.isFinite(pid)) out.set(pid, { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 });
  }
  return out;
}

/** CPU seconds in user and kernel mode. */
export interface Cpu {
  user: number;
  sys: number;
}

/**
 * utime and stime of `pid` (all its threads: workers, the runtime's I/O threads) from
 * /proc/PID/stat, in seconds (the kernel reports them in USER_HZ = 100 ticks per second); read
 * like {@link readMemory} (directly, else with `cat`). Null where /proc is missing or the process
 * is gone.
 */
export async function readCpu(pid: number): Promise<Cpu | null> {
  const file = `/proc/${pid}/stat`;
  let text: string | null = null;
  if (directProc !== false) {
    try {
      text = await Deno.readTextFile(file);
      directProc = true;
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        directProc = false;
      } else return null;
    }
  }
  if (directProc === false) {
    try {
      const r = await new Deno.Command("cat", { args: [file], stdout: "piped", stderr: "null" })
        .output();
      text = new TextDecoder().decode(r.stdout);
    } catch {
      return null; // cat missing: no figures
    }
  }
  if (!text) return null;
  // Fields after the command name (which may hold spaces) start at state (field 3).
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const user = Number(f[11]);
  const sys = Number(f[12]);
  if (!Number.isFinite(user) || !Number.isFinite(sys)) return null;
  return { user: user / 100, sys: sys / 100 };
}
