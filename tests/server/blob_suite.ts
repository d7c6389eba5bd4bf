/**
 * The chunk-store conformance suite: the contract of {@link BlobStore} that every backend passes
 * (local tiers and packs in `blob_local_test.ts`, S3 in `tests/services/blob_s3_test.ts`), in
 * the manner of restic's backend test suite: one list of cases, each run as its own test on a
 * fresh, empty store; `again()` opens a second store on the same data, as another server
 * process (instance) would.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Backend, registerSuite } from "./suite.ts";
import type { BlobStore } from "../../lib/server/stores.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";

/** A fresh store of a backend. */
export interface BlobFixture {
  store: BlobStore;
  /** Another store on the same data; the test closes it. */
  again(): Promise<BlobStore>;
  /**
   * How many things of `account` the backend holds underneath (files, objects, index rows),
   * counted behind the store's back: what `deleteAccount` must leave at zero.
   */
  leftovers(account: string): Promise<number>;
  cleanup(): Promise<void>;
}

/** A backend under test. */
export type BlobBackend = Backend<BlobFixture>;

/** Pseudo-random bytes (xorshift) named by their SHA-256. */
export function blob(n: number, seed: number): { hash: string; data: Uint8Array } {
  const data = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  return { hash: sha256Hex(data), data };
}

/**
 * Asserts equal bytes. (Not `assert.deepEqual`: its message for a mismatch of two large byte
 * arrays takes minutes and gigabytes to build.)
 */
