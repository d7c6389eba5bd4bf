/**
 * End to end: a tree deleted on A (`rm -r`, which takes a while for many files, so A's watcher
 * may scan while it runs) vanishes whole on B, top folder included, without waiting for A's next
 * full pass.
 *
 * @module
 */

import { join } from "node:path";
import {
  Proc,
  put,
  ServerProc,
  startClient,
  tempDir,
  tree,
  waitConverged,
  waitFor,
} from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("a tree deleted with rm -r vanishes whole on the other device", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  // Enough other files that deleting a tree never looks like a mass deletion (that guard holds
  // deletions of more than half of the files back on purpose).
  for (let i = 0; i < 600; i++) await put(a, `keep/k${i}.txt`, `keep ${i}\n`);
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 150; i++) {
      await put(a, `tree${round}/sub${i % 20}/deeper/f${i}.txt`, `file ${i}\n`);
    }
  }
  const server = await ServerProc.start(join(tmp.path, "data"));
  const env = { CLOUDSYNC_DEBUG: "1" };
  const ca = startClient("A", server.port, a, { env, seconds: 120 });
  const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
  const cb = startClient("B", server.port, b, { serial, env, seconds: 120 });
  const procs: Proc[] = [server, ca, cb];
  try {
    await waitConverged([a, b], 60_000, procs);
    for (let round = 0; round < 2; round++) {
      const top = `tree${round}`;
      // A slow rm -r (files first, then folders, deepest first), so that A scans while it runs.
      const script = round === 0
        ? `rm -r "$1"`
        : `find "$1" -type f | while read f; do rm "$f"; sleep 0.003; done; ` +
          `find "$1" -depth -type d | while read d; do sleep 0.05; rmdir "$d"; done`;
      const rm = await new Deno.Command("sh", { args: ["-c", script, "sh", join(a, top)] })
        .output();
      if (!rm.success) throw new Error(new TextDecoder().decode(rm.stderr));
      await waitFor(
        async () => ![...(await tree(b)).keys()].some((p) => p === top || p.startsWith(top + "/")),
        async () =>
          `B still has ${
            [...(await tree(b)).keys()].filter((p) => p.startsWith(top)).slice(0, 5)
          }\n${procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n")}`,
        20_000,
      );
    }
    await waitConverged([a, b], 20_000, procs);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});
