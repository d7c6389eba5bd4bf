/**
 * End to end: the mass-delete guard and a vanished folder never delete anything on the server.
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

Deno.test("emptying a folder is held back until --allow-mass-delete", opts, async () => {
  await using tmp = await tempDir();
  const { a, b, server, procs } = await syncedDocs(tmp.path);
  let ca = procs[1]!;
  try {
    await Deno.remove(join(a, "docs"), { recursive: true });
    await ca.waitForLine(
      /Cannot propagate deletions: 150 of 150 synced files vanished/,
    );
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
