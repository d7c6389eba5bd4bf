/**
 * Tests for the systemd units of `contrib/systemd/`: they do not restart after exactly the exit
 * codes that mean "restarting cannot help" (`lib/util/exit_codes.ts`), and `systemd-analyze
 * verify` (where it is installed) accepts them without a warning: the server unit, and the client
 * template instantiated for an escaped folder path, each with its command present.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EXIT, PERMANENT_EXIT_CODES } from "../../lib/util/exit_codes.ts";

const UNITS = new URL("../../contrib/systemd/", import.meta.url).pathname;
const CLIENT = "cloud-client@.service";
const SERVER = "cloud-server.service";

/** The values of `key=` in a unit's text (comments skipped). */
function values(unit: string, key: string): string[] {
  return unit.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) =>
    l.slice(key.length + 1)
  );
}

function codes(unit: string): number[] {
  return values(unit, "RestartPreventExitStatus").flatMap((v) => v.split(/\s+/)).map(Number)
    .sort();
}

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

async function hasSystemdAnalyze(): Promise<boolean> {
  try {
    return (await run("systemd-analyze", ["--version"])).code === 0;
  } catch {
    return false;
  }
}

Deno.test("systemd units: restart on failure, but never after a permanent exit code", async () => {
  const client = await Deno.readTextFile(join(UNITS, CLIENT));
  const server = await Deno.readTextFile(join(UNITS, SERVER));
  for (const unit of [client, server]) {
    assert.deepEqual(values(unit, "Restart"), ["on-failure"]);
    assert.ok(!codes(unit).includes(EXIT.retry), "1 is worth a retry");
  }
  assert.deepEqual(codes(client), [...PERMANENT_EXIT_CODES].sort());
  // The server exits with no code but 0, 1 and 2 (it has no device to be refused).
  assert.deepEqual(codes(server), [EXIT.usage]);
  assert.deepEqual(values(client, "ExecStart"), ['%h/.deno/bin/cloud-client "%f"']);
  assert.deepEqual(values(client, "WantedBy"), ["default.target"], "a user unit");
  assert.deepEqual(values(server, "WantedBy"), ["multi-user.target"], "a system unit");
});

Deno.test("systemd units: systemd-analyze verify accepts them", async () => {
  if (Deno.build.os !== "linux" || !(await hasSystemdAnalyze())) {
    console.warn("skipped: systemd-analyze is not installed here");
    return;
  }
  const tmp = await Deno.makeTempDir({ prefix: "cloudsync-systemd-" });
  try {
    // A stand-in for each command, where the units look for it.
    const fake = async (path: string) => {
      await Deno.mkdir(join(path, ".."), { recursive: true });
      await Deno.writeTextFile(path, "#!/bin/sh\nexit 0\n");
      await Deno.chmod(path, 0o755);
    };
    const home = join(tmp, "home");
    await fake(join(home, ".deno", "bin", "cloud-client"));
    const runtime = join(tmp, "run");
    await Deno.mkdir(runtime, { mode: 0o700 });
    const units = join(tmp, "units");
    await Deno.mkdir(units);
    await Deno.copyFile(join(UNITS, CLIENT), join(units, CLIENT));
    const serverBin = join(tmp, "bin", "cloud-server");
    await fake(serverBin);
    const server = await Deno.readTextFile(join(UNITS, SERVER));
    assert.match(server, /^ExecStart=\/usr\/local\/bin\/cloud-server /m);
    await Deno.writeTextFile(
      join(units, SERVER),
      server.replace("ExecStart=/usr/local/bin/cloud-server ", `ExecStart=${serverBin} `),
    );

    const s = await run("systemd-analyze", ["verify", join(units, SERVER)]);
    assert.equal(s.code, 0, s.out + s.err);
    assert.equal(s.err.trim(), "", "no warnings");

    // The instance is the folder's path, escaped as the README says (spaces and all).
    const folder = join(home, "My Sync");
    const escaped = (await run("systemd-escape", ["--path", folder])).out.trim();
    assert.ok(escaped.endsWith("-home-My\\x20Sync"), escaped);
    const env = { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: Deno.env.get("PATH") ?? "" };
    const c = await run(
      "systemd-analyze",
      ["verify", "--user", join(units, `cloud-client@${escaped}.service`)],
      env,
    );
    assert.equal(c.code, 0, c.out + c.err);
    assert.equal(c.err.trim(), "", "no warnings");

    // The check can fail: a command that is not there is refused.
    await Deno.remove(join(home, ".deno", "bin", "cloud-client"));
    const missing = await run(
      "systemd-analyze",
      ["verify", "--user", join(units, `cloud-client@${escaped}.service`)],
      env,
    );
    assert.notEqual(missing.code, 0);
    assert.match(missing.err, /cloud-client is not executable/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
