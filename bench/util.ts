/**
 * Small helpers for the benchmark: clocks, formatting, streaming SHA-256, stat keys, running
 * commands. Everything here is asynchronous on purpose: the counting relay (the fallback when `ss`
 * is not usable) lives in the same process, so a long synchronous call would stall the traffic
 * being measured.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { lstat } from "node:fs/promises";

/** Monotonic milliseconds. */
export const now = (): number => performance.now();

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Prints one progress line on stderr (stdout carries the table). */
export function log(msg: string): void {
  const t = new Date().toISOString().slice(11, 19);
  console.error(`[${t}] ${msg}`);
}

/** Thrown by polling helpers when a deadline passes. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/** Bytes in a human unit (binary prefixes, as in the targets). */
export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(2)} ${units[i]}`;
}

/** Seconds with 2 decimals. */
export const fmtS = (s: number): string => `${s.toFixed(2)} s`;

/** MB/s with MB = 10^6 bytes (as in ../shared/bench-peers). */
export const mbps = (bytes: number, s: number): number => bytes / 1e6 / s;

/**
 * Streaming SHA-256 of a file, read through the caller's reusable buffer (no per-chunk
 * allocations, never the whole file in memory).
 */
export async function sha256File(path: string, buf: Uint8Array): Promise<string> {
  const h = createHash("sha256");
  const f = await Deno.open(path, { read: true });
  try {
    for (;;) {
      const n = await f.read(buf);
      if (n === null) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
    }
  } finally {
    f.close();
  }
  return h.digest("hex");
}

/**
 * Identity of one version of a file: inode, size, mtime and ctime as Deno's `lstat` reports them
 * (ctime only to the second there, hence {@link ctimes} for timing). If the key is the same before
 * and after reading a file, the content did not change in between. `null` if missing.
 */
export async function statKey(path: string): Promise<{ key: string; size: number } | null> {
  try {
    const s = await lstat(path, { bigint: true });
    if (!s.isFile()) return null;
    return { key: `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`, size: Number(s.size) };
  } catch {
    return null;
  }
}

/**
 * Change times (ctime) in epoch milliseconds, from GNU find's `%C@` (nanoseconds; Deno's stat
 * calls report ctime in whole seconds only), of `root` itself (key "") and, unless `depth0`,
 * of everything below it (key = path relative to root, with `/`). A rename, a write and a chmod
 * all set ctime. Null if find is missing or fails.
 */
export async function ctimes(root: string, depth0 = false): Promise<Map<string, number> | null> {
  try {
    const r = await new Deno.Command("find", {
      args: [root, ...(depth0 ? ["-maxdepth", "0"] : []), "-printf", "%C@\\t%P\\0"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!r.success) return null;
    const out = new Map<string, number>();
    for (const rec of new TextDecoder().decode(r.stdout).split("\0")) {
      const tab = rec.indexOf("\t");
      if (tab > 0) out.set(rec.slice(tab + 1), Number(rec.slice(0, tab)) * 1000);
    }
    return out;
  } catch {
    return null;
  }
}

/** True if `path` (or a dangling link) exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Result of {@link run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a command to completion and captures its output. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; signal?: AbortSignal } = {},
): Promise<RunResult> {
  const t0 = now();
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
  }).output();
  const seconds = (now() - t0) / 1000;
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    seconds,
  };
}

/** Runs a command and throws with its stderr if it fails. */
export async function runOk(
  cmd: string,
  args: string[],
  opts: { cwd?: string; signal?: AbortSignal } = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim().slice(-500)}`);
  }
  return r;
}

/** `command -v NAME` */
export async function which(name: string): Promise<string | null> {
  try {
    const r = await run("sh", ["-c", `command -v ${name}`]);
    return r.code === 0 ? r.stdout.trim() : null;
  } catch {
    return null;
  }
}

/** Flushes the page cache to disk (untimed, before each t0, as ../shared/bench-peers does). */
export async function syncDisks(): Promise<void> {
  await run("sync", []);
}

/** A free TCP port on 127.0.0.1 (for the rsync daemon, which needs a fixed port). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
