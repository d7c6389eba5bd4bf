/**
 * End to end: `deno task install` into a temporary `DENO_INSTALL_ROOT` makes `cloud-server` and
 * `cloud-client` commands with the tasks' permissions and allocator settings; both answer
 * `--version` with the protocol version; and the join line the installed client prints works as
 * printed on a second folder (the first client said "cloud-client ...", not "deno task ...").
 * The same join line from `deno task client` names `deno task client`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  LOG_STAMP_RE,
  Proc,
  put,
  ServerProc,
  startFirstClient,
  taskFlags,
  tempDir,
  waitConverged,
} from "./harness.ts";
import { PROGRAM_VERSION, PROTOCOL_VERSION } from "../../lib/protocol/messages.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const opts = { sanitizeResources: true, sanitizeOps: true };

/** The words of a printed command line (ours never need quoting: no spaces in paths here). */
function words(line: string): string[] {
  return line.trim().split(/\s+/);
}

Deno.test(
  "deno task install: commands with the tasks' permissions that work as printed",
  opts,
  async () => {
    if (Deno.build.os === "windows") return; // the shims are .cmd files there; same code path
    await using tmp = await tempDir();
    const installRoot = join(tmp.path, "deno-root");
    const env = { DENO_INSTALL_ROOT: installRoot, NO_COLOR: "1" };
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["task", "install"],
      cwd: ROOT,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, out + err);
    const bin = join(installRoot, "bin");
    assert.match(out, new RegExp(`^Installed ${bin}/cloud-server$`, "m"));
    assert.match(out, new RegExp(`^Installed ${bin}/cloud-client$`, "m"));
    assert.match(out, /^Add .* to your PATH/m, "the bin folder is not on PATH here");

    for (const [name, task] of [["cloud-server", "server"], ["cloud-client", "client"]] as const) {
      const shim = await Deno.readTextFile(join(bin, name));
      const exec = shim.split("\n").find((l) => l.startsWith("exec "))!;
      for (const flag of taskFlags(task)) assert.ok(words(exec).includes(flag), `${name}: ${flag}`);
      assert.ok(!/--allow-all|--allow-run|--allow-ffi|\s-A\s/.test(exec), `${name}: ${exec}`);
      assert.match(shim, /^export MALLOC_ARENA_MAX='2' MALLOC_MMAP_THRESHOLD_='262144'$/m);
      assert.ok(!shim.includes("CLOUDSYNC_COMMAND"), "the command is its own name");
      const v = await new Deno.Command(join(bin, name), {
        args: ["--version"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(v.code, 0, new TextDecoder().decode(v.stderr));
      assert.equal(
        new TextDecoder().decode(v.stdout),
        `${name} ${PROGRAM_VERSION} (protocol ${PROTOCOL_VERSION}, Deno ${Deno.version.deno})\n`,
      );
    }

    // The installed programs, found on PATH as a user would run them.
    const path = { PATH: `${bin}:${Deno.env.get("PATH") ?? ""}` };
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    const server = new Proc(
      "server",
      ["cloud-server", "0", "--host", "127.0.0.1", "--data", join(tmp.path, "data")],
      path,
      undefined,
      { raw: true },
    );
    const procs: Proc[] = [server];
    try {
      const port = (await server.waitForLine(/listening on 127\.0\.0\.1:(\d+)/))[1]!;
      const ca = new Proc("A", ["cloud-client", "127.0.0.1", port, a, "2"], path, undefined, {
        raw: true,
      });
      procs.push(ca);
      const joinLine =
        (await ca.waitForLine(/^To sync another computer with this one, run there: (.*)$/))[1]!;
      const argv = words(joinLine);
      assert.equal(argv[0], "cloud-client", joinLine);
      assert.equal(argv[3], "FOLDER");
      argv[3] = b;
      await put(a, "doc.txt", "from A\n");
      const cb = new Proc("B", argv, path, undefined, { raw: true });
      procs.push(cb);
      await waitConverged([a, b], 30_000, procs);
      assert.equal(await Deno.readTextFile(join(b, "doc.txt")), "from A\n");
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test(
  "the join line names deno task client when started that way; under systemd no second stamp",
  opts,
  async () => {
    await using tmp = await tempDir();
    const server = await ServerProc.start(join(tmp.path, "data"));
    const [c] = await startFirstClient("A", server.port, join(tmp.path, "a"), {
      CLOUDSYNC_COMMAND: "deno task client",
      // What systemd sets when stdout is the journal, which stamps every line itself.
      JOURNAL_STREAM: "8:12345",
    });
    try {
      const m = await c.waitForLine(/^To sync another computer with this one, run there: (.*)$/);
      assert.match(
        m[1]!,
        new RegExp(`^deno task client 127\\.0\\.0\\.1 ${server.port} FOLDER 2 \\S+$`),
      );
      await c.waitForLine(/^Synced|^Syncing /);
      for (const line of c.raw) assert.doesNotMatch(line, LOG_STAMP_RE);
    } finally {
      await c.stop();
      await server.stop();
    }
  },
);
