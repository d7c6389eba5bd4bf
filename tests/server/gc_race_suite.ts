/**
 * Garbage collection racing uploads and commits on another instance, for a deployment of two
 * instances sharing their stores (SQLite + local packs in `gc_race_test.ts`; PostgreSQL + S3 in
 * `tests/services/gc_race_pg_s3_test.ts`). Instance A collects; instance B does what a session
 * does for a device that saves a file whose content the account already has, but nothing
 * references any more: `have`, `put` if missing, `commit`, and again on `missing`.
 *
 * Each interleaving of the two orders of operations (see `lib/server/retention.ts`) is forced
 * with gates, then a randomized run mixes them; every run ends with `verify` finding nothing
 * wrong: no entry references a chunk whose bytes are gone.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Backend, registerSuite } from "./suite.ts";
import type { BlobStore, CommitResult, MetaStore } from "../../lib/server/stores.ts";
import { collect } from "../../lib/server/retention.ts";
import { verify } from "../../lib/server/verify.ts";
import { blob, sameBytes } from "./blob_suite.ts";
import { fileItem } from "./meta_suite.ts";

/** One instance's stores. */
export interface Instance {
  meta: MetaStore;
  blobs: BlobStore;
}

/** Two instances on the same data. */
export interface Deployment {
  a: Instance;
  b: Instance;
  close(): Promise<void>;
}

/** A backend under test. */
export type DeploymentBackend = Backend<Deployment>;

/** The grace period of these tests (the server's is a day). */
const GRACE = 400;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A point where one side waits until the test lets it go on. */
class Gate {
  #arrived!: () => void;
  #release!: () => void;
  readonly arrived = new Promise<void>((r) => this.#arrived = r);
  readonly #released = new Promise<void>((r) => this.#release = r);
  /** Called by the side that waits here. */
  pass = async (): Promise<void> => {
    this.#arrived();
    await this.#released;
  };
  release(): void {
    this.#release();
  }
}

/** `obj` with `gate()` awaited after each call of `method` (before it returns). */
function pauseAfter<T extends object>(obj: T, method: string, gate: () => Promise<void>): T {
  return new Proxy(obj, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (typeof v !== "function") return v;
      if (key !== method) return v.bind(target);
      return async (...args: unknown[]) => {
        const out = await v.apply(target, args);
        await gate();
        return out;
      };
    },
  });
}

/** What a session does for a device saving `path` with this one chunk. */
async function saveFile(
  inst: Instance,
  account: string,
  path: string,
  chunk: { hash: string; data: Uint8Array },
  pauses: { afterHave?: () => Promise<void> } = {},
): Promise<CommitResult> {
  const ref = { hash: chunk.hash, size: chunk.data.length };
  for (let attempt = 0; attempt < 3; attempt++) {
    const missing = await inst.meta.missingChunks(account, [chunk.hash]);
    if (attempt === 0) await pauses.afterHave?.();
    if (missing.length > 0) {
      await inst.blobs.putMany(account, [chunk]);
      await inst.meta.addChunks(account, [{ ...ref, stored: ref.size, compressed: false }]);
    }
    const [r] = await inst.meta.commit(account, "B", [fileItem(path, [ref])]);
    if (r!.ok || r!.reason !== "missing") return r!;
  }
  throw new Error("Cannot save: the chunk went missing three times");
}

/** An account whose chunk(s) are stored and indexed, referenced by nothing, older than GRACE. */
async function orphaned(d: Deployment, n: number, seed: number) {
  const account = await d.a.meta.createAccount(`s-${crypto.randomUUID()}`);
  const chunks = Array.from({ length: n }, (_, i) => blob(i % 2 ? 90_000 : 3000, seed + i));
  await d.a.blobs.putMany(account, chunks);
  await d.a.meta.addChunks(
    account,
    chunks.map((c) => ({
      hash: c.hash,
      size: c.data.length,
      stored: c.data.length,
      compressed: false,
    })),
  );
  await sleep(GRACE + 100);
  return { account, chunks };
}

async function clean(d: Deployment, account: string): Promise<void> {
  const r = await verify(d.a.meta, d.a.blobs, { account });
  assert.deepEqual(r.problems, []);
}

type Case = (d: Deployment) => Promise<void>;

