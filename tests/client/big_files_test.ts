/**
 * Big files (over 1 MiB) between two in-process devices: the real engine on MemFs against the
 * real server. They build in a partial file in `.cloudsync/tmp/` (`staging.ts`): fetched in
 * batches, resumed from a verified prefix after a cut, rebuilt from an in-kernel copy of the old
 * version when edited in place, built from chunks of local files when copied or shifted,
 * prefetched while another device uploads, removed on a full disk, pruned when unused; and
 * uploaded in batches (`uploader.ts`), announced when very big (`push.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { PARTIAL_GRACE_MS, PARTIAL_PREFIX } from "../../lib/client/staging.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { pullChanges } from "../../lib/client/engine.ts";
import { STREAM_MIN } from "../../lib/client/push.ts";
import type { RemoteEntry } from "../../lib/core/types.ts";
import type { Tally } from "../../lib/core/outcomes.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";
import { type MemClient, TMP, withClients } from "../support/mem_client.ts";
import { noise } from "../support/noise.ts";

const MiB = 1024 * 1024;

/** 1 MiB of zeros (one chunk that compresses to almost nothing), then `size - 1 MiB` of noise. */
function content(size: number, seed = 7): Uint8Array {
  const out = new Uint8Array(size);
  out.set(noise(size - MiB, seed), MiB);
  return out;
}

function same(c: MemClient, path: string, want: Uint8Array): void {
  const got = c.fs.readFileSync(path);
  assert.equal(got.length, want.length, `${c.name}:${path} size`);
  assert.equal(sha256Hex(got), sha256Hex(want), `${c.name}:${path} content`);
}

/** A pass that may fail (a cut connection): its tally or its error. */
async function attempt(c: MemClient): Promise<Tally | Error | null> {
  try {
    return await c.sync();
  } catch (e) {
    return e as Error;
  }
}

async function partials(c: MemClient): Promise<string[]> {
  return (await c.tmpNames()).filter((n) => n.startsWith(PARTIAL_PREFIX));
}

/** What the server has for `path`, as `c`'s remote mirror holds it after a pull. */
async function remoteOf(c: MemClient, path: string): Promise<RemoteEntry> {
  await pullChanges(c.ctx());
  const r = c.state.loadRemote().get(path);
  assert.ok(r, `the server has ${path}`);
  return r;
}

/** Lets every back-off run out, then syncs `c`. */
function later(c: MemClient): Promise<Tally | null> {
  c.fs.advance(10 * 60_000);
  return c.sync();
}

Deno.test("a big file travels in batches, compressed where it pays, and leaves no partial file", () =>
  withClients({}, async ([a, b]) => {
    const data = content(10 * MiB);
    a.fs.writeBytes("big.bin", data, 0o640);
    const up = await a.sync();
    assert.equal(up?.sent, 1);
    assert.ok(a.count("putMany") >= 3, `10 MiB in 4 MiB batches: ${a.count("putMany")}`);
    assert.ok(a.stats.bytesUp < 9.5 * MiB, `the zeros went compressed: ${a.stats.bytesUp}`);
    const down = await b.sync();
    assert.equal(down?.received, 1);
    same(b, "big.bin", data);
    assert.ok(b.count("getMany") >= 3, `fetched in batches: ${b.count("getMany")}`);
    assert.equal(b.fs.lstat("big.bin")!.mode, 0o640);
    assert.equal(b.fs.lstat("big.bin")!.mtime, a.fs.lstat("big.bin")!.mtime);
    assert.deepEqual(await b.tmpNames(), [], "the partial file became the file");
    assert.equal(await b.sync(), null, "in sync");
  }));

Deno.test("a download cut short keeps its partial file and resumes after its verified prefix", () =>
  withClients({}, async ([a, b]) => {
    const data = content(20 * MiB, 3); // five 4 MiB batches, three in flight at a time
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    // The fourth batch is asked for once the first has arrived: the connection drops there.
    b.cutAfter = { type: "getMany", n: 4 };
    await attempt(b);
    const left = await partials(b);
    assert.equal(left.length, 1, "the partial file is kept to resume");
    const had = b.fs.lstat(`${TMP}/${left[0]}`)!.size;
    assert.ok(had > 0 && had < data.length, `a prefix arrived: ${had}`);
    assert.equal(b.fs.lstat("big.bin"), null, "nothing half-written in the folder");
    b.stats = newStats();
    await later(b);
    same(b, "big.bin", data);
    assert.equal(b.stats.bytesDown, data.length - had, "only what was missing was fetched");
    assert.deepEqual(await partials(b), []);
  }));

