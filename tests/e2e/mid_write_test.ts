/**
 * End to end: a file caught while a program writes it is never passed on half written. A file
 * truncated and then written (`( sleep 0.3; cat new ) > f`), or rewritten in place again and
 * again, must never show up empty or torn on the other device: B's copy is always the old or the
 * new version, byte for byte.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { Proc, ServerProc, startClient, tempDir, waitConverged } from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Samples B's copy (size every 10 ms; content whenever the size is a complete one) until `done`. */
async function sample(path: string, done: () => boolean, limitMs: number) {
  const sizes: number[] = [];
  const contents = new Set<string>();
  const end = Date.now() + limitMs;
  while (!done() && Date.now() < end) {
    try {
      const st = await Deno.stat(path);
      sizes.push(st.size);
      if (sizes.length % 10 === 0) contents.add(sha(await Deno.readFile(path)));
    } catch { /* being replaced: the rename is atomic, so this is only the name missing */ }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { sizes, contents };
}

Deno.test("a file being rewritten on A is never empty or torn on B", opts, async (t) => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  const size = 24 * 1024 * 1024;
  let current = random(size);
  await Deno.mkdir(a);
  await Deno.writeFile(join(a, "big.dat"), current);
  const server = await ServerProc.start(join(tmp.path, "data"));
  const env = { CLOUDSYNC_DEBUG: "1" };
  const ca = startClient("A", server.port, a, { env, seconds: 60 });
  const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
  const cb = startClient("B", server.port, b, { serial, env, seconds: 60 });
  const procs: Proc[] = [server, ca, cb];
  const onB = join(b, "big.dat");
  try {
    await waitConverged([a, b], 60_000, procs);
    for (const gap of [0.3, 1.5]) {
      await t.step(`truncated, then written ${gap} s later`, async () => {
        const next = random(size);
        const staged = join(tmp.path, "next.dat");
        await Deno.writeFile(staged, next);
        const allowed = new Set([sha(current), sha(next)]);
        const writer = new Deno.Command("sh", {
          args: ["-c", `( sleep ${gap}; cat "$1" ) > "$2"`, "sh", staged, join(a, "big.dat")],
        }).spawn();
        let arrived = false;
        const watch = sample(onB, () => arrived, 60_000);
        assert.equal((await writer.status).code, 0);
        await waitConverged([a, b], 60_000, procs);
        arrived = true;
        const { sizes, contents } = await watch;
        assert.ok(sizes.length > 10, "B's copy was sampled");
        assert.ok(sizes.every((s) => s === size), `B's copy had sizes ${[...new Set(sizes)]}`);
        for (const c of contents) assert.ok(allowed.has(c), "B's copy was torn");
        current = next;
      });
    }
    await t.step("rewritten in place three times in a row", async () => {
      const versions = [random(size), random(size), random(size)];
      const allowed = new Set([sha(current), ...versions.map(sha)]);
      let arrived = false;
      const watch = sample(onB, () => arrived, 90_000);
      for (const v of versions) {
        const f = await Deno.open(join(a, "big.dat"), { write: true, truncate: true });
        // Written in pieces with pauses, as a slow program would.
        for (let off = 0; off < v.length; off += 4 * 1024 * 1024) {
          await f.write(v.subarray(off, off + 4 * 1024 * 1024));
          await new Promise((r) => setTimeout(r, 60));
        }
        f.close();
        await new Promise((r) => setTimeout(r, 300));
      }
      current = versions[2]!;
      await waitConverged([a, b], 60_000, procs);
      arrived = true;
      const { sizes, contents } = await watch;
      assert.ok(sizes.every((s) => s === size), `B's copy had sizes ${[...new Set(sizes)]}`);
      for (const c of contents) assert.ok(allowed.has(c), "B's copy was torn");
    });
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});
