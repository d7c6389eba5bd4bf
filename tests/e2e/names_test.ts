/**
 * End to end: a device with Windows name rules (simulated on Linux with
 * CLOUDSYNC_TEST_PLATFORM=windows) keeps names that differ only in case as a "(case conflict)"
 * copy, skips names Windows cannot hold without ever deleting them elsewhere, and follows a
 * case-only rename.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  tree,
  waitFor,
  waitForContent,
} from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test(
  "a Windows device keeps case twins, skips unsafe names and deletes nothing",
  opts,
  async (t) => {
    await using tmp = await tempDir();
    const a = join(tmp.path, "linux");
    const b = join(tmp.path, "windows");
    await put(a, "Report.txt", "upper\n");
    await put(a, "report.txt", "lower\n");
    await put(a, "a:b.txt", "colon\n");
    await put(a, "CON", "reserved\n");
    await put(a, "bad|dir/inner.txt", "inside an unsafe folder\n");
    await put(a, "ok.txt", "fine\n");
    const server = await ServerProc.start(join(tmp.path, "data"));
    const [ca, serial] = await startFirstClient("L", server.port, a);
    const cb = startClient("W", server.port, b, {
      serial,
      env: { CLOUDSYNC_TEST_PLATFORM: "windows" },
    });
    const procs = [server, ca, cb];
    const names = async (root: string) => [...(await tree(root)).keys()].sort();
    try {
      await t.step("both case twins arrive, one under a case-conflict name", async () => {
        await waitFor(
          async () => (await names(b)).length === 3,
          async () => (await names(b)).join(", "),
        );
        const got = await names(b);
        assert.ok(got.includes("ok.txt"), got.join(", "));
        const twins = got.filter((n) => n !== "ok.txt");
        assert.equal(
          twins.filter((n) => / \(case conflict\)\.txt$/.test(n)).length,
          1,
          twins.join(", "),
        );
        const texts = await Promise.all(twins.map((n) => Deno.readTextFile(join(b, n))));
        assert.deepEqual(texts.sort(), ["lower\n", "upper\n"]);
      });
      await t.step(
        "each unsafe name is skipped with a warning and stays on the other device",
        async () => {
          for (const n of ["a:b.txt", "CON", "bad|dir"]) {
            assert.ok(
              cb.lines.some((l) => l.includes(n)),
              `no warning about ${n}:\n${cb.output()}`,
            );
          }
          await put(b, "from-windows.txt", "hello\n");
          await waitForContent(a, "from-windows.txt", "hello\n");
          const left = await names(a);
          for (const n of ["a:b.txt", "CON", "bad|dir/inner.txt", "Report.txt", "report.txt"]) {
            assert.ok(left.includes(n), `${n} vanished from the Linux device: ${left.join(", ")}`);
          }
        },
      );
      await t.step(
        "an edit of the case-conflict copy updates the right file everywhere",
        async () => {
          const copy = (await names(b)).find((n) => n.includes("(case conflict)"))!;
          const before = await Deno.readTextFile(join(b, copy));
          await put(b, copy, before.trim() + " edited on Windows\n");
          const wire = before === "upper\n" ? "Report.txt" : "report.txt";
          await waitForContent(a, wire, before.trim() + " edited on Windows\n");
          assert.equal((await names(a)).some((n) => n.includes("(case conflict)")), false);
        },
      );
      await t.step("a case-only rename on Linux is a rename on Windows", async () => {
        await Deno.rename(join(a, "ok.txt"), join(a, "OK.txt"));
        await waitFor(async () => {
          const got = await names(b);
          return got.includes("OK.txt") && !got.includes("ok.txt");
        }, async () => (await names(b)).join(", "));
        assert.equal(await Deno.readTextFile(join(b, "OK.txt")), "fine\n");
      });
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);
