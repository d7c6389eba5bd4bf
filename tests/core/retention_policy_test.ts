/**
 * The retention policy (`--keep-days`, then `--keep-daily`, `--keep-weekly`, `--keep-monthly` as
 * in restic's forget): table tests over one path's versions, in a fixed zone.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  cutoffOnly,
  type RetentionPolicy,
  type VersionAge,
  versionsToForget,
} from "../../lib/core/retention_policy.ts";
import { fixedZone } from "../../lib/core/time_spec.ts";

const UTC = fixedZone(0);
const DAY = 86_400_000;
const NOW = Date.parse("2026-12-31T12:00:00Z");

/** Versions made at the given ISO instants, in order, each replaced by the next (the last now). */
function timeline(...made: string[]): VersionAge[] {
  const ms = made.map((m) => Date.parse(m));
  return ms.map((t, i) => ({ version: i + 1, made: t, replaced: ms[i + 1] ?? NOW }));
}

const policy = (p: Partial<RetentionPolicy>): RetentionPolicy => ({
  keepDays: 30,
  daily: 0,
  weekly: 0,
  monthly: 0,
  ...p,
});

/** One version a day at noon, from `first` for `n` days. */
function daily(first: string, n: number): string[] {
  const t = Date.parse(first);
  return Array.from({ length: n }, (_, i) => new Date(t + i * DAY).toISOString());
}

Deno.test("versionsToForget: the policy table", async (t) => {
  const rows: [string, VersionAge[], Partial<RetentionPolicy>, number[]][] = [
    ["nothing to forget", [], {}, []],
    [
      "everything replaced within --keep-days stays",
      timeline("2026-12-10T10:00:00Z", "2026-12-20T10:00:00Z", "2026-12-30T10:00:00Z"),
      {},
      [],
    ],
    [
      "without thinning, everything replaced before the cut-off goes",
      timeline("2026-10-01T10:00:00Z", "2026-11-01T10:00:00Z", "2026-11-20T10:00:00Z"),
      {},
      [1, 2], // replaced on 2026-11-01 and 2026-11-20, more than 30 days ago
    ],
    [
      "what was replaced within --keep-days stays, older goes",
      timeline("2026-11-01T10:00:00Z", "2026-12-05T10:00:00Z", "2026-12-20T10:00:00Z"),
      {},
      [],
    ],
    [
      "--keep-days 0: everything replaced goes",
      timeline("2026-12-30T10:00:00Z", "2026-12-31T10:00:00Z", "2026-12-31T11:00:00Z"),
      { keepDays: 0 },
      [1, 2],
    ],
    [
      "--keep-daily 2: the last version of the 2 most recent days that have one (older than the window)",
      timeline(
        "2026-10-01T08:00:00Z",
        "2026-10-01T09:00:00Z",
        "2026-10-03T08:00:00Z",
        "2026-10-03T20:00:00Z",
        "2026-10-07T08:00:00Z",
        "2026-10-07T09:00:00Z",
        "2026-12-20T08:00:00Z",
      ),
      { daily: 2 },
      // Oct 7's last version (6) is within the window: Oct 3 and Oct 1 are the two days.
      [1, 3, 5],
    ],
    [
      "--keep-daily counts days that have a version, not calendar days",
      timeline("2026-08-01T08:00:00Z", "2026-09-01T08:00:00Z", "2026-10-01T08:00:00Z"),
      { daily: 3 },
      [],
    ],
    [
      "--keep-weekly 2: ISO weeks, Monday first",
      timeline(
        "2026-10-05T08:00:00Z", // Monday, week 41
        "2026-10-11T08:00:00Z", // Sunday, week 41
        "2026-10-12T08:00:00Z", // Monday, week 42
        "2026-10-13T08:00:00Z", // week 42
        "2026-10-20T08:00:00Z", // week 43
        "2026-12-30T08:00:00Z",
      ),
      { weekly: 2 },
      // Week 43's version (5) is within the window: weeks 42 and 41 are the two weeks.
      [1, 3],
    ],
    [
      "--keep-monthly 2",
      timeline(
        "2026-07-10T08:00:00Z",
        "2026-08-10T08:00:00Z",
        "2026-08-20T08:00:00Z",
        "2026-09-05T08:00:00Z",
        "2026-09-06T08:00:00Z",
        "2026-12-30T08:00:00Z",
      ),
      { monthly: 2 },
      // September's last version (5) is within the window: August and July.
      [2, 4],
    ],
    [
      "rules add up: a version kept by any rule stays",
      timeline(
        ...daily("2026-09-01T12:00:00Z", 40), // one a day, Sept 1 .. Oct 10
        "2026-12-30T08:00:00Z",
      ),
      { daily: 3, weekly: 2, monthly: 2 },
      // Version 40 (Oct 10, a Saturday) was replaced within the window. Kept beside it: Oct 9, 8,
      // 7 (daily: 39, 38, 37); Sunday Oct 4 and Sunday Sept 27, the last of the two weeks before
      // (weekly: 34, 27); Sept 30 (monthly: 30; there is no August).
      Array.from({ length: 39 }, (_, i) => i + 1).filter((v) =>
        ![39, 38, 37, 34, 27, 30].includes(v)
      ),
    ],
    [
      "a deleted file's versions age the same way (its last version replaced by the deletion)",
      [
        {
          version: 1,
          made: Date.parse("2026-09-01T08:00:00Z"),
          replaced: Date.parse("2026-09-02T08:00:00Z"),
        },
        {
          version: 2,
          made: Date.parse("2026-09-02T08:00:00Z"),
          replaced: Date.parse("2026-10-01T08:00:00Z"),
        },
      ],
      { daily: 1 },
      [1],
    ],
    [
      "versions made in one instant: the higher version is the last of its day",
      [
        {
          version: 1,
          made: Date.parse("2026-09-01T08:00:00Z"),
          replaced: Date.parse("2026-09-01T08:00:00Z"),
        },
        {
          version: 2,
          made: Date.parse("2026-09-01T08:00:00Z"),
          replaced: Date.parse("2026-09-02T08:00:00Z"),
        },
      ],
      { daily: 5 },
      [1],
    ],
    [
      "input order does not matter",
      timeline("2026-10-01T08:00:00Z", "2026-10-02T08:00:00Z", "2026-10-03T08:00:00Z").reverse(),
      { daily: 1 },
      [1],
    ],
  ];
  for (const [name, versions, p, want] of rows) {
    await t.step(name, () => {
      assert.deepEqual(versionsToForget(versions, policy(p), NOW, UTC), want);
    });
  }
});

Deno.test("versionsToForget: days begin in the server's zone", () => {
  // 23:30 UTC on Oct 1 and 00:30 UTC on Oct 2: one day in New York, two in UTC.
  const v = timeline("2026-10-01T23:30:00Z", "2026-10-02T00:30:00Z", "2026-12-30T08:00:00Z");
  assert.deepEqual(versionsToForget(v, policy({ daily: 5 }), NOW, UTC), []);
  assert.deepEqual(versionsToForget(v, policy({ daily: 5 }), NOW, fixedZone(-300)), [1]);
});

Deno.test("cutoffOnly: no thinning rule means one cut-off decides", () => {
  assert.equal(cutoffOnly(policy({})), true);
  assert.equal(cutoffOnly(policy({ weekly: 1 })), false);
});
