/**
 * Many small files between two in-process devices (the real engine on MemFs, the real server):
 * uploads go in segments of commits prepared ahead, downloads in groups of at most 512 chunks and
 * 4 MiB (one `getMany` each, the next fetched while one is written), small files of several
 * chunks are assembled whole; a group whose fetch is cut fails alone and the next pass finishes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { newStats } from "../../lib/client/transfer.ts";
import { withClients } from "../support/mem_client.ts";
import { noise } from "../support/noise.ts";

const KiB = 1024;

Deno.test("600 small files: segmented commits, grouped downloads, all byte for byte", () =>
  withClients({}, async ([a, b]) => {
    for (let i = 0; i < 600; i++) {
      a.fs.writeBytes(`d${i % 7}/f${i}.bin`, noise(9 * KiB + i, i + 1));
    }
    // Small by the downloader's rule (at most 1 MiB) but several chunks long.
    a.fs.writeBytes("several-chunks.bin", noise(1000 * KiB, 999));
    const up = await a.sync();
    assert.equal(up?.sent, 601);
    assert.ok(a.count("commit") >= 3, `segments of at most 250: ${a.count("commit")} commits`);
    const down = await b.sync();
    assert.equal(down?.received, 601);
    assert.ok(b.count("getMany") >= 2, `groups of at most 512 chunks: ${b.count("getMany")}`);
    assert.deepEqual(b.files(), a.files());
    assert.deepEqual(await b.tmpNames(), []);
  }));

Deno.test("a cut while groups of small files download: what arrived stays, the rest follows", () =>
  withClients({}, async ([a, b]) => {
    for (let i = 0; i < 1200; i++) a.fs.writeBytes(`f${i}.bin`, noise(5 * KiB, i + 7));
    await a.sync();
    b.cutAfter = { type: "getMany", n: 2 };
    try {
      await b.sync();
    } catch { /* the connection dropped: the pass may end with it */ }
    const got = [...b.files().keys()].length;
    assert.ok(got < 1200, `not everything arrived: ${got}`);
    assert.deepEqual(
      (await b.tmpNames()).filter((n) => !n.startsWith("partial-")),
      [],
      "no temporary file left behind",
    );
    b.stats = newStats();
    b.fs.advance(10 * 60_000);
    await b.sync();
    assert.deepEqual(b.files(), a.files());
  }));

Deno.test("a folder's fsync fails: nothing is recorded as synced; the next pass adopts what landed", () =>
  withClients({}, async ([a, b]) => {
    for (let i = 0; i < 1200; i++) a.fs.writeBytes(`f${i}.bin`, noise(5 * KiB, i + 3));
    await a.sync();
    let failed = false;
    b.fs.before = (op, path) => {
      if (op === "sync" && path === "" && !failed) {
        failed = true;
        throw new Error("Input/output error (os error 5)");
      }
    };
    let error: unknown = null;
    try {
      await b.sync();
    } catch (e) {
      error = e;
    }
    b.fs.before = null;
    assert.match(String(error), /Input\/output error/, "the pass stops at the failed fsync");
    assert.equal(b.state.loadBase().size, 0, "no file is recorded before its folder is durable");
    assert.deepEqual(
      await b.tmpNames(),
      [],
      "the next group's temporary files are removed",
    );
    b.fs.advance(10 * 60_000);
    await b.sync();
    assert.deepEqual(b.files(), a.files(), "identical files adopted: no conflict copies");
    assert.equal(await a.sync(), null, "and nothing goes back up");
  }));

Deno.test("a group of small files checks each folder on the way once, not once per file", () =>
  withClients({}, async ([a, b]) => {
    for (let i = 0; i < 600; i++) a.fs.writeBytes(`d${i % 3}/f${i}.bin`, noise(2 * KiB, i + 11));
    await a.sync();
    let checks = 0;
    const inside = b.fs.inside.bind(b.fs);
    b.fs.inside = (path: string) => {
      checks++;
      return inside(path);
    };
    const down = await b.sync();
    assert.equal(down?.received, 600);
    assert.deepEqual(b.files(), a.files());
    // 600 files in 3 folders arrive in groups of at most 512: at most 3 checks a group, plus
    // one as each folder is made (it was one per file: 603).
    assert.ok(checks <= 12, `folders resolved ${checks} times for 600 files`);
  }));
