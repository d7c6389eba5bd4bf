/**
 * Throttles and budgets that hold across every instance of a deployment (several servers on one
 * PostgreSQL database): the same rules as the in-memory `FailureThrottle`,
 * `RateLimiter` and `SignInThrottle` of `limits.ts`, on counters that live in the
 * shared database ({@link LimitCounters}; `pg_limits.ts`), so that an attacker who spreads
 * guesses over the instances behind a load balancer meets one count, not one per instance.
 *
 * What the session calls is {@link SignInLimiter} and {@link RegistrationLimiter}: the in-memory
 * classes of `limits.ts` satisfy them as they are (one instance: SQLite), the classes here do
 * for a shared database. Limits that are about one process (connections per address, bytes held
 * per connection, log rate) stay in memory (`limits.ts`).
 *
 * @example
 * ```ts
 * const signIn = new SharedSignInThrottle(counters, IP_THROTTLE, ACCOUNT_THROTTLE);
 * if (await signIn.lockedFor(ip, null) > 0) throw throttledError(...);
 * ```
 *
 * @module
 */

import {
  addressGroup,
  DEVICE_THROTTLE,
  IP_THROTTLE,
  type Now,
  type ThrottleOptions,
} from "./limits.ts";

/** What a failed attempt did, as `SignInThrottle.failed` reports it. */
export interface FailedAttempt {
  ipLockout: number;
  deviceLockout: number;
  ipFailures: number;
  deviceFailures: number;
}

/** The sign-in throttle the session asks (memory: `SignInThrottle`; shared: below). */
export interface SignInLimiter {
  /** Milliseconds until an attempt from `ip` is checked at all (its address group's lockout). */
  lockedFor(ip: string): number | Promise<number>;
  /** Milliseconds the device key `account/device` stays locked (0: not locked). */
  deviceLockedFor(account: string, device: string): number | Promise<number>;
  /** Records a failure: of the address group when `guess`, of the device key when given. */
  failed(
    ip: string,
    device: { account: string; id: string } | null,
    guess?: boolean,
  ): FailedAttempt | Promise<FailedAttempt>;
}

/** A budget the session asks (memory: `RateLimiter`; shared: below). */
export interface RegistrationLimiter {
  /** Takes a token of `key`: 0 if granted, else the milliseconds until one is available. */
  take(key: string): number | Promise<number>;
  /** Milliseconds until `key` has a token (0: it has one now); takes nothing. */
  peek(key: string): number | Promise<number>;
}

/** One key's failure record (see `FailureThrottle`). */
export interface FailureState {
  failures: number;
  /** When the key was last failed (ms). */
  last: number;
  /** Locked until then (ms; 0: never locked). */
  lockedUntil: number;
}

/**
 * Counters shared by the instances, each change atomic across them. `scope` names the table of
 * keys (`sign-in-ip`, `register`, ...); `now` is the caller's clock (the instances' clocks must
 * agree within seconds, as for garbage collection).
 */
export interface LimitCounters {
  /**
   * Records one failure of `key`, by the rule of `FailureThrottle.fail`: a record forgotten
   * (`forgetAfterMs` after its last failure, once unlocked) starts again at 1; past
   * `freeFailures` each failure locks the key for `baseLockoutMs` doubled per further failure,
   * at most `maxLockoutMs`. Returns the record after.
   */
  fail(scope: string, key: string, opts: ThrottleOptions, now: number): Promise<FailureState>;
  /** The record of `key`, or null (none, or forgotten by the rule above). */
  failureState(
    scope: string,
    key: string,
    opts: ThrottleOptions,
    now: number,
  ): Promise<FailureState | null>;
  /**
   * Takes a token of `key` from a bucket of `burst` tokens refilled at `perHour` an hour (the rule
   * of `RateLimiter.take`): 0 if granted, else the milliseconds until one is available.
   */
  take(scope: string, key: string, burst: number, perHour: number, now: number): Promise<number>;
  /** What {@link take} would answer now, taking nothing (the rule of `RateLimiter.peek`). */
  peek(scope: string, key: string, burst: number, perHour: number, now: number): Promise<number>;
  /** Forgets records nothing needs any more (older than `olderThan` ms and not locked). */
  prune(olderThan: number, now: number): Promise<void>;
}

