/**
 * The {@link LimitCounters} of `shared_limits.ts` in PostgreSQL (tables `limit_failures` and
 * `limit_tokens`, `pg_schema.ts` migration 5): every change is one upsert, which PostgreSQL runs
 * under the row's lock, so two instances counting a failure of the same key at the same moment
 * both count (the rule of `FailureThrottle` and `RateLimiter`, written as SQL expressions;
 * `tests/services/shared_limits_pg_test.ts` checks them against the in-memory classes step by
 * step).
 *
 * @module
 */

import type { ThrottleOptions } from "./limits.ts";
import type { FailureState, LimitCounters } from "./shared_limits.ts";
import type { Pool } from "./pg_pool.ts";

/** `f` is the stored row (the upsert's target); $3 is now, $4 forgetAfterMs. */
const FORGOTTEN = "($3 >= f.locked_until AND $3 - f.last >= $4)";
const NEXT_FAILURES = `(CASE WHEN ${FORGOTTEN} THEN 1 ELSE f.failures + 1 END)`;

/** The lockout after `n` failures ($5 freeFailures, $6 baseLockoutMs, $7 maxLockoutMs). */
function lockout(n: string): string {
  return `LEAST($7::float8, $6::float8 * power(2::float8, (${n} - $5 - 1)::float8))::bigint`;
}

const FAIL = `
INSERT INTO limit_failures AS f (scope, key, failures, last, locked_until)
VALUES ($1, $2, 1, $3, CASE WHEN 1 > $5 THEN $3 + ${lockout("1")} ELSE 0 END)
ON CONFLICT (scope, key) DO UPDATE SET
  failures = ${NEXT_FAILURES},
  last = $3,
  locked_until = CASE
    WHEN ${NEXT_FAILURES} > $5 THEN $3 + ${lockout(NEXT_FAILURES)}
    WHEN ${FORGOTTEN} THEN 0
    ELSE f.locked_until END
RETURNING failures, last, locked_until`;

/** $3 now, $4 burst, $5 milliseconds per token. */
const AVAILABLE = "LEAST($4::float8, b.tokens + ($3 - b.at)::float8 / $5::float8)";
const TAKE = `
INSERT INTO limit_tokens AS b (scope, key, tokens, at, granted)
VALUES ($1, $2, $4::float8 - 1, $3, true)
ON CONFLICT (scope, key) DO UPDATE SET
  tokens = CASE WHEN ${AVAILABLE} >= 1 THEN ${AVAILABLE} - 1 ELSE ${AVAILABLE} END,
  at = $3,
  granted = ${AVAILABLE} >= 1
RETURNING tokens, granted`;

/** {@link LimitCounters} on a pool it does not own. */
export class PgLimitCounters implements LimitCounters {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  async fail(
    scope: string,
    key: string,
    opts: ThrottleOptions,
    now: number,
  ): Promise<FailureState> {
    const [r] = (await this.#pool.query(FAIL, [
      scope,
      key,
      now,
      opts.forgetAfterMs,
      opts.freeFailures,
      opts.baseLockoutMs,
      opts.maxLockoutMs,
    ])).rows as { failures: number; last: number; locked_until: number }[];
    return { failures: r!.failures, last: r!.last, lockedUntil: r!.locked_until };
  }

  async failureState(
    scope: string,
    key: string,
    opts: ThrottleOptions,
    now: number,
  ): Promise<FailureState | null> {
    const [r] = (await this.#pool.query(
      "SELECT failures, last, locked_until FROM limit_failures WHERE scope = $1 AND key = $2",
      [scope, key],
    )).rows as { failures: number; last: number; locked_until: number }[];
    if (!r || (now >= r.locked_until && now - r.last >= opts.forgetAfterMs)) return null;
    return { failures: r.failures, last: r.last, lockedUntil: r.locked_until };
  }

  async take(
    scope: string,
    key: string,
    burst: number,
    perHour: number,
    now: number,
  ): Promise<number> {
    const msPerToken = 3_600_000 / perHour;
    const [r] = (await this.#pool.query(TAKE, [scope, key, now, burst, msPerToken]))
      .rows as { tokens: number; granted: boolean }[];
    return r!.granted ? 0 : Math.ceil((1 - r!.tokens) * msPerToken);
  }

  async peek(
    scope: string,
    key: string,
    burst: number,
    perHour: number,
    now: number,
  ): Promise<number> {
    const msPerToken = 3_600_000 / perHour;
    const [r] = (await this.#pool.query(
      "SELECT tokens, at FROM limit_tokens WHERE scope = $1 AND key = $2",
      [scope, key],
    )).rows as { tokens: number; at: number }[];
    if (!r) return 0;
    const tokens = Math.min(burst, r.tokens + (now - r.at) / msPerToken);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * msPerToken);
  }

  async prune(olderThan: number, now: number): Promise<void> {
    await this.#pool.query("DELETE FROM limit_failures WHERE last < $1 AND locked_until < $2", [
      now - olderThan,
      now,
    ]);
    await this.#pool.query("DELETE FROM limit_tokens WHERE at < $1", [now - olderThan]);
  }
}