Deno.test("a partial file with wrong bytes: the good chunks are kept, the rest is fetched", () =>
  withClients({}, async ([a, b]) => {
    const data = content(6 * MiB, 5);
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    const remote = await remoteOf(b, "big.bin");
    const good = remote.chunks[0]!.size + remote.chunks[1]!.size;
    // Two right chunks, then garbage where the third should be (a torn write, another version).
    const junk = new Uint8Array(good + 5000);
    junk.set(data.subarray(0, good));
    junk.fill(0xee, good);
    b.fs.writeBytes(b.staging.partialPath("big.bin", remote.hash), junk);
    await b.sync();
    same(b, "big.bin", data);
    assert.equal(b.stats.bytesDown, data.length - good, "the verified prefix was not fetched");
  }));

Deno.test("an edit in place is rebuilt from a copy of the old version: only changed chunks travel", () =>
  withClients({}, async ([a, b]) => {
    const v1 = content(8 * MiB, 11);
    a.fs.writeBytes("big.bin", v1);
    await a.sync();
    await b.sync();
    const v2 = v1.slice();
    v2.set(noise(100, 99), 4 * MiB); // 100 bytes changed in the middle
    a.fs.writeBytes("big.bin", v2);
    await a.sync();
    assert.ok(a.stats.bytesUp < 9.5 * MiB + 3 * MiB, "only the changed chunks went up");
    b.stats = newStats();
    const t = await b.sync();
    assert.equal(t?.received, 1);
    same(b, "big.bin", v2);
    assert.ok(b.stats.bytesDown < 3 * MiB, `changed chunks only: ${b.stats.bytesDown}`);
    assert.ok(b.stats.chunksReused >= 10, `in place: ${b.stats.chunksReused}`);
    assert.deepEqual(await b.tmpNames(), []);
  }));

Deno.test("bytes inserted at the start: the rest is copied from the old version's own chunks", () =>
  withClients({}, async ([a, b]) => {
    const v1 = noise(6 * MiB, 21);
    a.fs.writeBytes("big.bin", v1);
    await a.sync();
    await b.sync();
    const v2 = new Uint8Array(v1.length + 1000);
    v2.set(noise(1000, 5));
    v2.set(v1, 1000); // every offset moves: nothing is in place, chunks come from the old file
    a.fs.writeBytes("big.bin", v2);
    await a.sync();
    b.stats = newStats();
    await b.sync();
    same(b, "big.bin", v2);
    assert.ok(b.stats.bytesDown < 2 * MiB, `the first chunks only: ${b.stats.bytesDown}`);
    assert.ok(b.stats.chunksReused >= 10, `copied from the old version: ${b.stats.chunksReused}`);
  }));

Deno.test("a copied big file is built from this device's own file, not downloaded", () =>
  withClients({}, async ([a, b]) => {
    const data = noise(5 * MiB, 31);
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    await b.sync();
    await a.fs.copyFile("big.bin", "copy.bin");
    await a.sync();
    b.stats = newStats();
    b.resetCounts();
    await b.sync();
    same(b, "copy.bin", data);
    assert.equal(b.stats.bytesDown, 0, "every chunk read from big.bin here");
    assert.equal(b.count("getMany") + b.count("get"), 0);
  }));

Deno.test("a local source that changed under the index is not trusted: its chunks are fetched", () =>
  withClients({}, async ([a, b]) => {
    const data = noise(3 * MiB, 41);
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    await b.sync();
    // B's copy changes in place (same size), unknown to B's merge base; A copies the file.
    b.fs.writeBytes("big.bin", noise(3 * MiB, 42));
    await a.fs.copyFile("big.bin", "copy.bin");
    await a.sync();
    b.stats = newStats();
    await b.sync(["copy.bin"]); // a watcher-scoped pass: big.bin is not looked at
    same(b, "copy.bin", data);
    assert.ok(b.stats.bytesDown >= data.length, "fetched: the local bytes did not match");
  }));