const CASES: Record<string, Case> = {
  "B's upload indexes the chunk between A's forget and A's sweep": async (d) => {
    const { account, chunks: [x] } = await orphaned(d, 1, 1);
    const gate = new Gate();
    const meta = pauseAfter(d.a.meta, "forgetUnreferenced", gate.pass);
    const gc = collect(meta, d.a.blobs, 30, Date.now(), GRACE);
    await gate.arrived; // A forgot the chunk and waits before sweeping
    const r = await saveFile(d.b, account, "f", x!); // missing: B uploads it again
    assert.equal(r.ok, true);
    gate.release();
    assert.deepEqual(await gc, { versions: 0, chunks: 0 }, "indexed again: not swept");
    sameBytes(await d.b.blobs.get(account, x!.hash), x!.data);
    await clean(d, account);
  },

  "B's upload stores the bytes before A's collection and indexes them after": async (d) => {
    const { account, chunks } = await orphaned(d, 2, 2); // one small chunk, one big
    // B's device is told the chunks are missing (as if the index had lost them) and uploads.
    const gate = new Gate();
    const blobs = pauseAfter(d.b.blobs, "putMany", gate.pass);
    const refs = chunks.map((c) => ({ hash: c.hash, size: c.data.length }));
    const upload = (async () => {
      await blobs.putMany(account, chunks);
      await d.b.meta.addChunks(
        account,
        refs.map((r) => ({ ...r, stored: r.size, compressed: false })),
      );
      return await d.b.meta.commit(account, "B", refs.map((r, i) => fileItem(`f${i}`, [r])));
    })();
    await gate.arrived; // the bytes are stored (again) and not yet indexed
    // A: the index rows are old and unreferenced: forgotten; the bytes were just stored: kept.
    const report = await collect(d.a.meta, d.a.blobs, 30, Date.now(), GRACE);
    assert.deepEqual(report, { versions: 0, chunks: 0 });
    gate.release();
    assert.ok((await upload).every((r) => r.ok));
    for (const c of chunks) sameBytes(await d.a.blobs.get(account, c.hash), c.data);
    await clean(d, account);
  },

  "A collects between B's have and B's commit: the commit finds it missing and B uploads": async (
    d,
  ) => {
    const { account, chunks: [x] } = await orphaned(d, 1, 3);
    const gate = new Gate();
    const save = saveFile(d.b, account, "f", x!, { afterHave: gate.pass });
    await gate.arrived; // B was told the chunk is there and will not upload it
    assert.deepEqual(await collect(d.a.meta, d.a.blobs, 30, Date.now(), GRACE), {
      versions: 0,
      chunks: 1,
    });
    gate.release();
    assert.equal((await save).ok, true);
    sameBytes(await d.a.blobs.get(account, x!.hash), x!.data);
    await clean(d, account);
  },

  "B commits first: A collects nothing": async (d) => {
    const { account, chunks: [x] } = await orphaned(d, 1, 4);
    assert.equal((await saveFile(d.b, account, "f", x!)).ok, true);
    assert.deepEqual(await collect(d.a.meta, d.a.blobs, 30, Date.now(), GRACE), {
      versions: 0,
      chunks: 0,
    });
    await clean(d, account);
  },

  "randomized: collections and saves on two instances, nothing referenced is lost": async (d) => {
    const { account, chunks } = await orphaned(d, 24, 100);
    let seed = 11;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const saves = chunks.map(async (c, i) => {
      await sleep(rnd(30));
      return saveFile(d.b, account, `f${i}`, c);
    });
    const gcs = [0, 10, 20].map(async (ms) => {
      await sleep(ms);
      return await collect(d.a.meta, d.a.blobs, 30, Date.now(), GRACE);
    });
    const results = await Promise.all(saves);
    await Promise.all(gcs);
    assert.ok(results.every((r) => r.ok), JSON.stringify(results));
    await clean(d, account);
    const reads = chunks.map((c) => ({ hash: c.hash, into: new Uint8Array(c.data.length) }));
    assert.ok((await d.a.blobs.getMany(account, reads)).every((x) => x));
  },
};

/** Registers every case of the suite for `backend`. */
export function gcRaceSuite(backend: DeploymentBackend): void {
  registerSuite("gc race", backend, CASES, (d) => d.close());
}
