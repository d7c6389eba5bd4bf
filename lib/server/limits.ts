/**
 * The server's defences against abuse, kept apart from the sync logic:
 *
 * - {@link FailureThrottle} / {@link SignInThrottle}: failed enrollment and sign-in attempts per
 *   source address and per account, with a lockout that doubles with every further failure.
 * - {@link RateLimiter}: a token bucket per key (new accounts per source address).
 * - {@link ConnGuard}: wraps one connection; bounds the frame size before sign-in, measures how
 *   long the current frame has been arriving (slow-loris), and holds reading while the
 *   connection's requests and unsent replies hold too many bytes.
 * - {@link QuotaTracker}: per-account stored-bytes quota.
 * - {@link parseSize} / {@link describeSize}: `10GiB`, `500MB`, `1TiB`.
 *
 * Every clock is injectable (`now`), so the tests need no waiting.
 *
 * @module
 */

import { ProtocolError } from "../protocol/peer.ts";
import type { PeerConn } from "../protocol/peer.ts";
import type { ChunkIndex, JournalStore } from "./stores.ts";

/** Milliseconds, from any monotonic-enough source; `Date.now` by default. */
export type Now = () => number;

// ---------------------------------------------------------------------------------------------
// Sizes

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

/**
 * Parses a size: a number (decimals allowed) and an optional unit, case-insensitive, spaces
 * allowed: `B`; `KiB` `MiB` `GiB` `TiB` (powers of 1024; also `K` `M` `G` `T`); `KB` `MB` `GB`
 * `TB` (powers of 1000). Returns bytes, or null if the text is not a positive size.
 */
export function parseSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return null;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/** `10737418240` -> `"10 GiB"`, `500000000` -> `"500 MB"`, else one decimal in binary units. */
export function describeSize(n: number): string {
  const binary: [string, number][] = [["TiB", 1024 ** 4], ["GiB", 1024 ** 3], ["MiB", 1024 ** 2], [
    "KiB",
    1024,
  ]];
  const decimal: [string, number][] = [["TB", 1e12], ["GB", 1e9], ["MB", 1e6], ["KB", 1e3]];
  for (const [name, unit] of [...binary, ...decimal]) {
    if (n >= unit && n % unit === 0) return `${n / unit} ${name}`;
  }
  for (const [name, unit] of binary) {
    if (n >= unit) return `${(n / unit).toFixed(1)} ${name}`;
  }
  return `${n} B`;
}

/** `1500` -> `"2 s"`, `150000` -> `"3 min"`. */
export function describeWait(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  return s < 120 ? `${s} s` : `${Math.ceil(s / 60)} min`;
}

// ---------------------------------------------------------------------------------------------
// Addresses

/**
 * The group a source address is limited by: its IPv4 /24 (`203.0.113.0/24`) or IPv6 /64
 * (`2001:db8:1:2::/64`); an IPv4-mapped IPv6 address counts as IPv4. One host usually owns a
 * whole IPv6 /64, and a /24 is the smallest block anybody routes, so an attacker with many
 * addresses gains little. Anything unparsable is its own group.
 */
export function addressGroup(ip: string): string {
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}$/i.exec(ip);
  if (v4) return `${v4[1]}.${v4[2]}.${v4[3]}.0/24`;
  if (!ip.includes(":")) return ip;
  const [head, tail] = ip.split("%")[0]!.split("::") as [string, string | undefined];
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined
    ? left
    : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  const first = groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16));
  while (first.length < 4) first.push("0");
  return `${first.join(":")}::/64`;
}

// ---------------------------------------------------------------------------------------------
// Failed attempts

/** Tuning of a {@link FailureThrottle}. */
export interface ThrottleOptions {
  /** Failures tolerated before the first lockout. */
  freeFailures: number;
  /** The first lockout; each further failure doubles it. */
  baseLockoutMs: number;
  /** The longest lockout. */
  maxLockoutMs: number;
  /** A key's failures are forgotten this long after its last failure (and once unlocked). */
  forgetAfterMs: number;
  /** Most keys remembered (memory bound); the oldest are dropped first. */
  maxKeys: number;
}

