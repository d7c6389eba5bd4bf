/**
 * End to end in a pseudo-terminal (`script` from util-linux): a real client uploading many files
 * draws its progress line, which counts files as they finish (not only at the end), shows a
 * percentage, and never reaches the terminal's width; with `TERM=dumb` (or no terminal, as in
 * every other e2e test) there is no progress line at all.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Proc, ServerProc, taskFlags, tempDir } from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };
const FILES = 1500;
const COLUMNS = 44;

async function hasScript(): Promise<boolean> {
  try {
    const r = await new Deno.Command("script", { args: ["--version"], stdout: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

/** `sh -c` words, quoted. */
function sh(words: string[]): string {
  return words.map((w) => `'${w.replaceAll("'", `'\\''`)}'`).join(" ");
}

/** The progress lines a client drew on its terminal. */
function progressLines(p: Proc): string[] {
  // Each redraw is "\r ESC[K text", up to the next redraw or the erase before a log line (a
  // log line, printed after an erase, ends with a newline).
  return p.raw.join("\n").split("\r\x1b[K").slice(1).filter((t) => t !== "" && !/[\r\n]/.test(t));
}

async function uploadInTerminal(root: string, term: string): Promise<Proc[]> {
  const folder = join(root, `folder-${term}`);
  await Deno.mkdir(folder);
  const block = new Uint8Array(64 * 1024);
  for (let i = 0; i < FILES; i++) {
    crypto.getRandomValues(block); // incompressible: the upload takes a while
    await Deno.writeFile(join(folder, `f${String(i).padStart(4, "0")}.bin`), block);
  }
  const server = await ServerProc.start(join(root, `data-${term}`));
  const client = [
    Deno.execPath(),
    "run",
    ...taskFlags("client"),
    "client.ts",
    "127.0.0.1",
    String(server.port),
    folder,
    "2",
    "--name",
    "A",
  ];
  const c = new Proc(
    "A",
    ["script", "-qfec", `stty cols ${COLUMNS} rows 20; exec ${sh(client)}`, "/dev/null"],
    { TERM: term },
    undefined,
    { raw: true },
  );
  await c.waitForLine(new RegExp(`Synced: ${FILES} sent`), 120_000);
  return [server, c];
}

Deno.test(
  "progress line in a terminal: files as they finish, a percentage, cut to the width",
  opts,
  async () => {
    if (Deno.build.os !== "linux" || !(await hasScript())) {
      console.warn("skipped: no `script` command to make a pseudo-terminal");
      return;
    }
    await using tmp = await tempDir();
    let procs = await uploadInTerminal(tmp.path, "xterm");
    try {
      const c = procs[1]!;
      const lines = progressLines(c);
      assert.ok(lines.length > 0, `no progress line drawn:\n${c.raw.join("\n")}`);
      const counts: number[] = [];
      for (const line of lines) {
        assert.ok(line.length < COLUMNS, `${line.length} >= ${COLUMNS}: ${JSON.stringify(line)}`);
        const m = line.match(new RegExp(`^(\\d+)/${FILES} files, (\\d+)%`));
        assert.ok(m, JSON.stringify(line));
        counts.push(Number(m[1]));
        assert.ok(Number(m[2]) <= (Number(m[1]) < FILES ? 99 : 100), line);
      }
      // About 90 MiB take a few redraws (every 250 ms): they show more and more files done.
      const between = new Set(counts.filter((n) => n > 0 && n < FILES)).size;
      assert.ok(
        between >= Math.min(2, counts.length - 2) && between >= 1,
        `files counted as they finish, not all at once: ${counts.join(" ")}`,
      );
      for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!, "never back");
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
    procs = await uploadInTerminal(tmp.path, "dumb");
    try {
      assert.deepEqual(progressLines(procs[1]!), [], "TERM=dumb: no progress line");
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);
