/**
 * Points in time as users write them (`--at TIME`, `--since TIME`) and as the history and restore
 * commands print them. Pure: the time zone is a parameter ({@link Zone}), `now` too.
 *
 * Accepted forms of TIME:
 * - ISO 8601: `2026-12-01`, `2026-12-01T09:00`, `2026-12-01 09:00:30`, `2026-12-01T09:00:30.250`,
 *   read as local time, unless it ends in `Z` or an offset (`+01:00`, `+0100`, `-05`);
 * - how long ago: a whole number and a unit, `90s`, `15m`, `2h`, `3d`, `1w`, or several of them
 *   (`1h30m`); `now`.
 *
 * @example
 * ```ts
 * parseTime("2h", Date.now());                       // { ok: true, ms: two hours ago }
 * parseTime("2026-12-01T09:00+01:00", 0).ok;         // true
 * formatLocal(Date.UTC(2026, 11, 1, 8), fixedZone(60)); // "2026-12-01 09:00:00 +01:00"
 * ```
 *
 * @module
 */

/** Wall-clock fields of a local time (month 1-12). */
export interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  ms: number;
}

/** A time zone: the offset at an instant, and the instant of a local wall time. */
export interface Zone {
  /** Minutes east of UTC at `utcMs` (+60 for Central Europe in winter). */
  offsetAt(utcMs: number): number;
  /** The instant a local wall time denotes (within a DST gap: the time after it). */
  fromLocal(t: WallTime): number;
}

/** This process's time zone (the `TZ` environment variable, else the system's). */
export const LOCAL_ZONE: Zone = {
  offsetAt: (ms) => -new Date(ms).getTimezoneOffset(),
  fromLocal: (t) =>
    new Date(t.year, t.month - 1, t.day, t.hour, t.minute, t.second, t.ms).getTime(),
};

/** A zone with a fixed offset (minutes east of UTC), e.g. for tests. */
export function fixedZone(offsetMinutes: number): Zone {
  return {
    offsetAt: () => offsetMinutes,
    fromLocal: (t) =>
      Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute, t.second, t.ms) -
      offsetMinutes * 60_000,
  };
}

/** What {@link parseTime} gives: the instant (ms since the epoch), or why the text is none. */
export type ParsedTime = { ok: true; ms: number } | { ok: false; message: string };

/** The forms TIME may take, for error messages. */
export const TIME_FORMS =
  "a date and time in ISO 8601 (2026-12-01, 2026-12-01T09:00, 2026-12-01 09:00:30+01:00; local time unless it ends in Z or an offset) or how long ago (90s, 15m, 2h, 3d, 1w)";

const UNIT_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?)?$/;

/** Reads TIME (see the module doc); `now` is the instant "ago" counts back from. */
export function parseTime(text: string, now: number, zone: Zone = LOCAL_ZONE): ParsedTime {
  const s = text.trim();
  const bad = (): ParsedTime => ({
    ok: false,
    message: `Cannot read the time ${JSON.stringify(text)}: give ${TIME_FORMS}`,
  });
  if (s === "") return bad();
  if (s.toLowerCase() === "now") return { ok: true, ms: now };
  if (/^(\d+[smhdw])+$/.test(s)) {
    let ago = 0;
    for (const m of s.matchAll(/(\d+)([smhdw])/g)) ago += Number(m[1]) * UNIT_MS[m[2]!]!;
    if (!Number.isSafeInteger(ago) || ago > now) return bad();
    return { ok: true, ms: now - ago };
  }
  const m = ISO.exec(s);
  if (!m) return bad();
  const t: WallTime = {
    year: Number(m[1]),
    month: Number(m[2]),
    day: Number(m[3]),
    hour: Number(m[4] ?? 0),
    minute: Number(m[5] ?? 0),
    second: Number(m[6] ?? 0),
    ms: m[7] ? Number(m[7].padEnd(3, "0").slice(0, 3)) : 0,
  };
  if (!validWall(t)) return bad();
  const zoneText = m[8];
  if (zoneText === undefined) return { ok: true, ms: zone.fromLocal(t) };
  let offset = 0;
  if (zoneText.toUpperCase() !== "Z") {
    const digits = zoneText.slice(1).replace(":", "");
    const hours = Number(digits.slice(0, 2));
    const minutes = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (hours > 23 || minutes > 59) return bad();
    offset = (zoneText[0] === "-" ? -1 : 1) * (hours * 60 + minutes);
  }
  return {
    ok: true,
    ms: Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute, t.second, t.ms) - offset * 60_000,
  };
}

function validWall(t: WallTime): boolean {
  if (t.month < 1 || t.month > 12 || t.day < 1 || t.hour > 23 || t.minute > 59) return false;
  if (t.second > 59) return false;
  // The day must exist in that month (no 2026-02-30).
  const d = new Date(Date.UTC(t.year, t.month - 1, t.day));
  return d.getUTCMonth() === t.month - 1 && d.getUTCDate() === t.day;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** `+01:00`, `-05:30`, `+00:00`. */
export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? "-" : "+";
  const a = Math.abs(minutes);
  return `${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** The wall-clock fields of `ms` in `zone`, and the offset used. */
function wall(ms: number, zone: Zone): { d: Date; offset: number } {
  const offset = zone.offsetAt(ms);
  return { d: new Date(ms + offset * 60_000), offset };
}

/** `2026-12-01 09:00:12 +01:00` (local time with its zone); without seconds: `2026-12-01 09:00 +01:00`. */
export function formatLocal(ms: number, zone: Zone = LOCAL_ZONE, seconds = true): string {
  const { d, offset } = wall(ms, zone);
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${
    seconds ? `:${pad(d.getUTCSeconds())}` : ""
  }`;
  return `${date} ${time} ${formatOffset(offset)}`;
}

/** ISO 8601 with the zone's offset: `2026-12-01T09:00:12.345+01:00`. */
export function formatIso(ms: number, zone: Zone = LOCAL_ZONE): string {
  const { d, offset } = wall(ms, zone);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${
    pad(d.getUTCHours())
  }:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}${
    formatOffset(offset)
  }`;
}

/** Calendar keys of an instant in a zone, for retention's day, week and month buckets. */
export function calendarKeys(ms: number, zone: Zone): { day: number; week: number; month: number } {
  const { d } = wall(ms, zone);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth() + 1;
  const day = d.getUTCDate();
  // ISO 8601 week: the week (Monday first) holding the year's first Thursday is week 1.
  const dayNumber = (d.getUTCDay() + 6) % 7; // Monday 0 .. Sunday 6
  const thursday = new Date(Date.UTC(y, m - 1, day - dayNumber + 3));
  const weekYear = thursday.getUTCFullYear();
  const firstThursday = new Date(Date.UTC(weekYear, 0, 4));
  const firstMonday = firstThursday.getTime() - ((firstThursday.getUTCDay() + 6) % 7) * 86_400_000;
  const week = 1 +
    Math.floor((thursday.getTime() - 3 * 86_400_000 - firstMonday) / (7 * 86_400_000));
  return { day: y * 10000 + m * 100 + day, week: weekYear * 100 + week, month: y * 100 + m };
}
