/**
 * End to end: a file whose name is not UTF-8 must not turn live sync off. Deno's watcher throws
 * for such an event; the client keeps watching, and a new file still reaches the other device
 * within about a second, far sooner than the SECONDS period (60 s here).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  createNonUtf8File,
  Proc,
  put,
  ServerProc,
  startClient,
  tempDir,
  waitForContent,
} from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("a non-UTF-8 file name does not stop live sync", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  await put(a, "seed.txt", "seed\n");
  const server = await ServerProc.start(join(tmp.path, "data"));
  const seconds = 60; // the periodic pass must not be what delivers the files below
  const ca = startClient("A", server.port, a, { seconds });
  const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
  const cb = startClient("B", server.port, b, { serial, seconds });
  const procs: Proc[] = [server, ca, cb];
  try {
    await waitForContent(b, "seed.txt", "seed\n", 30_000);
    await ca.waitForLine(/^Synced: /);
    for (let round = 0; round < 2; round++) {
      createNonUtf8File(a);
      await new Promise((r) => setTimeout(r, 300)); // let the watcher meet the bad event first
      const t0 = Date.now();
      await put(a, `after-${round}.txt`, `written after a bad name, round ${round}\n`);
      await waitForContent(
        b,
        `after-${round}.txt`,
        `written after a bad name, round ${round}\n`,
        5_000,
      );
      const ms = Date.now() - t0;
      assert.ok(ms < 3_000, `took ${ms} ms: live sync is off`);
    }
    assert.ok(
      ca.lines.filter((l) => /^Cannot watch/.test(l)).length <= 1,
      `watcher warnings repeated:\n${ca.output()}`,
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});
