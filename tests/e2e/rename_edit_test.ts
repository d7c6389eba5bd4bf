/**
 * End to end: a folder renamed on one device while a file inside it is edited on the other never
 * comes out split (the renamed folder holding a stale copy, the edit revived at the old path).
 * Whichever reaches the server first, the edit lands at the new path; a file moved and edited
 * on one side and edited on the other keeps both edits, side by side at the new path.
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
  waitConverged,
  waitForContent,
} from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** Server, A and B in sync on docs/report.txt and docs/other.txt; then `scene` runs. */
async function scene(
  name: string,
  fn: (ctx: {
    a: string;
    b: string;
    proc: (who: "A" | "B") => Proc;
    start: (who: "A" | "B") => Proc;
    stop: (who: "A" | "B") => Promise<void>;
  }) => Promise<void>,
) {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  await put(a, "docs/report.txt", "v1\n");
  await put(a, "docs/other.txt", "other\n");
  const server = await ServerProc.start(join(tmp.path, "data"));
  const env = { CLOUDSYNC_DEBUG: "1" };
  const procs: Record<string, Proc> = {};
  procs.A = startClient("A", server.port, a, { env, seconds: 60 });
  const serial = (await procs.A.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
  const start = (who: "A" | "B") => {
    const folder = who === "A" ? a : b;
    procs[who] = startClient(who, server.port, folder, {
      env,
      seconds: 60,
      ...(who === "B" ? { serial } : {}),
    });
    return procs[who]!;
  };
  start("B");
  try {
    await waitConverged([a, b], 30_000, [server, ...Object.values(procs)]);
    await fn({
      a,
      b,
      proc: (who) => procs[who]!,
      start,
      stop: async (who) => void await procs[who]!.stop(),
    });
    await waitConverged([a, b], 30_000, [server, ...Object.values(procs)]);
    const files = [...(await tree(a)).entries()].filter(([, i]) => i.kind === "file").map(([p]) =>
      p
    ).sort();
    return files;
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  } finally {
    for (const p of [...Object.values(procs), server]) await p.stop();
  }
}

Deno.test(
  "an edit follows a folder renamed on the other device, in either order",
  opts,
  async (t) => {
    await t.step("the rename reaches the server first", async () => {
      const files = await scene("rename first", async ({ a, b, proc, start, stop }) => {
        await stop("B");
        await put(b, "docs/report.txt", "v2 edited on B\n"); // offline edit
        await Deno.rename(join(a, "docs"), join(a, "papers"));
        // On the server before B comes back.
        await proc("A").waitForLine(/^Synced: 2 moved on server/);
        start("B");
        await waitForContent(a, "papers/report.txt", "v2 edited on B\n");
      });
      assert.deepEqual(files, ["papers/other.txt", "papers/report.txt"]);
    });
    await t.step("the edit reaches the server first", async () => {
      const files = await scene("edit first", async ({ a, b, proc, start, stop }) => {
        await stop("A");
        await Deno.rename(join(a, "docs"), join(a, "papers")); // offline rename
        await put(b, "docs/report.txt", "v2 edited on B\n");
        await proc("B").waitForLine(/^Synced: 1 sent \(docs\/report\.txt\)/);
        start("A");
        await waitForContent(b, "papers/report.txt", "v2 edited on B\n");
      });
      assert.deepEqual(files, ["papers/other.txt", "papers/report.txt"]);
    });
    await t.step(
      "moved and edited on one side, edited on the other: both edits kept, together",
      async () => {
        const files = await scene("both edited", async ({ a, b, proc, start, stop }) => {
          await stop("A");
          await Deno.rename(join(a, "docs"), join(a, "papers"));
          const f = await Deno.open(join(a, "papers/report.txt"), { write: true, append: true });
          await f.write(new TextEncoder().encode("and edited on A\n")); // same inode, new content
          f.close();
          await put(b, "docs/report.txt", "v2 edited on B\n");
          await proc("B").waitForLine(/^Synced: 1 sent \(docs\/report\.txt\)/);
          start("A");
          await waitForContent(b, "papers/report.txt", "v1\nand edited on A\n");
        });
        assert.equal(files.length, 3, `files: ${files}`);
        assert.ok(files.every((p) => p.startsWith("papers/")), `files: ${files}`);
        assert.ok(files.some((p) => /^papers\/report \(conflict from B .*\)\.txt$/.test(p)));
      },
    );
  },
);
