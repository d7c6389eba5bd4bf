/**
 * End to end: odd items never stop anything. A symlink or a FIFO at a path another device uses
 * does not block that device's file (it arrives beside the blocker, under a "blocked here" name,
 * and edits to it sync back); a name that is not valid UTF-8, a nested `.cloudsync` folder and
 * git's lock files are skipped while everything else keeps syncing live; an unreadable file or
 * folder (tried as an unprivileged user) is skipped with a warning and never deleted anywhere.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Proc,
  put,
  ServerProc,
  startClient,
  tempDir,
  tree,
  unprivileged,
  waitConverged,
  waitFor,
  waitForContent,
} from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

async function sh(script: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", script, "sh", ...args] }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

/** Server, A and B on one account, in sync on a first file; clients with a long period. */
async function pair(top: string, asA?: Awaited<ReturnType<typeof unprivileged>>) {
  const a = join(top, "a");
  const b = join(top, "b");
  if (!(await Deno.stat(a).catch(() => null))) await put(a, "keep.txt", "keep\n");
  const server = await ServerProc.start(join(top, "data"));
  const env = { CLOUDSYNC_DEBUG: "1" };
  const as = typeof asA === "object" ? asA : undefined;
  const ca = startClient("A", server.port, a, { env, seconds: 60, ...(as ? { as } : {}) });
  const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
  const cb = startClient("B", server.port, b, { serial, env, seconds: 60 });
  const procs: Proc[] = [server, ca, cb];
  await waitConverged([a, b], 30_000, procs);
  return { a, b, ca, cb, procs };
}

Deno.test("a symlink, a FIFO and other odd items never block or stop syncing", opts, async (t) => {
  await using tmp = await tempDir();
  const { a, b, ca, procs } = await pair(tmp.path);
  const dump = () => procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n");
  try {
    await t.step("a file arriving where a symlink sits lands beside it", async () => {
      await Deno.symlink("/nonexistent", join(a, "r"));
      await put(b, "r", "a file from B\n");
      await waitForContent(a, "r (blocked here by a symlink)", "a file from B\n");
      assert.equal((await Deno.lstat(join(a, "r"))).isSymlink, true, "the symlink is untouched");
      await ca.waitForLine(/"r" arrives here as "r \(blocked here by a symlink\)"/);
    });
    await t.step(
      "an edit of the file beside the blocker syncs back under its real name",
      async () => {
        await put(a, "r (blocked here by a symlink)", "edited on A\n");
        await waitForContent(b, "r", "edited on A\n");
        const onB = await tree(b);
        assert.ok(!onB.has("r (blocked here by a symlink)"), "the local name stays local");
      },
    );
    await t.step("a nested .cloudsync folder and git's lock files are never synced", async () => {
      await put(a, "inner/.cloudsync/config.json", '{"token":"secret"}');
      await put(a, "proj/.git/index.lock", "lock");
      await put(a, "proj/.git/HEAD", "ref: refs/heads/main\n");
      await waitForContent(b, "proj/.git/HEAD", "ref: refs/heads/main\n");
      const onB = await tree(b);
      assert.ok(!onB.has("inner/.cloudsync/config.json"), dump());
      assert.ok(!onB.has("proj/.git/index.lock"), dump());
      await ca.waitForLine(/Skipping inner\/\.cloudsync: \.cloudsync folders are never synced/);
    });
    await t.step(
      "a name that is not valid UTF-8 is skipped with a warning; the rest syncs live",
      async () => {
        await sh(`printf x > "$1/$(printf 'bad\\377name')"`, a);
        await ca.waitForLine(/Skipping bad.name: its name is not valid UTF-8/);
        const t0 = Date.now();
        await put(a, "after-bad-name.txt", "still live\n");
        await waitForContent(b, "after-bad-name.txt", "still live\n", 10_000);
        assert.ok(Date.now() - t0 < 10_000, "took the period, not the watcher");
      },
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test(
  "an unreadable file or folder is skipped with a warning and never deleted",
  opts,
  async (t) => {
    await using tmp = await tempDir();
    const user = await unprivileged(join(tmp.path, "user"));
    if (typeof user === "string") {
      console.warn(`skipped: cannot run the client as an unprivileged user here (${user})`);
      return;
    }
    const a = join(tmp.path, "a");
    await put(a, "keep.txt", "keep\n");
    await put(a, "locked.txt", "you will not read me\n");
    await put(a, "closed/inside.txt", "nor me\n");
    await sh(`chown -R ${user.uid}:${user.gid} "$1"`, a);
    await Deno.chmod(tmp.path, 0o755);
    const { b, ca, procs } = await pair(tmp.path, user);
    const dump = () => procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n");
    try {
      await t.step(
        "the unreadable items are kept everywhere and everything else syncs",
        async () => {
          await Deno.chmod(join(a, "locked.txt"), 0o000);
          await Deno.utime(join(a, "locked.txt"), new Date(), new Date()); // looks changed: rehash
          await Deno.chmod(join(a, "closed"), 0o000);
          await put(a, "new-on-a.txt", "from A\n");
          await sh(`chown ${user.uid}:${user.gid} "$1"`, join(a, "new-on-a.txt"));
          await put(b, "new-on-b.txt", "from B\n");
          await waitForContent(b, "new-on-a.txt", "from A\n");
          await waitForContent(a, "new-on-b.txt", "from B\n");
          await ca.waitForLine(/Skipping locked\.txt for now: it cannot be read/);
          await ca.waitForLine(/Skipping closed for now: it cannot be read/);
          const onB = await tree(b);
          assert.ok(onB.has("locked.txt") && onB.has("closed/inside.txt"), dump());
          assert.ok(!ca.lines.some((l) => /deleted on server/.test(l)), dump());
        },
      );
      await t.step(
        "a file that cannot be written is retried with back-off, never 'Synced'",
        async () => {
          await put(a, "ro/old.txt", "x");
          await sh(`chown -R ${user.uid}:${user.gid} "$1"`, join(a, "ro"));
          await waitForContent(b, "ro/old.txt", "x");
          await Deno.chmod(join(a, "ro"), 0o555); // A (not root) cannot create files in it
          const from = ca.lines.length;
          await put(b, "ro/new.txt", "cannot land\n");
          await ca.waitForLine(/^Not synced: 1 failed \(ro\/new\.txt: .*[Pp]ermission denied/);
          await new Promise((r) => setTimeout(r, 5000)); // observe the retries for a while
          const tries = ca.lines.slice(from).filter((l) => /failed \(ro\/new\.txt/.test(l)).length;
          assert.ok(
            tries >= 2 && tries <= 4,
            `${tries} attempts in about 5 s (back-off 1, 2, 4 s)`,
          );
          assert.ok(!ca.lines.slice(from).some((l) => /^Synced:.*ro\/new/.test(l)), dump());
          await Deno.chmod(join(a, "ro"), 0o755);
          await waitForContent(a, "ro/new.txt", "cannot land\n", 30_000);
        },
      );
      await t.step("once readable again, it syncs", async () => {
        await Deno.chmod(join(a, "closed"), 0o755);
        await Deno.chmod(join(a, "locked.txt"), 0o644);
        await sh(`printf 'read me now\\n' > "$1"`, join(a, "locked.txt"));
        await waitForContent(b, "locked.txt", "read me now\n");
        await waitFor(async () => (await tree(b)).has("closed/inside.txt"), dump);
      });
    } finally {
      for (const p of procs.reverse()) await p.stop();
      await sh(`chmod -R u+rwX "$1"`, tmp.path).catch(() => {});
    }
  },
);
