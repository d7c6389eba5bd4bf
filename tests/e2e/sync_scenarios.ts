/**
 * The scenarios of the core end-to-end test (`sync_test.ts`): real clients keep folders identical
 * for every kind of item and change listed in the core issue. They take the servers as given (one
 * process for `sync_test.ts`; two instances behind a load balancer for
 * `tests/services/e2e_cluster_test.ts`), so every deployment passes the same scenarios.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  diffTrees,
  type Proc,
  put,
  randomBytes,
  startClient,
  startFirstClient,
  tree,
  waitConverged,
  waitFor,
  waitForContent,
} from "./harness.ts";

/** Where the devices connect, and what a failure message shows. */
export interface Servers {
  /** The port device A uses (B, C: theirs); the same for one server. */
  portA: number;
  portB: number;
  portC: number;
  /** The server processes (their output is shown when a step fails). */
  procs: Proc[];
  /** What the server believes about paths starting with `prefix`, for failure messages. */
  serverState?: (prefix: string) => Promise<string> | string;
}

/** For failure messages: what the server and each device believe about paths under "new". */
async function dumpState(top: string, servers: Servers, prefix = "new"): Promise<string> {
  const out: string[] = [];
  const q = (file: string, sql: string) => {
    try {
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        return JSON.stringify(db.prepare(sql).all());
      } finally {
        db.close();
      }
    } catch (e) {
      return String(e);
    }
  };
  out.push(
    "server: " +
      (servers.serverState ? await servers.serverState(prefix) : q(
        join(top, "data", "meta.db"),
        `SELECT path, kind, deleted, version FROM entries WHERE path LIKE '${prefix}%' ORDER BY version`,
      )),
  );
  for (const d of ["a", "b"]) {
    const db = join(top, d, ".cloudsync", "state.db");
    out.push(
      `${d} base: ` +
        q(
          db,
          `SELECT path, json_extract(data, '$.version') AS v FROM base WHERE path LIKE '${prefix}%'`,
        ),
    );
    out.push(
      `${d} remote: ` +
        q(
          db,
          `SELECT path, json_extract(data, '$.version') AS v FROM remote WHERE path LIKE '${prefix}%'`,
        ),
    );
    out.push(`${d} seq: ` + q(db, "SELECT value FROM meta"));
  }
  return out.join("\n");
}

