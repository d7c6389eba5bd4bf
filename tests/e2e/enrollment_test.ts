/**
 * End to end: enrollment edges. A serial code of another account on an enrolled folder is
 * refused (exit 2: the command line must change) unless `--rejoin` is given, which moves the folder and loses no file;
 * `--name` renames an enrolled device on the server; a serial code is checked for format before
 * anything is sent.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  admin,
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

async function config(folder: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(folder, ".cloudsync", "config.json")));
}

async function adminOk(data: string, ...args: string[]): Promise<string> {
  const r = await admin(data, ...args);
  assert.equal(r.code, 0, r.output);
  return r.output;
}

Deno.test(
  "a serial of another account is refused on an enrolled folder; --rejoin moves it and loses no file",
  opts,
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    const filesA: Record<string, string> = {
      "only-a.txt": "from A\n",
      "same.txt": "same on both\n",
      "clash.txt": "clash: A's version\n",
      "dir/deep-a.txt": "deep on A\n",
    };
    const filesB: Record<string, string> = {
      "only-b.txt": "from B\n",
      "same.txt": "same on both\n",
      "clash.txt": "clash: B's version\n",
    };
    for (const [p, c] of Object.entries(filesA)) await put(a, p, c);
    for (const [p, c] of Object.entries(filesB)) await put(b, p, c);
    const server = await ServerProc.start(data);
    const procs: Proc[] = [server];
    try {
      const [ca] = await startFirstClient("A", server.port, a);
      await ca.waitForLine(/^Synced: 4 sent/);
      await ca.stop();
      const [cb, serialB] = await startFirstClient("B", server.port, b);
      procs.push(cb);
      await cb.waitForLine(/^Synced: 3 sent/);
      const accountA = String((await config(a)).account);
      const accountB = String((await config(b)).account);
      assert.notEqual(accountA, accountB);

      // Without --rejoin: exit 2 (usage), one line saying what to do, nothing changed anywhere.
      const refused = startClient("A", server.port, a, { serial: serialB });
      assert.equal(await refused.exitCode(), EXIT.usage, refused.output());
      assert.match(
        refused.output(),
        new RegExp(
          `^Cannot start: ${a} is synced with account ${accountA}, and this serial code belongs to another account\\. To move this folder to that account .*run again with --rejoin; to keep syncing with account ${accountA}, run without the serial code\\.$`,
          "m",
        ),
      );
      assert.equal((await config(a)).account, accountA);
      assert.equal((await adminOk(data, "devices", accountB)).trim().split("\n").length, 2);

      // With --rejoin: A moves to B's account; every file of both survives.
      const moved = new Proc("A", [
        "client.ts",
        "127.0.0.1",
        String(server.port),
        a,
        "2",
        serialB,
        "--rejoin",
        "--name",
        "A",
      ]);
      procs.push(moved);
      await moved.waitForLine(new RegExp(`^Moved ${a} from account ${accountA} to account`));
      await waitConverged([a, b], 30_000, procs);
      assert.equal((await config(a)).account, accountB);
      const t = await tree(b);
      for (const [p, c] of [...Object.entries(filesA), ...Object.entries(filesB)]) {
        if (p === "clash.txt") continue;
        assert.equal(await Deno.readTextFile(join(b, p)), c, p);
      }
      const clash = [...t.keys()].filter((p) => p.startsWith("clash"));
      assert.equal(clash.length, 2, clash.join(", "));
      const versions = await Promise.all(clash.map((p) => Deno.readTextFile(join(b, p))));
      assert.deepEqual(versions.sort(), ["clash: A's version\n", "clash: B's version\n"]);
      for (const p of procs) assert.doesNotMatch(p.output(), /deleted/, p.output());
      // The old account still has everything A had sent it.
      assert.match(
        await adminOk(data, "accounts"),
        new RegExp(`^${accountA}\\s+1\\s+\\S+ \\S+\\s+4\\s`, "m"),
      );
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test(
  "--name renames an enrolled device; its own serial code is not needed",
  opts,
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const a = join(tmp.path, "a");
    const server = await ServerProc.start(data);
    const procs: Proc[] = [server];
    try {
      const [ca, serial] = await startFirstClient("A", server.port, a);
      await ca.waitForLine(/^Syncing /);
      await ca.stop();
      const account = String((await config(a)).account);
      const renamed = startClient("Laptop", server.port, a, { serial });
      procs.push(renamed);
      await renamed.waitForLine(/^Syncing .* as "Laptop"$/);
      assert.match(renamed.output(), /^Renamed this device from "A" to "Laptop"\.$/m);
      assert.match(renamed.output(), /the serial code is not needed/);
      assert.equal((await config(a)).deviceName, "Laptop");
      await waitFor(
        async () => /^\S+\s+Laptop\s/m.test(await adminOk(data, "devices", account)),
        async () => await adminOk(data, "devices", account),
      );
      assert.equal((await adminOk(data, "devices", account)).trim().split("\n").length, 2);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test("a malformed serial code is refused before anything is sent", opts, async () => {
  await using tmp = await tempDir();
  // A listener that only counts connections: nothing may reach it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const accepting = (async () => {
    for await (const c of listener) {
      connections++;
      c.close();
    }
  })().catch(() => {});
  try {
    const folder = join(tmp.path, "x");
    const port = (listener.addr as Deno.NetAddr).port;
    for (const serial of ["7K2M-9QXD-ABCD", "7K2M-9QXD-ABCD-7K2M-9QXD-ABCD-7K2M-9QXU"]) {
      const c = startClient("X", port, folder, { serial });
      assert.equal(await c.exitCode(), EXIT.usage, c.output());
      assert.equal(
        c.output(),
        `Cannot join account: "${serial}" is not a serial code (32 letters and digits, in groups of four: XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX); copy it again, or print a new one on the server with \`cloud-server reset-serial ACCOUNT\``,
      );
    }
    assert.equal(connections, 0);
    await assert.rejects(Deno.stat(folder), Deno.errors.NotFound);
  } finally {
    listener.close();
    await accepting;
  }
});
