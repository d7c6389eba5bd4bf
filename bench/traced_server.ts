/**
 * The benchmark's server for `--storage=pg-s3`: `server.ts` itself (same arguments, same code),
 * with its S3 requests and PostgreSQL queries timed. It wraps the `minio` client's `putObject`
 * and `getPartialObject` (what `lib/server/s3_objects.ts` calls for every pack upload and ranged
 * read, inside its request slots, so queueing is not counted) and the `pg` client's `query`
 * (every statement, `BEGIN` and `COMMIT` included; the time until its reply is handled, so
 * waiting for a row lock or for a busy event loop counts), and on SIGUSR2 prints one line
 * `trace {json}` with the totals so far ({@link Trace}); the bench takes a line before and after
 * each workload. The timing costs two `performance.now()` calls per request, and a 20 ms timer
 * measures the event loop's lag.
 *
 * @module
 */

import * as Minio from "minio";
import pg from "pg";
import { main } from "../server.ts";

/**
 * One kind of request: how many, bytes, summed duration, and the time at least one ran (totals
 * since the start); the longest request and the first start and last end (epoch ms) since the
 * previous `trace` line.
 */
export interface Calls {
  n: number;
  bytes: number;
  /** sum of every request's duration (ms) */
  ms: number;
  /** wall-clock time (ms) with at least one request of this kind in flight */
  busyMs: number;
  /** since the previous line: the longest request (ms), first start and last end (epoch ms) */
  maxMs: number;
  firstStart: number | null;
  lastEnd: number | null;
}

/** Totals since the server started. */
export interface Trace {
  put: Calls;
  get: Calls;
  /** PostgreSQL statements (`bytes`: 0) */
  pg: Calls & { commits: number };
  /**
   * How late a 20 ms timer fires on the main thread (a busy event loop delays every reply, the
   * SQL and S3 ones included): ticks, summed and longest delay (ms), ticks more than 20 ms late.
   */
  lag: { ticks: number; ms: number; maxMs: number; over20: number };
}

const zero = (): Calls => ({
  n: 0,
  bytes: 0,
  ms: 0,
  busyMs: 0,
  maxMs: 0,
  firstStart: null,
  lastEnd: null,
});
const epoch = (t: number) => Math.round(performance.timeOrigin + t);

class Meter {
  readonly calls = zero();
  #inFlight = 0;
  #busySince = 0;

  begin(): number {
    const t = performance.now();
    if (this.#inFlight++ === 0) this.#busySince = t;
    this.calls.firstStart ??= epoch(t);
    return t;
  }

  end(t0: number, bytes: number): void {
    const t = performance.now();
    const c = this.calls;
    c.n++;
    c.bytes += bytes;
    c.ms += t - t0;
    c.maxMs = Math.max(c.maxMs, t - t0);
    c.lastEnd = epoch(t);
    if (--this.#inFlight === 0) c.busyMs += t - this.#busySince;
  }

  /** The figures so far (rounded); starts the next interval of the per-interval ones. */
  take(): Calls {
    const c = this.calls;
    const out = {
      ...c,
      ms: Math.round(c.ms),
      busyMs: Math.round(c.busyMs),
      maxMs: Math.round(c.maxMs),
    };
    c.maxMs = 0;
    c.firstStart = null;
    c.lastEnd = null;
    return out;
  }
}

const put = new Meter();
const get = new Meter();
type Fn = (...args: unknown[]) => Promise<unknown>;
const proto = Minio.Client.prototype as unknown as Record<string, Fn>;
const putObject = proto.putObject!;
const getPartialObject = proto.getPartialObject!;

proto.putObject = async function (this: unknown, ...args: unknown[]) {
  const t0 = put.begin();
  try {
    return await putObject.apply(this, args);
  } finally {
    put.end(t0, typeof args[3] === "number" ? args[3] : 0);
  }
};

/** A ranged GET is done when its body has been read (or it failed). */
proto.getPartialObject = async function (this: unknown, ...args: unknown[]) {
  const t0 = get.begin();
  let stream: { once(e: string, f: () => void): void };
  try {
    stream = await getPartialObject.apply(this, args) as typeof stream;
  } catch (e) {
    get.end(t0, 0);
    throw e;
  }
  let done = false;
  const finish = () => {
    if (!done) get.end(t0, typeof args[3] === "number" ? args[3] : 0);
    done = true;
  };
  for (const event of ["end", "close", "error"]) stream.once(event, finish);
  return stream;
};

const sql = new Meter();
let commits = 0;
const pgProto = pg.Client.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
const query = pgProto.query!;

/** Statements with a callback (how `pg.Pool.query` calls) or returning a promise; others untimed. */
pgProto.query = function (this: unknown, ...args: unknown[]) {
  const first = args[0];
  if (typeof first === "object" && first !== null && "submit" in first) {
    return query.apply(this, args);
  }
  if (first === "COMMIT" || (first as { text?: unknown })?.text === "COMMIT") commits++;
  const t0 = sql.begin();
  const last = args.length - 1;
  const cb = args[last];
  if (typeof cb === "function") {
    args[last] = (...r: unknown[]) => {
      sql.end(t0, 0);
      return cb(...r);
    };
    return query.apply(this, args);
  }
  try {
    const p = query.apply(this, args) as Promise<unknown>;
    p.then(() => sql.end(t0, 0), () => sql.end(t0, 0));
    return p;
  } catch (e) {
    sql.end(t0, 0);
    throw e;
  }
};

const TICK_MS = 20;
const lag = { ticks: 0, ms: 0, maxMs: 0, over20: 0 };
let due = performance.now() + TICK_MS;
setInterval(() => {
  const t = performance.now();
  const late = Math.max(0, t - due);
  lag.ticks++;
  lag.ms += late;
  lag.maxMs = Math.max(lag.maxMs, late);
  if (late > 20) lag.over20++;
  due = t + TICK_MS;
}, TICK_MS);

Deno.addSignalListener("SIGUSR2", () => {
  const trace: Trace = {
    put: put.take(),
    get: get.take(),
    pg: { ...sql.take(), commits },
    lag: { ...lag, ms: Math.round(lag.ms), maxMs: Math.round(lag.maxMs) },
  };
  lag.maxMs = 0; // the longest of the next interval
  console.log(`trace ${JSON.stringify(trace)}`);
});

await main();
