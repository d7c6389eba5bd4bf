/**
 * End to end: history and restore with real processes (a server, two clients, the one-off
 * `history` and `restore` commands run beside the running clients): versions are listed; a file
 * goes back to its previous version on both devices, and the restore is undone; a deleted file
 * and a deleted folder tree come back; `--dry-run` changes nothing; the whole folder goes back to
 * a time before a mass deletion, in place and as a `--to` copy (byte for byte, the server
 * unchanged); a restore racing an edit on another device keeps both; restore works after a server
 * restart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  clientCommand,
  diffTrees,
  type Item,
  type Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  tree,
  waitConverged,
  waitFor,
  waitForContent,
} from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** A server and two clients A and B in `root`, A's folder seeded by `seed`, in sync. */
async function pair(root: string, seed: (a: string) => Promise<void>) {
  const a = join(root, "a");
  const b = join(root, "b");
  const data = join(root, "data");
  await Deno.mkdir(a, { recursive: true });
  await seed(a);
  const server = await ServerProc.start(data);
  const [ca, serial] = await startFirstClient("A", server.port, a);
  const cb = startClient("B", server.port, b, { serial });
  const procs: Proc[] = [server, ca, cb];
  try {
    await waitConverged([a, b], 30_000, procs);
  } catch (e) {
    for (const p of [...procs].reverse()) await p.stop();
    throw e;
  }
  return { a, b, data, server, ca, cb, serial, procs };
}

async function stopAll(procs: Proc[]): Promise<void> {
  for (const p of [...procs].reverse()) await p.stop();
}

