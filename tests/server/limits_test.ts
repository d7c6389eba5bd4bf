/**
 * Unit tests of the server's limits (lib/server/limits.ts), with an injected clock: sizes, the
 * failed-attempt throttle, the registration rate, the per-address connection count and the
 * connection guard (frame size before sign-in, slow frames, buffered bytes).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  addressGroup,
  ConnectionCounter,
  ConnGuard,
  describeSize,
  FailureThrottle,
  LogLimiter,
  parseSize,
  RateLimiter,
  SignInThrottle,
  THROTTLED_MESSAGE,
  throttledError,
  type ThrottleOptions,
} from "../../lib/server/limits.ts";
import { encodeFrame, FrameType } from "../../lib/protocol/frame.ts";

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => t += ms };
}

Deno.test("parseSize reads binary and decimal units", () => {
  const cases: [string, number | null][] = [
    ["10GiB", 10 * 1024 ** 3],
    ["10 GiB", 10 * 1024 ** 3],
    ["10gib", 10 * 1024 ** 3],
    ["10G", 10 * 1024 ** 3],
    ["500MB", 500_000_000],
    ["500 mb", 500_000_000],
    ["1TiB", 1024 ** 4],
    ["1TB", 1e12],
    ["1.5GiB", 1.5 * 1024 ** 3],
    ["64KiB", 65536],
    ["4096", 4096],
    ["4096B", 4096],
    ["", null],
    ["GiB", null],
    ["0", null],
    ["-1GiB", null],
    ["10 XB", null],
    ["10GiBs", null],
    ["1e3", null],
    ["99999999999TiB", null],
  ];
  for (const [text, want] of cases) assert.equal(parseSize(text), want, text);
});

Deno.test("describeSize gives the size as it was written", () => {
  assert.equal(describeSize(10 * 1024 ** 3), "10 GiB");
  assert.equal(describeSize(500_000_000), "500 MB");
  assert.equal(describeSize(1024 ** 4), "1 TiB");
  assert.equal(describeSize(1.5 * 1024 ** 3), "1536 MiB");
  assert.equal(describeSize(1234567), "1.2 MiB");
  assert.equal(describeSize(100), "100 B");
});

const T: ThrottleOptions = {
  freeFailures: 3,
  baseLockoutMs: 1000,
  maxLockoutMs: 8000,
  forgetAfterMs: 60_000,
  maxKeys: 100,
};

Deno.test("FailureThrottle locks after the free failures, doubling up to the maximum", () => {
  const c = clock();
  const t = new FailureThrottle(T, c.now);
  assert.equal(t.fail("ip"), 0);
  assert.equal(t.fail("ip"), 0);
  assert.equal(t.fail("ip"), 0);
  assert.equal(t.lockedFor("ip"), 0);
  assert.equal(t.fail("ip"), 1000);
  assert.equal(t.lockedFor("ip"), 1000);
  c.advance(400);
  assert.equal(t.lockedFor("ip"), 600);
  c.advance(600);
  assert.equal(t.lockedFor("ip"), 0, "the lockout ends");
  assert.equal(t.fail("ip"), 2000, "the next failure doubles it");
  c.advance(2000);
  assert.equal(t.fail("ip"), 4000);
  c.advance(4000);
  assert.equal(t.fail("ip"), 8000);
  c.advance(8000);
  assert.equal(t.fail("ip"), 8000, "capped");
  assert.equal(t.lockedFor("other"), 0, "other keys are not affected");
  // Forgotten a while after the last failure.
  c.advance(8000 + 60_000);
  assert.equal(t.lockedFor("ip"), 0);
  assert.equal(t.failures("ip"), 0);
  assert.equal(t.fail("ip"), 0);
});

Deno.test("FailureThrottle keeps a bounded number of keys", () => {
  const c = clock();
  const t = new FailureThrottle({ ...T, maxKeys: 10 }, c.now);
  for (let i = 0; i < 1000; i++) t.fail(`k${i}`);
  assert.ok(t.size <= 10, `${t.size} keys`);
  assert.equal(t.failures("k999"), 1, "the newest are kept");
});

Deno.test("SignInThrottle: per address group and per device; a success resets nothing", () => {
  const c = clock();
  const s = new SignInThrottle(T, { ...T, freeFailures: 5 }, c.now);
  // Guesses from one address lock its whole /24, not another /24.
  for (let i = 0; i < 4; i++) s.failed("1.1.1.1", { account: "A", id: "d1" });
  assert.ok(s.lockedFor("1.1.1.1") > 0);
  assert.ok(s.lockedFor("1.1.1.200") > 0, "the /24 is locked");
  assert.equal(s.lockedFor("1.1.2.1"), 0, "another /24 may still try");
  // Failures that are not guesses (a revoked device) count for the device only.
  for (let i = 0; i < 10; i++) s.failed("4.4.4.4", { account: "A", id: "d2" }, false);
  assert.equal(s.lockedFor("4.4.4.4"), 0);
  assert.ok(s.deviceLockedFor("A", "d2") > 0);
  assert.equal(s.deviceLockedFor("A", "d3"), 0, "the account's other devices are not locked");
  // IPv6 groups by /64.
  for (let i = 0; i < 4; i++) s.failed(`2001:db8:0:1::${i}`, null);
  assert.ok(s.lockedFor("2001:db8:0:1:ffff::1") > 0);
  assert.equal(s.lockedFor("2001:db8:0:2::1"), 0);
  // There is no "success" call: a good sign-in cannot clear anybody's failures.
  assert.equal(typeof (s as unknown as Record<string, unknown>).succeeded, "undefined");
});

Deno.test("addressGroup: IPv4 /24, IPv6 /64, mapped IPv4 as IPv4", () => {
  assert.equal(addressGroup("203.0.113.77"), "203.0.113.0/24");
  assert.equal(addressGroup("::ffff:203.0.113.77"), "203.0.113.0/24");
  assert.equal(addressGroup("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(addressGroup("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(addressGroup("::1"), "0:0:0:0::/64");
  assert.equal(addressGroup("fe80::1%eth0"), "fe80:0:0:0::/64");
});

Deno.test("throttled errors carry code throttled and the message the client shows", () => {
  const e = throttledError(90_000);
  assert.equal(e.code, "throttled");
  assert.ok(e.message.startsWith(THROTTLED_MESSAGE));
  assert.equal(THROTTLED_MESSAGE, "Cannot sign in: too many attempts, try again later");
  assert.match(e.message, /\(in 90 s\)$/);
  assert.match(throttledError(600_000).message, /in 10 min/);
});

Deno.test("RateLimiter: a burst, then a steady rate, per key", () => {
  const c = clock();
  const r = new RateLimiter(3, 60, c.now); // one a minute
  assert.equal(r.take("a"), 0);
  assert.equal(r.take("a"), 0);
  assert.equal(r.take("a"), 0);
  const wait = r.take("a");
  assert.ok(wait > 59_000 && wait <= 60_000, String(wait));
  assert.equal(r.take("b"), 0, "another key has its own bucket");
  c.advance(60_000);
  assert.equal(r.take("a"), 0);
  assert.ok(r.take("a") > 0);
});

Deno.test("ConnectionCounter and LogLimiter", () => {
  const n = new ConnectionCounter(2);
  assert.ok(n.add("x"));
  assert.ok(n.add("x"));
  assert.ok(!n.add("x"));
  assert.ok(n.add("y"));
  n.remove("x");
  assert.equal(n.count("x"), 1);
  assert.ok(n.add("x"));
  const c = clock();
  const l = new LogLimiter(1000, c.now);
  assert.ok(l.allow("k"));
  assert.ok(!l.allow("k"));
  assert.ok(l.allow("j"));
  c.advance(1000);
  assert.ok(l.allow("k"));
});

/** A PeerConn fed by the test: `push` bytes, `end()`. */
class FakeConn {
  #queue: (Uint8Array | null)[] = [];
  #wait: (() => void) | null = null;
  written = 0;
  closed = false;
  push(b: Uint8Array | null) {
    this.#queue.push(b);
    this.#wait?.();
  }
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0 && !this.closed) {
      await new Promise<void>((r) => this.#wait = r);
    }
    if (this.closed) return null;
    const b = this.#queue.shift()!;
    if (b === null) return null;
    if (b.length > p.length) {
      p.set(b.subarray(0, p.length));
      this.#queue.unshift(b.subarray(p.length));
      return p.length;
    }
    p.set(b);
    return b.length;
  }
  write(p: Uint8Array): Promise<number> {
    this.written += p.length;
    return Promise.resolve(p.length);
  }
  close() {
    this.closed = true;
    this.#wait?.();
  }
}

