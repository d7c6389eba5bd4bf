/**
 * End to end: the mass-delete guard and a vanished folder never delete anything on the server.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  clientCommand,
  clientStatus,
  diffTrees,
  Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  tree,
  waitConverged,
  waitFor,
} from "./harness.ts";
import { EXIT } from "../../lib/util/exit_codes.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** Server, A and B in `root`, in sync on 150 files under docs/. Stop `procs` when done. */
async function syncedDocs(root: string) {
  const a = join(root, "a");
  const b = join(root, "b");
  for (let i = 0; i < 150; i++) await put(a, `docs/f${i}.txt`, `file ${i}\n`);
  const server = await ServerProc.start(join(root, "data"));
  const [ca, serial] = await startFirstClient("A", server.port, a);
  const cb = startClient("B", server.port, b, { serial });
  const procs: Proc[] = [server, ca, cb];
  try {
    await waitConverged([a, b], 30_000, procs);
  } catch (e) {
    for (const p of procs.reverse()) await p.stop();
    throw e;
  }
  return { a, b, server, ca, cb, procs };
}

Deno.test(
  "emptying a folder is held back until --allow-mass-delete (kept for scripts)",
  opts,
  async () => {
    await using tmp = await tempDir();
    const { a, b, server, procs } = await syncedDocs(tmp.path);
    let ca = procs[1]!;
    try {
      await Deno.remove(join(a, "docs"), { recursive: true });
      const warning = await ca.waitForLine(
        /Cannot propagate deletions: 150 of 150 synced files vanished.*$/,
      );
      // It names the two one-time ways out.
      assert.match(warning[0], /run: cloud-client bring-back ".*a"\./);
      assert.match(warning[0], /confirm it once with: cloud-client confirm-delete ".*a"$/);
      // A later edit on A still syncs while the deletions are held back...
      await put(a, "note.txt", "still syncing\n");
      await waitFor(async () => (await tree(b)).has("note.txt"), () => "note.txt did not reach B");
      // ...and B still has every file.
      assert.equal([...(await tree(b)).keys()].filter((p) => p.startsWith("docs/f")).length, 150);
      // The user confirms: restart A with --allow-mass-delete.
      await ca.stop();
      ca = new Proc("A2", [
        "client.ts",
        "127.0.0.1",
        String(server.port),
        a,
        "2",
        "--name",
        "A",
        "--allow-mass-delete",
      ]);
      procs.push(ca);
      await waitConverged([a, b], 30_000, procs);
      assert.deepEqual([...(await tree(b)).keys()], ["note.txt"]);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

/** The number of lines of `p` matching `re`. */
function count(p: Proc, re: RegExp): number {
  return p.lines.filter((l) => re.test(l)).length;
}

Deno.test(
  "bring-back: the vanished files come back onto this device; nothing is deleted",
  opts,
  async () => {
    await using tmp = await tempDir();
    const { a, b, ca, procs } = await syncedDocs(tmp.path);
    try {
      const before = await tree(b);
      const nothing = await clientCommand(["bring-back", a]);
      assert.equal(nothing.code, 1, "nothing is held back yet");
      const notSynced = await clientCommand(["bring-back", tmp.path]);
      assert.equal(notSynced.code, EXIT.folder, notSynced.stderr);
      assert.match(notSynced.stderr, /is not a synced folder/);
      assert.match(nothing.stderr, /^Cannot bring back vanished files: no deletions are held back/);
      await Deno.remove(join(a, "docs"), { recursive: true });
      await ca.waitForLine(/Cannot propagate deletions: 150 of 150/);
      // status says so, with the ways out.
      let held: Record<string, unknown> | null = null;
      await waitFor(
        async () => (held = (await clientStatus(a)).json)?.state === "error",
        () => JSON.stringify(held),
      );
      assert.match(String(held!.message), /^deletions are held back: .*cloud-client bring-back/);
      const r = await clientCommand(["bring-back", a]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /^Bringing back 150 vanished files .*The running client does it now\.$/m,
      );
      await waitConverged([a, b], 30_000, procs);
      const ok = await clientStatus(a, ["--wait", "--json", "--timeout", "30"]);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.equal(ok.json!.state, "in-sync");
      assert.equal(diffTrees(before, await tree(a)), "", "A has every file back");
      assert.equal(diffTrees(before, await tree(b)), "", "B lost nothing");
      const deleted = await clientCommand(["history", a, "--deleted", "--json"]);
      assert.deepEqual(JSON.parse(deleted.stdout), [], "nothing was deleted on the server");
      assert.equal(count(ca, /Cannot propagate deletions/), 1, "said once, not every pass");
      // One time only: a new mass deletion is held back again.
      await Deno.remove(join(a, "docs"), { recursive: true });
      await waitFor(
        () => count(ca, /Cannot propagate deletions: 150 of 150/) === 2,
        () => ca.output(),
      );
      assert.equal([...(await tree(b)).keys()].filter((p) => p.startsWith("docs/f")).length, 150);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test(
  "confirm-delete: exactly the vanished files are deleted, once; restore brings them back",
  opts,
  async () => {
    await using tmp = await tempDir();
    const { a, b, ca, procs } = await syncedDocs(tmp.path);
    try {
      const before = await tree(b);
      await Deno.remove(join(a, "docs"), { recursive: true });
      await ca.waitForLine(/Cannot propagate deletions: 150 of 150/);
      // Created after the guard tripped: not part of what is confirmed.
      await put(a, "later.txt", "new\n");
      await waitFor(
        async () => (await tree(b)).has("later.txt"),
        () => "later.txt did not reach B",
      );
      const r = await clientCommand(["confirm-delete", a]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /^Confirmed, once: 150 vanished files .* will be deleted on the server/,
      );
      await waitFor(async () => !(await tree(b)).has("docs"), () => "B still has docs/", 30_000);
      assert.deepEqual([...(await tree(b)).keys()], ["later.txt"]);
      await waitConverged([a, b], 30_000, procs);
      // The server kept them: they are listed, and a restore brings the folder back everywhere.
      const deleted = JSON.parse(
        (await clientCommand(["history", a, "--deleted", "--json"])).stdout,
      );
      assert.equal(deleted.filter((v: { path: string }) => v.path.startsWith("docs/")).length, 150);
      const back = await clientCommand(["restore", a, "docs"]);
      assert.equal(back.code, 0, back.stderr);
      assert.match(back.stdout, /^Restored 150 files and 1 folder /);
      await waitFor(
        async () => [...(await tree(b)).keys()].filter((p) => p.startsWith("docs/")).length === 150,
        () => "docs/ did not come back to B",
        30_000,
      );
      await waitConverged([a, b], 30_000, procs);
      for (const [p, i] of before) assert.deepEqual((await tree(a)).get(p), i, p);
      // The confirmation was for once: the next mass deletion is held back again.
      const said = count(ca, /Cannot propagate deletions/);
      await Deno.remove(join(a, "docs"), { recursive: true });
      await waitFor(() => count(ca, /Cannot propagate deletions/) > said, () => ca.output());
      assert.equal([...(await tree(b)).keys()].filter((p) => p.startsWith("docs/f")).length, 150);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test("a mass deletion seen while it is still going on is held back whole", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  for (let i = 0; i < 1000; i++) await put(a, `docs/f${String(i).padStart(4, "0")}.txt`, `${i}\n`);
  const server = await ServerProc.start(join(tmp.path, "data"));
  const [ca, serial] = await startFirstClient("A", server.port, a);
  const cb = startClient("B", server.port, b, { serial });
  const procs: Proc[] = [server, ca, cb];
  try {
    await waitConverged([a, b], 30_000, procs);
    // A slow deletion: a third of the files, then, a moment later, the rest. A pass that looks
    // in between sees only the first third gone (under half): it must not send those deletions.
    const names = [...Deno.readDirSync(join(a, "docs"))].map((e) => e.name).sort();
    for (const n of names.slice(0, 350)) Deno.removeSync(join(a, "docs", n));
    await new Promise((r) => setTimeout(r, 400)); // the stimulus: a user still deleting
    await Deno.remove(join(a, "docs"), { recursive: true });
    await ca.waitForLine(/Cannot propagate deletions: 1000 of 1000 synced files vanished/, 30_000);
    assert.equal([...(await tree(b)).keys()].filter((p) => p.startsWith("docs/f")).length, 1000);
    assert.equal(ca.lines.some((l) => /deleted on server/.test(l)), false, ca.output());
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test(
  "renaming the folder that holds every file is a move, not a mass deletion",
  opts,
  async () => {
    await using tmp = await tempDir();
    const { a, b, ca, cb, procs } = await syncedDocs(tmp.path);
    try {
      const inodes = new Map<string, number | null>();
      for (const e of Deno.readDirSync(join(b, "docs"))) {
        inodes.set(e.name, (await Deno.lstat(join(b, "docs", e.name))).ino);
      }
      const linesBefore = { a: ca.lines.length, b: cb.lines.length };
      await Deno.rename(join(a, "docs"), join(a, "papers"));
      await waitConverged([a, b], 30_000, procs);
      // Both report the moves as moves (summed: the watcher may split them over passes; the
      // upload is cut into several commits, none of which may split a move).
      const said = (lines: string[], from: number, what: RegExp) =>
        lines.slice(from).reduce((n, l) => n + Number(l.match(what)?.[1] ?? 0), 0);
      const movedA = () => said(ca.lines, linesBefore.a, /^Synced: .*?\b(\d+) moved on server\b/);
      const movedB = () => said(cb.lines, linesBefore.b, /^Synced: .*?\b(\d+) moved here\b/);
      await waitFor(
        () => movedA() === 150 && movedB() === 150,
        () => `A said ${movedA()} moved on server, B ${movedB()} moved here`,
        10_000,
      );
      const onB = [...(await tree(b)).keys()];
      assert.equal(onB.filter((p) => p.startsWith("papers/f")).length, 150);
      assert.equal(onB.some((p) => p.startsWith("docs")), false);
      assert.equal(ca.lines.some((l) => /Cannot propagate deletions/.test(l)), false);
      for (const [name, inode] of inodes) {
        if (typeof inode !== "number") continue;
        assert.equal((await Deno.lstat(join(b, "papers", name))).ino, inode, `${name} was copied`);
      }
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test(
  "a synced folder that disappears stops the client and deletes nothing",
  opts,
  async () => {
    await using tmp = await tempDir();
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    await put(a, "keep.txt", "precious\n");
    const server = await ServerProc.start(join(tmp.path, "data"));
    const [ca, serial] = await startFirstClient("A", server.port, a);
    const cb = startClient("B", server.port, b, { serial });
    try {
      await waitConverged([a, b], 20_000, [server, ca, cb]);
      await Deno.rename(a, join(tmp.path, "a-unmounted"));
      const status = await ca.exited();
      assert.equal(status.code, EXIT.folder);
      assert.match(ca.output(), /disappeared; nothing was deleted on the server/);
      assert.equal(await Deno.readTextFile(join(b, "keep.txt")), "precious\n");
    } finally {
      await cb.stop();
      await ca.stop();
      await server.stop();
    }
  },
);