/** `FailureThrottle`'s rule on shared counters. */
export class SharedFailureThrottle {
  readonly #counters: LimitCounters;
  readonly #scope: string;
  readonly #opts: ThrottleOptions;
  readonly #now: Now;

  constructor(counters: LimitCounters, scope: string, opts: ThrottleOptions, now: Now = Date.now) {
    this.#counters = counters;
    this.#scope = scope;
    this.#opts = opts;
    this.#now = now;
  }

  /** Milliseconds `key` stays locked (0: attempts allowed). */
  async lockedFor(key: string): Promise<number> {
    const now = this.#now();
    const r = await this.#counters.failureState(this.#scope, key, this.#opts, now);
    return r ? Math.max(0, r.lockedUntil - now) : 0;
  }

  /** Failures currently remembered for `key`. */
  async failures(key: string): Promise<number> {
    const now = this.#now();
    return (await this.#counters.failureState(this.#scope, key, this.#opts, now))?.failures ?? 0;
  }

  /** Records a failure of `key`; returns the lockout it starts now (0: none). */
  async fail(key: string): Promise<number> {
    const now = this.#now();
    const r = await this.#counters.fail(this.#scope, key, this.#opts, now);
    return r.failures > this.#opts.freeFailures ? Math.max(0, r.lockedUntil - now) : 0;
  }
}

/** `RateLimiter`'s rule (a token bucket per key) on shared counters. */
export class SharedRateLimiter implements RegistrationLimiter {
  readonly #counters: LimitCounters;
  readonly #scope: string;
  readonly #burst: number;
  readonly #perHour: number;
  readonly #now: Now;

  constructor(
    counters: LimitCounters,
    scope: string,
    burst: number,
    perHour: number,
    now: Now = Date.now,
  ) {
    this.#counters = counters;
    this.#scope = scope;
    this.#burst = burst;
    this.#perHour = perHour;
    this.#now = now;
  }

  take(key: string): Promise<number> {
    return this.#counters.take(this.#scope, key, this.#burst, this.#perHour, this.#now());
  }

  peek(key: string): Promise<number> {
    return this.#counters.peek(this.#scope, key, this.#burst, this.#perHour, this.#now());
  }
}

/** `SignInThrottle`'s rule (per address group, per device key) on shared counters. */
export class SharedSignInThrottle implements SignInLimiter {
  readonly byIp: SharedFailureThrottle;
  readonly byDevice: SharedFailureThrottle;

  constructor(
    counters: LimitCounters,
    ip: ThrottleOptions = IP_THROTTLE,
    device: ThrottleOptions = DEVICE_THROTTLE,
    now: Now = Date.now,
  ) {
    this.byIp = new SharedFailureThrottle(counters, "sign-in-ip", ip, now);
    this.byDevice = new SharedFailureThrottle(counters, "sign-in-device", device, now);
  }

  lockedFor(ip: string): Promise<number> {
    return this.byIp.lockedFor(addressGroup(ip));
  }

  deviceLockedFor(account: string, device: string): Promise<number> {
    return this.byDevice.lockedFor(`${account}/${device}`);
  }

  async failed(
    ip: string,
    device: { account: string; id: string } | null,
    guess = true,
  ): Promise<FailedAttempt> {
    const group = addressGroup(ip);
    const key = device ? `${device.account}/${device.id}` : null;
    const ipLockout = guess ? await this.byIp.fail(group) : 0;
    const deviceLockout = key ? await this.byDevice.fail(key) : 0;
    return {
      ipLockout,
      deviceLockout,
      ipFailures: await this.byIp.failures(group),
      deviceFailures: key ? await this.byDevice.failures(key) : 0,
    };
  }
}
