/**
 * Tests for what `cloud-client status` says, as pure functions: a record read back is checked and
 * bounded, the view follows the lock (a record whose writer is gone is `stopped`), the JSON has
 * the fields the issue lists, the text names the state, and `--wait` wants an answer newer than
 * its question. Also: conflict copies are recognized by name, and the `-v` lines.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  MAX_LISTED,
  parseStatusRecord,
  statusJson,
  type StatusRecord,
  statusText,
  viewOf,
  waitSatisfied,
} from "../../lib/core/status.ts";
import { conflictName, isConflictCopy } from "../../lib/core/conflict_name.ts";
import { activityLine, summaryLine, tally } from "../../lib/core/outcomes.ts";

const T = Date.UTC(2026, 11, 1, 12, 0, 0);

function record(over: Partial<StatusRecord> = {}): StatusRecord {
  return {
    v: 1,
    pid: 42,
    version: "0.1.0",
    state: "in-sync",
    since: T,
    server: "127.0.0.1:12345",
    account: "ab12",
    device: "laptop",
    lastSync: T,
    checkedAt: T,
    pending: { files: 0, bytes: 0, uploads: 0 },
    message: null,
    fatal: false,
    failed: [],
    skipped: [],
    conflicts: [],
    more: { failed: 0, skipped: 0, conflicts: 0 },
    updatedAt: T,
    ...over,
  };
}

const folder = "/home/me/Sync";

Deno.test("status record: what was written reads back; anything malformed or unbounded does not", () => {
  const r = record({ failed: [{ path: "a.txt", reason: "Permission denied" }] });
  assert.deepEqual(parseStatusRecord(JSON.stringify(r)), r);
  const bad: unknown[] = [
    "not json",
    "[]",
    JSON.stringify({ ...r, v: 2 }),
    JSON.stringify({ ...r, state: "happy" }),
    JSON.stringify({ ...r, pid: -1 }),
    JSON.stringify({ ...r, pending: { files: 1.5, bytes: 0, uploads: 0 } }),
    JSON.stringify({ ...r, failed: [{ path: 3, reason: "x" }] }),
    JSON.stringify({ ...r, conflicts: [7] }),
    JSON.stringify({ ...r, lastSync: "yesterday" }),
    JSON.stringify({
      ...r,
      skipped: Array.from({ length: MAX_LISTED + 1 }, (_, i) => ({ path: `${i}`, reason: "" })),
    }),
    JSON.stringify({ ...r, server: "x".repeat(401) }),
    JSON.stringify({ ...r, more: undefined }),
  ];
  for (const text of bad) assert.equal(parseStatusRecord(text as string), null, String(text));
  assert.equal(parseStatusRecord(" ".repeat(5 * 1024 * 1024)), null, "too big to be a record");
});

Deno.test("status view: the lock decides whether the record's state is live", () => {
  const enrollment = { server: "127.0.0.1:12345", account: "ab12", device: "laptop" };
  const live = viewOf(record({ state: "syncing", pending: { files: 3, bytes: 9, uploads: 1 } }), {
    folder,
    running: true,
    enrollment,
  });
  assert.equal(live.state, "syncing");
  assert.equal(live.pending.files, 3);
  // The same record with no client holding the folder (killed): stopped, lists of the last run.
  const dead = viewOf(record({ state: "syncing", skipped: [{ path: "l", reason: "symlink" }] }), {
    folder,
    running: false,
    enrollment,
    pendingDownloads: 2,
  });
  assert.equal(dead.state, "stopped");
  assert.equal(dead.pending.files, 2, "what state.db knows is still to come");
  assert.deepEqual(dead.skipped.map((i) => i.path), ["l"]);
  assert.ok(dead.fromLastRun);
  // A client that stopped for good because of an error: the error, with its message.
  const fatal = viewOf(record({ state: "error", fatal: true, message: "device revoked" }), {
    folder,
    running: false,
    enrollment,
  });
  assert.equal(fatal.state, "error");
  assert.equal(fatal.message, "device revoked");
  // No record at all, no client: stopped, from config.json.
  const none = viewOf(null, { folder, running: false, enrollment });
  assert.equal(none.state, "stopped");
  assert.equal(none.server, "127.0.0.1:12345");
  assert.equal(none.lastSync, null);
  // A client holds the lock but has not written its record: starting.
  const starting = viewOf(null, { folder, running: true, enrollment });
  assert.equal(starting.state, "syncing");
  assert.equal(starting.message, "starting");
});

Deno.test("status --json: the fields the issue lists, with arrays of paths and ISO 8601 times", () => {
  const v = viewOf(
    record({
      state: "error",
      message: "1 item cannot be synced",
      failed: [{ path: "ro/new.txt", reason: "Permission denied" }],
      conflicts: ["a (conflict from B 2026-12-01 120000).txt"],
      skipped: [{ path: "link", reason: "symlinks are not synced" }],
      pending: { files: 4, bytes: 100, uploads: 3 },
    }),
    { folder, running: true, enrollment: null },
  );
  const j = statusJson(v);
  assert.equal(j.state, "error");
  assert.equal(j.pending, 4);
  assert.equal(j.pendingUploads, 3);
  assert.equal(j.pendingDownloads, 1);
  assert.deepEqual(j.failed, ["ro/new.txt"]);
  assert.deepEqual(j.conflicts, ["a (conflict from B 2026-12-01 120000).txt"]);
  assert.deepEqual(j.skipped, ["link"]);
  assert.equal(j.lastSync, "2026-12-01T12:00:00.000Z");
  assert.equal(j.server, "127.0.0.1:12345");
  assert.equal(j.account, "ab12");
  assert.deepEqual(j.failures, [{ path: "ro/new.txt", reason: "Permission denied" }]);
  assert.deepEqual(JSON.parse(JSON.stringify(j)), j, "plain JSON");
});

Deno.test("status text: the state first, then server, last sync, pending and the lists", () => {
  const now = T + 5 * 60_000;
  const lines = statusText(
    viewOf(
      record({
        state: "offline",
        since: T,
        message: "Cannot connect to 127.0.0.1:12345: refused",
        conflicts: ["x (conflict from B 2026-12-01 120000).txt"],
        failed: [{ path: "evil\u009b[2Jname", reason: "denied" }],
        more: { failed: 0, skipped: 0, conflicts: 0 },
      }),
      { folder, running: true, enrollment: null },
    ),
    now,
  );
  assert.match(lines[0]!, /^\/home\/me\/Sync: offline since \d\d:\d\d:\d\d: Cannot connect/);
  assert.match(lines[1]!, /^Server: 127\.0\.0\.1:12345, account ab12, as device "laptop"$/);
  assert.match(lines[2]!, /^Last sync: .*\(5 min ago\)$/);
  assert.ok(lines.includes("Pending: nothing"));
  assert.ok(lines.includes("Conflict copies (1):"));
  assert.ok(lines.includes("  x (conflict from B 2026-12-01 120000).txt"));
  assert.ok(lines.includes("Failed (1):"));
  assert.ok(
    lines.includes("  evil\\u009b[2Jname: denied"),
    "a terminal control character in a name is shown escaped",
  );
  const syncing = statusText(
    viewOf(record({ state: "syncing", pending: { files: 2, bytes: 2048, uploads: 1 } }), {
      folder,
      running: true,
      enrollment: null,
    }),
    now,
  );
  assert.equal(
    syncing[0],
    "/home/me/Sync: syncing, 2 files (2.0 KiB): 1 to send, 1 to receive left",
  );
  const stopped = statusText(viewOf(null, { folder, running: false, enrollment: null }), now);
  assert.equal(stopped[0], "/home/me/Sync: stopped (no client is running on this folder)");
  assert.equal(stopped[1], "Not enrolled yet: no client has synced this folder.");
});

Deno.test("status --wait: in sync, by a running client, after a full look begun after asking", () => {
  const v = (over: Partial<StatusRecord>, running = true) =>
    viewOf(record(over), { folder, running, enrollment: null });
  assert.ok(waitSatisfied(v({ checkedAt: T + 10 }), T));
  assert.ok(waitSatisfied(v({ checkedAt: T }), T));
  assert.ok(!waitSatisfied(v({ checkedAt: T - 1 }), T), "a look from before the question");
  assert.ok(!waitSatisfied(v({ checkedAt: null }), T));
  assert.ok(!waitSatisfied(v({ state: "syncing", checkedAt: T + 10 }), T));
  assert.ok(!waitSatisfied(v({ checkedAt: T + 10 }, false), T), "no client running");
});

Deno.test("conflict copies are recognized by name", () => {
  const copy = conflictName("docs/report.odt", "laptop", new Date(T), () => false);
  assert.ok(isConflictCopy(copy), copy);
  assert.ok(isConflictCopy(conflictName("Makefile", "pc", new Date(T), (c) => !c.includes(" 2)"))));
  assert.ok(isConflictCopy("a/Notes (case conflict).txt"));
  assert.ok(isConflictCopy("a/Notes (case conflict 3)"));
  assert.ok(!isConflictCopy("a/conflict resolution.txt"));
  assert.ok(!isConflictCopy("a (conflict from) .txt"));
  assert.ok(!isConflictCopy("a (conflict from B 2026-12-01 120000).txt/inside"));
});

Deno.test("-v lines: one per file, for what a user follows; none for folders and retries", () => {
  assert.equal(activityLine({ path: "r.odt", kind: "sent" }), "sent r.odt");
  assert.equal(activityLine({ path: "r.odt", kind: "received" }), "received r.odt");
  assert.equal(
    activityLine({ path: "b/r.odt", kind: "movedThere", from: "a/r.odt" }),
    "moved a/r.odt -> b/r.odt (on the server)",
  );
  assert.equal(
    activityLine({ path: "b", kind: "movedHere", from: "a" }),
    "moved a -> b (here)",
  );
  assert.equal(activityLine({ path: "x", kind: "deletedHere" }), "deleted x (here)");
  assert.equal(activityLine({ path: "x", kind: "deletedThere" }), "deleted x (on the server)");
  assert.equal(
    activityLine({ path: "x (conflict from B 2026-12-01 120000)", kind: "conflict" }),
    "conflict copy x (conflict from B 2026-12-01 120000) (both versions are kept)",
  );
  assert.equal(
    activityLine({ path: "ro/n", kind: "failed", reason: "Permission denied" }),
    "failed ro/n: Permission denied",
  );
  assert.match(activityLine({ path: "m", kind: "sentMeta" })!, /^sent m \(/);
  for (const kind of ["dir", "deferred", "refused"] as const) {
    assert.equal(activityLine({ path: "d", kind }), null, kind);
  }
  assert.equal(activityLine({ path: "a\u009bb", kind: "sent" }), "sent a\\u009bb");
});

Deno.test("summary: names up to 3 files per kind and always every new conflict copy", () => {
  const t = tally([
    ...["a", "b", "c", "d"].map((p) => ({ path: `${p}.txt`, kind: "sent" as const })),
    ...["x (conflict from B 2026-12-01 120000)", "y (conflict from B 2026-12-01 120000)"]
      .map((path) => ({ path, kind: "conflict" as const })),
    ...Array.from({ length: 4 }, (_, i) => ({ path: `more${i}`, kind: "conflict" as const })),
  ]);
  const line = summaryLine(t, { up: 0, down: 0 }, 0)!;
  assert.match(line, /^Synced: 4 sent \(a\.txt, b\.txt, c\.txt, \.\.\.\)/);
  assert.match(
    line,
    /6 conflict copies \(x \(conflict from B 2026-12-01 120000\), y \(conflict from B 2026-12-01 120000\), more0, more1, more2, more3\)/,
  );
});
