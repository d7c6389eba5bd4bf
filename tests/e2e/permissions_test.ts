/**
 * Local users cannot read what the server or the client keep (break 10 of issue 12): every
 * directory the server creates under its data directory is 0700 and every file 0600, and the
 * client's `.cloudsync/` is 0700 with its credential file 0600. Real processes, one sync.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { put, ServerProc, startFirstClient, tempDir, waitFor } from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** Every path under `root` (itself included) with its permission bits. */
async function modes(root: string): Promise<Map<string, { dir: boolean; mode: number }>> {
  const out = new Map<string, { dir: boolean; mode: number }>();
  const walk = async (p: string) => {
    const st = await Deno.lstat(p);
    out.set(p, { dir: st.isDirectory, mode: (st.mode ?? 0) & 0o777 });
    if (st.isDirectory) { for await (const e of Deno.readDir(p)) await walk(join(p, e.name)); }
  };
  await walk(root);
  return out;
}

Deno.test(
  {
    name: "server data is 0700/0600; the client's .cloudsync is 0700 and its secret 0600",
    ignore: Deno.build.os === "windows",
    ...opts,
  },
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const a = join(tmp.path, "a");
    await put(a, "private.txt", "secret content");
    const server = await ServerProc.start(data);
    const [client] = await startFirstClient("A", server.port, a);
    try {
      await waitFor(
        () => client.lines.some((l) => /private\.txt|1 sent|sent/.test(l)),
        () => client.output(),
      );
      await waitFor(async () => {
        for (const [, m] of await modes(data)) if (!m.dir && m.mode === 0) return false;
        return true;
      }, () => "");
      const bad = [...await modes(data)].filter(([, m]) => m.mode !== (m.dir ? 0o700 : 0o600));
      assert.deepEqual(bad.map(([p, m]) => `${p} ${m.mode.toString(8)}`), []);
      const state = join(a, ".cloudsync");
      assert.equal((await Deno.stat(state)).mode! & 0o777, 0o700);
      assert.equal((await Deno.stat(join(state, "config.json"))).mode! & 0o777, 0o600);
    } finally {
      await client.stop();
      await server.stop();
    }
  },
);
