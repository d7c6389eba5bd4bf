/**
 * Small helpers shared by the two entry points: fatal one-line errors, signal handling that works
 * on Linux and Windows, stray rejections that must not end a long-running process, and
 * human-readable sizes.
 *
 * @module
 */

/** Prints `message` as one line on stderr and exits with `code` (see `exit_codes.ts`). */
export function fail(message: string, code = 1): never {
  console.error(message);
  Deno.exit(code);
}

/**
 * Calls `fn` once on Ctrl-C (and SIGTERM where the OS has it), then exits. A second signal exits
 * at once: a shutdown that hangs (or a first signal the runtime dropped, which was seen under load)
 * never leaves the process unkillable short of SIGKILL.
 */
export function onShutdown(fn: () => void | Promise<void>): void {
  let done = false;
  const handler = () => {
    if (done) Deno.exit(130);
    done = true;
    Promise.resolve(fn()).finally(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", handler);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", handler);
}

/**
 * A promise that rejects with nobody awaiting it is a bug, but it leaves nothing half-done (every
 * write is atomic, every change waits for the server's confirmation): a server or client that
 * runs for months logs it, once per message, and goes on, instead of ending (Deno's default) and
 * dropping every connection. Tests still fail on such rejections: they do not load the entry points.
 */
export function surviveStrayRejections(log: (line: string) => void): void {
  const said = new Set<string>();
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    const err = e.reason instanceof Error ? e.reason : new Error(String(e.reason));
    if (said.size > 100 || said.has(err.message)) return;
    said.add(err.message);
    log(
      `Internal error (a bug; the work it belonged to is retried): ${err.message}. Please report it with the lines around it (CLOUDSYNC_DEBUG=1 adds detail)`,
    );
    if (Deno.env.get("CLOUDSYNC_DEBUG")) log(err.stack ?? "");
  });
}

/** `1536` -> `"1.5 KiB"`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** The stamp of a log line: `2026-12-01 13:04:05` (UTC), as both programs write it. */
export function logStamp(when = new Date()): string {
  return when.toISOString().replace("T", " ").slice(0, 19);
}

/** `13:04:05`: the local time of day, for lines read on a terminal. */
export function timeOfDay(when = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
}

/** The version line of `--version`: the program's and the protocol's version, and Deno's. */
export function versionLine(program: string, version: string, protocol: number): string {
  return `${program} ${version} (protocol ${protocol}, Deno ${Deno.version.deno})`;
}
