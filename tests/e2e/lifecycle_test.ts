/**
 * End to end: how a client takes its folder at start. One client per folder (a second start on
 * a running folder exits 5 (the folder's exit code) and touches nothing; a lock left by a crash is taken over), no sync
 * folder inside another (refused both ways, naming the other), and a folder that cannot be
 * written (or is a file) registers nothing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  admin,
  exists,
  Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  tree,
  unprivileged,
  waitConverged,
  waitForContent,
} from "./harness.ts";
import { EXIT } from "../../lib/util/exit_codes.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** The output of `cloud-server accounts` on `data`. */
async function accounts(data: string): Promise<string> {
  const r = await admin(data, "accounts");
  assert.equal(r.code, 0, r.output);
  return r.output;
}

async function accountOf(folder: string): Promise<string> {
  return JSON.parse(await Deno.readTextFile(join(folder, ".cloudsync", "config.json"))).account;
}

Deno.test(
  "a second client on a running folder exits at once (code 5) and nothing is lost anywhere",
  opts,
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    await put(a, "seed.txt", "seed\n");
    const server = await ServerProc.start(data);
    const [ca, serial] = await startFirstClient("A", server.port, a);
    const cb = startClient("B", server.port, b, { serial });
    const procs: Proc[] = [server, ca, cb];
    try {
      await waitForContent(b, "seed.txt", "seed\n");
      // Files keep appearing on A while a second client starts on A's folder (with the serial,
      // which must not enroll anything either).
      let written = 0;
      const writer = (async () => {
        for (; written < 30; written++) {
          await put(a, `new/f${written}.txt`, `file ${written}\n`);
          await new Promise((r) => setTimeout(r, 40));
        }
      })();
      const second = startClient("A2", server.port, a, { serial });
      procs.push(second);
      await second.waitForLine(/^Cannot start: /, 15_000);
      assert.equal(await second.exitCode(), EXIT.folder, second.output());
      assert.equal(
        second.lines.join("\n").trim(),
        `Cannot start: ${a} is already being synced by another cloud-client (PID ${ca.child.pid}); stop that one first, or leave it running`,
      );
      await writer;
      await waitConverged([a, b], 30_000, procs);
      const t = await tree(b);
      for (let i = 0; i < 30; i++) assert.ok(t.has(`new/f${i}.txt`), `new/f${i}.txt missing`);
      assert.ok(t.has("seed.txt"));
      for (const p of [ca, cb]) {
        assert.doesNotMatch(p.output(), /deleted|database is locked/, p.output());
      }
      // Nothing was enrolled by the refused start.
      const devices = await admin(data, "devices", await accountOf(a));
      assert.equal(devices.code, 0);
      assert.equal(devices.output.trim().split("\n").length, 3, devices.output); // header + A + B
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test("a lock left by a client killed with SIGKILL is taken over", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const lock = join(a, ".cloudsync", "client.lock");
  const server = await ServerProc.start(join(tmp.path, "data"));
  const [ca] = await startFirstClient("A", server.port, a);
  const procs: Proc[] = [server, ca];
  try {
    await ca.waitForLine(/^Syncing /);
    assert.equal((await Deno.readTextFile(lock)).trim(), String(ca.child.pid));
    await ca.stop("SIGKILL");
    assert.ok(await exists(lock), "the crash left its lock file");
    const again = startClient("A", server.port, a);
    procs.push(again);
    await again.waitForLine(/^Syncing /);
    await put(a, "after.txt", "after the crash\n");
    await again.waitForLine(/^Synced: 1 sent/);
    assert.equal((await Deno.readTextFile(lock)).trim(), String(again.child.pid));
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test("a sync folder inside another one is refused both ways", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  const server = await ServerProc.start(data);
  const procs: Proc[] = [server];
  try {
    // The outer folder is synced; a client on a folder inside it is refused.
    const outer = join(tmp.path, "outer");
    await put(outer, "x.txt", "x\n");
    const [co] = await startFirstClient("O", server.port, outer);
    procs.push(co);
    await co.waitForLine(/^Synced: 1 sent/);
    const inner = join(outer, "sub", "inner");
    const ci = startClient("I", server.port, inner);
    assert.equal(await ci.exitCode(), EXIT.folder, ci.output());
    assert.match(
      ci.output(),
      new RegExp(
        `^Cannot start: ${inner} is inside ${outer}, which is already synced \\(it has ${outer}/\\.cloudsync\\); sync ${outer} as a whole, or move this folder out of it$`,
        "m",
      ),
    );
    assert.equal(await exists(join(outer, "sub")), false, "the refused start created nothing");

    // An enrolled folder exists deep inside: a client on a folder around it is refused.
    const around = join(tmp.path, "around");
    const deep = join(around, "d1", "d2", "inner");
    const [cd] = await startFirstClient("D", server.port, deep);
    await cd.waitForLine(/^Syncing /);
    await cd.stop();
    await put(around, "y.txt", "y\n");
    // A symlink to an enrolled folder is not followed: only the real folder inside counts.
    await Deno.symlink(outer, join(around, "link-to-outer"));
    const before = await accounts(data);
    const ca = startClient("R", server.port, around);
    assert.equal(await ca.exitCode(), EXIT.folder, ca.output());
    assert.match(
      ca.output(),
      new RegExp(`^Cannot start: ${around} contains ${deep}, which is synced on its own`, "m"),
    );
    assert.equal(await exists(join(around, ".cloudsync")), false, "nothing left behind");
    assert.equal(await accounts(data), before, "no account was registered");
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test(
  "a folder that is a file or cannot be written is refused in words and registers nothing",
  opts,
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const server = await ServerProc.start(data);
    try {
      const file = join(tmp.path, "file.txt");
      await Deno.writeTextFile(file, "a regular file\n");
      const withStateFile = join(tmp.path, "state-is-a-file");
      await put(withStateFile, ".cloudsync", "not a folder\n");
      await put(withStateFile, "keep.txt", "keep\n");
      const cases: [string, RegExp][] = [
        [
          file,
          new RegExp(`^Cannot start: ${file} is a file, not a folder; give the path of a folder`),
        ],
        [
          join(file, "sub"),
          new RegExp(`^Cannot start: ${file}/sub cannot be created, because ${file} is a file`),
        ],
        [
          withStateFile,
          new RegExp(`^Cannot start: ${withStateFile}/\\.cloudsync is a file, not the client's`),
        ],
      ];
      // A read-only folder: permissions bind only for another user than root (dropped to
      // `nobody` when this runs as root).
      const user = Deno.uid() === 0 ? await unprivileged(join(tmp.path, "user")) : undefined;
      const as = typeof user === "object" ? user : undefined;
      if (typeof user === "string") {
        console.warn(`skipped the read-only folder: cannot drop privileges here (${user})`);
      } else {
        const ro = join(tmp.path, "read-only");
        await Deno.mkdir(ro);
        await Deno.chmod(ro, 0o555);
        await Deno.chmod(tmp.path, 0o755);
        cases.push([
          ro,
          new RegExp(`^Cannot start: cannot write in ${ro} \\(permission denied\\)`),
        ]);
      }
      for (const [folder, re] of cases) {
        for (const serial of [undefined, "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH"]) {
          const c = startClient("X", server.port, folder, {
            ...(serial ? { serial } : {}),
            ...(as ? { as } : {}),
          });
          assert.equal(await c.exitCode(), EXIT.folder, c.output());
          assert.match(c.output(), re);
          assert.doesNotMatch(c.output(), /os error|Registered|Serial code/);
        }
      }
      assert.match(await accounts(data), /^No accounts yet/m);
      assert.equal(await Deno.readTextFile(file), "a regular file\n");
      assert.deepEqual([...(await tree(withStateFile)).keys()], ["keep.txt"]);
      assert.equal(await Deno.readTextFile(join(withStateFile, ".cloudsync")), "not a folder\n");
    } finally {
      await server.stop();
    }
  },
);

Deno.test("a refused serial leaves no folder behind", opts, async () => {
  await using tmp = await tempDir();
  const server = await ServerProc.start(join(tmp.path, "data"));
  try {
    const folder = join(tmp.path, "new", "folder");
    const c = startClient("X", server.port, folder, {
      serial: "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH",
    });
    assert.equal(await c.exitCode(), EXIT.refused);
    assert.match(c.output(), /^Cannot join account: this serial code is not known/m);
    assert.equal(
      await exists(join(tmp.path, "new")),
      false,
      "the folder (and its parent) stay gone",
    );
  } finally {
    await server.stop();
  }
});