const LIMITS = {
  maxFrameBeforeSignIn: 1024,
  frameTimeoutMs: 5000,
  minFrameBytesPerSecond: 1000,
  maxBufferedBytes: 10_000,
  maxAccountBufferedBytes: 100_000,
};

function frame(bodyBytes: number): Uint8Array {
  return encodeFrame({
    type: FrameType.Request,
    id: 1,
    header: { t: "put" },
    body: new Uint8Array(bodyBytes),
  });
}

Deno.test("ConnGuard refuses a big frame before sign-in, allows it after", async () => {
  let signedIn = false;
  const conn = new FakeConn();
  const g = new ConnGuard(conn, LIMITS, () => signedIn);
  const buf = new Uint8Array(64 * 1024);
  conn.push(frame(100));
  assert.equal(await g.read(buf), frame(100).length);
  conn.push(frame(5000));
  await assert.rejects(g.read(buf), /before signing in/);
  // Signed in: the same frame passes, even split at any byte.
  signedIn = true;
  const conn2 = new FakeConn();
  const g2 = new ConnGuard(conn2, LIMITS, () => signedIn);
  const f = frame(5000);
  for (let i = 0; i < f.length; i += 3) conn2.push(f.subarray(i, i + 3));
  let total = 0;
  while (total < f.length) total += (await g2.read(buf))!;
  assert.equal(total, f.length);
  g.close();
  g2.close();
});

