/**
 * End to end, with a real server and real clients: ignore rules and selective sync.
 *
 * - The built-in defaults and a `.cloudignore` with negation and folder rules: ignored items are
 *   neither sent nor received, in both directions.
 * - A file that becomes ignored stops syncing and is kept everywhere (on both devices and the
 *   server, even when deleted on one device meanwhile); a change of `.cloudignore` applies
 *   without a restart, both ways: when the rule goes, the file is merged (nothing lost).
 * - `cloud-client exclude` refuses beside a running client, then removes only what the server
 *   holds (an unsynced local change is kept and listed) and frees the space; the server and the
 *   other device keep everything; `cloud-client include` beside the running client brings it
 *   all back, and the kept change then syncs. Without the server, exclude changes nothing.
 *
 * @module
 */

import { EXIT } from "../../lib/util/exit_codes.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  exists,
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

/** The live paths the server holds (its `meta.db`, read-only). */
function serverPaths(data: string): string[] {
  const db = new DatabaseSync(join(data, "meta.db"), { readOnly: true });
  try {
    const rows = db.prepare("SELECT path FROM entries WHERE deleted = 0 ORDER BY path").all();
    return rows.map((r) => String((r as { path: string }).path));
  } finally {
    db.close();
  }
}

/** Two devices' folders and the server's data folder, in `top`. */
function threeDirs(top: string): [string, string, string] {
  return [join(top, "a"), join(top, "b"), join(top, "data")];
}

/** A folder's paths, sorted. */
async function paths(root: string): Promise<string[]> {
  return [...(await tree(root)).keys()].sort();
}

/** Runs `cloud-client ARGS` to its end. */
async function command(...args: string[]): Promise<{ code: number; output: string }> {
  const p = new Proc(args[0] ?? "command", ["client.ts", ...args]);
  const code = await p.exitCode();
  return { code, output: p.output() };
}

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

