/**
 * End to end: a file's modification time and permission bits sync like its content. A
 * `touch -d` (as after a git branch switch) reaches the other device without moving content; a
 * private (0600) file stays private on every device; a permission change on either side wins.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Proc, put, ServerProc, startClient, tempDir, waitConverged, waitFor } from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

const modeOf = async (p: string) => ((await Deno.stat(p)).mode ?? 0) & 0o777;
const mtimeOf = async (p: string) => (await Deno.stat(p)).mtime?.getTime() ?? 0;

Deno.test("modification times and permissions follow the file everywhere", opts, async (t) => {
  if (Deno.build.os === "windows") return; // no POSIX permissions there
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  await put(a, "notes.txt", "notes\n");
  await put(a, "big.bin", new Uint8Array(3 * 1024 * 1024).fill(7));
  const server = await ServerProc.start(join(tmp.path, "data"));
  const env = { CLOUDSYNC_DEBUG: "1" };
  const ca = startClient("A", server.port, a, { env, seconds: 60 });
  const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
  const cb = startClient("B", server.port, b, { serial, env, seconds: 60 });
  const procs: Proc[] = [server, ca, cb];
  const dump = () => procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n");
  try {
    await waitConverged([a, b], 30_000, procs);
    await t.step(
      "a time-only change (touch -d) reaches the other device, no content sent",
      async () => {
        const when = new Date(Date.UTC(2001, 1, 3, 4, 5, 6));
        const from = cb.lines.length;
        await Deno.utime(join(a, "big.bin"), when, when);
        await waitFor(async () => (await mtimeOf(join(b, "big.bin"))) === when.getTime(), dump);
        await cb.waitForLine(/^Synced: 1 metadata updated \(big\.bin\)/);
        assert.ok(
          !cb.lines.slice(from).some((l) => /getMany|received/.test(l)),
          `B fetched content for a time change:\n${cb.lines.slice(from).join("\n")}`,
        );
      },
    );
    await t.step("a private file stays private; a new 0600 file arrives as 0600", async () => {
      await Deno.chmod(join(a, "notes.txt"), 0o600);
      await put(a, "secret.txt", "only me\n");
      await Deno.chmod(join(a, "secret.txt"), 0o600);
      await waitFor(async () => {
        try {
          return (await modeOf(join(b, "notes.txt"))) === 0o600 &&
            (await modeOf(join(b, "secret.txt"))) === 0o600;
        } catch {
          return false;
        }
      }, dump);
    });
    await t.step(
      "a permission change on the other side comes back (exec bit, group read)",
      async () => {
        await Deno.chmod(join(b, "notes.txt"), 0o750);
        await waitFor(async () => (await modeOf(join(a, "notes.txt"))) === 0o750, dump);
        await waitConverged([a, b], 20_000, procs);
      },
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});
