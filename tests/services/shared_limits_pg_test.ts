/**
 * The throttles shared by instances (`shared_limits.ts` on `pg_limits.ts`) against the in-memory
 * ones of `limits.ts`: the same random sequence of failures, checks and token takes, on the same
 * clock, gives the same answers at every step, spread over two pools (two instances); and
 * failures counted at the same moment from both instances all count.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  FailureThrottle,
  RateLimiter,
  SignInThrottle,
  type ThrottleOptions,
} from "../../lib/server/limits.ts";
import {
  SharedFailureThrottle,
  SharedRateLimiter,
  SharedSignInThrottle,
} from "../../lib/server/shared_limits.ts";
import { PgLimitCounters } from "../../lib/server/pg_limits.ts";
import { createPool, type Pool } from "../../lib/server/pg_pool.ts";
import { migrate } from "../../lib/server/pg_schema.ts";
import { adminQuery, freshSchemaName, servicesEnv } from "./services_env.ts";

const env = servicesEnv(["CLOUDSYNC_TEST_PG_URL"]);
const opts = { ignore: env.skip !== undefined, sanitizeResources: true, sanitizeOps: true };

/** Two pools (two instances) on a fresh schema, dropped afterwards. */
async function twoInstances(fn: (a: Pool, b: Pool) => Promise<void>): Promise<void> {
  const url = env.values!.CLOUDSYNC_TEST_PG_URL;
  const schema = freshSchemaName();
  await adminQuery(url, `CREATE SCHEMA ${schema}`);
  const a = createPool(url, { schema });
  const b = createPool(url, { schema });
  try {
    await migrate(a);
    await fn(a, b);
  } finally {
    await a.end();
    await b.end();
    await adminQuery(url, `DROP SCHEMA ${schema} CASCADE`);
  }
}

/** A small deterministic generator (the sequence is the same at every run). */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 2 ** 32;
  };
}

const THROTTLE: ThrottleOptions = {
  freeFailures: 3,
  baseLockoutMs: 1_000,
  maxLockoutMs: 20_000,
  forgetAfterMs: 60_000,
  maxKeys: 1_000_000,
};

Deno.test(
  "shared failure throttle: the same answers as the in-memory one, step by step",
  opts,
  () =>
    twoInstances(async (pa, pb) => {
      let now = 1_700_000_000_000;
      const clock = () => now;
      const memory = new FailureThrottle(THROTTLE, clock);
      const shared = [pa, pb].map((p) =>
        new SharedFailureThrottle(new PgLimitCounters(p), "t", THROTTLE, clock)
      );
      const next = rng(7);
      const keys = ["10.0.0.1", "10.0.0.2", "acct"];
      for (let step = 0; step < 400; step++) {
        const key = keys[Math.floor(next() * keys.length)]!;
        const on = shared[step % 2]!; // alternate instances
        const r = next();
        if (r < 0.5) {
          assert.equal(await on.fail(key), memory.fail(key), `step ${step}: fail(${key})`);
        } else if (r < 0.8) {
          assert.equal(await on.lockedFor(key), memory.lockedFor(key), `step ${step}: locked`);
        } else {
          assert.equal(await on.failures(key), memory.failures(key), `step ${step}: failures`);
        }
        // Time moves by small and large steps: lockouts expire, keys are forgotten.
        const dt = next();
        now += dt < 0.7 ? Math.floor(dt * 1500) : dt < 0.95 ? 15_000 : 70_000;
      }
    }),
);

Deno.test(
  "shared token bucket and sign-in throttle: the same answers as the in-memory ones",
  opts,
  () =>
    twoInstances(async (pa, pb) => {
      let now = 1_700_000_000_000;
      const clock = () => now;
      const memory = new RateLimiter(3, 4, clock);
      const shared = [pa, pb].map((p) =>
        new SharedRateLimiter(new PgLimitCounters(p), "register", 3, 4, clock)
      );
      const memorySignIn = new SignInThrottle(THROTTLE, { ...THROTTLE, freeFailures: 5 }, clock);
      const sharedSignIn = [pa, pb].map((p) =>
        new SharedSignInThrottle(
          new PgLimitCounters(p),
          THROTTLE,
          { ...THROTTLE, freeFailures: 5 },
          clock,
        )
      );
      const next = rng(11);
      const ips = ["10.0.1.1", "10.0.1.2", "10.0.2.1"]; // two in one /24 group
      for (let step = 0; step < 300; step++) {
        const ip = ips[Math.floor(next() * ips.length)]!;
        const device = next() < 0.3 ? null : { account: "acct", id: next() < 0.5 ? "d1" : "d2" };
        const guess = next() < 0.8;
        const i = step % 2;
        assert.equal(await shared[i]!.take(ip), memory.take(ip), `step ${step}: take`);
        assert.equal(await shared[1 - i]!.peek(ip), memory.peek(ip), `step ${step}: peek`);
        if (next() < 0.6) {
          assert.deepEqual(
            await sharedSignIn[i]!.failed(ip, device, guess),
            memorySignIn.failed(ip, device, guess),
            `step ${step}: failed`,
          );
        }
        assert.equal(
          await sharedSignIn[1 - i]!.lockedFor(ip),
          memorySignIn.lockedFor(ip),
          `step ${step}: lockedFor`,
        );
        assert.equal(
          await sharedSignIn[i]!.deviceLockedFor("acct", "d1"),
          memorySignIn.deviceLockedFor("acct", "d1"),
          `step ${step}: deviceLockedFor`,
        );
        now += Math.floor(next() * (next() < 0.8 ? 4_000 : 400_000));
      }
    }),
);

Deno.test(
  "failures counted at the same moment on two instances all count",
  opts,
  () =>
    twoInstances(async (pa, pb) => {
      const throttles = [pa, pb].map((p) =>
        new SharedFailureThrottle(new PgLimitCounters(p), "race", THROTTLE)
      );
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => throttles[i % 2]!.fail("10.9.9.9")),
      );
      assert.equal(await throttles[0]!.failures("10.9.9.9"), 40);
      assert.ok(await throttles[1]!.lockedFor("10.9.9.9") > 0);
      const buckets = [pa, pb].map((p) =>
        new SharedRateLimiter(new PgLimitCounters(p), "race", 10, 1)
      );
      const waits = await Promise.all(
        Array.from({ length: 30 }, (_, i) => buckets[i % 2]!.take("10.9.9.9")),
      );
      assert.equal(waits.filter((w) => w === 0).length, 10, "exactly the burst is granted");
    }),
);