Deno.test("the old version edited while it is rebuilt: the download stops, both versions are kept", () =>
  withClients({}, async ([a, b]) => {
    const v1 = content(6 * MiB, 51);
    a.fs.writeBytes("big.bin", v1);
    await a.sync();
    await b.sync();
    const v2 = v1.slice();
    v2.set(noise(50, 52), 3 * MiB);
    a.fs.writeBytes("big.bin", v2);
    await a.sync();
    // B's user saves the file while its new version is being written into the partial file.
    let writes = 0;
    b.fs.before = (op, path) => {
      if (op !== "write" || !path.startsWith(`${TMP}/${PARTIAL_PREFIX}`)) return;
      if (++writes === 4) b.fs.writeText("big.bin", "B's own edit");
    };
    const t = await b.sync();
    b.fs.before = null;
    assert.ok(writes >= 4, "the edit happened during the rebuild");
    assert.ok(
      (t?.failed ?? 0) + (t?.deferred ?? 0) + (t?.conflicts ?? 0) >= 1,
      "not placed blindly",
    );
    await later(b);
    await later(a);
    await later(b);
    for (const c of [a, b]) {
      const contents = [...c.files().values()];
      assert.ok(contents.includes("file:B's own edit"), `${c.name} has B's edit`);
      const v2Text = new TextDecoder().decode(v2);
      assert.ok(contents.includes(`file:${v2Text}`), `${c.name} has A's new version`);
    }
    assert.deepEqual(b.files(), a.files(), "converged");
  }));

Deno.test("a full disk during a big download frees its partial file; with room it succeeds", () =>
  withClients({}, async ([a, b]) => {
    const data = content(5 * MiB, 61);
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    b.fs.capacity = b.fs.usedBytes() + 2 * MiB;
    const t = await b.sync();
    assert.equal(t?.failed, 1);
    assert.match(t!.failures[0]!.reason, /No space left on device/);
    assert.deepEqual(await partials(b), [], "the partial file that filled the disk is gone");
    assert.equal(b.fs.usedBytes(), 0);
    b.fs.capacity = Number.POSITIVE_INFINITY;
    await later(b);
    same(b, "big.bin", data);
  }));

Deno.test("a full disk while copying the old version for a rebuild leaves no half copy", () =>
  withClients({}, async ([a, b]) => {
    const v1 = content(6 * MiB, 71);
    a.fs.writeBytes("big.bin", v1);
    await a.sync();
    await b.sync();
    const v2 = v1.slice();
    v2.set(noise(10, 72), 5 * MiB);
    a.fs.writeBytes("big.bin", v2);
    await a.sync();
    b.fs.capacity = b.fs.usedBytes() + MiB; // the copy needs 6 MiB
    const t = await b.sync();
    assert.equal(t?.failed, 1);
    assert.deepEqual(await partials(b), []);
    same(b, "big.bin", v1);
    b.fs.capacity = Number.POSITIVE_INFINITY;
    await later(b);
    same(b, "big.bin", v2);
  }));

Deno.test("prefetch: a file still uploading elsewhere is filled ahead; its download then fetches nothing", () =>
  withClients({}, async ([a, b]) => {
    const data = content(4 * MiB, 81);
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    const remote = await remoteOf(b, "big.bin");
    const fetchCtx = { fs: b.fs, peer: b.peer, local: new Map(), stats: newStats() };
    assert.equal(b.staging.prefetch(fetchCtx, "big.bin", remote, null), true);
    assert.equal(b.staging.busy(), true);
    assert.equal(b.staging.prefetch(fetchCtx, "big.bin", remote, null), false, "one at a time");
    await b.staging.settled();
    assert.equal(b.staging.busy(), false);
    assert.equal((await partials(b)).length, 1);
    assert.equal(b.fs.lstat("big.bin"), null, "nothing visible yet");
    b.resetCounts();
    b.stats = newStats();
    await b.sync();
    same(b, "big.bin", data);
    assert.equal(b.count("getMany") + b.count("get"), 0, "the partial file was complete");
    assert.ok(b.stats.bytesDown >= data.length - MiB, "the prefetched bytes count for it");
  }));

Deno.test("prefetch still running when the download starts: the download waits for it", () =>
  withClients({}, async ([a, b]) => {
    const data = content(3 * MiB, 91);
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    const remote = await remoteOf(b, "big.bin");
    b.staging.prefetch(
      { fs: b.fs, peer: b.peer, local: new Map(), stats: newStats() },
      "big.bin",
      remote,
      null,
    );
    await b.sync(); // not awaiting the prefetch first
    same(b, "big.bin", data);
    assert.equal(b.staging.busy(), false);
  }));

