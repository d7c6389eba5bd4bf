/**
 * Tests for the progress line as pure functions: it counts files done, shows a percentage that
 * reaches 100% only at the end, an ETA measured over the last seconds that settles within a few
 * seconds and follows a change of speed, and fits the terminal's width (the least useful parts
 * go first). And, with the real engine against an in-process server, that uploaded files count
 * as they finish, not when their commit is answered.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  formatEta,
  type ProgressCounts,
  progressText,
  RATE_MIN_SPAN_MS,
  RateMeter,
} from "../../lib/client/progress.ts";
import { MemServer } from "../support/mem_server.ts";
import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import { Staging } from "../../lib/client/staging.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { type EngineContext, syncUntilStable } from "../../lib/client/engine.ts";

const MiB = 1024 * 1024;

Deno.test("progress text: files, percentage, bytes, rate and ETA", () => {
  const c: ProgressCounts = {
    filesDone: 1234,
    filesTotal: 5000,
    bytesDone: 300 * MiB,
    bytesTotal: 1000 * MiB,
  };
  assert.equal(
    progressText(c, 10 * MiB, 200),
    "1234/5000 files, 30%, 300.0 MiB/1000.0 MiB, 10.0 MiB/s, ETA 1 min 10 s",
  );
  assert.equal(progressText(c, null, 200), "1234/5000 files, 30%, 300.0 MiB/1000.0 MiB");
  // All bytes sent, one file still to commit: not 100% yet.
  assert.match(
    progressText({ filesDone: 9, filesTotal: 10, bytesDone: 100, bytesTotal: 100 }, 5, 200),
    /^9\/10 files, 99%/,
  );
  assert.match(
    progressText({ filesDone: 10, filesTotal: 10, bytesDone: 100, bytesTotal: 100 }, 5, 200),
    /^10\/10 files, 100%/,
  );
  // Only empty files (or moves): the percentage follows the files.
  assert.match(
    progressText({ filesDone: 1, filesTotal: 4, bytesDone: 0, bytesTotal: 0 }, null, 200),
    /^1\/4 files, 25%$/,
  );
});

Deno.test("progress text: cut to the terminal's width, least useful parts first", () => {
  const c: ProgressCounts = {
    filesDone: 12,
    filesTotal: 5000,
    bytesDone: 3 * MiB,
    bytesTotal: 90 * MiB,
  };
  const full = progressText(c, MiB, 500);
  for (let width = 1; width <= full.length + 2; width++) {
    const t = progressText(c, MiB, width);
    assert.ok(t.length <= Math.max(1, width - 1), `${width}: ${JSON.stringify(t)}`);
  }
  assert.equal(progressText(c, MiB, 60), "12/5000 files, 3%, 1.0 MiB/s, ETA 1 min 30 s");
  assert.equal(progressText(c, MiB, 40), "12/5000 files, 3%, ETA 1 min 30 s");
  assert.equal(progressText(c, MiB, 20), "12/5000 files, 3%");
  assert.equal(progressText(c, MiB, 11), "12/5000 fi");
});

Deno.test("rate meter: no rate at first, then the rate of the last seconds", () => {
  const m = new RateMeter();
  m.sample(0, 0);
  m.sample(RATE_MIN_SPAN_MS / 2, 500);
  assert.equal(m.rate(), null, "too early to tell");
  m.sample(RATE_MIN_SPAN_MS, 1000);
  assert.equal(m.rate(), 1000);
  m.reset();
  assert.equal(m.rate(), null);
});

Deno.test("ETA settles within a few seconds and follows a change of speed", () => {
  // A transfer of 1000 MiB at about 20 MiB/s with bursts (one sample every 250 ms, as drawn).
  const total = 1000 * MiB;
  const m = new RateMeter();
  let done = 0;
  const etas: number[] = [];
  for (let t = 0; t <= 20_000; t += 250) {
    m.sample(t, done);
    const rate = m.rate();
    if (t >= 3000) etas.push((total - done) / rate! + t / 1000); // predicted end, in s
    // Bursty: 8 MiB in one tick, nothing in the next.
    done += (t / 250) % 2 === 0 ? 10 * MiB : 0;
  }
  const truth = total / (20 * MiB);
  for (const end of etas) {
    assert.ok(Math.abs(end - truth) / truth < 0.15, `predicted end ${end} s, truly ${truth} s`);
  }
  // The speed halves: within the window (5 s) plus a little, the ETA follows.
  const slow = new RateMeter();
  let b = 0;
  let t = 0;
  for (; t < 10_000; t += 250) {
    slow.sample(t, b);
    b += 5 * MiB;
  }
  for (; t < 16_000; t += 250) {
    slow.sample(t, b);
    b += 2.5 * MiB;
  }
  assert.ok(Math.abs(slow.rate()! - 10 * MiB) < 0.5 * MiB, `${slow.rate()! / MiB} MiB/s`);
});

Deno.test("ETA is rounded so it does not flicker", () => {
  assert.equal(formatEta(4.2), "5 s");
  assert.equal(formatEta(59), "59 s");
  assert.equal(formatEta(61), "1 min");
  assert.equal(formatEta(94), "1 min 30 s");
  assert.equal(formatEta(3 * 3600 + 4 * 60 + 10), "3 h 04 min");
});

Deno.test("uploaded files count as done as they finish, before their commit is answered", async () => {
  const server = await MemServer.start();
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-progress-" });
  const { peer } = await server.connect();
  const state = new StateDb(dir, { durable: false });
  try {
    await peer.request({ t: "register", device: "A" });
    const fs = new MemFs({ caseInsensitive: false, windowsNames: false });
    fs.mkdirSync(".cloudsync/tmp", true);
    const n = 600; // several commit segments of 250
    for (let i = 0; i < n; i++) fs.writeText(`f/${i}.txt`, `file ${i}\n`);
    fs.advance(5_000);
    const stats = newStats();
    // What the counter said when each commit was sent.
    const atCommit: number[] = [];
    const request = peer.request.bind(peer);
    peer.request = ((header: Record<string, unknown>, body?: Uint8Array) => {
      if (header.t === "commit") atCommit.push(stats.filesDone);
      return request(header, body);
    }) as typeof peer.request;
    const ctx: EngineContext = {
      peer,
      fs,
      staging: new Staging(fs, ".cloudsync/tmp"),
      state,
      device: "A",
      stats,
      log: () => {},
      warn: () => {},
    };
    const r = await syncUntilStable(ctx, null);
    assert.equal(r?.sent, n);
    assert.ok(atCommit.length >= 3, `${atCommit.length} commits`);
    assert.ok(atCommit[0]! >= 200, `${atCommit[0]} files counted when the first commit left`);
    assert.equal(stats.filesDone, n, "each file counted once");
    assert.equal(stats.uploadsDone, n);
  } finally {
    state.close();
    peer.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