Deno.test("ConnGuard: a frame arriving too slowly is overdue; quiet between frames is not", async () => {
  const c = clock();
  const conn = new FakeConn();
  const g = new ConnGuard(conn, LIMITS, () => true, c.now);
  const buf = new Uint8Array(1024);
  const f = frame(2000); // allowed: 5 s + 2 s
  conn.push(f.subarray(0, 10));
  await g.read(buf);
  // Waiting for the rest of the frame.
  const pending = g.read(buf);
  c.advance(6000);
  assert.equal(g.overdue(), null);
  c.advance(1500);
  assert.match(g.overdue() ?? "", /took more than 7 s/);
  conn.push(f.subarray(10));
  let got = 10 + (await pending)!;
  while (got < f.length) got += (await g.read(buf))!;
  assert.equal(g.overdue(), null, "the frame is complete");
  // Between frames the connection may be quiet as long as it likes (the idle timeout rules).
  const idle = g.read(buf);
  c.advance(60_000);
  assert.equal(g.overdue(), null);
  conn.push(frame(1));
  await idle;
  g.close();
});

Deno.test("ConnGuard holds reading while too many bytes are buffered", async () => {
  const conn = new FakeConn();
  const g = new ConnGuard(conn, LIMITS, () => true);
  const buf = new Uint8Array(1024);
  g.requestStarted(6000);
  g.requestStarted(6000);
  conn.push(frame(1));
  let done = false;
  const r = g.read(buf).then((n) => {
    done = true;
    return n;
  });
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(done, false, "reading is held");
  g.requestEnded(6000);
  assert.ok((await r)! > 0);
  g.requestEnded(6000);
  // Replies count until written.
  await g.reserveReply(8000); // nothing else held: granted at once
  g.replyReady(8000, 8000);
  let second = false;
  const p2 = g.reserveReply(4000).then(() => second = true);
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(second, false, "a second big reply waits for the first to be written");
  await g.write(new Uint8Array(8000));
  await p2;
  assert.equal(second, true);
  g.replyReady(4000, 4000);
  await g.write(new Uint8Array(4000));
  assert.equal(g.buffered, 0);
  // close() releases a held read.
  g.requestStarted(20_000);
  const held = g.read(buf);
  g.close();
  assert.equal(await held, null);
});
