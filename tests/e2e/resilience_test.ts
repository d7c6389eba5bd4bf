/**
 * End to end: offline catch-up, concurrent edits (conflict copies), a server restart in the middle
 * of a transfer, and refusals (wrong serial, port in use) that must harm nothing.
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
  waitFor,
  waitForContent,
} from "./harness.ts";
import { EXIT } from "../../lib/util/exit_codes.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

Deno.test("an offline device catches up and both sides keep their work", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  await put(a, "shared.txt", "v1\n");
  await put(a, "only-a-edits.txt", "a0\n");
  await put(a, "only-b-edits.txt", "b0\n");
  await put(a, "doomed.txt", "delete me on A\n");
  const server = await ServerProc.start(join(tmp.path, "data"));
  const [ca, serial] = await startFirstClient("A", server.port, a);
  let cb = startClient("B", server.port, b, { serial });
  const procs: Proc[] = [server, ca, cb];
  try {
    await waitConverged([a, b], 20_000, procs);
    await cb.stop(); // B goes offline
    await put(a, "only-a-edits.txt", "a1\n");
    await Deno.remove(join(a, "doomed.txt"));
    await put(a, "new-on-a.txt", "from A while B was away\n");
    await put(b, "only-b-edits.txt", "b1\n");
    await put(b, "new-on-b/x.txt", "from B while offline\n");
    await put(a, "shared.txt", "v2 from A\n");
    await put(b, "shared.txt", "v2 from B\n");
    await waitFor(async () => !(await tree(a)).has("doomed.txt"), () => "doomed.txt still on A");
    // B comes back: no serial needed any more.
    cb = startClient("B", server.port, b);
    procs.push(cb);
    await waitConverged([a, b], 30_000, procs);
    const t = await tree(a);
    assert.equal(await Deno.readTextFile(join(a, "only-a-edits.txt")), "a1\n");
    assert.equal(await Deno.readTextFile(join(a, "only-b-edits.txt")), "b1\n");
    assert.equal(await Deno.readTextFile(join(a, "new-on-b/x.txt")), "from B while offline\n");
    assert.equal(t.has("doomed.txt"), false);
    // The concurrent edit of shared.txt: one version keeps the name, the other a conflict copy
    // (named after A or B, depending on whose change reached the server first).
    const copies = [...t.keys()].filter((p) =>
      /^shared \(conflict from [AB] \d{4}-\d\d-\d\d \d{6}\)\.txt$/.test(p)
    );
    assert.equal(copies.length, 1, [...t.keys()].join(", "));
    const contents = [
      await Deno.readTextFile(join(a, "shared.txt")),
      await Deno.readTextFile(join(a, copies[0]!)),
    ];
    assert.deepEqual(contents.sort(), ["v2 from A\n", "v2 from B\n"]);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test(
  "a concurrent edit while both are online gives a conflict copy on every device",
  opts,
  async () => {
    await using tmp = await tempDir();
    const dirs = ["a", "b", "c"].map((n) => join(tmp.path, n));
    const server = await ServerProc.start(join(tmp.path, "data"));
    const [ca, serial] = await startFirstClient("A", server.port, dirs[0]!);
    const cb = startClient("B", server.port, dirs[1]!, { serial });
    const cc = startClient("C", server.port, dirs[2]!, { serial });
    const procs = [server, ca, cb, cc];
    try {
      await put(dirs[0]!, "doc.txt", "base\n");
      await waitForContent(dirs[1]!, "doc.txt", "base\n");
      await waitForContent(dirs[2]!, "doc.txt", "base\n");
      await Promise.all([
        put(dirs[0]!, "doc.txt", "edit A\n"),
        put(dirs[1]!, "doc.txt", "edit B\n"),
      ]);
      await waitConverged(dirs, 30_000, procs);
      await waitFor(async () => {
        const names = [...(await tree(dirs[2]!)).keys()];
        return names.some((n) => n.startsWith("doc (conflict from "));
      }, async () => [...(await tree(dirs[2]!)).keys()].join(", "));
      await waitConverged(dirs, 30_000, procs);
      const t = await tree(dirs[2]!);
      const texts = await Promise.all(
        [...t.keys()].filter((p) => p.startsWith("doc")).map((p) =>
          Deno.readTextFile(join(dirs[2]!, p))
        ),
      );
      assert.deepEqual(texts.sort(), ["edit A\n", "edit B\n"]);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test("a server restart during a transfer loses nothing and sync resumes", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  const data = join(tmp.path, "data");
  let server = await ServerProc.start(data);
  const port = server.port;
  const [ca, serial] = await startFirstClient("A", port, a);
  const cb = startClient("B", port, b, { serial });
  const procs: Proc[] = [ca, cb];
  try {
    await cb.waitForLine(/Syncing/);
    const big = new Uint8Array(40 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    for (let i = 0; i < 50; i++) await put(a, `many/f${i}.txt`, `file ${i}\n`);
    await put(a, "big.bin", big);
    await server.stop("SIGKILL"); // crash the server mid-transfer
    await ca.waitForLine(/^Cannot connect to 127\.0\.0\.1:\d+: /);
    server = await ServerProc.start(data, port);
    await waitConverged([a, b], 60_000, [server, ...procs]);
    assert.equal((await tree(b)).size, 52);
  } finally {
    for (const p of procs) await p.stop();
    await server.stop();
  }
});

Deno.test(
  "a wrong serial code is refused with one clear line and nothing written",
  opts,
  async () => {
    await using tmp = await tempDir();
    const server = await ServerProc.start(join(tmp.path, "data"));
    const folder = join(tmp.path, "never-created");
    try {
      const c = startClient("X", server.port, folder, {
        serial: "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH",
      });
      const status = await c.exited();
      assert.equal(status.code, EXIT.refused);
      assert.match(
        c.output(),
        /^Cannot join account: this serial code is not known to the server/m,
      );
      assert.match(c.output(), /`cloud-server reset-serial ACCOUNT`/);
      await assert.rejects(Deno.stat(folder), Deno.errors.NotFound);
    } finally {
      await server.stop();
    }
  },
);

Deno.test("a second server on a port in use fails with a clear error", opts, async () => {
  await using tmp = await tempDir();
  const server = await ServerProc.start(join(tmp.path, "data"));
  try {
    const second = new Proc("second", [
      "server.ts",
      String(server.port),
      "--host",
      "127.0.0.1",
      "--data",
      join(tmp.path, "d2"),
    ]);
    const status = await second.exited();
    assert.equal(status.code, 1);
    assert.match(second.output(), /Cannot listen on 127\.0\.0\.1:\d+: the port is already in use/);
  } finally {
    await server.stop();
  }
});

Deno.test(
  "a client started while the server is down waits and syncs once it is up",
  opts,
  async () => {
    await using tmp = await tempDir();
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const a = join(tmp.path, "a");
    await put(a, "early.txt", "written before the server existed\n");
    const ca = startClient("A", port, a, { seconds: 1 });
    let server: ServerProc | null = null;
    try {
      await ca.waitForLine(
        /^Cannot connect to 127\.0\.0\.1:\d+: nothing is listening on that port/,
      );
      server = await ServerProc.start(join(tmp.path, "data"), port);
      const m = await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/);
      const b = join(tmp.path, "b");
      const cb = startClient("B", port, b, { serial: m[1]! });
      try {
        await waitForContent(b, "early.txt", "written before the server existed\n");
      } finally {
        await cb.stop();
      }
    } finally {
      await ca.stop();
      await server?.stop();
    }
  },
);

Deno.test("a download cut by a killed client continues where it stopped", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  const size = 96 * 1024 * 1024;
  const big = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
  await put(a, "big.bin", big);
  const server = await ServerProc.start(join(tmp.path, "data"));
  const [ca, serial] = await startFirstClient("A", server.port, a);
  const procs: Proc[] = [server, ca];
  try {
    await ca.waitForLine(/^Synced: 1 sent/, 60_000);
    let cb = startClient("B", server.port, b, { serial });
    procs.push(cb);
    // Kill B as soon as a good part of the file is in its partial download.
    const tmpDir = join(b, ".cloudsync", "tmp");
    await waitFor(
      async () => {
        let names: string[] = [];
        try {
          names = [...Deno.readDirSync(tmpDir)].map((e) => e.name);
        } catch { /* not created yet */ }
        for (const n of names.filter((n) => n.startsWith("partial-"))) {
          const st = await Deno.stat(join(tmpDir, n)).catch(() => null);
          if (st && st.size > 8 * 1024 * 1024) return true;
        }
        return false;
      },
      () => "no partial download appeared",
      60_000,
    );
    await cb.stop("SIGKILL");
    assert.equal((await tree(b)).has("big.bin"), false);
    cb = startClient("B", server.port, b);
    procs.push(cb);
    await waitConverged([a, b], 60_000, procs);
    // What the restarted client fetched (0 B when the kill came after the last chunk arrived).
    const m = cb.lines.map((l) => l.match(/^Synced: 1 received \(.*, ([\d.]+) (B|KiB|MiB) down/))
      .find((x) => x);
    assert.ok(m, cb.output());
    const mib = Number(m[1]) / { B: 1024 * 1024, KiB: 1024, MiB: 1 }[m[2] as "B" | "KiB" | "MiB"];
    assert.ok(mib < 88, `the restarted download fetched ${mib} MiB of 96`);
    assert.deepEqual([...Deno.readDirSync(tmpDir)], []);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test("a big file starts arriving on B before A has finished uploading it", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  const server = await ServerProc.start(join(tmp.path, "data"));
  const [ca, serial] = await startFirstClient("A", server.port, a);
  const cb = startClient("B", server.port, b, { serial });
  const procs: Proc[] = [server, ca, cb];
  try {
    await cb.waitForLine(/^Syncing/);
    const size = 192 * 1024 * 1024;
    const big = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    await put(tmp.path, "stage.bin", big);
    await Deno.rename(join(tmp.path, "stage.bin"), join(a, "big.bin"));
    const tmpDir = join(b, ".cloudsync", "tmp");
    let earlyBytes = 0;
    await waitFor(
      async () => {
        if (ca.lines.some((l) => l.startsWith("Synced: 1 sent"))) return true; // too late to look
        for (const e of [...Deno.readDirSync(tmpDir)]) {
          const st = await Deno.stat(join(tmpDir, e.name)).catch(() => null);
          if (e.name.startsWith("partial-") && st && st.size > 0) {
            earlyBytes = Math.max(earlyBytes, st.size);
          }
        }
        return earlyBytes > 0 && !ca.lines.some((l) => l.startsWith("Synced: 1 sent"));
      },
      () => "never looked",
      60_000,
    );
    assert.ok(earlyBytes > 0, "B had nothing of the file before A's upload was committed");
    await waitConverged([a, b], 60_000, procs);
    // The summary counts the bytes that really crossed, those streamed early included.
    const line = await cb.waitForLine(/^Synced: 1 received .*, ([\d.]+) MiB down/);
    assert.ok(Number(line[1]) >= 190, `B said: ${line[0]}`);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});
