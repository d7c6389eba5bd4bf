/**
 * End to end: `cloud-client status` beside real clients, in each state (in sync, syncing a large
 * file, offline, stopped, a failed item, a conflict), `--wait` (0 once in sync, 1 at the
 * timeout), the `-v` lines of both clients, and the date and time on log lines when the output
 * is not a terminal.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  clientStatus,
  LOG_STAMP_RE,
  Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  unprivileged,
  waitFor,
  waitForContent,
} from "./harness.ts";
import { startRelay } from "./relay.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** `n` bytes that do not compress. */
function noise(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

async function configOf(folder: string): Promise<{ account: string }> {
  return JSON.parse(await Deno.readTextFile(join(folder, ".cloudsync", "config.json")));
}

/** Waits until `status FOLDER --json` satisfies `check`; returns that answer. */
async function statusUntil(
  folder: string,
  check: (j: Record<string, unknown>) => boolean,
  procs: Proc[],
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> | null = null;
  await waitFor(
    async () => {
      last = (await clientStatus(folder)).json;
      return last !== null && check(last);
    },
    () =>
      `last status: ${JSON.stringify(last)}\n${
        procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n")
      }`,
    timeoutMs,
  );
  return last!;
}

/** Runs `status FOLDER --wait --json --timeout S` and returns its exit code and answer. */
async function waitInSync(folder: string, seconds = 30) {
  return await clientStatus(folder, ["--wait", "--json", "--timeout", String(seconds)]);
}

Deno.test(
  "status: in sync, syncing a large file, offline, stopped, a conflict; --wait; -v",
  opts,
  async (t) => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    let server = await ServerProc.start(data);
    const port = server.port;
    const relay = startRelay(port); // A reaches the server through it
    const [ca, serial] = await startFirstClient("A", relay.port, a, undefined, ["-v"]);
    let cb = startClient("B", port, b, { serial, args: ["-v"] });
    const procs: Proc[] = [server, ca, cb];
    const dump = () => procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n");
    try {
      await t.step(
        "in sync: --wait exits 0; the JSON names server, account, last sync",
        async () => {
          await put(a, "x.txt", "one\n");
          await Deno.symlink("x.txt", join(a, "link"));
          await waitForContent(b, "x.txt", "one\n");
          const r = await waitInSync(a);
          assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${dump()}`);
          const j = r.json!;
          assert.equal(j.state, "in-sync");
          assert.equal(j.pending, 0);
          assert.equal(j.running, true);
          assert.equal(j.server, `127.0.0.1:${relay.port}`);
          assert.equal(j.account, (await configOf(a)).account);
          assert.match(String(j.lastSync), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
          assert.ok(Date.now() - Date.parse(String(j.lastSync)) < 60_000);
          assert.deepEqual(j.failed, []);
          assert.deepEqual(j.conflicts, []);
          // The symlink is skipped (found by the full look --wait asked for).
          assert.deepEqual(j.skipped, ["link"]);
          const text = await clientStatus(a, []);
          assert.equal(text.code, 0);
          assert.match(text.stdout, new RegExp(`^${a}: in sync since \\d\\d:\\d\\d:\\d\\d$`, "m"));
          assert.match(text.stdout, /^Skipped \(1\):\n {2}link: /m);
        },
      );

      await t.step("the status channel is the owner's only", async () => {
        const mode = async (p: string) => (await Deno.stat(p)).mode! & 0o777;
        assert.equal(await mode(join(a, ".cloudsync")), 0o700);
        assert.equal(await mode(join(a, ".cloudsync", "status.json")), 0o600);
        assert.equal(await mode(join(a, ".cloudsync", "status-wait")), 0o600, "rung by --wait");
        const user = await unprivileged(join(tmp.path, "user"));
        if (typeof user === "string") {
          console.warn(`another user's view not tried: ${user}`);
          return;
        }
        await Deno.chmod(tmp.path, 0o755); // the other user may reach a/, not a/.cloudsync/
        const r = await clientStatus(a, ["--json"], 60_000, user);
        assert.equal(r.code, 5, r.stdout + r.stderr);
        assert.equal(r.stdout, "", "nothing of the status shown");
        assert.match(
          r.stderr,
          /^Cannot show status: .*\.cloudsync can be read only by the folder's owner; run the command as that user$/m,
        );
      });

      await t.step("-v: one line per file sent, received, moved and deleted", async () => {
        await ca.waitForLine(/^sent x\.txt$/);
        await cb.waitForLine(/^received x\.txt$/);
        await Deno.rename(join(a, "x.txt"), join(a, "y.txt"));
        await ca.waitForLine(/^moved x\.txt -> y\.txt \(on the server\)$/);
        await cb.waitForLine(/^moved x\.txt -> y\.txt \(here\)$/);
        await Deno.remove(join(a, "y.txt"));
        await ca.waitForLine(/^deleted y\.txt \(on the server\)$/);
        await cb.waitForLine(/^deleted y\.txt \(here\)$/);
        // Not a terminal: every line carries the date and time.
        for (const line of ca.raw) assert.match(line, LOG_STAMP_RE, line);
      });

      await t.step("syncing a large file: the files and bytes left", async () => {
        // A's upload is held once under way, so it stays in progress while we look.
        const holding = relay.holdAfter(2 * 1024 * 1024);
        try {
          await put(a, "big.bin", noise(24 * 1024 * 1024));
          await holding;
          // A pass may first catch big.bin being written and hold it (a pending upload of
          // unknown size, folder_status_test); the record of the upload itself has its bytes.
          const j = await statusUntil(
            a,
            (j) => j.state === "syncing" && Number(j.pending) >= 1 && Number(j.pendingBytes) > 0,
            procs,
          );
          assert.equal(j.pendingUploads, 1, JSON.stringify(j));
          assert.ok(Number(j.pendingBytes) > 0, JSON.stringify(j));
          const text = await clientStatus(a, []);
          assert.match(text.stdout, /: syncing, 1 file \(\d+\.\d MiB\): 1 to send left$/m);
          const waited = await clientStatus(a, ["--wait", "--timeout", "1"]);
          assert.equal(waited.code, 1, "not in sync within 1 s");
          assert.match(waited.stderr, /^Not in sync after 1 s \(syncing\)/m);
        } finally {
          relay.release();
        }
        const r = await waitInSync(a);
        assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${dump()}`);
        await ca.waitForLine(/^sent big\.bin$/);
      });

      await t.step(
        "stopped: a killed client is stopped, whatever its last record said",
        async () => {
          await waitFor(async () => (await clientStatus(b)).json?.state === "in-sync", dump);
          await cb.stop("SIGKILL");
          const j = (await clientStatus(b)).json!;
          assert.equal(j.state, "stopped");
          assert.equal(j.running, false);
          assert.equal(j.server, `127.0.0.1:${port}`);
          const r = await clientStatus(b, ["--wait", "--timeout", "1"]);
          assert.equal(r.code, 1);
          assert.match(r.stderr, /no client is running on this folder/);
        },
      );

      await t.step("a conflict: the copy is listed on both devices", async () => {
        await put(a, "c.txt", "from A\n");
        await put(b, "c.txt", "from B\n");
        cb = startClient("B", port, b, { args: ["-v"] });
        procs.push(cb);
        // Whichever device's change reaches the server second keeps its version as the copy.
        await waitFor(
          () => [ca, cb].some((c) => c.lines.some((l) => /^conflict copy c \(conflict /.test(l))),
          dump,
          30_000,
        );
        const maker = [ca, cb].find((c) => c.lines.some((l) => /^conflict copy /.test(l)))!;
        // Without -v too, the pass's summary names the new copy.
        await maker.waitForLine(/^Synced: .*1 conflict copy \(c \(conflict from [AB] /);
        for (const folder of [a, b]) {
          const r = await waitInSync(folder);
          assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${dump()}`);
          const conflicts = r.json!.conflicts as string[];
          assert.equal(conflicts.length, 1, JSON.stringify(r.json));
          assert.match(conflicts[0]!, /^c \(conflict from [AB] \d{4}-\d\d-\d\d \d{6}\)\.txt$/);
        }
        const text = await clientStatus(a, []);
        assert.match(text.stdout, /^Conflict copies \(1\):\n {2}c \(conflict from /m);
      });

      await t.step(
        "offline: since when and why; in sync again once the server is back",
        async () => {
          await server.stop();
          const j = await statusUntil(a, (j) => j.state === "offline", procs);
          assert.match(String(j.message), /^Cannot connect to 127\.0\.0\.1:\d+: /);
          assert.ok(Date.parse(String(j.since)) <= Date.now());
          server = await ServerProc.start(data, port);
          procs.push(server);
          const r = await waitInSync(a);
          assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${dump()}`);
        },
      );

      await t.step("stopped on request: the last record says so", async () => {
        await ca.stop();
        const j = (await clientStatus(a)).json!;
        assert.equal(j.state, "stopped");
        assert.ok(Date.parse(String(j.since)) <= Date.now());
        assert.equal((j.conflicts as string[]).length, 1, "from state.db and the folder");
      });
    } finally {
      for (const p of procs.reverse()) await p.stop();
      await relay.close();
    }
  },
);

Deno.test(
  "status: a failed item is listed with its reason; --wait times out with 1",
  opts,
  async () => {
    await using tmp = await tempDir();
    const user = await unprivileged(join(tmp.path, "user"));
    if (typeof user === "string") {
      console.warn(`skipped: cannot run the client as an unprivileged user here (${user})`);
      return;
    }
    await Deno.chmod(tmp.path, 0o755);
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    await Deno.mkdir(a);
    await Deno.chown(a, user.uid, user.gid);
    const server = await ServerProc.start(join(tmp.path, "data"));
    const ca = startClient("A", server.port, a, { as: user, args: ["-v"] });
    const procs: Proc[] = [server, ca];
    try {
      const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
      const cb = startClient("B", server.port, b, { serial });
      procs.push(cb);
      await put(b, "ro/old.txt", "x");
      await waitForContent(a, "ro/old.txt", "x");
      await Deno.chmod(join(a, "ro"), 0o555); // A (not root) cannot create files in it
      await put(b, "ro/new.txt", "cannot land\n");
      await ca.waitForLine(/^failed ro\/new\.txt: .*[Pp]ermission denied/);
      const j = await statusUntil(a, (j) => j.state === "error", procs);
      assert.deepEqual(j.failed, ["ro/new.txt"]);
      assert.match(String((j.failures as { reason: string }[])[0]!.reason), /[Pp]ermission denied/);
      assert.match(String(j.message), /^1 item cannot be synced$/);
      const text = await clientStatus(a, []);
      assert.match(text.stdout, /^Failed \(1\):\n {2}ro\/new\.txt: .*[Pp]ermission denied/m);
      const r = await clientStatus(a, ["--wait", "--timeout", "2"]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      await Deno.chmod(join(a, "ro"), 0o755);
      const ok = await waitInSync(a);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.deepEqual(ok.json!.failed, []);
    } finally {
      for (const p of procs.reverse()) await p.stop();
      await Deno.chmod(join(a, "ro"), 0o755).catch(() => {});
    }
  },
);