/** `history --json` of FOLDER [PATH], parsed. */
async function historyJson(folder: string, ...args: string[]) {
  const r = await clientCommand(["history", folder, ...args, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as {
    path: string;
    version: number;
    time: string;
    size: number;
    deleted: boolean;
    device: string;
    kind: string;
    current: boolean;
  }[];
}

/** Waits until `folder` holds exactly `want` (byte for byte). */
async function waitSame(want: Map<string, Item>, folder: string): Promise<void> {
  let diff = "";
  await waitFor(
    async () => (diff = diffTrees(want, await tree(folder))) === "",
    () => `${folder}: ${diff}`,
    40_000,
  );
}

/** The folder's tree as a comparable string (kinds, content hashes, exec bits). */
async function snapshot(folder: string) {
  return await tree(folder);
}

Deno.test(
  "history lists versions; a restore brings the previous one to both devices and can be undone",
  opts,
  async () => {
    await using tmp = await tempDir();
    const { a, b, procs } = await pair(tmp.path, (a) => put(a, "report.txt", "draft one\n"));
    try {
      await put(a, "report.txt", "draft two\n");
      await waitForContent(b, "report.txt", "draft two\n");
      await put(a, "report.txt", "the final version\n");
      await waitForContent(b, "report.txt", "the final version\n");

      const h = await historyJson(a, "report.txt");
      assert.deepEqual(h.map((v) => [v.path, v.size, v.deleted, v.device, v.current]), [
        ["report.txt", 18, false, "A", true],
        ["report.txt", 10, false, "A", false],
        ["report.txt", 10, false, "A", false],
      ]);
      const times = h.map((v) => Date.parse(v.time));
      assert.ok(
        h.every((v) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$/.test(v.time)),
      );
      assert.ok(times[0]! > times[1]! && times[1]! > times[2]!, "newest first");
      assert.ok(h[0]!.version > h[1]!.version);
      // The table: local time with its zone, the size, the device; no PATH column for a file.
      const text = await clientCommand(["history", a, "report.txt"], {
        env: { TZ: "Europe/Paris" },
      });
      assert.equal(text.code, 0, text.stderr);
      const lines = text.stdout.trim().split("\n");
      assert.match(lines[0]!, /^\s*VERSION\s+TIME\s+SIZE\s+DEVICE\s+STATE$/);
      assert.equal(lines.length, 4);
      assert.match(
        lines[1]!,
        /^\s*\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0[12]:00\s+18 B\s+A\s+current$/,
      );
      // The folder's history has the path column.
      const all = await clientCommand(["history", a]);
      assert.match(all.stdout.split("\n")[0]!, /PATH$/);
      assert.match(all.stdout, /report\.txt/);

      // Restore without --at: the version before the current one, on both devices.
      const r = await clientCommand(["restore", a, "report.txt"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /^Restored 1 file \(10 B\) as of \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? [+-]\d\d:\d\d$/m,
      );
      await waitForContent(b, "report.txt", "draft two\n");
      await waitForContent(a, "report.txt", "draft two\n");
      const after = await historyJson(a, "report.txt");
      assert.equal(after.length, 4, "the restored version is a new one; the replaced one is kept");
      assert.deepEqual([after[0]!.size, after[0]!.current, after[0]!.device], [10, true, "A"]);
      // ... so the restore itself can be undone.
      const undo = await clientCommand(["restore", a, "report.txt"]);
      assert.equal(undo.code, 0, undo.stderr);
      await waitForContent(b, "report.txt", "the final version\n");
      await waitConverged([a, b], 20_000, procs);
      // An unknown path: exit 1, the message, and the oldest kept time.
      const none = await clientCommand(["restore", a, "nope.txt", "--at", "1h"]);
      assert.equal(none.code, 1);
      assert.match(
        none.stderr,
        /^Cannot restore nope\.txt: nothing kept for it at 1h; nothing is kept for it at all/,
      );
      const early = await clientCommand(["restore", a, "report.txt", "--at", "2000-01-01"]);
      assert.equal(early.code, 1);
      assert.match(
        early.stderr,
        /^Cannot restore report\.txt: nothing kept for it at 2000-01-01; the oldest kept version is from \d{4}-/,
      );
      const bad = await clientCommand(["restore", a, "report.txt", "--at", "last tuesday"]);
      assert.equal(bad.code, 2);
      assert.match(
        bad.stderr,
        /^Cannot read --at "last tuesday": give .*ISO 8601.*90s, 15m, 2h, 3d, 1w/,
      );
      assert.equal(bad.stderr.trim().split("\n").length, 1);
    } finally {
      await stopAll(procs);
    }
  },
);

Deno.test(
  "a deleted file and a deleted folder tree come back on both devices; --dry-run changes nothing",
  opts,
  async () => {
    await using tmp = await tempDir();
    const bin = new Uint8Array(300_000);
    for (let i = 0; i < bin.length; i += 65536) crypto.getRandomValues(bin.subarray(i, i + 65536));
    const { a, b, procs } = await pair(tmp.path, async (a) => {
      await put(a, "keep.txt", "kept\n");
      await put(a, "gone.txt", "deleted by mistake\n");
      await put(a, "tree/a.txt", "in the tree\n");
      await put(a, "tree/sub/b.bin", bin);
      await Deno.mkdir(join(a, "tree/sub/empty"), { recursive: true });
      await Deno.chmod(join(a, "tree/a.txt"), 0o600);
    });
    try {
      const before = await snapshot(a);
      await Deno.remove(join(a, "gone.txt"));
      await Deno.remove(join(a, "tree"), { recursive: true });
      await waitFor(async () => !(await tree(b)).has("tree"), () => "B still has tree/");
      await waitFor(async () => !(await tree(b)).has("gone.txt"), () => "B still has gone.txt");

      const deleted = await historyJson(a, "--deleted");
      assert.deepEqual(
        deleted.map((v) => v.path).sort(),
        ["gone.txt", "tree", "tree/a.txt", "tree/sub", "tree/sub/b.bin", "tree/sub/empty"],
      );
      assert.ok(deleted.every((v) => v.deleted));
      assert.equal(deleted.find((v) => v.path === "tree/sub/b.bin")!.size, 300_000);

      // A dry run says what would come back, and changes nothing anywhere.
      const server = await historyJson(a);
      const dry = await clientCommand(["restore", a, "gone.txt", "tree", "--dry-run"]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /^would restore gone\.txt \(deleted since; version \d+ of /m);
      assert.match(dry.stdout, /^would restore tree\/sub\/b\.bin \(deleted since;/m);
      assert.match(dry.stdout, /^would restore tree\/sub\/empty\/ /m);
      assert.match(dry.stdout, /^Would restore 1 file \(19 B\) as of .*; nothing was changed$/m);
      assert.match(
        dry.stdout,
        /^Would restore 2 files and 3 folders \(293\.\d KiB\) as of .*; nothing was changed$/m,
      );
      assert.deepEqual(await historyJson(a), server, "the server is unchanged");
      assert.equal((await tree(b)).has("tree"), false);

      const r = await clientCommand(["restore", a, "gone.txt", "tree"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Restored 1 file \(19 B\) as of /m);
      assert.match(r.stdout, /^Restored 2 files and 3 folders \(293\.\d KiB\) as of /m);
      await waitSame(before, b); // B has everything back, byte for byte
      await waitConverged([a, b], 30_000, procs);
      assert.equal(diffTrees(before, await tree(a)), "");
      assert.equal((await Deno.stat(join(b, "tree/a.txt"))).mode! & 0o777, 0o600, "and its bits");
      assert.deepEqual(await historyJson(a, "--deleted"), []);
    } finally {
      await stopAll(procs);
    }
  },
);

Deno.test(
  "the whole folder as of a time before a mass deletion: as a copy (server unchanged), then in place",
  opts,
  async () => {
    await using tmp = await tempDir();
    const { a, b, procs, ca } = await pair(tmp.path, async (a) => {
      for (let i = 0; i < 150; i++) await put(a, `docs/f${i}.txt`, `file ${i}\n`);
      await put(a, "edited.txt", "as it was\n");
    });
    try {
      const then = await snapshot(a);
      await new Promise((r) => setTimeout(r, 20)); // everything so far was made before TIME
      const at = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 20));
      await put(a, "edited.txt", "changed after TIME\n");
      await put(a, "new.txt", "made after TIME\n");
      await waitForContent(b, "new.txt", "made after TIME\n");
      // The mass deletion: held back, then confirmed (once).
      await Deno.remove(join(a, "docs"), { recursive: true });
      await ca.waitForLine(/Cannot propagate deletions: 150 of 152 synced files vanished/);
      const ok = await clientCommand(["confirm-delete", a]);
      assert.equal(ok.code, 0, ok.stderr);
      await waitFor(async () => !(await tree(b)).has("docs"), () => "B still has docs/", 30_000);

      // A copy of the folder as of TIME: byte for byte, and the server unchanged.
      const server = await historyJson(a);
      const copy = join(tmp.path, "copy");
      const c = await clientCommand(["restore", a, ".", "--at", at, "--to", copy]);
      assert.equal(c.code, 0, c.stderr);
      assert.match(c.stdout, /^Copied 151 files and 1 folder \(1\.\d KiB\) as of .* into /m);
      assert.equal(diffTrees(then, await tree(copy)), "");
      assert.deepEqual(await historyJson(a), server, "the server is unchanged");
      assert.equal((await tree(b)).has("docs"), false, "and nothing came back anywhere");
      // Again into the same folder: nothing is overwritten.
      await Deno.writeTextFile(join(copy, "edited.txt"), "mine\n");
      const again = await clientCommand(["restore", a, ".", "--at", at, "--to", copy]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /^Did not copy 151 items .*nothing was overwritten/m);
      assert.equal(await Deno.readTextFile(join(copy, "edited.txt")), "mine\n");

      // In place: deleted files come back, changed ones go back, the new one stays.
      const r = await clientCommand(["restore", a, ".", "--at", at, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual([out.files, out.folders, out.notRestored, out.dryRun], [151, 1, 0, false]);
      assert.equal(out.items.filter((i: { change: string }) => i.change === "deleted").length, 151);
      assert.deepEqual(
        out.items.filter((i: { change: string }) => i.change === "changed").map((
          i: { path: string },
        ) => i.path),
        ["edited.txt"],
      );
      const want = new Map(then);
      want.set("new.txt", (await tree(a)).get("new.txt")!);
      await waitSame(want, b);
      await waitConverged([a, b], 40_000, procs);
      assert.equal(await Deno.readTextFile(join(b, "edited.txt")), "as it was\n");
    } finally {
      await stopAll(procs);
    }
  },
);

Deno.test("a restore while another device edits the same file keeps both", opts, async () => {
  await using tmp = await tempDir();
  const { a, b, procs, server, serial } = await pair(
    tmp.path,
    (a) => put(a, "shared.txt", "version one\n"),
  );
  let cb = procs[2]!;
  try {
    await put(a, "shared.txt", "version two\n");
    await waitForContent(b, "shared.txt", "version two\n");
    // B edits while it is not connected: its change is not synced when the restore lands.
    await cb.stop();
    await put(b, "shared.txt", "B's unsynced edit\n");
    const r = await clientCommand(["restore", a, "shared.txt"]);
    assert.equal(r.code, 0, r.stderr);
    await waitForContent(a, "shared.txt", "version one\n");
    cb = startClient("B", server.port, b, { serial });
    procs[2] = cb;
    await waitConverged([a, b], 30_000, procs);
    const contents = async (dir: string) => {
      const out: string[] = [];
      for (const [p, i] of await tree(dir)) {
        if (i.kind === "file") out.push(await Deno.readTextFile(join(dir, p)));
      }
      return out.sort();
    };
    assert.deepEqual(await contents(b), ["B's unsynced edit\n", "version one\n"]);
    assert.ok([...(await tree(b)).keys()].some((p) => p.includes("(conflict from")));

    // At the same moment: whichever lands first, nothing is lost.
    await put(b, "race.txt", "race one\n");
    await waitForContent(a, "race.txt", "race one\n");
    await put(a, "race.txt", "race two\n");
    await waitForContent(b, "race.txt", "race two\n");
    const [restored] = await Promise.all([
      clientCommand(["restore", a, "race.txt"]),
      put(b, "race.txt", "B races the restore\n"),
    ]);
    await waitConverged([a, b], 30_000, procs);
    const now = await contents(b);
    // B's edit is on B (under the name or as a conflict copy); or it reached the server before
    // the restore looked, which then went back from it, as asked: it is kept in the history.
    if (!now.includes("B races the restore\n")) {
      const h = await historyJson(a, "race.txt");
      assert.ok(
        h.some((v) => v.device === "B" && v.size === "B races the restore\n".length && !v.current),
        JSON.stringify({ now, h }),
      );
    }
    // The restore went back from whatever was current when it ran ("race two", or B's edit
    // if that came first); if B's edit landed between its look and its commit, it was refused.
    if (restored.code === 0) {
      await waitFor(
        async () => (await contents(b)).some((c) => c === "race one\n" || c === "race two\n"),
        () => "the restored version is not on B",
      );
    } else {
      assert.match(restored.stderr, /changed on another device meanwhile; nothing of theirs/);
    }
  } finally {
    await stopAll(procs);
  }
});

Deno.test("restore after a server restart", opts, async () => {
  await using tmp = await tempDir();
  const setup = await pair(tmp.path, (a) => put(a, "notes.txt", "monday\n"));
  const { a, b, data, procs } = setup;
  try {
    await put(a, "notes.txt", "tuesday\n");
    await waitForContent(b, "notes.txt", "tuesday\n");
    const port = setup.server.port;
    await setup.server.stop();
    procs[0] = await ServerProc.start(data, port);
    const h = await historyJson(a, "notes.txt");
    assert.equal(h.length, 2);
    const r = await clientCommand(["restore", a, "notes.txt"]);
    assert.equal(r.code, 0, r.stderr);
    await waitForContent(b, "notes.txt", "monday\n", 40_000);
    await waitForContent(a, "notes.txt", "monday\n", 40_000);
  } finally {
    await stopAll(procs);
  }
});