/** Two devices converge on every kind of item and change (then a third joins). */
export async function everyKindOfChange(
  t: Deno.TestContext,
  root: string,
  servers: Servers,
): Promise<void> {
  const tmp = { path: root };
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  // Device A starts with a varied tree; B starts with nothing (its folder does not exist yet).
  await put(a, "hello.txt", "hello\n");
  await put(a, "zero", "");
  await put(a, "bin/random.bin", randomBytes(3 * 1024 * 1024 + 17));
  await put(a, "deep/er/still/x.txt", "x");
  await put(a, "café/naïve 日本語 ü.txt", "unicode\n");
  await put(a, "run.sh", "#!/bin/sh\necho hi\n");
  await Deno.chmod(join(a, "run.sh"), 0o755);
  await Deno.mkdir(join(a, "empty/dir"), { recursive: true });
  await Deno.utime(join(a, "hello.txt"), new Date(2001, 1, 2), new Date(2001, 1, 2));

  // Debug lines (scopes, planned actions, refusals) show in the output dumped on a failure.
  const env = { CLOUDSYNC_DEBUG: "1" };
  const [ca, serial] = await startFirstClient("A", servers.portA, a, env);
  const cb = startClient("B", servers.portB, b, { serial, env });
  const clients = [ca, cb];
  const procs = [...servers.procs, ...clients];
  try {
    await t.step(
      "the joining device downloads everything, mtimes and exec bit included",
      async () => {
        await cb.waitForLine(/Created folder/);
        await waitConverged([a, b], 30_000, procs);
        const ta = await tree(a);
        const tb = await tree(b);
        assert.equal(diffTrees(ta, tb, true), "");
        assert.equal(tb.get("run.sh")?.exec, true);
        assert.equal(tb.get("hello.txt")?.exec, false);
        assert.equal(tb.get("empty/dir")?.kind, "dir");
      },
    );

    await t.step("a modification on B reaches A", async () => {
      await put(b, "hello.txt", "hello, edited on B\n");
      await waitForContent(a, "hello.txt", "hello, edited on B\n");
    });

    await t.step(
      "a big file edited in place, grown and shrunk stays byte for byte equal",
      async () => {
        // B rebuilds such a file from a copy of its old version, writing only the changed chunks.
        const full = join(a, "bin/random.bin");
        const sameOnB = (want: Uint8Array) => async () => {
          try {
            const got = await Deno.readFile(join(b, "bin/random.bin"));
            return got.length === want.length && got.every((x, i) => x === want[i]);
          } catch {
            return false;
          }
        };
        const edits: [string, (f: Deno.FsFile) => Promise<void>][] = [
          ["64 KiB overwritten in the middle", async (f) => {
            await f.seek(1536 * 1024, Deno.SeekMode.Start);
            await f.write(randomBytes(64 * 1024));
          }],
          ["100 KiB appended", async (f) => {
            await f.seek(0, Deno.SeekMode.End);
            await f.write(randomBytes(100 * 1024));
          }],
          ["cut to 2.5 MiB, then 1 KiB overwritten near the start", async (f) => {
            await f.truncate(2560 * 1024);
            await f.seek(4096, Deno.SeekMode.Start);
            await f.write(randomBytes(1024));
          }],
        ];
        for (const [what, edit] of edits) {
          const f = await Deno.open(full, { read: true, write: true });
          try {
            await edit(f);
          } finally {
            f.close();
          }
          const want = await Deno.readFile(full);
          await waitFor(sameOnB(want), () => `B's bin/random.bin after: ${what}`);
        }
      },
    );

    await t.step("a tree created at once with mkdir -p reaches the other side", async () => {
      await put(a, "new/a/b/c/f.txt", "deep new file");
      await put(a, "new/a/b/c/g.txt", "another");
      await waitConverged([a, b], 20_000, procs);
      assert.equal(await Deno.readTextFile(join(b, "new/a/b/c/f.txt")), "deep new file");
    });

    await t.step("renames and moves of files and directories are mirrored", async () => {
      const inodeOnB = (await Deno.lstat(join(b, "hello.txt"))).ino;
      await Deno.rename(join(a, "hello.txt"), join(a, "hello-renamed.txt"));
      await Deno.rename(join(a, "deep"), join(a, "new/moved-deep"));
      await waitConverged([a, b], 20_000, procs);
      assert.equal((await tree(b)).has("hello.txt"), false);
      assert.equal(await Deno.readTextFile(join(b, "new/moved-deep/er/still/x.txt")), "x");
      // B moved its own file (same inode) rather than writing a second copy and deleting the first.
      if (typeof inodeOnB === "number") {
        assert.equal((await Deno.lstat(join(b, "hello-renamed.txt"))).ino, inodeOnB);
      }
    });

    await t.step("a big file moved on A is moved on B: nothing streamed, no partial", async () => {
      // Big enough to be announced for streaming (STREAM_MIN): a moved file must not be.
      await put(a, "big/stream.bin", randomBytes(17 * 1024 * 1024));
      await waitConverged([a, b], 30_000, procs);
      const inodeOnB = (await Deno.lstat(join(b, "big/stream.bin"))).ino;
      const linesBefore = cb.lines.length;
      const aLinesBefore = ca.lines.length;
      await Deno.mkdir(join(a, "big2"));
      await Deno.rename(join(a, "big/stream.bin"), join(a, "big2/stream.bin"));
      await waitConverged([a, b], 30_000, procs);
      if (typeof inodeOnB === "number") {
        assert.equal((await Deno.lstat(join(b, "big2/stream.bin"))).ino, inodeOnB);
      }
      const leftovers = await Array.fromAsync(Deno.readDir(join(b, ".cloudsync", "tmp")));
      assert.deepEqual(leftovers.map((e) => e.name), []);
      await waitFor( // and both say so
        () => ca.lines.slice(aLinesBefore).some((l) => /^Synced: .*\b1 moved on server\b/.test(l)),
        () => `A's output after the move:\n${ca.lines.slice(aLinesBefore).join("\n")}`,
        5_000,
      );
      await waitFor(
        () => cb.lines.slice(linesBefore).some((l) => /^Synced: .*\b1 moved here\b/.test(l)),
        () => `B's output after the move:\n${cb.lines.slice(linesBefore).join("\n")}`,
        5_000,
      );
    });

    await t.step("deleting a file and a whole tree on B deletes them on A", async () => {
      await Deno.remove(join(b, "zero"));
      await Deno.remove(join(b, "new"), { recursive: true });
      await waitFor(
        async () => {
          const ta = await tree(a);
          return !ta.has("zero") && !ta.has("new");
        },
        async () =>
          `A has ${[...(await tree(a)).keys()].join(", ")}\nB has ${
            [...(await tree(b)).keys()].join(", ")
          }\n${await dumpState(tmp.path, servers)}\n` +
          procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n"),
      );
      await waitConverged([a, b], 20_000, procs);
    });

    await t.step("the exec bit and binary content changes propagate", async () => {
      await Deno.chmod(join(a, "run.sh"), 0o644);
      await put(a, "bin/random.bin", randomBytes(1024 * 1024));
      await waitFor(
        async () => (await tree(b)).get("run.sh")?.exec === false,
        () => "exec bit still set on B",
      );
      await waitConverged([a, b], 20_000, procs);
    });

    await t.step("a third device joining later gets the same tree", async () => {
      const c = join(tmp.path, "c");
      const cc = startClient("C", servers.portC, c, { serial });
      clients.push(cc);
      procs.push(cc);
      await waitConverged([a, b, c], 30_000, procs);
    });
  } finally {
    for (const p of clients.reverse()) await p.stop();
  }
}