export function sameBytes(
  actual: Uint8Array | null | undefined,
  expected: Uint8Array,
  what = "bytes",
): void {
  if (!actual) assert.fail(`${what}: missing (null), expected ${expected.length} bytes`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  const at = actual.findIndex((b, i) => b !== expected[i]);
  assert.equal(at, -1, `${what}: differs at byte ${at}`);
}

const A = "acct1";
const B = "acct2";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Case = (f: BlobFixture) => Promise<void>;

const CASES: Record<string, Case> = {
  "put and get: the exact bytes, into a buffer or not; missing is null": async ({ store: s }) => {
    const x = blob(1000, 1);
    await s.put(A, x.hash, x.data);
    sameBytes(await s.get(A, x.hash), x.data);
    const into = new Uint8Array(1000);
    assert.equal(await s.get(A, x.hash, into), into, "read into the buffer given");
    sameBytes(into, x.data);
    assert.equal(await s.get(A, x.hash, new Uint8Array(999)), null, "another length: missing");
    assert.equal(await s.get(A, blob(10, 2).hash), null);
  },

  "putMany: small and big chunks together, all durable, read back in any order": async (
    { store: s },
  ) => {
    const items = [
      blob(10, 1),
      blob(70_000, 2),
      blob(1, 3),
      blob(1024 * 1024 + 7, 4),
      blob(65_536, 5),
      blob(4 * 1024 * 1024, 6), // the largest chunk the protocol allows
    ];
    await s.putMany(A, items);
    for (const i of [...items].reverse()) sameBytes(await s.get(A, i.hash), i.data);
  },

  "getMany: each chunk into its buffer, in order, false where missing": async ({ store: s }) => {
    const items = Array.from({ length: 40 }, (_, i) => blob(100 + i * 1000, 10 + i));
    await s.putMany(A, items.slice(0, 20));
    await s.putMany(A, items.slice(20));
    const order = [5, 25, 6, 7, 8, 39, 0, 1, 2, 21, 22, 30];
    const missing = blob(50, 99);
    const reads = [...order.map((i) => items[i]!), missing].map((i) => ({
      hash: i.hash,
      into: new Uint8Array(i.data.length),
    }));
    const found = await s.getMany(A, reads);
    assert.deepEqual(found, [...order.map(() => true), false]);
    order.forEach((i, k) => sameBytes(reads[k]!.into, items[i]!.data, `chunk ${i}`));
    // Into one buffer, back to back, as a getMany reply is built.
    const total = order.reduce((n, i) => n + items[i]!.data.length, 0);
    const body = new Uint8Array(total);
    let at = 0;
    const slices = order.map((i) => ({
      hash: items[i]!.hash,
      into: body.subarray(at, at += items[i]!.data.length),
    }));
    assert.ok((await s.getMany(A, slices)).every((x) => x));
    at = 0;
    for (const i of order) {
      sameBytes(body.subarray(at, at + items[i]!.data.length), items[i]!.data);
      at += items[i]!.data.length;
    }
    assert.deepEqual(await s.getMany(A, []), []);
    assert.deepEqual(await s.getMany(A, [{ hash: items[0]!.hash, into: new Uint8Array(3) }]), [
      false,
    ]);
  },

  "accounts are separate": async ({ store: s }) => {
    const x = blob(2000, 1);
    const y = blob(200_000, 2);
    await s.putMany(A, [x, y]);
    assert.equal(await s.get(B, x.hash), null);
    assert.equal(await s.get(B, y.hash), null);
    assert.deepEqual(await s.getMany(B, [{ hash: y.hash, into: new Uint8Array(y.data.length) }]), [
      false,
    ]);
    await s.put(B, x.hash, x.data);
    assert.deepEqual(await s.sweep(B, [x.hash], Date.now() + 1000), [x.hash]);
    sameBytes(await s.get(A, x.hash), x.data, "B's sweep leaves A's copy");
  },

  "storing again is harmless, in one batch or another": async ({ store: s }) => {
    const x = blob(3000, 1);
    const y = blob(90_000, 2);
    await s.putMany(A, [x, y, x]);
    await s.putMany(A, [y, x]);
    await s.put(A, x.hash, x.data);
    sameBytes(await s.get(A, x.hash), x.data);
    sameBytes(await s.get(A, y.hash), y.data);
  },

  "sweep deletes only the chunks named, stored before the cut-off": async ({ store: s }) => {
    const old = [blob(100, 1), blob(100_000, 2), blob(50, 3)];
    await s.putMany(A, old);
    await sleep(5);
    const cut = Date.now();
    await sleep(5);
    const young = blob(120_000, 4);
    await s.put(A, young.hash, young.data);
    const gone = await s.sweep(A, [old[0]!.hash, old[1]!.hash, young.hash, blob(9, 9).hash], cut);
    assert.deepEqual(gone.sort(), [old[0]!.hash, old[1]!.hash].sort());
    assert.equal(await s.get(A, old[0]!.hash), null);
    assert.equal(await s.get(A, old[1]!.hash), null);
    sameBytes(await s.get(A, old[2]!.hash), old[2]!.data, "not named: kept");
    sameBytes(await s.get(A, young.hash), young.data, "stored after the cut-off: kept");
    assert.deepEqual(await s.sweep(A, [], cut), []);
    assert.deepEqual(await s.sweep(A, [old[0]!.hash], cut), [], "already gone");
  },

  "a chunk stored again after the cut-off survives the sweep": async ({ store: s }) => {
    const x = blob(500, 1);
    const y = blob(80_000, 2);
    await s.putMany(A, [x, y]);
    await sleep(5);
    const cut = Date.now();
    await sleep(5);
    await s.putMany(A, [y, x]); // an upload of the same content: no bytes written, but "now"
    assert.deepEqual(await s.sweep(A, [x.hash, y.hash], cut), []);
    sameBytes(await s.get(A, x.hash), x.data);
    sameBytes(await s.get(A, y.hash), y.data);
  },

  "sweeping some chunks of a batch leaves the others readable": async ({ store: s }) => {
    const items = Array.from({ length: 10 }, (_, i) => blob(70_000 + i, 20 + i));
    await s.putMany(A, items);
    await sleep(5);
    const gone = await s.sweep(A, items.slice(0, 9).map((i) => i.hash), Date.now());
    assert.equal(gone.length, 9);
    sameBytes(await s.get(A, items[9]!.hash), items[9]!.data);
    assert.deepEqual(await s.sweep(A, [items[9]!.hash], Date.now() + 1), [items[9]!.hash]);
    assert.equal(await s.get(A, items[9]!.hash), null);
  },

  "another store on the same data reads what this one wrote": async (f) => {
    const x = blob(700, 1);
    const y = blob(300_000, 2);
    await f.store.putMany(A, [x, y]);
    const other = await f.again();
    try {
      sameBytes(await other.get(A, x.hash), x.data);
      sameBytes(await other.get(A, y.hash), y.data);
      const z = blob(100_000, 3);
      await other.put(A, z.hash, z.data);
      sameBytes(await f.store.get(A, z.hash), z.data);
    } finally {
      await other.close();
    }
  },

  "many uploads and downloads at once": async ({ store: s }) => {
    const items = Array.from({ length: 60 }, (_, i) => blob(i % 3 === 0 ? 150_000 : 3000, 40 + i));
    await Promise.all(items.map((i, k) => k % 2 ? s.put(A, i.hash, i.data) : s.putMany(A, [i])));
    const got = await Promise.all(items.map((i) => s.get(A, i.hash)));
    items.forEach((i, k) => sameBytes(got[k], i.data, `chunk ${k}`));
    const reads = items.map((i) => ({ hash: i.hash, into: new Uint8Array(i.data.length) }));
    const halves = await Promise.all([
      s.getMany(A, reads.slice(0, 30)),
      s.getMany(A, reads.slice(30)),
    ]);
    assert.ok(halves.flat().every((x) => x));
    reads.forEach((r, k) => sameBytes(r.into, items[k]!.data));
  },

  "a sweep racing an upload of the same chunk never loses the upload": async (f) => {
    const other = await f.again();
    try {
      for (let round = 0; round < 12; round++) {
        const x = blob(round % 2 ? 100_000 : 400, 100 + round);
        await f.store.put(A, x.hash, x.data);
        await sleep(3);
        const cut = Date.now(); // the stored copy is older than this; the upload below is not
        await Promise.all([
          other.sweep(A, [x.hash], cut),
          f.store.putMany(A, [x]),
        ]);
        sameBytes(await f.store.get(A, x.hash), x.data, `round ${round}`);
        sameBytes(await other.get(A, x.hash), x.data, `round ${round}, other store`);
      }
    } finally {
      await other.close();
    }
  },

  "deleteAccount removes every chunk of the account, and nothing of another": async (f) => {
    const s = f.store;
    const mine = [blob(100, 1), blob(200_000, 2), blob(3000, 3), blob(1024 * 1024 + 3, 4)];
    const theirs = [blob(100, 1), blob(200_000, 5), blob(40, 6)]; // one shared with A
    await s.putMany(A, mine.slice(0, 2));
    await s.putMany(A, mine.slice(2));
    await s.putMany(B, theirs);
    assert.ok(await f.leftovers(A) > 0);
    const inB = await f.leftovers(B);
    await s.deleteAccount(A);
    for (const x of mine) assert.equal(await s.get(A, x.hash), null);
    assert.deepEqual(
      await s.getMany(A, mine.map((x) => ({ hash: x.hash, into: new Uint8Array(x.data.length) }))),
      [false, false, false, false],
    );
    assert.equal(await f.leftovers(A), 0, "nothing of the account is left underneath");
    assert.equal(await f.leftovers(B), inB);
    for (const x of theirs) sameBytes(await s.get(B, x.hash), x.data, "the other account's");
    await s.deleteAccount(A); // again (a run cut short is finished by the next): harmless
    await s.deleteAccount("acct9"); // an account that never stored anything
    const other = await f.again();
    try {
      assert.equal(await other.get(A, mine[1]!.hash), null, "another instance sees it gone");
      sameBytes(await other.get(B, theirs[1]!.hash), theirs[1]!.data);
    } finally {
      await other.close();
    }
    // Storing under the id again works from scratch.
    await s.putMany(A, [mine[1]!]);
    sameBytes(await s.get(A, mine[1]!.hash), mine[1]!.data);
  },

  "bad account names and hashes are refused": async ({ store: s }) => {
    const x = blob(10, 1);
    await assert.rejects(s.put("../x", x.hash, x.data), /Cannot address chunk/);
    await assert.rejects(s.putMany(A, [{ hash: "zz", data: x.data }]), /Cannot address chunk/);
    await assert.rejects(s.get(A, "../../etc/passwd"), /Cannot address chunk/);
    await assert.rejects(s.sweep("a/b", [x.hash], 0), /Cannot address chunk/);
    for (const bad of ["", "..", "../x", "a/b", "A"]) {
      await assert.rejects(s.deleteAccount(bad), /Cannot address account/, JSON.stringify(bad));
    }
  },
};

/** Registers every case of the suite for `backend`. */
export function blobSuite(backend: BlobBackend): void {
  registerSuite("blobs", backend, CASES, async (f) => {
    await f.store.close().catch(() => {});
    await f.cleanup();
  });
}
