/**
 * End to end: a full disk on the server, then on a client. Clear errors, nothing corrupted, no
 * partial file replaces a good one, and sync resumes by itself once space is freed. Uses small
 * tmpfs mounts (needs root, as on CI machines); skipped with a notice where mounting is refused.
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
  waitForContent,
} from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

function run(cmd: string, ...args: string[]): boolean {
  try {
    return new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

const canMount = (() => {
  const dir = Deno.makeTempDirSync({ prefix: "cloudsync-mount-probe-" });
  const ok = run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir);
  if (ok) run("umount", dir);
  Deno.removeSync(dir);
  if (!ok) console.error("disk_full_test: cannot mount tmpfs here (not root?); skipping");
  return ok;
})();

async function withTmpfs(
  dir: string,
  mib: number,
  fn: (grow: () => void) => Promise<void>,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  assert.ok(run("mount", "-t", "tmpfs", "-o", `size=${mib}m`, "tmpfs", dir), "mount failed");
  try {
    await fn(() => assert.ok(run("mount", "-o", "remount,size=256m", dir), "remount failed"));
  } finally {
    run("umount", dir);
  }
}

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

Deno.test({
  name: "a full server disk: clear error, nothing corrupted, resumes when space is freed",
  ignore: !canMount,
  ...opts,
}, async () => {
  await using tmp = await tempDir();
  const mnt = join(tmp.path, "server-disk");
  await withTmpfs(mnt, 8, async (grow) => {
    const data = join(mnt, "data");
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    const server = await ServerProc.start(data);
    const [ca, serial] = await startFirstClient("A", server.port, a);
    const cb = startClient("B", server.port, b, { serial });
    const procs: Proc[] = [server, ca, cb];
    try {
      await put(a, "first.txt", "fits\n");
      await waitForContent(b, "first.txt", "fits\n");
      await put(a, "big.bin", random(16 * 1024 * 1024));
      await ca.waitForLine(/the server's disk is full/, 30_000);
      assert.equal((await tree(b)).has("big.bin"), false);
      grow();
      await waitConverged([a, b], 60_000, procs);
      await server.stop();
      const check = new Proc("verify", ["server.ts", "verify", "--data", data]);
      assert.equal((await check.exited()).code, 0, check.output());
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  });
});

Deno.test({
  name: "a full client disk: the download stops cleanly and resumes later",
  ignore: !canMount,
  ...opts,
}, async () => {
  await using tmp = await tempDir();
  const mnt = join(tmp.path, "client-disk");
  await withTmpfs(mnt, 8, async (grow) => {
    const a = join(tmp.path, "a");
    const b = join(mnt, "b");
    const server = await ServerProc.start(join(tmp.path, "data"));
    const [ca, serial] = await startFirstClient("A", server.port, a);
    const cb = startClient("B", server.port, b, { serial });
    const procs: Proc[] = [server, ca, cb];
    try {
      await put(a, "good.txt", "v1\n");
      await waitForContent(b, "good.txt", "v1\n");
      const big = random(16 * 1024 * 1024);
      await put(a, "big.bin", big);
      await cb.waitForLine(/No space left on device|os error 28/, 30_000);
      // No partial file anywhere in the folder, and the good file is intact.
      assert.equal((await tree(b)).has("big.bin"), false);
      assert.equal(await Deno.readTextFile(join(b, "good.txt")), "v1\n");
      // Other changes still get through while the big one waits.
      await put(a, "good.txt", "v2\n");
      await waitForContent(b, "good.txt", "v2\n", 30_000);
      grow();
      await waitConverged([a, b], 60_000, procs);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  });
});