/** Names the protocol cannot carry are skipped with a warning; the rest syncs. */
export async function unsupportedNames(root: string, servers: Servers): Promise<void> {
  const a = join(root, "a");
  const b = join(root, "b");
  await put(a, "tab\there.txt", "control character in the name");
  await put(a, "fine.txt", "fine");
  const [ca, serial] = await startFirstClient("A", servers.portA, a);
  const cb = startClient("B", servers.portB, b, { serial });
  try {
    await ca.waitForLine(/Skipping tab\there\.txt: it contains a control character/);
    await waitForContent(b, "fine.txt", "fine");
    await put(a, "later.txt", "still syncing");
    await waitForContent(b, "later.txt", "still syncing");
    assert.deepEqual([...(await tree(b)).keys()].sort(), ["fine.txt", "later.txt"]);
  } finally {
    await cb.stop();
    await ca.stop();
  }
}

/** Symlinks are skipped with a warning and never followed. */
export async function symlinksSkipped(root: string, servers: Servers): Promise<void> {
  const a = join(root, "a");
  const b = join(root, "b");
  await put(a, "real.txt", "real");
  await put(root, "outside/secret.txt", "secret");
  await Deno.symlink(join(root, "outside"), join(a, "link-to-outside"));
  const [ca, serial] = await startFirstClient("A", servers.portA, a);
  const cb = startClient("B", servers.portB, b, { serial });
  try {
    await ca.waitForLine(/Skipping link-to-outside: symlinks are not synced/);
    await waitForContent(b, "real.txt", "real");
    const tb = await tree(b);
    assert.deepEqual([...tb.keys()], ["real.txt"]);
  } finally {
    await cb.stop();
    await ca.stop();
  }
}

/** Changes travel within seconds (watcher, then push), not by the periodic pass. */
export async function liveChanges(
  t: Deno.TestContext,
  root: string,
  servers: Servers,
): Promise<void> {
  const tmp = { path: root };
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  // SECONDS = 120: the periodic full pass cannot be what delivers these changes.
  const ca = startClient("A", servers.portA, a, { seconds: 120, env: { CLOUDSYNC_DEBUG: "1" } });
  const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
  const cb = startClient("B", servers.portB, b, {
    serial,
    seconds: 120,
    env: { CLOUDSYNC_DEBUG: "1" },
  });
  const procs = [...servers.procs, ca, cb];
  try {
    await cb.waitForLine(/^Syncing/);
    await ca.waitForLine(/^Syncing/);
    await t.step("a new file", async () => {
      await put(a, "new.txt", "fresh\n");
      await waitForContent(b, "new.txt", "fresh\n", 5_000);
    });
    await t.step("a tree made with mkdir -p, files inside at once", async () => {
      await put(b, "x/y/z/deep.txt", "deep\n");
      await waitForContent(a, "x/y/z/deep.txt", "deep\n", 5_000);
    });
    await t.step("a file moved in from outside, then renamed", async () => {
      await put(tmp.path, "outside.txt", "moved in\n");
      await Deno.rename(join(tmp.path, "outside.txt"), join(a, "x/moved.txt"));
      await waitForContent(b, "x/moved.txt", "moved in\n", 5_000);
      await Deno.rename(join(a, "x/moved.txt"), join(a, "renamed.txt"));
      await waitForContent(b, "renamed.txt", "moved in\n", 5_000);
      await waitFor(
        async () => !(await tree(b)).has("x/moved.txt"),
        () => "x/moved.txt still on B",
        5_000,
      );
    });
    await t.step("a deleted directory", async () => {
      await Deno.remove(join(b, "x"), { recursive: true });
      await waitFor(
        async () => !(await tree(a)).has("x"),
        async () =>
          `x still on A: ${[...(await tree(a)).keys()].join(", ")}; B has ${
            [...(await tree(b)).keys()].join(", ")
          }\n${await dumpState(tmp.path, servers, "x")}\n` +
          procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n"),
        5_000,
      );
    });
  } finally {
    await cb.stop();
    await ca.stop();
  }
}
