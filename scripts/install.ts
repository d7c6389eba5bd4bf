/**
 * `deno task install`: installs the `cloud-server` and `cloud-client` commands with
 * `deno install -g`, with exactly the permissions, V8 flags and environment of the `server` and
 * `client` tasks of `deno.json` (read from there, so the two never drift apart), into
 * `$DENO_INSTALL_ROOT/bin` (default `~/.deno/bin`). Works offline: the npm packages come from
 * Deno's cache, which `deno task check` or any run has filled.
 *
 * `deno install` cannot put environment variables in the command it writes; the allocator
 * settings of the tasks (`MALLOC_ARENA_MAX`, ...) must be set before the process starts, so they
 * are written into the Unix shell script it creates (they mean nothing to Windows' allocator).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** A task's command line: the environment it sets, the `deno run` flags, the script. */
export interface TaskCommand {
  env: [string, string][];
  flags: string[];
  script: string;
}

/** Splits a task's command line into words (single and double quotes group, as in sh). */
function words(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quote: string | null = null;
  let inWord = false;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/** Reads a task of the form `VAR=value ... deno run FLAGS... SCRIPT`. */
export function parseTask(line: string): TaskCommand {
  const w = words(line);
  const env: [string, string][] = [];
  let i = 0;
  for (; i < w.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(w[i]!); i++) {
    const eq = w[i]!.indexOf("=");
    env.push([w[i]!.slice(0, eq), w[i]!.slice(eq + 1)]);
  }
  if (w[i] !== "deno" || w[i + 1] !== "run") {
    throw new Error(`Cannot install: the task is not "deno run ...": ${line}`);
  }
  const rest = w.slice(i + 2);
  const script = rest.pop();
  if (!script || !script.endsWith(".ts") || rest.some((f) => !f.startsWith("--"))) {
    throw new Error(`Cannot install: the task is not "deno run FLAGS... SCRIPT.ts": ${line}`);
  }
  return { env, flags: rest, script };
}

/** The shell script `deno install` wrote, with `env` exported before its `exec` line. */
export function withEnv(shim: string, env: [string, string][]): string | null {
  if (env.length === 0) return shim;
  const lines = shim.split("\n");
  const at = lines.findIndex((l) => l.startsWith("exec "));
  if (!lines[0]?.startsWith("#!") || at < 0) return null;
  const quoted = env.map(([k, v]) => `${k}='${v.replaceAll("'", `'\\''`)}'`).join(" ");
  lines.splice(at, 0, `export ${quoted}`);
  return lines.join("\n");
}

/** Where `deno install -g` puts commands. */
function binDir(): string {
  const root = Deno.env.get("DENO_INSTALL_ROOT") ??
    join(Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? ".", ".deno");
  return join(root, "bin");
}

async function install(name: string, task: TaskCommand): Promise<string> {
  const args = [
    "install",
    "-g",
    "-f",
    "-n",
    name,
    "--config",
    join(ROOT, "deno.json"),
    ...task.flags,
    join(ROOT, task.script),
  ];
  const r = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!r.success) {
    const why = new TextDecoder().decode(r.stderr).trim().split("\n").pop();
    throw new Error(`Cannot install ${name}: deno install failed (${why})`);
  }
  const windows = Deno.build.os === "windows";
  const shim = join(binDir(), windows ? `${name}.cmd` : name);
  // The task's environment, except what names how it was started (the command is `name` now).
  const env = task.env.filter(([k]) => k !== "CLOUDSYNC_COMMAND");
  if (!windows) {
    const patched = withEnv(await Deno.readTextFile(shim), env);
    if (patched === null) {
      console.error(`Cannot set ${env.map(([k]) => k).join(", ")} in ${shim}: unexpected form`);
    } else await Deno.writeTextFile(shim, patched);
  }
  return shim;
}

async function main(): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const tasks = config.tasks as Record<string, string>;
  const done: string[] = [];
  for (const [name, task] of [["cloud-server", "server"], ["cloud-client", "client"]] as const) {
    try {
      done.push(await install(name, parseTask(tasks[task]!)));
    } catch (e) {
      console.error((e as Error).message);
      Deno.exit(1);
    }
  }
  for (const shim of done) console.log(`Installed ${shim}`);
  const bin = binDir();
  const sep = Deno.build.os === "windows" ? ";" : ":";
  const path = (Deno.env.get("PATH") ?? "").split(sep);
  if (!path.includes(bin)) {
    console.log(
      Deno.build.os === "windows"
        ? `Add ${bin} to your PATH to run cloud-server and cloud-client by name.`
        : `Add ${bin} to your PATH to run cloud-server and cloud-client by name: export PATH="${bin}:$PATH"`,
    );
  }
}

if (import.meta.main) await main();