interface FailureRecord {
  failures: number;
  last: number;
  lockedUntil: number;
}

/**
 * Counts failed attempts per key (an address, an account). After `freeFailures` failures each
 * further failure locks the key for `baseLockoutMs`, doubling up to `maxLockoutMs`. Attempts
 * refused during a lockout are not checked, so they do not count; a success resets nothing
 * (neither its own key nor any other), so interleaving good sign-ins buys an attacker nothing.
 * Failures are forgotten `forgetAfterMs` after the last one.
 */
export class FailureThrottle {
  readonly #opts: ThrottleOptions;
  readonly #now: Now;
  readonly #keys = new Map<string, FailureRecord>();

  constructor(opts: ThrottleOptions, now: Now = Date.now) {
    this.#opts = opts;
    this.#now = now;
  }

  #get(key: string, now: number): FailureRecord | undefined {
    const r = this.#keys.get(key);
    if (r && now >= r.lockedUntil && now - r.last >= this.#opts.forgetAfterMs) {
      this.#keys.delete(key);
      return undefined;
    }
    return r;
  }

  /** Milliseconds `key` stays locked (0: attempts allowed). */
  lockedFor(key: string): number {
    const now = this.#now();
    const r = this.#get(key, now);
    return r ? Math.max(0, r.lockedUntil - now) : 0;
  }

  /** Failures currently remembered for `key`. */
  failures(key: string): number {
    return this.#get(key, this.#now())?.failures ?? 0;
  }

  /** Records a failure of `key`; returns the lockout it starts now (0: none). */
  fail(key: string): number {
    const now = this.#now();
    let r = this.#get(key, now);
    if (r) {
      this.#keys.delete(key); // re-insert: the map's order is "least recently failed first"
    } else {
      r = { failures: 0, last: now, lockedUntil: 0 };
      this.#evict(now);
    }
    r.failures++;
    r.last = now;
    const over = r.failures - this.#opts.freeFailures;
    let lockout = 0;
    if (over > 0) {
      lockout = Math.min(this.#opts.maxLockoutMs, this.#opts.baseLockoutMs * 2 ** (over - 1));
      r.lockedUntil = now + lockout;
    }
    this.#keys.set(key, r);
    return lockout;
  }

  /** Keys remembered (for tests and the memory bound). */
  get size(): number {
    return this.#keys.size;
  }

  #evict(now: number): void {
    if (this.#keys.size < this.#opts.maxKeys) return;
    for (const [k, r] of this.#keys) {
      if (now >= r.lockedUntil && now - r.last >= this.#opts.forgetAfterMs) this.#keys.delete(k);
    }
    // Still full: drop the least recently failing keys.
    for (const k of this.#keys.keys()) {
      if (this.#keys.size < this.#opts.maxKeys) break;
      this.#keys.delete(k);
    }
  }
}

/** Default throttling of failed attempts per source address. */
export const IP_THROTTLE: ThrottleOptions = {
  freeFailures: 10,
  baseLockoutMs: 2_000,
  maxLockoutMs: 15 * 60_000,
  forgetAfterMs: 15 * 60_000,
  maxKeys: 100_000,
};

/**
 * Default throttling per (account, device): a device whose credential keeps failing (a revoked
 * one, a stolen id) is slowed down without touching the account's other devices.
 */
export const DEVICE_THROTTLE: ThrottleOptions = {
  freeFailures: 20,
  baseLockoutMs: 1_000,
  maxLockoutMs: 5 * 60_000,
  forgetAfterMs: 15 * 60_000,
  maxKeys: 100_000,
};

/** The message every throttled sign-in, enrollment or registration starts with. */
export const THROTTLED_MESSAGE = "Cannot sign in: too many attempts, try again later";

/** Builds the `throttled` error for a lockout of `ms`. */
export function throttledError(ms: number, why = ""): ProtocolError {
  return new ProtocolError(
    "throttled",
    `${THROTTLED_MESSAGE} (in ${describeWait(ms)}${why ? `; ${why}` : ""})`,
  );
}

/**
 * Failed sign-ins (`auth`) and enrollments (`enroll`), by source address group (see
 * {@link addressGroup}) and by (account, device). A locked address group is refused without
 * checking anything. A locked device key is still checked: a valid, non-revoked credential
 * always signs in (guessing one is hopeless), so failures of a revoked or stolen device id never
 * shut the account's good devices out.
 */
export class SignInThrottle {
  readonly byIp: FailureThrottle;
  readonly byDevice: FailureThrottle;

  constructor(
    ip: ThrottleOptions = IP_THROTTLE,
    device: ThrottleOptions = DEVICE_THROTTLE,
    now: Now = Date.now,
  ) {
    this.byIp = new FailureThrottle(ip, now);
    this.byDevice = new FailureThrottle(device, now);
  }

  /** Milliseconds until an attempt from `ip` is checked at all. */
  lockedFor(ip: string): number {
    return this.byIp.lockedFor(addressGroup(ip));
  }

  /** Milliseconds the device key `account/device` stays locked (0: not locked). */
  deviceLockedFor(account: string, device: string): number {
    return this.byDevice.lockedFor(`${account}/${device}`);
  }

  /**
   * Records a failure: of the address group when `guess` (a wrong serial or credential), of the
   * device key when given. Returns the lockouts started now (0: none) and the counts.
   */
  failed(ip: string, device: { account: string; id: string } | null, guess = true): {
    ipLockout: number;
    deviceLockout: number;
    ipFailures: number;
    deviceFailures: number;
  } {
    const group = addressGroup(ip);
    const key = device ? `${device.account}/${device.id}` : null;
    const ipLockout = guess ? this.byIp.fail(group) : 0;
    const deviceLockout = key ? this.byDevice.fail(key) : 0;
    return {
      ipLockout,
      deviceLockout,
      ipFailures: this.byIp.failures(group),
      deviceFailures: key ? this.byDevice.failures(key) : 0,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Rates

/** A token bucket per key: `burst` tokens, refilled at `perHour` an hour. */
export class RateLimiter {
  readonly #burst: number;
  readonly #msPerToken: number;
  readonly #now: Now;
  readonly #maxKeys: number;
  readonly #keys = new Map<string, { tokens: number; at: number }>();

  constructor(burst: number, perHour: number, now: Now = Date.now, maxKeys = 100_000) {
    this.#burst = burst;
    this.#msPerToken = 3_600_000 / perHour;
    this.#now = now;
    this.#maxKeys = maxKeys;
  }

  /** Milliseconds until `key` has a token (0: it has one now); takes nothing. */
  peek(key: string): number {
    const b = this.#keys.get(key);
    if (!b) return 0;
    const tokens = Math.min(this.#burst, b.tokens + (this.#now() - b.at) / this.#msPerToken);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * this.#msPerToken);
  }

  /** Takes a token of `key`: 0 if granted, else the milliseconds until one is available. */
  take(key: string): number {
    const now = this.#now();
    let b = this.#keys.get(key);
    if (b) {
      b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) / this.#msPerToken);
      b.at = now;
    } else {
      if (this.#keys.size >= this.#maxKeys) {
        for (const [k, v] of this.#keys) {
          if (v.tokens + (now - v.at) / this.#msPerToken >= this.#burst) this.#keys.delete(k);
        }
        for (const k of this.#keys.keys()) {
          if (this.#keys.size < this.#maxKeys) break;
          this.#keys.delete(k);
        }
      }
      b = { tokens: this.#burst, at: now };
      this.#keys.set(key, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) * this.#msPerToken);
  }
}

// ---------------------------------------------------------------------------------------------
// Quota

/**
 * Per-account quota on stored bytes: chunk bytes as stored (after compression, each distinct chunk
 * of an account once, including chunks of kept old versions) plus the metadata the account makes
 * the server keep (journal entries and kept versions, see `MetaStore.metadataBytes`). Usage is read from the index once per
 * account and then kept up to date by {@link reserve}/{@link release}; {@link forget} drops the
 * cache (after retention removed chunks).
 */
export class QuotaTracker {
  readonly limit: number;
  readonly #meta: Pick<ChunkIndex, "storedBytes"> & Pick<JournalStore, "metadataBytes">;
  readonly #used = new Map<string, number>();
  readonly #reclaim: ((account: string) => Promise<unknown>) | null;
  readonly #reclaimEveryMs: number;
  /** When each account's last reclaim started, and the one running. */
  readonly #reclaimed = new Map<string, { at: number; run: Promise<unknown> | null }>();

  /**
   * `reclaim` (optional) frees an account's unreferenced chunks (abandoned uploads): when a
   * reservation would exceed the limit it runs first (at most once per `reclaimEveryMs` per
   * account), and the usage is read again, so chunks nothing references stop counting as soon as
   * they matter.
   */
  constructor(
    meta: Pick<ChunkIndex, "storedBytes"> & Pick<JournalStore, "metadataBytes">,
    limit: number,
    reclaim: ((account: string) => Promise<unknown>) | null = null,
    reclaimEveryMs = 10 * 60 * 1000,
  ) {
    this.#meta = meta;
    this.limit = limit;
    this.#reclaim = reclaim;
    this.#reclaimEveryMs = reclaimEveryMs;
  }

  /** Runs `reclaim` for `account` unless it ran lately; true when it ran (or was running). */
  async #reclaimFor(account: string): Promise<boolean> {
    if (!this.#reclaim) return false;
    const now = Date.now();
    const r = this.#reclaimed.get(account);
    if (r?.run) {
      await r.run;
      return true;
    }
    if (r && now - r.at < this.#reclaimEveryMs) return false;
    const entry: { at: number; run: Promise<unknown> | null } = { at: now, run: null };
    this.#reclaimed.set(account, entry);
    // Bounded: one entry per account that hit its quota in the last period.
    if (this.#reclaimed.size > 10_000) {
      for (const [a, v] of this.#reclaimed) {
        if (!v.run && now - v.at >= this.#reclaimEveryMs) this.#reclaimed.delete(a);
      }
    }
    entry.run = this.#reclaim(account).catch(() => {});
    try {
      await entry.run;
    } finally {
      entry.run = null;
      this.#used.delete(account); // read again: what was freed no longer counts
    }
    return true;
  }

  /**
   * Drops what is known of `account`'s usage: the next reservation reads it again from the
   * stores (after a write whose size only the store knows, such as a restore's kept versions).
   */
  recount(account: string): void {
    this.#used.delete(account);
  }

  /** Bytes `account` stores now (as far as this tracker knows). */
  async used(account: string): Promise<number> {
    let u = this.#used.get(account);
    if (u === undefined) {
      const [stored, metadata] = await Promise.all([
        this.#meta.storedBytes(account),
        this.#meta.metadataBytes(account),
      ]);
      // Another reservation may have read it meanwhile: keep the first, it counts since.
      u = this.#used.get(account) ?? stored + metadata;
      this.#used.set(account, u);
    }
    return u;
  }

  /**
   * Counts `bytes` more for `account`, or throws `quota` (counting nothing) if that would
   * exceed the limit. Zero bytes always pass (content already stored).
   */
  async reserve(account: string, bytes: number): Promise<void> {
    if (bytes <= 0) return;
    // Read after the last await: concurrent reservations count on the same figure.
    while (!this.#used.has(account)) await this.used(account);
    let u = this.#used.get(account)!;
    if (u + bytes > this.limit && await this.#reclaimFor(account)) {
      while (!this.#used.has(account)) await this.used(account);
      u = this.#used.get(account)!;
    }
    if (u + bytes > this.limit) {
      throw new ProtocolError(
        "quota",
        `Cannot store: the account's quota of ${
          describeSize(this.limit)
        } is used up; delete files or ask the admin for more (space of deleted and replaced files is freed once the server stops keeping their old versions)`,
      );
    }
    this.#used.set(account, u + bytes);
  }

  /** Gives back a reservation whose bytes were not stored after all. */
  release(account: string, bytes: number): void {
    const u = this.#used.get(account);
    if (u !== undefined) this.#used.set(account, Math.max(0, u - bytes));
  }

  /** Forgets every cached usage (re-read from the index at the next use). */
  forget(): void {
    this.#used.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Connections

/** Limits of one connection, see {@link ConnGuard}. */
export interface ConnLimits {
  /** Largest frame accepted before the connection signed in. */
  maxFrameBeforeSignIn: number;
  /** Every frame may take this long to arrive, plus its size at `minFrameBytesPerSecond`. */
  frameTimeoutMs: number;
  /** The slowest accepted transfer rate of a frame, in bytes a second. */
  minFrameBytesPerSecond: number;
  /** Reading pauses while requests in flight and unsent replies hold this many bytes. */
  maxBufferedBytes: number;
  /** Reading of all of an account's connections pauses while they hold this many bytes. */
  maxAccountBufferedBytes: number;
}

/**
 * What the connections of one account hold together: bytes of requests in flight and of frames
 * queued for sending, requests waiting for announced chunks, signed-in connections. Shared by the
 * account's {@link ConnGuard}s; see {@link AccountBudgets}.
 */
export class AccountBudget {
  bytes = 0;
  waiting = 0;
  connections = 0;
  #waiters: (() => void)[] = [];

  /** Resolves at the next change of `bytes` that may let a held read go on. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Adds `n` (may be negative) to the bytes held; wakes held reads when it shrinks. */
  add(n: number): void {
    this.bytes += n;
    if (n < 0) {
      const w = this.#waiters;
      this.#waiters = [];
      for (const f of w) f();
    }
  }
}

/** The {@link AccountBudget} of every account with a signed-in connection. */
export class AccountBudgets {
  readonly #map = new Map<string, AccountBudget>();

  /** The budget of `account`, made on first use. */
  of(account: string): AccountBudget {
    let b = this.#map.get(account);
    if (!b) this.#map.set(account, b = new AccountBudget());
    return b;
  }

  /** Forgets `account` once nothing of it is open or held. */
  release(account: string): void {
    const b = this.#map.get(account);
    if (b && b.connections <= 0 && b.waiting <= 0 && b.bytes <= 0) this.#map.delete(account);
  }
}

/**
 * Wraps one connection for a {@link Peer} (`PeerConn`) and watches the byte stream:
 *
 * - It follows the frame boundaries (the u32 length prefixes) and refuses, before the
 *   connection has signed in, a frame longer than `maxFrameBeforeSignIn`: a stranger cannot
 *   make the server allocate megabytes.
 * - It measures how long the current frame has been arriving while the server was waiting for
 *   the network (time paused for backpressure does not count); {@link overdue} says when a frame
 *   is slower than `frameTimeoutMs` plus its size at `minFrameBytesPerSecond`: a slow-loris that
 *   trickles bytes is dropped even though each byte resets the idle timer.
 * - It holds reading while the connection's requests in flight plus its replies not yet written
 *   hold `maxBufferedBytes` or more ({@link requestStarted}, {@link replyReady} and the writes
 *   themselves keep count), so one connection's memory stays bounded even if its peer stops
 *   reading replies (the peer's idle timeout then ends it).
 */
export class ConnGuard implements PeerConn {
  readonly #conn: PeerConn;
  readonly #limits: ConnLimits;
  readonly #signedIn: () => boolean;
  readonly #now: Now;
  #closed = false;
  // frame tracking
  #lenGot = 0;
  #len = 0;
  #remaining = 0;
  #frameLength = 0;
  #waited = 0;
  #readStart: number | null = null;
  // memory tracking
  #requestBytes = 0;
  #owed = 0;
  #reserved = 0;
  #waiters: (() => void)[] = [];
  /** Bytes queued for sending, from the connection's peer (replaces {@link #owed} once set). */
  #queued: (() => number) | null = null;
  #account: AccountBudget | null = null;
  /** What of {@link #queued} is counted in the account's budget now. */
  #accountQueued = 0;

  constructor(conn: PeerConn, limits: ConnLimits, signedIn: () => boolean, now: Now = Date.now) {
    this.#conn = conn;
    this.#limits = limits;
    this.#signedIn = signedIn;
    this.#now = now;
  }

  get #inFrame(): boolean {
    return this.#lenGot > 0 || this.#remaining > 0;
  }

  /** Bytes held by requests in flight and replies not yet written. */
  get buffered(): number {
    return this.#requestBytes + this.#reserved + (this.#queued ? this.#queued() : this.#owed);
  }

  /**
   * From now on, bytes queued for sending are read from `queued` (the peer's count: replies,
   * notices, pages of changes alike) instead of being reported with {@link replyReady}.
   */
  countQueued(queued: () => number): void {
    this.#queued = queued;
  }

  /** Counts this connection in `account`'s shared budget (once it signed in). */
  joinAccount(account: AccountBudget): void {
    if (this.#account) return;
    this.#account = account;
    account.connections++;
    account.add(this.#requestBytes);
    this.#syncQueued();
  }

  /** Leaves the account's budget (the connection ended). */
  leaveAccount(): void {
    const a = this.#account;
    if (!a) return;
    a.add(-this.#requestBytes - this.#accountQueued);
    this.#accountQueued = 0;
    a.connections--;
    this.#account = null;
  }

  #syncQueued(): void {
    if (!this.#account || !this.#queued) return;
    const q = this.#queued();
    this.#account.add(q - this.#accountQueued);
    this.#accountQueued = q;
  }

  #held(): boolean {
    if (this.buffered >= this.#limits.maxBufferedBytes) return true;
    return this.#account !== null && this.#account.bytes >= this.#limits.maxAccountBufferedBytes;
  }

  async read(p: Uint8Array): Promise<number | null> {
    this.#syncQueued();
    while (!this.#closed && this.#held()) {
      const waits = [new Promise<void>((resolve) => this.#waiters.push(resolve))];
      if (this.#account) waits.push(this.#account.changed());
      await Promise.race(waits);
      this.#syncQueued();
    }
    if (this.#closed) return null;
    const start = this.#now();
    this.#readStart = start;
    let n: number | null;
    try {
      n = await this.#conn.read(p);
    } finally {
      this.#readStart = null;
    }
    if (this.#inFrame) this.#waited += this.#now() - start;
    if (n !== null) this.#scan(p.subarray(0, n));
    return n;
  }

  /** Follows frame boundaries through `bytes`; throws on a frame too large before sign-in. */
  #scan(bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length) {
      if (this.#remaining === 0) {
        if (this.#lenGot === 0) {
          this.#waited = 0;
          this.#frameLength = 0;
          this.#len = 0;
        }
        this.#len = this.#len * 256 + bytes[i++]!;
        if (++this.#lenGot < 4) continue;
        this.#lenGot = 0;
        this.#frameLength = this.#remaining = this.#len;
        if (this.#len > this.#limits.maxFrameBeforeSignIn && !this.#signedIn()) {
          throw new Error(
            `Cannot read frame: ${this.#len} bytes before signing in (at most ${this.#limits.maxFrameBeforeSignIn})`,
          );
        }
        continue;
      }
      const k = Math.min(this.#remaining, bytes.length - i);
      this.#remaining -= k;
      i += k;
    }
  }

  /** A description of the problem if the current frame is arriving too slowly, else null. */
  overdue(now = this.#now()): string | null {
    if (!this.#inFrame) return null;
    const waited = this.#waited + (this.#readStart === null ? 0 : now - this.#readStart);
    const allowed = this.#limits.frameTimeoutMs +
      this.#frameLength / this.#limits.minFrameBytesPerSecond * 1000;
    if (waited <= allowed) return null;
    return `a frame of ${this.#frameLength || "?"} bytes took more than ${
      Math.round(allowed / 1000)
    } s to arrive`;
  }

  async write(p: Uint8Array): Promise<number> {
    const n = await this.#conn.write(p);
    if (this.#owed > 0) {
      this.#owed = Math.max(0, this.#owed - n);
      this.#wake();
    }
    return n;
  }

  close(): void {
    this.#closed = true;
    this.#wake();
    this.#conn.close();
  }

  /** A request of `bytes` is being handled (call {@link requestEnded} once it is answered). */
  requestStarted(bytes: number): void {
    this.#requestBytes += bytes;
    this.#account?.add(bytes);
  }

  /** The handler of a request of `bytes` returned. */
  requestEnded(bytes: number): void {
    this.#requestBytes -= bytes;
    this.#account?.add(-bytes);
    this.#wake();
  }

  /** Something queued was written: a held read or reply may go on. */
  written(): void {
    const before = this.#accountQueued;
    this.#syncQueued();
    if (this.#accountQueued >= before) this.#wake();
  }

  /**
   * Waits until a reply of about `bytes` fits in the budget (at once if nothing else is held),
   * then reserves it; call {@link replyReady} with the reply's actual size afterwards.
   */
  async reserveReply(bytes: number): Promise<void> {
    const out = () => (this.#queued ? this.#queued() : this.#owed) + this.#reserved;
    while (!this.#closed && out() > 0 && out() + bytes > this.#limits.maxBufferedBytes) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.#reserved += bytes;
  }

  /** The reply reserved as `reserved` bytes is `actual` bytes and about to be written. */
  replyReady(reserved: number, actual: number): void {
    this.#reserved -= reserved;
    if (!this.#queued) this.#owed += actual;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

/** Counts connections per source address. */
export class ConnectionCounter {
  readonly #open = new Map<string, number>();
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  /** Counts one more connection from `ip`; false (nothing counted) if it has `max` already. */
  add(ip: string): boolean {
    const n = this.#open.get(ip) ?? 0;
    if (n >= this.max) return false;
    this.#open.set(ip, n + 1);
    return true;
  }

  /** A connection from `ip` ended. */
  remove(ip: string): void {
    const n = (this.#open.get(ip) ?? 1) - 1;
    if (n <= 0) this.#open.delete(ip);
    else this.#open.set(ip, n);
  }

  /** Connections open from `ip`. */
  count(ip: string): number {
    return this.#open.get(ip) ?? 0;
  }
}

/** Allows one log line per key per `everyMs` (a throttled attacker must not flood the log). */
export class LogLimiter {
  readonly #everyMs: number;
  readonly #now: Now;
  readonly #last = new Map<string, number>();

  constructor(everyMs: number, now: Now = Date.now) {
    this.#everyMs = everyMs;
    this.#now = now;
  }

  /** True if a line about `key` may be written now. */
  allow(key: string): boolean {
    const now = this.#now();
    const last = this.#last.get(key);
    if (last !== undefined && now - last < this.#everyMs) return false;
    if (this.#last.size >= 10_000) this.#last.clear();
    this.#last.set(key, now);
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// All of them

/** Every limit of the server, with {@link DEFAULT_LIMITS}. */
export interface ServerLimits extends ConnLimits {
  /** Most connections open at once from one address (`--max-connections-per-ip`). */
  maxConnectionsPerIp: number;
  /** Most connections open at once from one address group (IPv4 /24, IPv6 /64). */
  maxConnectionsPerGroup: number;
  /**
   * Most connections open at once in all (`--max-connections`); accepting pauses at this many.
   * Default: 4096, or less to stay below the process's descriptor limit.
   */
  maxConnections: number;
  /** Most signed-in connections of one account at once. */
  maxConnectionsPerAccount: number;
  /** A connection must finish its TLS handshake within this. */
  tlsHandshakeTimeoutMs: number;
  /** Most requests of one connection waiting for announced chunks at once. */
  maxWaitingPerConnection: number;
  /** Most requests of one account waiting for announced chunks at once. */
  maxWaitingPerAccount: number;
  /** A connection whose unsent frames exceed this is dropped (its peer does not read). */
  maxQueuedBytes: number;
  /** A connection whose write has made no progress for this long is dropped (it does not read). */
  writeStallMs: number;
  /** Largest header before sign-in (never compressed there). */
  maxHeaderBeforeSignIn: number;
  /** Largest header after sign-in, after decompression. */
  maxHeader: number;
  /** Most plain (decompressed) bytes one `put`/`putMany` may make the server check. */
  maxPlainBytesPerRequest: number;
  /** `--registration`: "open" lets anybody register; "closed" only with an invite code. */
  registration: "open" | "closed";
  /** New accounts server-wide: this many at once, then {@link registerGlobalPerHour}. */
  registerGlobalBurst: number;
  registerGlobalPerHour: number;
  /** Failed enrollments server-wide: this many at once, then {@link failedEnrollGlobalPerHour}. */
  failedEnrollGlobalBurst: number;
  failedEnrollGlobalPerHour: number;
  /** A connection must finish TLS, `hello` and sign-in within this (else it is dropped). */
  handshakeTimeoutMs: number;
  /** Close a connection that sent nothing for this long (heartbeats count). */
  idleTimeoutMs: number;
  /** Most requests of one connection handled at once (reading pauses meanwhile). */
  maxInFlight: number;
  /** How often open sessions are checked for revoked devices and the deadlines above. */
  tickMs: number;
  /** Failed sign-ins and enrollments per source address group. */
  ipThrottle: ThrottleOptions;
  /** Failed sign-ins per (account, device). */
  deviceThrottle: ThrottleOptions;
  /** New accounts per source address: this many at once... */
  registerBurst: number;
  /** ...then this many an hour. */
  registerPerHour: number;
  /** Stored bytes per account (`--quota`); null: no quota. */
  quotaBytes: number | null;
  /**
   * An account over its quota first loses its chunks that nothing references and that were stored
   * longer ago than this (uploads given up; 1 hour): they do not count against the quota.
   */
  orphanGraceMs: number;
}

/** The defaults (documented in SECURITY.md). */
export const DEFAULT_LIMITS: ServerLimits = {
  maxConnectionsPerIp: 32,
  maxConnectionsPerGroup: 256,
  maxConnections: 4096,
  maxConnectionsPerAccount: 64,
  tlsHandshakeTimeoutMs: 5_000,
  maxWaitingPerConnection: 8,
  maxWaitingPerAccount: 32,
  maxQueuedBytes: 64 * 1024 * 1024,
  writeStallMs: 30_000,
  maxHeaderBeforeSignIn: 16 * 1024,
  maxHeader: 16 * 1024 * 1024,
  maxPlainBytesPerRequest: 16 * 1024 * 1024,
  maxAccountBufferedBytes: 64 * 1024 * 1024,
  registration: "open",
  registerGlobalBurst: 100,
  registerGlobalPerHour: 100,
  failedEnrollGlobalBurst: 200,
  failedEnrollGlobalPerHour: 200,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 45_000,
  frameTimeoutMs: 20_000,
  minFrameBytesPerSecond: 16 * 1024,
  maxFrameBeforeSignIn: 64 * 1024,
  maxBufferedBytes: 32 * 1024 * 1024,
  maxInFlight: 32,
  tickMs: 1_000,
  ipThrottle: IP_THROTTLE,
  deviceThrottle: DEVICE_THROTTLE,
  registerBurst: 10,
  registerPerHour: 10,
  quotaBytes: null,
  orphanGraceMs: 60 * 60 * 1000,
};

/**
 * The default of {@link ServerLimits.maxConnections}: 4096, or fewer so that the connections'
 * descriptors (up to three each: the public socket and the two ends of the TLS relay, see
 * `tls_front.ts`) use at most three quarters of the process's open-file limit after 128 kept for
 * the runtime, databases, pack files and listeners (Linux: `/proc/self/limits`).
 */
export function defaultMaxConnections(): number {
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\d+)/m.exec(text);
    if (m) return Math.max(16, Math.min(4096, Math.floor((Number(m[1]) - 128) * 0.75 / 3)));
  } catch { /* not Linux, or not readable: keep the default */ }
  return 4096;
}
