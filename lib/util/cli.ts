/**
 * Small helpers shared by the two entry points: fatal one-line errors, signal handling that works
 * on Linux and Windows, and human-readable sizes.
 *
 * @module
 */

/** Prints `message` as one line on stderr and exits with `code`. */
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
