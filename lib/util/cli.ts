/**
 * Small helpers shared by the two entry points: fatal one-line errors, signal handling that works
 * on Linux and Windows, and human-readable sizes.
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
