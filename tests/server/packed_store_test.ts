/**
 * The S3 packing policy and the object-store decorators, on an in-memory object store: many
 * small uploads make few objects, uploads in flight are bounded, reads are ranged and runs of
 * neighbouring chunks cost one read, transient failures are retried with back-off and permanent
 * ones are not, and a failed upload indexes nothing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PackedStore } from "../../lib/server/packed_store.ts";
import { SqlitePackIndex } from "../../lib/server/pack_index.ts";
import { RetryingObjects } from "../../lib/server/object_retry.ts";
import { isTransientS3Error, S3_PACKS } from "../../lib/server/s3_objects.ts";
import { retry } from "../../lib/util/retry.ts";
import { InjectedError, MemoryObjects } from "./memory_objects.ts";
import { blob, sameBytes } from "./blob_suite.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };
const A = "acct1";

async function withStore(
  fn: (s: PackedStore, objects: MemoryObjects) => Promise<void>,
  objects = new MemoryObjects(),
) {
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-packed-" });
  const store = new PackedStore(new SqlitePackIndex(join(dir, "index.db")), objects, S3_PACKS);
  try {
    await fn(store, objects);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("10,000 small chunks in batches of 1024 are 10 objects", opts, async () => {
  await withStore(async (s, objects) => {
    const items = Array.from({ length: 10_000 }, (_, i) => blob(4096, i + 1));
    for (let i = 0; i < items.length; i += 1024) await s.putMany(A, items.slice(i, i + 1024));
    assert.equal(objects.puts, 10);
    for (const i of [0, 1023, 1024, 5000, 9999]) {
      sameBytes(await s.get(A, items[i]!.hash), items[i]!.data);
    }
  });
});

Deno.test(
  "10,000 small chunks uploaded one by one, all at once, share few objects",
  opts,
  async () => {
    const objects = new MemoryObjects();
    objects.delayMs = 2;
    await withStore(async (s) => {
      const items = Array.from({ length: 10_000 }, (_, i) => blob(4096, i + 1));
      await Promise.all(items.map((i) => s.put(A, i.hash, i.data)));
      // The first uploads start at once, alone; the rest wait and go in packs of up to 8 MiB.
      assert.ok(objects.puts <= S3_PACKS.maxWrites + 6, `${objects.puts} objects`);
      assert.ok(objects.maxInFlight <= S3_PACKS.maxWrites, `${objects.maxInFlight} in flight`);
      for (const [key, data] of objects.objects) {
        assert.ok(data.length <= S3_PACKS.packBytes, `${key}: ${data.length} bytes`);
      }
      const reads = items.map((i) => ({ hash: i.hash, into: new Uint8Array(4096) }));
      assert.ok((await s.getMany(A, reads)).every((x) => x));
      reads.forEach((r, k) => sameBytes(r.into, items[k]!.data, `chunk ${k}`));
    }, objects);
  },
);

Deno.test("uploads in flight are bounded; reads are ranged and coalesced", opts, async () => {
  const objects = new MemoryObjects();
  objects.delayMs = 3;
  await withStore(async (s) => {
    const big = Array.from({ length: 40 }, (_, i) => blob(300_000, 100 + i));
    await Promise.all(big.map((b) => s.put(A, b.hash, b.data)));
    assert.ok(objects.maxInFlight <= S3_PACKS.maxWrites, `${objects.maxInFlight} in flight`);

    const small = Array.from({ length: 100 }, (_, i) => blob(1000 + i, 500 + i));
    await s.putMany(A, small); // one pack
    objects.reads = 0;
    objects.bytesRead = 0;
    const reads = small.map((i) => ({ hash: i.hash, into: new Uint8Array(i.data.length) }));
    assert.ok((await s.getMany(A, reads)).every((x) => x));
    assert.equal(objects.reads, 1, "100 neighbours in one pack: one ranged read");
    const total = small.reduce((n, i) => n + i.data.length, 0);
    assert.equal(objects.bytesRead, total);
    objects.bytesRead = 0;
    sameBytes(await s.get(A, small[50]!.hash), small[50]!.data);
    assert.equal(objects.bytesRead, small[50]!.data.length, "one chunk: only its bytes are read");
  }, objects);
});

Deno.test(
  "transient failures are retried with back-off; permanent ones are not",
  opts,
  async () => {
    const flaky = new MemoryObjects();
    const waits: number[] = [];
    const objects = new RetryingObjects(flaky, {
      transient: isTransientS3Error,
      sleep: (ms) => {
        waits.push(ms);
        return Promise.resolve();
      },
    });
    const dir = await Deno.makeTempDir({ prefix: "cloudsync-packed-" });
    const s = new PackedStore(new SqlitePackIndex(join(dir, "index.db")), objects, S3_PACKS);
    try {
      const x = blob(5000, 1);
      flaky.failNext = 3;
      await s.put(A, x.hash, x.data);
      assert.equal(objects.retries, 3);
      assert.equal(waits.length, 3);
      flaky.failNext = 2;
      sameBytes(await s.get(A, x.hash), x.data);
      assert.equal(objects.retries, 5);

      const y = blob(6000, 2);
      flaky.failNext = 10; // more than the attempts
      await assert.rejects(s.put(A, y.hash, y.data), /injected failure/);
      assert.equal(flaky.objects.size, 1, "nothing stored");
      flaky.failNext = 0;
      assert.equal(await s.get(A, y.hash), null, "a failed upload indexes nothing");

      const before = objects.retries;
      flaky.failNext = 1;
      flaky.failCode = "AccessDenied";
      await assert.rejects(s.put(A, y.hash, y.data), /AccessDenied/);
      assert.equal(objects.retries, before, "a permanent failure is not retried");
      await s.put(A, y.hash, y.data); // and the next upload works
      sameBytes(await s.get(A, y.hash), y.data);
    } finally {
      await s.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "a failed pack upload fails every upload waiting for it, and only those",
  opts,
  async () => {
    const objects = new MemoryObjects();
    objects.delayMs = 5;
    await withStore(async (s) => {
      const items = Array.from({ length: 20 }, (_, i) => blob(2000, 700 + i));
      objects.failNext = S3_PACKS.maxWrites; // the uploads that start at once, alone
      objects.failCode = "AccessDenied";
      const results = await Promise.allSettled(items.map((i) => s.put(A, i.hash, i.data)));
      const failed = results.filter((r) => r.status === "rejected").length;
      assert.equal(failed, S3_PACKS.maxWrites, "the others waited and went in one pack");
      for (const [k, r] of results.entries()) {
        const got = await s.get(A, items[k]!.hash);
        if (r.status === "fulfilled") sameBytes(got, items[k]!.data);
        else assert.equal(got, null);
      }
    }, objects);
  },
);

Deno.test("isTransientS3Error: network, timeouts, 5xx and throttling only", () => {
  const e = (code: string) => new InjectedError(code);
  for (const c of ["ECONNRESET", "ECONNREFUSED", "SlowDown", "InternalError", "Timeout", ""]) {
    assert.equal(isTransientS3Error(e(c)), true, c);
  }
  for (const c of ["AccessDenied", "NoSuchBucket", "NoSuchKey", "SignatureDoesNotMatch"]) {
    assert.equal(isTransientS3Error(e(c)), false, c);
  }
  assert.equal(isTransientS3Error(new Error("socket hang up")), true);
  assert.equal(isTransientS3Error(new Error("bad argument")), false);
  assert.equal(isTransientS3Error("not an error"), false);
});

Deno.test("retry: waits grow exponentially (with jitter) up to the cap", async () => {
  const waits: number[] = [];
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      return Promise.reject(new Error("down"));
    }, {
      attempts: 6,
      baseMs: 100,
      maxMs: 1000,
      transient: () => true,
      sleep: (ms) => {
        waits.push(ms);
        return Promise.resolve();
      },
    }),
    /down/,
  );
  assert.equal(calls, 6);
  assert.equal(waits.length, 5);
  [100, 200, 400, 800, 1000].forEach((cap, i) => assert.ok(waits[i]! <= cap, `${i}`));
});
