/**
 * Tests for the engine's attention (rechecks and holds), the stability rules for files caught
 * mid-write, and the pass summary as a pure function of outcomes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Attention, backoffMs, DEFER_FIRST_MS, RETRY_FIRST_MS } from "../../lib/core/attention.ts";
import {
  afterRead,
  beforeRead,
  EMPTIED_SETTLE_MS,
  QUIET_MS,
  SETTLE_MS,
} from "../../lib/core/stability.ts";
import { addTally, madeProgress, summaryLine, tally } from "../../lib/core/outcomes.ts";

Deno.test("attention: rechecks are scanned once, holds keep paths out until they run out", () => {
  const att = new Attention();
  att.recheck(["a", "b"]);
  assert.deepEqual(att.takeScopes(0).sort(), ["a", "b"]);
  assert.deepEqual(att.takeScopes(0), [], "a recheck is taken once");
  const h = att.failed("c", "Permission denied", 1000);
  assert.equal(h.until, 1000 + RETRY_FIRST_MS);
  assert.ok(att.heldAt(1500).has("c"));
  assert.deepEqual(att.takeScopes(1500), [], "still held");
  assert.equal(att.nextWake(1500), 1000 + RETRY_FIRST_MS);
  assert.deepEqual(att.takeScopes(2000), ["c"], "the hold ran out: look again");
  assert.equal(att.heldAt(2000).size, 0);
  // A second failure in a row waits twice as long; success forgets the streak.
  assert.equal(att.failed("c", "Permission denied", 2000).until, 2000 + 2 * RETRY_FIRST_MS);
  att.settled("c");
  assert.equal(att.failed("c", "again", 5000).until, 5000 + RETRY_FIRST_MS);
  assert.equal(att.troubled().get("c")?.reason, "again");
});

Deno.test("attention: deferrals back off from a short first wait; unstable paths are remembered", () => {
  const att = new Attention();
  assert.equal(att.deferred("d", "changed", 0).until, DEFER_FIRST_MS);
  assert.equal(att.deferred("d", "changed", 0).until, 2 * DEFER_FIRST_MS);
  att.unstable("f", 900, "being written", 100);
  assert.ok(att.recentlyUnstable("f", 200));
  assert.ok(!att.recentlyUnstable("f", 200 + 61_000), "forgotten after a minute");
  assert.equal(att.nextWake(100), 2 * DEFER_FIRST_MS, "the earliest hold: d's second deferral");
  assert.equal(backoffMs(100), 5 * 60 * 1000, "capped");
});

Deno.test("stability: files caught being written are not taken", async (t) => {
  const now = 10_000;
  const unstable = (retryAt: number, writing: boolean) => ({ retryAt, writing });
  const rows: [string, ReturnType<typeof beforeRead>, ReturnType<typeof unstable> | null][] = [
    ["an old file is stable", beforeRead({ size: 0, mtime: 1 }, 10, false, now), null],
    [
      "a file saved the watcher's debounce ago is stable",
      beforeRead({ size: 5, mtime: now - QUIET_MS }, undefined, false, now),
      null,
    ],
    [
      "a file changed a moment ago is looked at again a moment later (not yet 'being written')",
      beforeRead({ size: 5, mtime: now - 30 }, undefined, false, now),
      unstable(now - 30 + QUIET_MS, false),
    ],
    [
      "a file just emptied waits for the emptied settle time",
      beforeRead({ size: 0, mtime: now - 1500 }, 4096, false, now),
      unstable(now - 1500 + EMPTIED_SETTLE_MS, true),
    ],
    [
      "an emptied file is taken once that old",
      beforeRead({ size: 0, mtime: now - EMPTIED_SETTLE_MS }, 4096, false, now),
      null,
    ],
    [
      "a file that was empty before is stable",
      beforeRead({ size: 0, mtime: now - 200 }, 0, false, now),
      null,
    ],
    [
      "a file seen being written waits for quiet",
      beforeRead({ size: 9, mtime: now - 500 }, 3, true, now),
      unstable(now - 500 + SETTLE_MS, true),
    ],
    [
      "... and is taken once quiet",
      beforeRead({ size: 9, mtime: now - SETTLE_MS }, 3, true, now),
      null,
    ],
    [
      "unchanged while read",
      afterRead({ size: 5, mtime: 1, ino: 2 }, { size: 5, mtime: 1, ino: 2 }, 5, now),
      null,
    ],
    [
      "grew while read",
      afterRead({ size: 5, mtime: 1 }, { size: 7, mtime: now }, 7, now),
      unstable(now + SETTLE_MS, true),
    ],
    [
      "read fewer bytes than its size",
      afterRead({ size: 5, mtime: now }, { size: 5, mtime: now }, 3, now),
      unstable(now + SETTLE_MS, true),
    ],
    [
      "replaced while read",
      afterRead({ size: 5, mtime: now, ino: 2 }, { size: 5, mtime: now, ino: 3 }, 5, now),
      unstable(now + SETTLE_MS, true),
    ],
    [
      "deleted while read",
      afterRead({ size: 5, mtime: now }, null, 5, now),
      unstable(now + SETTLE_MS, true),
    ],
    [
      "a modification time in the future (another clock, touch -d) is no sign of a write",
      beforeRead({ size: 9, mtime: now + 1e9 }, 5, true, now),
      null,
    ],
  ];
  for (const [name, got, want] of rows) {
    await t.step(name, () => {
      if (want === null) assert.deepEqual(got, { stable: true });
      else {assert.deepEqual(got, {
          stable: false,
          reason: (got as { reason: string }).reason,
          ...want,
        });}
    });
  }
});

Deno.test("outcomes: the summary line counts what happened and never says Synced on failure", () => {
  const t = tally([
    { path: "a.txt", kind: "sent" },
    { path: "b.txt", kind: "sent" },
    { path: "x (conflict from A 2026-01-01 000000).txt", kind: "conflict" },
    { path: "d", kind: "dir" },
    { path: "c.txt", kind: "deferred", reason: "changed" },
  ]);
  assert.equal(t.sent, 2);
  assert.ok(madeProgress(t));
  assert.equal(
    summaryLine(t, { up: 2048, down: 0 }, 1500),
    "Synced: 2 sent (a.txt, b.txt), 1 conflict copy (x (conflict from A 2026-01-01 000000).txt) (2.0 KiB up, 0 B down, 1.5 s)",
  );
  const f = addTally(t, tally([{ path: "e.txt", kind: "failed", reason: "permission denied" }]));
  assert.match(
    summaryLine(f, { up: 0, down: 0 }, 0)!,
    /^Partly synced: .*1 failed \(e\.txt: permission denied\)/,
  );
  const only = tally([{ path: "e.txt", kind: "failed", reason: "denied" }]);
  assert.match(summaryLine(only, { up: 0, down: 0 }, 0)!, /^Not synced: 1 failed/);
  assert.equal(summaryLine(tally([{ path: "c", kind: "deferred" }]), { up: 0, down: 0 }, 0), null);
  assert.match(
    summaryLine(tally([{ path: "big.dat", kind: "deferred" }]), { up: 3 << 20, down: 0 }, 0)!,
    /^Waiting: 1 to retry, changed meanwhile \(big\.dat\) \(3\.0 MiB up/,
  );
  const many = tally(["1", "2", "3", "4"].map((p) => ({ path: p, kind: "received" as const })));
  assert.match(
    summaryLine(many, { up: 0, down: 9 }, 0)!,
    /^Synced: 4 received \(1, 2, 3, \.\.\.\)/,
  );
});
