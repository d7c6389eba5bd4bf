/**
 * TIME as users write it (`--at`, `--since`) and as history prints it: table tests, in fixed
 * zones, of every accepted form and of the ones refused.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  calendarKeys,
  fixedZone,
  formatIso,
  formatLocal,
  parseTime,
  TIME_FORMS,
} from "../../lib/core/time_spec.ts";

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0); // 2026-12-01 12:00:00 UTC
const PARIS = fixedZone(60);
const NEW_YORK = fixedZone(-300);

Deno.test("parseTime: accepted forms", async (t) => {
  const rows: [string, number, ReturnType<typeof fixedZone>?][] = [
    ["90s", NOW - 90_000],
    ["15m", NOW - 15 * 60_000],
    ["2h", NOW - 2 * 3_600_000],
    ["3d", NOW - 3 * 86_400_000],
    ["1w", NOW - 7 * 86_400_000],
    ["1h30m", NOW - 90 * 60_000],
    ["0s", NOW],
    ["now", NOW],
    [" 2h ", NOW - 2 * 3_600_000],
    // Local time (the zone given), at every precision.
    ["2026-12-01", Date.UTC(2026, 10, 30, 23, 0), PARIS],
    ["2026-12-01T09:00", Date.UTC(2026, 11, 1, 8, 0), PARIS],
    ["2026-12-01 09:00", Date.UTC(2026, 11, 1, 8, 0), PARIS],
    ["2026-12-01t09:00:30", Date.UTC(2026, 11, 1, 8, 0, 30), PARIS],
    ["2026-12-01T09:00:30.25", Date.UTC(2026, 11, 1, 8, 0, 30, 250), PARIS],
    ["2026-12-01T09:00:30,123456", Date.UTC(2026, 11, 1, 8, 0, 30, 123), PARIS],
    ["2026-12-01T09:00", Date.UTC(2026, 11, 1, 14, 0), NEW_YORK],
    // An offset or Z: the zone does not matter.
    ["2026-12-01T09:00Z", Date.UTC(2026, 11, 1, 9, 0), NEW_YORK],
    ["2026-12-01T09:00:00z", Date.UTC(2026, 11, 1, 9, 0), PARIS],
    ["2026-12-01T09:00+01:00", Date.UTC(2026, 11, 1, 8, 0), NEW_YORK],
    ["2026-12-01T09:00+0100", Date.UTC(2026, 11, 1, 8, 0), NEW_YORK],
    ["2026-12-01T09:00-05", Date.UTC(2026, 11, 1, 14, 0), PARIS],
    ["2026-12-01 09:00:00 +05:30", Date.UTC(2026, 11, 1, 3, 30), PARIS],
    ["2024-02-29", Date.UTC(2024, 1, 29), fixedZone(0)],
  ];
  for (const [text, want, zone] of rows) {
    await t.step(text, () => {
      assert.deepEqual(parseTime(text, NOW, zone ?? PARIS), { ok: true, ms: want });
    });
  }
});

Deno.test("parseTime: refused forms say which forms are accepted, in one line", async (t) => {
  const rows = [
    "",
    "yesterday",
    "2h ago",
    "-2h",
    "2.5h",
    "2 h",
    "10y",
    "2026-13-01",
    "2026-02-30",
    "2025-02-29",
    "2026-12-01T24:00",
    "2026-12-01T09:60",
    "2026-12-01T09:00:61",
    "2026-12-01T9:00",
    "26-12-01",
    "2026-12-01Z",
    "2026-12-01T09:00+25:00",
    "2026-12-01T09:00+01:99",
    "99999999999999999w",
  ];
  for (const text of rows) {
    await t.step(JSON.stringify(text), () => {
      const r = parseTime(text, NOW, PARIS);
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.match(r.message, /^Cannot read the time /);
      assert.ok(r.message.endsWith(TIME_FORMS));
      assert.ok(!r.message.includes("\n"));
    });
  }
});

Deno.test("formatLocal and formatIso: local time with its zone", async (t) => {
  const ms = Date.UTC(2026, 11, 1, 8, 0, 12, 345);
  const rows: [ReturnType<typeof fixedZone>, string, string, string][] = [
    [
      PARIS,
      "2026-12-01 09:00:12 +01:00",
      "2026-12-01 09:00 +01:00",
      "2026-12-01T09:00:12.345+01:00",
    ],
    [
      NEW_YORK,
      "2026-12-01 03:00:12 -05:00",
      "2026-12-01 03:00 -05:00",
      "2026-12-01T03:00:12.345-05:00",
    ],
    [
      fixedZone(0),
      "2026-12-01 08:00:12 +00:00",
      "2026-12-01 08:00 +00:00",
      "2026-12-01T08:00:12.345+00:00",
    ],
    [
      fixedZone(330),
      "2026-12-01 13:30:12 +05:30",
      "2026-12-01 13:30 +05:30",
      "2026-12-01T13:30:12.345+05:30",
    ],
    [
      fixedZone(-570),
      "2026-11-30 22:30:12 -09:30",
      "2026-11-30 22:30 -09:30",
      "2026-11-30T22:30:12.345-09:30",
    ],
  ];
  for (const [zone, full, short, iso] of rows) {
    await t.step(full, () => {
      assert.equal(formatLocal(ms, zone), full);
      assert.equal(formatLocal(ms, zone, false), short);
      assert.equal(formatIso(ms, zone), iso);
      // What is printed reads back as the same instant (to the second / millisecond).
      assert.deepEqual(parseTime(iso, 0, zone), { ok: true, ms });
      assert.deepEqual(parseTime(full, 0, zone), { ok: true, ms: ms - 345 });
    });
  }
});

Deno.test("calendarKeys: days, ISO weeks and months in the zone", async (t) => {
  const rows: [string, number, number, number][] = [
    // [UTC instant, day, ISO week, month] in Paris (+01:00)
    ["2026-12-01T08:00:00Z", 20261201, 202649, 202612],
    ["2026-11-30T23:30:00Z", 20261201, 202649, 202612], // already December in Paris
    ["2026-12-06T22:59:00Z", 20261206, 202649, 202612], // Sunday: still week 49
    ["2026-12-06T23:00:00Z", 20261207, 202650, 202612], // Monday: week 50
    ["2021-01-03T12:00:00Z", 20210103, 202053, 202101], // belongs to 2020's last week
    ["2024-12-30T12:00:00Z", 20241230, 202501, 202412], // belongs to 2025's week 1
    ["2026-01-01T12:00:00Z", 20260101, 202601, 202601],
  ];
  for (const [iso, day, week, month] of rows) {
    await t.step(iso, () => {
      assert.deepEqual(calendarKeys(Date.parse(iso), PARIS), { day, week, month });
    });
  }
});