Deno.test("a server entry that does not match its chunk list is refused before anything is written", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeBytes("big.bin", content(2 * MiB, 101));
    await a.sync();
    const remote = await remoteOf(b, "big.bin");
    const ctx = { fs: b.fs, peer: b.peer, local: new Map(), stats: newStats() };
    await assert.rejects(
      () => b.staging.fill(ctx, "big.bin", { ...remote, hash: "0".repeat(64) }, null),
      /does not match its chunk list/,
    );
    await assert.rejects(
      () => b.staging.fill(ctx, "big.bin", { ...remote, size: remote.size + 1 }, null),
      /does not match its chunk list/,
    );
    assert.deepEqual(await b.tmpNames(), []);
  }));

Deno.test("unused partial files go once the folder is in sync and the grace period is over", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("small.txt", "x");
    await a.sync();
    await b.sync();
    b.fs.writeText(`${TMP}/${PARTIAL_PREFIX}abandoned`, "half a download");
    b.fs.writeText(`${TMP}/download-other`, "not a partial file");
    assert.equal(await b.sync(), null, "in sync");
    assert.deepEqual(await partials(b), [`${PARTIAL_PREFIX}abandoned`], "recent: may resume");
    b.fs.advance(PARTIAL_GRACE_MS);
    await b.sync(["small.txt"]);
    assert.equal((await partials(b)).length, 1, "a scoped pass does not prune");
    assert.equal(await b.sync(), null);
    assert.deepEqual(await b.tmpNames(), ["download-other"]);
  }));

Deno.test({
  name: "a very big file is announced before its upload, so other devices can stream it",
  fn: () =>
    withClients({}, async ([a]) => {
      a.fs.writeBytes("huge.bin", noise(STREAM_MIN + MiB, 111));
      await a.sync();
      assert.equal(a.count("announce"), 1);
      // The same content again (a copy): the server has every chunk, nothing to stream.
      await a.fs.copyFile("huge.bin", "again.bin");
      a.resetCounts();
      await a.sync();
      assert.equal(a.count("announce"), 0);
      // A small edit of it: a few new chunks to upload, nothing worth streaming.
      const edited = a.fs.readFileSync("huge.bin").slice();
      edited.set(noise(64 * 1024, 112), 8 * MiB);
      a.fs.writeBytes("huge.bin", edited);
      a.resetCounts();
      await a.sync();
      assert.equal(a.count("commit"), 1);
      assert.equal(a.count("announce"), 0, "an edit of a few chunks is not announced");
    }),
});

Deno.test("a full disk when the finished file is renamed into place frees its partial file", () =>
  withClients({}, async ([a, b]) => {
    const data = content(3 * MiB, 121);
    a.fs.writeBytes("big.bin", data);
    await a.sync();
    // A rename can need a new directory block: ENOSPC, with the whole file already written.
    b.fs.before = (op, path) => {
      if (op === "rename" && path.startsWith(`${TMP}/${PARTIAL_PREFIX}`)) {
        throw new Error("No space left on device (os error 28)");
      }
    };
    const t = await b.sync();
    b.fs.before = null;
    assert.equal(t?.failed, 1);
    assert.deepEqual(await partials(b), [], "3 MiB given back at once");
    await later(b);
    same(b, "big.bin", data);
  }));

Deno.test("a device killed while a big file builds restarts and finishes it; nothing half-written shows", () =>
  withClients({}, async ([a, b]) => {
    const v1 = content(6 * MiB, 131);
    a.fs.writeBytes("big.bin", v1);
    await a.sync();
    await b.sync();
    const v2 = v1.slice();
    v2.set(noise(64, 132), 2 * MiB);
    a.fs.writeBytes("big.bin", v2);
    await a.sync();
    let writes = 0;
    b.fs.before = (op, path) => {
      if (op !== "write" || !path.startsWith(`${TMP}/${PARTIAL_PREFIX}`) || ++writes < 5) return;
      b.fs.before = null;
      const death = new Error("killed by the test");
      b.fs.kill(death);
      b.pipe.cut();
      throw death;
    };
    await attempt(b);
    await b.restart(); // what was not fsynced is lost, as after a real crash
    same(b, "big.bin", v1); // the old version, whole, until the new one is complete
    await later(b);
    same(b, "big.bin", v2);
    assert.deepEqual(await partials(b), []);
    assert.equal(await later(a), null, "nothing to send back: B never mistook a state for an edit");
  }));
