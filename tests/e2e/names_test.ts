/**
 * End to end with Windows name rules: a device whose filesystem is Windows-like (case-insensitive,
 * reserved names refused; the real sync engine on `MemFs`, see tests/support/mem_device.ts),
 * against a real server and a real Linux client, keeps names that differ only in case as a
 * "(case conflict)" copy, skips names Windows cannot hold without ever deleting them elsewhere,
 * and follows a case-only rename.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  put,
  ServerProc,
  startFirstClient,
  tempDir,
  tree,
  waitFor,
  waitForContent,
} from "./harness.ts";
import { MemDevice, stateDirIn, WINDOWS } from "../support/mem_device.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test(
  "a Windows device keeps case twins, skips unsafe names and deletes nothing",
  opts,
  async (t) => {
    await using tmp = await tempDir();
    const a = join(tmp.path, "linux");
    await put(a, "Report.txt", "upper\n");
    await put(a, "report.txt", "lower\n");
    await put(a, "a:b.txt", "colon\n");
    await put(a, "CON", "reserved\n");
    await put(a, "bad|dir/inner.txt", "inside an unsafe folder\n");
    await put(a, "ok.txt", "fine\n");
    const server = await ServerProc.start(join(tmp.path, "data"));
    const [ca, serial] = await startFirstClient("L", server.port, a);
    await ca.waitForLine(/^Synced: /);
    const w = await MemDevice.join("W", server.port, serial, stateDirIn(tmp.path, "W"), WINDOWS);
    const procs = [server, ca];
    const names = async (root: string) => [...(await tree(root)).keys()].sort();
    const wNames = () => [...w.files().keys()].sort();
    try {
      await t.step("both case twins arrive, one under a case-conflict name", async () => {
        await w.sync();
        const got = wNames();
        assert.equal(got.length, 3, got.join(", "));
        assert.ok(got.includes("ok.txt"), got.join(", "));
        const twins = got.filter((n) => n !== "ok.txt");
        assert.equal(
          twins.filter((n) => / \(case conflict\)\.txt$/.test(n)).length,
          1,
          twins.join(", "),
        );
        assert.deepEqual(twins.map((n) => w.fs.readText(n)).sort(), ["lower\n", "upper\n"]);
      });
      await t.step(
        "each unsafe name is skipped with a warning and stays on the other device",
        async () => {
          for (const n of ["a:b.txt", "CON", "bad|dir"]) {
            assert.ok(
              w.warnings.some((l) => l.includes(n)),
              `no warning about ${n}:\n${w.warnings.join("\n")}`,
            );
          }
          w.fs.writeText("from-windows.txt", "hello\n");
          await w.sync();
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
          const copy = wNames().find((n) => n.includes("(case conflict)"))!;
          const before = w.fs.readText(copy)!;
          w.fs.writeText(copy, before.trim() + " edited on Windows\n");
          await w.sync();
          const wire = before === "upper\n" ? "Report.txt" : "report.txt";
          await waitForContent(a, wire, before.trim() + " edited on Windows\n");
          assert.equal((await names(a)).some((n) => n.includes("(case conflict)")), false);
        },
      );
      await t.step("a case-only rename on Linux is a rename on Windows", async () => {
        await Deno.rename(join(a, "ok.txt"), join(a, "OK.txt"));
        await waitFor(
          () => ca.lines.some((l) => /moved on server|sent \(OK\.txt/.test(l)),
          () => ca.output(),
        );
        await w.sync();
        const got = wNames();
        assert.ok(got.includes("OK.txt") && !got.includes("ok.txt"), got.join(", "));
        assert.equal(w.fs.readText("OK.txt"), "fine\n");
      });
    } finally {
      w.close();
      for (const p of procs.reverse()) await p.stop();
    }
  },
);