Deno.test(
  "defaults and .cloudignore: ignored items are neither sent nor received",
  opts,
  async () => {
    await using tmp = await tempDir();
    const [a, b, data] = threeDirs(tmp.path);
    await put(
      a,
      ".cloudignore",
      "# ours\n*.tmp\n!keep.tmp\nbuild/\nnode_modules/\n/root-only.txt\n",
    );
    await put(a, "a.txt", "a\n");
    await put(a, ".DS_Store", "finder\n");
    await put(a, "photos/Thumbs.db", "thumbs\n");
    await put(a, "docs/report.odt", "report\n");
    await put(a, "docs/.~lock.report.odt#", "libreoffice lock\n");
    await put(a, "docs/~$letter.docx", "word lock\n");
    await put(a, "docs/.notes.txt.swp", "vim\n");
    await put(a, "dl/film.mkv.part", "downloading\n");
    await put(a, "x.tmp", "temp\n");
    await put(a, "keep.tmp", "kept by !keep.tmp\n");
    await put(a, "app/build/out.o", "object\n");
    await put(a, "app/build.txt", "a file, not the build folder\n");
    await put(a, "web/node_modules/left-pad/index.js", "js\n");
    await put(a, "root-only.txt", "ignored at the root\n");
    await put(a, "sub/root-only.txt", "synced below it\n");
    const server = await ServerProc.start(data);
    const [ca, serial] = await startFirstClient("A", server.port, a);
    const cb = startClient("B", server.port, b, { serial });
    const procs = [server, ca, cb];
    try {
      await waitForContent(b, "sub/root-only.txt", "synced below it\n", 30_000);
      await waitForContent(b, "app/build.txt", "a file, not the build folder\n");
      // Folders holding only ignored items (dl/, photos/, web/) are not sent either.
      const want = [
        ".cloudignore",
        "a.txt",
        "app",
        "app/build.txt",
        "docs",
        "docs/report.odt",
        "keep.tmp",
        "sub",
        "sub/root-only.txt",
      ];
      assert.deepEqual(await paths(b), want);
      assert.deepEqual(serverPaths(data), want);
      // The other way: B's litter stays on B (written before the file that is awaited).
      await put(b, "photos/desktop.ini", "[.ShellClassInfo]\n");
      await put(b, "b.tmp", "temp\n");
      await put(b, "web/node_modules/x/y.js", "js\n");
      await put(b, "from-b.txt", "b\n");
      await waitForContent(a, "from-b.txt", "b\n");
      assert.equal(await exists(join(a, "photos/desktop.ini")), false);
      assert.equal(await exists(join(a, "b.tmp")), false);
      assert.equal(await exists(join(a, "web/node_modules/x")), false);
      assert.deepEqual(serverPaths(data), [...want, "from-b.txt"].sort());
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test(
  "a file that becomes ignored is kept everywhere; a .cloudignore change applies at once",
  opts,
  async (t) => {
    await using tmp = await tempDir();
    const [a, b, data] = threeDirs(tmp.path);
    await put(a, "notes.log", "v1\n");
    await put(a, "old.log", "old\n");
    await put(a, "a.txt", "a\n");
    const server = await ServerProc.start(data);
    const [ca, serial] = await startFirstClient("A", server.port, a);
    const cb = startClient("B", server.port, b, { serial });
    const procs = [server, ca, cb];
    const dump = () => procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n");
    try {
      await waitConverged([a, b], 30_000, procs);
      await t.step("the rule arrives and each device keeps its own copy", async () => {
        await put(a, ".cloudignore", "*.log\n");
        await waitForContent(b, ".cloudignore", "*.log\n");
        await put(a, "notes.log", "v2 on A\n");
        await put(b, "notes.log", "v2 on B\n");
        await Deno.remove(join(a, "old.log"));
        // Written after the changes above: once they have crossed, those would have too.
        await put(a, "marker-a.txt", "a\n");
        await put(b, "marker-b.txt", "b\n");
        await waitForContent(b, "marker-a.txt", "a\n");
        await waitForContent(a, "marker-b.txt", "b\n");
        assert.equal(await Deno.readTextFile(join(a, "notes.log")), "v2 on A\n");
        assert.equal(await Deno.readTextFile(join(b, "notes.log")), "v2 on B\n");
        assert.equal(await Deno.readTextFile(join(b, "old.log")), "old\n");
        const live = serverPaths(data);
        assert.ok(live.includes("notes.log") && live.includes("old.log"), live.join(", "));
        for (const d of [a, b]) {
          const names = await paths(d);
          assert.equal(names.filter((p) => p.includes("conflict")).length, 0, names.join(", "));
        }
      });
      await t.step("the rule goes: merged without a restart, nothing lost", async () => {
        await put(a, ".cloudignore", "# nothing ignored\n");
        // A's edit is sent as an edit; B's becomes a conflict copy; old.log comes back to A.
        await waitForContent(b, "notes.log", "v2 on A\n");
        await waitForContent(a, "old.log", "old\n");
        await waitConverged([a, b], 30_000, procs);
        const names = await paths(a);
        const copies = names.filter((p) => p.startsWith("notes (conflict"));
        assert.equal(copies.length, 1, `${names.join(", ")}\n${dump()}`);
        assert.equal(await Deno.readTextFile(join(a, copies[0]!)), "v2 on B\n");
      });
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test(
  "exclude frees the space, keeps unsynced changes; include brings it all back",
  opts,
  async (t) => {
    await using tmp = await tempDir();
    const [a, b, data] = threeDirs(tmp.path);
    const big = random(300_000);
    await put(a, "Archive/big.bin", big);
    await put(a, "Archive/2019/b.txt", "b\n");
    await put(a, "Archive/notes.txt", "v1\n");
    await put(a, "Docs/d.txt", "d\n");
    const server = await ServerProc.start(data);
    const [ca, serial] = await startFirstClient("A", server.port, a);
    let cb = startClient("B", server.port, b, { serial });
    const procs = [server, ca, cb];
    try {
      await waitConverged([a, b], 30_000, procs);
      await t.step("refused beside a running client, nothing changed", async () => {
        const r = await command("exclude", b, "Archive");
        assert.equal(r.code, 1, r.output);
        assert.match(
          r.output,
          /^Cannot exclude Archive: a cloud-client is running on .* \(PID \d+\); stop it first/m,
        );
        assert.equal(await exists(join(b, ".cloudsync/ignore")), false);
        assert.equal(await exists(join(b, "Archive/big.bin")), true);
      });
      await t.step(
        "with the client stopped: what the server holds goes, the change stays",
        async () => {
          await cb.stop();
          await put(b, "Archive/notes.txt", "v2, only on B\n");
          // Edited a while ago (a file changed within the last second counts as being written).
          const past = new Date(Date.now() - 60_000);
          await Deno.utime(join(b, "Archive/notes.txt"), past, past);
          const r = await command("exclude", b, "Archive");
          assert.equal(r.code, 0, r.output);
          assert.match(
            r.output,
            /Excluded Archive on this device: removed 2 files and 1 folder, 29\d\.\d KiB freed/,
          );
          assert.match(r.output, /Kept 1 item the server does not have/);
          assert.match(r.output, /Archive\/notes\.txt: changed here since the last sync/);
          assert.deepEqual(
            (await paths(b)).filter((p) => p.startsWith("Archive")),
            ["Archive", "Archive/notes.txt"],
          );
          assert.equal(await Deno.readTextFile(join(b, "Archive/notes.txt")), "v2, only on B\n");
        },
      );
      await t.step(
        "the client runs again: nothing is deleted anywhere, Archive stays away",
        async () => {
          cb = startClient("B", server.port, b, { serial });
          procs.push(cb);
          await put(a, "Archive/from-a.txt", "new on A\n");
          await put(a, "Docs/more.txt", "more\n");
          await waitForContent(b, "Docs/more.txt", "more\n");
          await waitForContent(a, "Docs/more.txt", "more\n");
          assert.equal(await exists(join(b, "Archive/from-a.txt")), false);
          assert.equal(await exists(join(b, "Archive/big.bin")), false);
          assert.deepEqual(await Deno.readFile(join(a, "Archive/big.bin")), big);
          assert.equal(await Deno.readTextFile(join(a, "Archive/notes.txt")), "v1\n");
          const live = serverPaths(data);
          for (const p of ["Archive/big.bin", "Archive/2019/b.txt", "Archive/from-a.txt"]) {
            assert.ok(live.includes(p), `${p} not on the server: ${live.join(", ")}`);
          }
        },
      );
      await t.step(
        "include beside the running client: everything back, the kept change sent",
        async () => {
          const r = await command("include", b, "Archive");
          assert.equal(r.code, 0, r.output);
          assert.match(
            r.output,
            /Included Archive on this device \(29\d\.\d KiB on the server\): the running client downloads it now/,
          );
          await waitForContent(a, "Archive/notes.txt", "v2, only on B\n");
          await waitConverged([a, b], 30_000, procs);
          assert.deepEqual(await Deno.readFile(join(b, "Archive/big.bin")), big);
          assert.equal(await Deno.readTextFile(join(b, "Archive/from-a.txt")), "new on A\n");
          assert.equal((await paths(b)).filter((p) => p.includes("conflict")).length, 0);
        },
      );
      await t.step("include of what is not excluded says so", async () => {
        const r = await command("include", b, "Docs");
        assert.equal(r.code, 0, r.output);
        assert.match(r.output, /Docs is not excluded on this device: it syncs already/);
      });
      await t.step("exclude without the server: refused, nothing changed", async () => {
        await cb.stop();
        await server.stop();
        const rules = await Deno.readTextFile(join(b, ".cloudsync/ignore"));
        const r = await command("exclude", b, "Docs");
        assert.equal(r.code, 1, r.output);
        assert.match(r.output, /^Cannot exclude Docs: cannot connect to /m);
        assert.equal(await Deno.readTextFile(join(b, ".cloudsync/ignore")), rules);
        assert.equal(await Deno.readTextFile(join(b, "Docs/more.txt")), "more\n");
      });
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);

Deno.test("exclude and include check their arguments", opts, async () => {
  await using tmp = await tempDir();
  const r = await command("exclude", tmp.path, "x");
  assert.equal(r.code, EXIT.folder, "not a synced folder: the folder cannot be used as it is");
  assert.match(r.output, /^Cannot exclude x: .* is not a synced folder/m);
  const u = await command("include", tmp.path);
  assert.equal(u.code, 2);
  assert.match(u.output, /^Cannot include: usage is cloud-client include FOLDER PATH/m);
});
