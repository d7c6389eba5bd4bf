/**
 * The metadata conformance suite: the contract of {@link MetaStore} that every backend passes
 * (SQLite in `meta_sqlite_test.ts`, PostgreSQL in `tests/services/meta_pg_test.ts`), in the
 * manner of restic's backend test suite: one list of cases, each run as its own test against a
 * fresh, empty store of the backend. A backend gives a factory; `again()` opens a second handle
 * on the same data, as another server process (instance) would.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Backend, registerSuite } from "./suite.ts";
import type { CommitItem, CommitResult, MetaStore, NewChunk } from "../../lib/server/stores.ts";
import type { ChunkRef, RemoteEntry } from "../../lib/core/types.ts";

/** A fresh store of a backend. */
export interface MetaFixture {
  store: MetaStore;
  /** Another handle on the same data (another process); the test closes it. */
  again(): Promise<MetaStore>;
  /** Removes the data (after the test closed its handles). */
  cleanup(): Promise<void>;
}

/** A backend under test. */
export type MetaBackend = Backend<MetaFixture>;

/** A 64-hex chunk name from a number. */
export const H = (n: number): string => n.toString(16).padStart(64, "0");

/** An index record of chunk `n` of `size` bytes. */
export const chunkRow = (n: number, size = 10): NewChunk => ({
  hash: H(n),
  size,
  stored: size,
  compressed: false,
});

/** A file item of the given chunks (sizes add up). */
export function fileItem(path: string, chunks: ChunkRef[], baseVersion = 0): CommitItem {
  return {
    path,
    baseVersion,
    kind: "file",
    deleted: false,
    size: chunks.reduce((s, c) => s + c.size, 0),
    mtime: 1000,
    exec: false,
    hash: chunks.length === 1 ? chunks[0]!.hash : H(999_000 + chunks.length),
    chunks,
  };
}

export const dirItem = (path: string, baseVersion = 0): CommitItem => ({
  path,
  baseVersion,
  kind: "dir",
  deleted: false,
  size: 0,
  mtime: 1000,
  exec: false,
  hash: "",
  chunks: [],
});

export const deleteItem = (path: string, baseVersion: number, kind: "file" | "dir" = "file") => ({
  ...dirItem(path, baseVersion),
  kind,
  deleted: true,
});

const ok = (r: CommitResult | undefined) => r?.ok === true;
const reason = (r: CommitResult | undefined) => r?.ok === false ? r.reason : "ok";

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function current(meta: MetaStore, account: string, path: string) {
  const all = await meta.changes(account, 0, 100_000);
  return all.find((e) => e.path === path);
}

/** An account with chunks 1..n (10 bytes each) indexed. */
async function accountWithChunks(meta: MetaStore, n = 5): Promise<string> {
  const a = await meta.createAccount(`serial-${crypto.randomUUID()}`);
  await meta.addChunks(a, Array.from({ length: n }, (_, i) => chunkRow(i + 1)));
  return a;
}

const c = (n: number): ChunkRef => ({ hash: H(n), size: 10 });

type Case = (f: MetaFixture) => Promise<void>;

const CASES: Record<string, Case> = {
  "invites: a code works once, also from another handle": async (f) => {
    const m = f.store;
    assert.equal(await m.useInvite("nope"), false);
    await m.addInvite("code-1");
    const other = await f.again();
    try {
      const [a, b] = await Promise.all([m.useInvite("code-1"), other.useInvite("code-1")]);
      assert.deepEqual([a, b].sort(), [false, true], "exactly one use");
      assert.equal(await m.useInvite("code-1"), false);
    } finally {
      await other.close();
    }
  },

  "metadataBytes: journal entries and kept versions, by path and chunk list": async (
    { store: m },
  ) => {
    const a = await m.createAccount(`serial-${crypto.randomUUID()}`);
    // Chunks of 20,000 bytes: a file holds at most one chunk per 16 KiB of it.
    await m.addChunks(a, [1, 2, 3].map((n) => chunkRow(n, 20_000)));
    const big = (n: number): ChunkRef => ({ hash: H(n), size: 20_000 });
    assert.equal(await m.metadataBytes(a), 0);
    assert.equal((await m.commit(a, "A", [fileItem("ab", [big(1), big(2)])]))[0]?.ok, true);
    const one = 2 * 3 + 2 * 90 + 200;
    assert.equal(await m.metadataBytes(a), one);
    await m.commit(a, "A", [fileItem("ab", [big(3)], 1)]); // the old one is kept
    assert.equal(await m.metadataBytes(a), one + (2 * 3 + 90 + 200));
    const b = await accountWithChunks(m);
    assert.equal(await m.metadataBytes(b), 0, "per account");
  },

  "commit: chunk sizes are checked against the index; lists bounded by the file size": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    const lie = { ...fileItem("lie", [{ hash: H(1), size: 11 }]) };
    const [r1] = await m.commit(a, "A", [lie]);
    assert.equal(r1?.ok === false && r1.reason, "invalid");
    const many = Array.from({ length: 100 }, () => ({ hash: H(1), size: 10 }));
    const [r2] = await m.commit(a, "A", [fileItem("many", many)]);
    assert.equal(r2?.ok === false && r2.reason, "invalid", "100 chunks for 1,000 bytes");
  },

  "accounts: create, find by serial, replace the serial, list": async ({ store: m }) => {
    const a = await m.createAccount("s1");
    const b = await m.createAccount("s2");
    assert.notEqual(a, b);
    assert.equal(await m.accountBySerialHash("s1"), a);
    assert.equal(await m.accountBySerialHash("nope"), null);
    assert.equal(await m.setSerialHash(a, "s1b"), true);
    assert.equal(await m.accountBySerialHash("s1"), null);
    assert.equal(await m.accountBySerialHash("s1b"), a);
    assert.equal(await m.setSerialHash("nosuchacct", "x"), false);
    assert.equal(await m.hasAccount(a), true);
    assert.equal(await m.hasAccount("nosuchacct"), false);
    assert.deepEqual((await m.accountIds()).sort(), [a, b].sort());
    assert.equal(await m.seq(a), 0);
    assert.equal(await m.seq("nosuchacct"), 0);
    await assert.rejects(m.createAccount("s2"), "a serial hash is unique");
  },

  "devices: add, look up, touch, list in order, revoke": async ({ store: m }) => {
    const a = await m.createAccount("s1");
    const b = await m.createAccount("s2");
    const d1 = await m.addDevice(a, "laptop", "tok1");
    const d2 = await m.addDevice(a, "phone", "tok2");
    const d3 = await m.addDevice(b, "other", "tok3");
    assert.deepEqual(await m.device(d1), {
      id: d1,
      account: a,
      name: "laptop",
      tokenHash: "tok1",
      revoked: false,
    });
    assert.equal(await m.device("nosuchdevice"), null);
    assert.deepEqual((await m.devices(a)).map((d) => d.name).sort(), ["laptop", "phone"]);
    assert.deepEqual((await m.devices(b)).map((d) => d.id), [d3]);
    const before = (await m.devices(a)).find((d) => d.id === d2)!;
    await new Promise((r) => setTimeout(r, 5));
    await m.touchDevice(d2);
    const after = (await m.devices(a)).find((d) => d.id === d2)!;
    assert.ok(after.lastSeen! > before.lastSeen!, "touch moves last seen");
    assert.equal(await m.revokeDevice(b, d1), false, "not the account's device");
    assert.equal(await m.deviceRevoked(d1), false);
    assert.equal(await m.revokeDevice(a, d1), true);
    assert.equal(await m.deviceRevoked(d1), true);
    assert.equal((await m.device(d1))!.revoked, true);
    assert.equal(await m.deviceRevoked("nosuchdevice"), true, "unknown counts as revoked");
    const summary = (await m.accounts()).find((s) => s.id === a)!;
    assert.equal(summary.devices, 1, "revoked devices are not counted");
    assert.ok(summary.lastSeen !== null);
  },

  "commit: a new file gets the next versions, after the parents it creates": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    assert.deepEqual(await m.commit(a, "A", [fileItem("x/y/f.txt", [c(1)])]), [{
      ok: true,
      version: 3,
    }]);
    const ch = await m.changes(a, 0, 100);
    assert.deepEqual(ch.map((e) => [e.path, e.kind, e.version, e.device]), [
      ["x", "dir", 1, "A"],
      ["x/y", "dir", 2, "A"],
      ["x/y/f.txt", "file", 3, "A"],
    ]);
    assert.deepEqual(ch[2]!.chunks, [c(1)]);
    assert.equal(ch[2]!.size, 10);
    assert.equal(ch[2]!.hash, H(1));
    assert.equal(await m.seq(a), 3);
  },

  "commit: accepted only against the current version": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("f", [c(1)])]);
    const [stale] = await m.commit(a, "B", [fileItem("f", [c(2)], 0)]);
    assert.deepEqual(stale, {
      ok: false,
      reason: "conflict",
      message: "changed on another device",
      version: 1,
    });
    assert.deepEqual(await m.commit(a, "B", [fileItem("f", [c(2)], 1)]), [{
      ok: true,
      version: 2,
    }]);
    assert.equal(reason((await m.commit(a, "A", [fileItem("f", [c(3)], 1)]))[0]), "conflict");
    // The same content is no conflict, whatever the base, and writes nothing.
    assert.deepEqual(await m.commit(a, "C", [fileItem("f", [c(2)], 0)]), [{
      ok: true,
      version: 2,
    }]);
    assert.equal(await m.seq(a), 2);
    // An exec bit change is a change.
    const [x] = await m.commit(a, "C", [{ ...fileItem("f", [c(2)], 2), exec: true }]);
    assert.deepEqual(x, { ok: true, version: 3 });
  },

  "devices: rename one device of the account": async ({ store: m }) => {
    const a = await m.createAccount("s1");
    const b = await m.createAccount("s2");
    const d = await m.addDevice(a, "old name", "tok1");
    await m.addDevice(b, "other", "tok2");
    assert.equal(await m.renameDevice(b, d, "wrong account"), false);
    assert.equal(await m.renameDevice(a, "nosuchdevice", "x"), false);
    assert.equal(await m.renameDevice(a, d, "new name"), true);
    assert.equal((await m.device(d))!.name, "new name");
    assert.deepEqual((await m.devices(a)).map((x) => x.name), ["new name"]);
    assert.deepEqual((await m.devices(b)).map((x) => x.name), ["other"]);
  },

  "accounts: the footprint, and deleting one account whole": async (f) => {
    const m = f.store;
    const gone = await m.createAccount("serial-gone");
    await m.addChunks(gone, [chunkRow(1), chunkRow(2)]);
    const kept = await accountWithChunks(m, 2);
    for (const acct of [gone, kept]) {
      await m.commit(acct, "A", [fileItem("f.txt", [c(1)])]);
      await m.commit(acct, "A", [fileItem("f.txt", [c(2)], await m.seq(acct))]); // keeps one
    }
    const device = await m.addDevice(gone, "laptop", "token-hash");
    await m.addDevice(kept, "other", "token-hash-2");
    const before = await m.accountFootprint(kept);
    assert.deepEqual(await m.accountFootprint(gone), {
      devices: 1,
      files: 1,
      versions: 1,
      chunks: 2,
      storedBytes: 20,
    });
    assert.equal(await m.accountFootprint("nosuchacct"), null);
    assert.equal(await m.deleteAccount(gone), true);
    assert.equal(await m.accountBySerialHash("serial-gone"), null, "its serial is free");
    assert.equal(await m.accountFootprint(gone), null);
    assert.equal(await m.hasAccount(gone), false);
    assert.equal(await m.device(device), null);
    assert.equal(await m.deviceRevoked(device), true);
    assert.deepEqual(await m.changes(gone, 0, 10), []);
    assert.deepEqual(await all(m.verifyEntries(gone)), []);
    assert.deepEqual(await all(m.verifyKeptVersions(gone)), []);
    assert.deepEqual(await m.missingChunks(gone, [H(1)]), [H(1)]);
    assert.equal(await m.storedBytes(gone), 0);
    assert.deepEqual(await m.accountIds(), [kept]);
    assert.deepEqual(await m.accountFootprint(kept), before, "the other account is untouched");
    assert.equal(await m.deleteAccount(gone), false, "a second time: nothing to delete");
    await assert.rejects(m.commit(gone, "A", [dirItem("d")]), "no commits to a deleted account");
    // Another handle (another instance) sees it gone too.
    const other = await f.again();
    try {
      assert.equal(await other.hasAccount(gone), false);
      assert.deepEqual(await other.accountIds(), [kept]);
    } finally {
      await other.close();
    }
  },

  "accounts: a delete racing a commit on another handle leaves nothing of the account": async (
    f,
  ) => {
    const other = await f.again();
    try {
      for (let round = 0; round < 5; round++) {
        const a = await accountWithChunks(f.store);
        await f.store.commit(a, "A", [fileItem("f", [c(1)])]);
        const [deleted, commit] = await Promise.allSettled([
          f.store.deleteAccount(a),
          other.commit(a, "B", [fileItem(`g${round}`, [c(2)]), fileItem("f", [c(3)], 1)]),
        ]);
        assert.deepEqual(deleted, { status: "fulfilled", value: true });
        // The commit ran before the delete (and went with it) or found no account.
        assert.ok(commit.status === "fulfilled" || commit.status === "rejected");
        assert.equal(await other.accountFootprint(a), null);
        assert.deepEqual(await other.changes(a, 0, 10), [], `round ${round}`);
        assert.deepEqual(await all(other.verifyKeptVersions(a)), []);
      }
    } finally {
      await other.close();
    }
  },

  "commit: a metadata-only change (same content, new mtime or mode) is a new version": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [{ ...fileItem("f", [c(1)]), mode: 0o644 }]);
    // A new modification time alone: accepted against the current version, the old one kept.
    assert.deepEqual(
      await m.commit(a, "A", [{ ...fileItem("f", [c(1)], 1), mtime: 2000, mode: 0o644 }]),
      [{ ok: true, version: 2 }],
    );
    // New permission bits alone (same content, same time).
    assert.deepEqual(
      await m.commit(a, "A", [{ ...fileItem("f", [c(1)], 2), mtime: 2000, mode: 0o600 }]),
      [{ ok: true, version: 3 }],
    );
    // Exactly what is there already, from any base: "same", nothing written.
    assert.deepEqual(
      await m.commit(a, "B", [{ ...fileItem("f", [c(1)], 0), mtime: 2000, mode: 0o600 }]),
      [{ ok: true, version: 3 }],
    );
    // A metadata change from a stale base is a conflict, as a content change is.
    assert.deepEqual(
      await m.commit(a, "B", [{ ...fileItem("f", [c(1)], 1), mtime: 3000, mode: 0o600 }]),
      [{ ok: false, reason: "conflict", message: "changed on another device", version: 3 }],
    );
    assert.equal(await m.seq(a), 3);
    const f = await current(m, a, "f");
    assert.deepEqual([f!.hash, f!.mtime, f!.mode, f!.exec], [H(1), 2000, 0o600, false]);
    const kept = await all(m.verifyKeptVersions(a));
    assert.deepEqual(kept.map((v) => [v.version, v.mtime, v.mode]), [
      [1, 1000, 0o644],
      [2, 2000, 0o644],
    ]);
  },

  "commit: permission bits round-trip through changes, verification and kept versions": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    const r = await m.commit(a, "A", [
      { ...fileItem("d/run.sh", [c(1)]), exec: true, mode: 0o750 },
      { ...fileItem("d/secret", [c(2)]), mode: 0o600 },
      { ...fileItem("d/plain", [c(3)]), mode: 0o644 },
    ]);
    assert.ok(r.every(ok), JSON.stringify(r));
    const modes = async () =>
      Object.fromEntries(
        (await m.changes(a, 0, 100)).map((e) => [e.path, [e.mode ?? null, e.exec, e.deleted]]),
      );
    assert.deepEqual(await modes(), {
      "d": [null, false, false],
      "d/run.sh": [0o750, true, false],
      "d/secret": [0o600, false, false],
      "d/plain": [0o644, false, false],
    });
    assert.deepEqual(
      (await all(m.verifyEntries(a))).map((e) => [e.path, e.mode ?? null]),
      [["d", null], ["d/plain", 0o644], ["d/run.sh", 0o750], ["d/secret", 0o600]],
    );
    // Replaced and deleted: the kept versions keep their bits; a tombstone carries none.
    const run = await current(m, a, "d/run.sh");
    const secret = await current(m, a, "d/secret");
    await m.commit(a, "A", [
      { ...fileItem("d/run.sh", [c(4)], run!.version), exec: true, mode: 0o700 },
      deleteItem("d/secret", secret!.version),
    ]);
    const now = await modes();
    assert.deepEqual(now["d/run.sh"], [0o700, true, false]);
    assert.deepEqual(now["d/secret"], [null, false, true]);
    assert.deepEqual(
      (await all(m.verifyKeptVersions(a))).map((v) => [v.path, v.mode ?? null]),
      [["d/run.sh", 0o750], ["d/secret", 0o600]],
    );
    // Another handle (another instance) reads the same bits.
    assert.equal((await current(m, a, "d/run.sh"))!.mode, 0o700);
  },

  "commit: an older client's item without permission bits is accepted": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const old = fileItem("old.txt", [c(1)]); // no `mode` at all, as older clients send
    assert.equal("mode" in old, false);
    assert.deepEqual(await m.commit(a, "A", [old, { ...fileItem("old.sh", [c(2)]), exec: true }]), [
      { ok: true, version: 1 },
      { ok: true, version: 2 },
    ]);
    const e = await current(m, a, "old.txt");
    assert.equal("mode" in e!, false, "no mode is stored where none was sent");
    assert.equal(e!.exec, false);
    // The bits its exec bit implies (0644, 0755) are the same file: no new version.
    assert.deepEqual(await m.commit(a, "B", [{ ...old, mode: 0o644 }]), [{ ok: true, version: 1 }]);
    assert.deepEqual(
      await m.commit(a, "B", [{ ...fileItem("old.sh", [c(2)]), exec: true, mode: 0o755 }]),
      [{ ok: true, version: 2 }],
    );
    // Other bits are a change; an older client's item after that is one too.
    assert.deepEqual(await m.commit(a, "B", [{ ...fileItem("old.txt", [c(1)], 1), mode: 0o600 }]), [
      { ok: true, version: 3 },
    ]);
    assert.deepEqual(await m.commit(a, "A", [fileItem("old.txt", [c(1)], 3)]), [
      { ok: true, version: 4 },
    ]);
    assert.equal("mode" in (await current(m, a, "old.txt"))!, false);
  },

  "commit: an edit beats a delete; deleting what is gone is a no-op": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("f", [c(1)])]);
    assert.deepEqual(await m.commit(a, "A", [deleteItem("f", 1)]), [{ ok: true, version: 2 }]);
    const tomb = await current(m, a, "f");
    assert.deepEqual(
      [tomb!.deleted, tomb!.kind, tomb!.size, tomb!.hash, tomb!.chunks],
      [true, "file", 0, "", []],
    );
    // Creating over a tombstone is accepted even with a stale base.
    assert.deepEqual(await m.commit(a, "B", [fileItem("f", [c(2)], 0)]), [{
      ok: true,
      version: 3,
    }]);
    assert.deepEqual(await m.commit(a, "B", [deleteItem("never", 0)]), [{ ok: true, version: 0 }]);
    assert.equal(await m.seq(a), 3);
  },

  "commit: directories with live children stay; nothing nests under a file": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("d/f1", [c(1)]), fileItem("d/f2", [c(2)])]);
    const d = await current(m, a, "d");
    assert.equal(
      reason((await m.commit(a, "A", [deleteItem("d", d!.version, "dir")]))[0]),
      "conflict",
    );
    assert.equal(
      reason((await m.commit(a, "A", [fileItem("d", [c(3)], d!.version)]))[0]),
      "conflict",
    );
    // Children first, then the directory, in one batch: accepted.
    const f1 = await current(m, a, "d/f1");
    const f2 = await current(m, a, "d/f2");
    const r = await m.commit(a, "A", [
      deleteItem("d/f1", f1!.version),
      deleteItem("d/f2", f2!.version),
      deleteItem("d", d!.version, "dir"),
    ]);
    assert.ok(r.every(ok), JSON.stringify(r));
    // A file under a file: refused with the file's version.
    const [g] = await m.commit(a, "A", [fileItem("g", [c(1)])]);
    const [under] = await m.commit(a, "A", [fileItem("g/h", [c(2)])]);
    assert.deepEqual(under, {
      ok: false,
      reason: "conflict",
      message: "g is a file",
      version: (g as { version: number }).version,
    });
    // A file under a deleted directory revives it.
    const [revived] = await m.commit(a, "A", [fileItem("d/new", [c(3)])]);
    assert.ok(ok(revived));
    const dNow = await current(m, a, "d");
    assert.deepEqual([dNow!.deleted, dNow!.kind], [false, "dir"]);
  },

  "commit: a directory holding many children is never emptied by part of them": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    const files = Array.from({ length: 30 }, (_, i) => fileItem(`big/f${i}`, [c(1)]));
    await m.commit(a, "A", files);
    const big = await current(m, a, "big");
    const some = (await m.changes(a, 0, 100)).filter((e) => e.path.startsWith("big/")).slice(0, 20);
    const r = await m.commit(a, "A", [
      ...some.map((e) => deleteItem(e.path, e.version)),
      deleteItem("big", big!.version, "dir"),
    ]);
    assert.ok(r.slice(0, 20).every(ok));
    assert.equal(reason(r[20]), "conflict", "10 children are still live");
  },

  "commit: chunks must be indexed for the account and add up to the size": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    const b = await accountWithChunks(m, 0);
    const [missing] = await m.commit(a, "A", [fileItem("f", [c(1), c(77)])]);
    assert.deepEqual(missing, {
      ok: false,
      reason: "missing",
      message: `chunk ${H(77)} was never uploaded`,
    });
    const [other] = await m.commit(b, "B", [fileItem("f", [c(1)])]);
    assert.equal(reason(other), "missing", "another account's chunk is not ours");
    const [bad] = await m.commit(a, "A", [{ ...fileItem("f", [c(1)]), size: 11 }]);
    assert.deepEqual(bad, {
      ok: false,
      reason: "invalid",
      message: "chunk sizes do not add up to the file size",
    });
    assert.deepEqual(await m.commit(a, "A", [{ ...fileItem("empty", []), hash: H(0) }]), [{
      ok: true,
      version: 1,
    }]);
    assert.equal(await m.seq(b), 0);
  },

  "commit: a batch applies in order, each item seeing the ones before": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const r = await m.commit(a, "A", [
      fileItem("f", [c(1)]),
      fileItem("f", [c(2)], 1),
      fileItem("f", [c(3)], 1), // stale within the batch
      deleteItem("f", 2),
      fileItem("f", [c(4)], 0), // over the tombstone of this batch
    ]);
    assert.deepEqual(r.map(reason), ["ok", "ok", "conflict", "ok", "ok"]);
    assert.deepEqual(r.map((x) => x.version), [1, 2, 2, 3, 4]);
    const f = await current(m, a, "f");
    assert.deepEqual([f!.version, f!.hash], [4, H(4)]);
    const kept = await all(m.verifyKeptVersions(a));
    assert.deepEqual(kept.map((v) => [v.path, v.version, v.deleted]), [
      ["f", 1, false],
      ["f", 2, false],
      ["f", 3, true],
    ], "every replaced version is kept, the deletion replaced by a new file too");
  },

  "commit: a commit to an unknown account fails": async ({ store: m }) => {
    await assert.rejects(m.commit("nosuchacct", "A", [dirItem("d")]));
  },

  "changes: pages by version, tombstones included, one account only": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const b = await accountWithChunks(m);
    for (let i = 0; i < 25; i++) await m.commit(a, "A", [fileItem(`f${i}`, [c(1 + (i % 5))])]);
    await m.commit(a, "A", [deleteItem("f3", 4)]);
    await m.commit(b, "B", [fileItem("mine", [c(1)])]);
    const seen: RemoteEntry[] = [];
    let since = 0;
    for (;;) {
      const page = await m.changes(a, since, 7);
      seen.push(...page);
      if (page.length < 7) break;
      since = page[page.length - 1]!.version;
    }
    assert.equal(seen.length, 25);
    assert.deepEqual(
      seen.map((e) => e.version),
      [...seen.map((e) => e.version)].sort((x, y) => x - y),
    );
    assert.ok(seen.some((e) => e.path === "f3" && e.deleted && e.version === 26));
    assert.deepEqual(await m.changes(a, 26, 10), []);
    assert.deepEqual((await m.changes(b, 0, 10)).map((e) => e.path), ["mine"]);
    const s = (await m.accounts()).find((x) => x.id === a)!;
    assert.deepEqual([s.files, s.bytes, s.seq], [24, 240, 26]);
  },

  "seq: versions are unique and increasing, the seq is the highest": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const versions: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await m.commit(a, "A", [fileItem(`d${i}/f`, [c(1)]), fileItem(`g${i}`, [c(2)])]);
      versions.push(...r.map((x) => x.version!));
    }
    const entries = await m.changes(a, 0, 1000);
    const vs = entries.map((e) => e.version);
    assert.equal(new Set(vs).size, vs.length);
    assert.equal(await m.seq(a), Math.max(...vs));
    assert.equal(vs.length, 30);
    assert.deepEqual(vs, [...vs].sort((x, y) => x - y));
  },

  "verification queries stream every entry in path order": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const paths = Array.from({ length: 2500 }, (_, i) => `p/${String(i).padStart(5, "0")}`);
    for (let i = 0; i < paths.length; i += 1000) {
      await m.commit(a, "A", paths.slice(i, i + 1000).map((p) => fileItem(p, [c(1)])));
    }
    // Overwrite 1,200 of them twice: as many kept versions, in (path, version) order.
    for (let round = 0; round < 2; round++) {
      const now = (await m.changes(a, 0, 100_000))
        .filter((e) => e.path.startsWith("p/") && e.path < "p/01200");
      for (let i = 0; i < now.length; i += 1000) {
        await m.commit(
          a,
          "A",
          now.slice(i, i + 1000).map((e) => fileItem(e.path, [c(2 + round)], e.version)),
        );
      }
    }
    const entries = await all(m.verifyEntries(a));
    assert.deepEqual(entries.map((e) => e.path), ["p", ...paths]);
    const kept = await all(m.verifyKeptVersions(a));
    assert.equal(kept.length, 2400);
    for (let i = 1; i < kept.length; i++) {
      const [x, y] = [kept[i - 1]!, kept[i]!];
      assert.ok(x.path < y.path || (x.path === y.path && x.version < y.version), `${i}`);
    }
  },

  "kept versions are forgotten after their cut-off": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("f", [c(1)])]);
    await m.commit(a, "A", [fileItem("f", [c(2)], 1)]);
    assert.equal((await all(m.verifyKeptVersions(a))).length, 1);
    assert.equal(await m.pruneVersions(Date.now() - 60_000), 0);
    assert.equal(await m.pruneVersions(Date.now() + 1), 1);
    assert.deepEqual(await all(m.verifyKeptVersions(a)), []);
  },

  "chunk index: batches, order, duplicates, stored bytes, isolation": async ({ store: m }) => {
    const a = await m.createAccount("s1");
    const b = await m.createAccount("s2");
    await m.addChunks(a, [chunkRow(1, 10), { ...chunkRow(2, 100), stored: 40, compressed: true }]);
    await m.addChunks(a, [chunkRow(3, 5), chunkRow(3, 5)]); // the same chunk twice in a batch
    await m.addChunks(a, [chunkRow(1, 10)]); // again: harmless
    assert.deepEqual(await m.chunk(a, H(2)), { size: 100, stored: 40, compressed: true });
    assert.equal(await m.chunk(a, H(9)), null);
    assert.deepEqual(await m.chunks(a, [H(3), H(9), H(1), H(3)]), [
      { size: 5, stored: 5, compressed: false },
      null,
      { size: 10, stored: 10, compressed: false },
      { size: 5, stored: 5, compressed: false },
    ]);
    assert.deepEqual(await m.chunks(a, []), []);
    assert.deepEqual(await m.missingChunks(a, [H(9), H(1), H(8)]), [H(9), H(8)]);
    assert.deepEqual(await m.missingChunks(a, []), []);
    assert.equal(await m.storedBytes(a), 55);
    assert.deepEqual(await m.missingChunks(b, [H(1)]), [H(1)]);
    assert.equal(await m.storedBytes(b), 0);
  },

  "garbage collection forgets only old chunks that nothing references": async ({ store: m }) => {
    const a = await accountWithChunks(m, 6);
    const b = await accountWithChunks(m, 6);
    await m.commit(a, "A", [fileItem("live", [c(1)]), fileItem("old", [c(2)])]);
    await m.commit(a, "A", [fileItem("old", [c(3)], 2)]); // chunk 2 now only in a kept version
    await m.commit(a, "A", [deleteItem("live", 1)]); // chunk 1 too
    // Chunks 4, 5, 6 are referenced by nothing.
    assert.deepEqual(await m.forgetUnreferenced(a, Date.now() - 60_000), [], "all too young");
    await new Promise((r) => setTimeout(r, 5));
    const cut = Date.now();
    await m.addChunks(a, [chunkRow(6)]); // stored again after the cut-off: young again
    assert.deepEqual((await m.forgetUnreferenced(a, cut)).sort(), [H(4), H(5)]);
    assert.deepEqual(await m.missingChunks(a, [H(1), H(2), H(3), H(4), H(5), H(6)]), [H(4), H(5)]);
    assert.equal(await m.pruneVersions(Date.now() + 1), 2);
    assert.deepEqual((await m.forgetUnreferenced(a, cut)).sort(), [H(1), H(2)]);
    assert.deepEqual(await m.missingChunks(a, [H(3), H(6)]), []);
    assert.deepEqual(await m.missingChunks(b, [H(1), H(4)]), [], "other accounts untouched");
  },

  "another handle sees everything, also after the first is closed": async (f) => {
    const a = await accountWithChunks(f.store);
    const d = await f.store.addDevice(a, "laptop", "tok");
    await f.store.commit(a, "A", [fileItem("x/f", [c(1)])]);
    await f.store.close();
    const m = await f.again();
    try {
      assert.equal(await m.seq(a), 2);
      assert.equal((await m.device(d))!.name, "laptop");
      assert.deepEqual((await m.changes(a, 0, 10)).map((e) => e.path), ["x", "x/f"]);
      assert.deepEqual(await m.missingChunks(a, [H(1)]), []);
    } finally {
      await m.close();
    }
    f.store = await f.again(); // for the suite's close
  },

  "two handles committing against the same base: never both accepted": async (f) => {
    const other = await f.again();
    try {
      const a = await accountWithChunks(f.store);
      await f.store.commit(a, "A", [fileItem("f", [c(1)])]);
      let base = 1;
      let accepted = 0;
      for (let round = 0; round < 25; round++) {
        const [x, y] = await Promise.all([
          f.store.commit(a, "A", [fileItem("f", [c(2 + (round % 2))], base), dirItem(`a${round}`)]),
          other.commit(a, "B", [fileItem("f", [c(4 + (round % 2))], base), dirItem(`b${round}`)]),
        ]);
        const wins = [x[0], y[0]].filter(ok);
        assert.equal(wins.length, 1, `round ${round}: ${JSON.stringify([x, y])}`);
        const loser = ok(x[0]) ? y[0]! : x[0]!;
        assert.equal(reason(loser), "conflict");
        assert.equal(loser.version, wins[0]!.version, "the loser learns the winner's version");
        base = wins[0]!.version!;
        accepted += 1 + [x[1], y[1]].filter(ok).length;
      }
      const entries = await other.changes(a, 0, 1000);
      const vs = entries.map((e) => e.version);
      assert.equal(new Set(vs).size, vs.length, "no version twice");
      assert.equal(await f.store.seq(a), 1 + accepted);
      assert.equal((await all(f.store.verifyKeptVersions(a))).length, 25);
    } finally {
      await other.close();
    }
  },

  "concurrent commits of two handles to one account all get distinct versions": async (f) => {
    const other = await f.again();
    try {
      const a = await accountWithChunks(f.store);
      const jobs: Promise<CommitResult[]>[] = [];
      for (let i = 0; i < 20; i++) {
        const m = i % 2 ? other : f.store;
        jobs.push(m.commit(a, "X", [fileItem(`n${i}/f`, [c(1)]), fileItem(`m${i}`, [c(2)])]));
      }
      const results = (await Promise.all(jobs)).flat();
      assert.ok(results.every(ok));
      const vs = results.map((r) => r.version!).sort((x, y) => x - y);
      assert.deepEqual(vs, [...new Set(vs)]);
      // 20 batches of 3 writes (parent, file, file): versions 1..60, none lost or repeated.
      const entries = await f.store.changes(a, 0, 1000);
      assert.deepEqual(
        entries.map((e) => e.version),
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
      assert.equal(await other.seq(a), 60);
    } finally {
      await other.close();
    }
  },

  "a batch is seen whole or not at all by another handle": async (f) => {
    const other = await f.again();
    try {
      const a = await accountWithChunks(f.store);
      const items = Array.from({ length: 400 }, (_, i) => fileItem(`batch/f${i}`, [c(1)]));
      let done = false;
      const commit = f.store.commit(a, "A", items).finally(() => done = true);
      const sizes = new Set<number>();
      while (!done) {
        sizes.add((await other.changes(a, 0, 2000)).length);
        await new Promise((r) => setTimeout(r, 0));
      }
      await commit;
      sizes.add((await other.changes(a, 0, 2000)).length);
      for (const n of sizes) assert.ok(n === 0 || n === 401, `saw ${n} entries`);
      assert.ok(sizes.has(401));
    } finally {
      await other.close();
    }
  },

  "garbage collection and a commit racing on another handle: never a dangling reference": async (
    f,
  ) => {
    const other = await f.again();
    try {
      const a = await f.store.createAccount("s");
      for (let round = 0; round < 15; round++) {
        const hash = H(5000 + round);
        await f.store.addChunks(a, [{ hash, size: 10, stored: 10, compressed: false }]);
        await new Promise((r) => setTimeout(r, 3));
        const cut = Date.now();
        const [forgotten, [result]] = await Promise.all([
          f.store.forgetUnreferenced(a, cut),
          other.commit(a, "B", [fileItem(`f${round}`, [{ hash, size: 10 }])]),
        ]);
        const gone = forgotten.includes(hash);
        // Either the commit came first (the chunk is referenced and stays), or the collection
        // did (the commit finds the chunk missing): never accepted and forgotten both.
        assert.equal(ok(result), !gone, `round ${round}: ${JSON.stringify(result)} ${gone}`);
        assert.deepEqual(await other.missingChunks(a, [hash]), gone ? [hash] : []);
      }
    } finally {
      await other.close();
    }
  },
};

/** Waits until the clock moved on (versions made at distinct instants). */
const tick = () => new Promise((r) => setTimeout(r, 3));

/** Every row of a paged query, page by page (`limit` rows each), with the cursor `next`. */
async function pages<T, Q>(
  fetch: (cursor: Q | undefined) => Promise<{ rows: T[]; more: boolean }>,
  next: (last: T) => Q,
): Promise<{ rows: T[]; calls: number }> {
  const rows: T[] = [];
  let cursor: Q | undefined;
  let calls = 0;
  for (;;) {
    const p = await fetch(cursor);
    calls++;
    rows.push(...p.rows);
    if (!p.more) return { rows, calls };
    cursor = next(p.rows[p.rows.length - 1]!);
  }
}

const HISTORY_CASES: Record<string, Case> = {
  "history: every version of a file, newest first, with when, who and deletions": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    const t0 = Date.now();
    await m.commit(a, "A", [fileItem("f", [c(1)])]); // 1
    await tick();
    await m.commit(a, "B", [fileItem("f", [c(2)], 1)]); // 2
    await tick();
    await m.commit(a, "A", [deleteItem("f", 2)]); // 3
    await tick();
    await m.commit(a, "B", [fileItem("f", [c(3)], 0)]); // 4: over the deletion
    await m.commit(a, "B", [fileItem("f.txt", [c(4)])]); // 5: a sibling, not f's
    const h = await m.history(a, { path: "f", limit: 100 });
    assert.equal(h.more, false);
    assert.deepEqual(
      h.rows.map((v) => [v.path, v.version, v.deleted, v.device, v.size]),
      [["f", 4, false, "B", 10], ["f", 3, true, "A", 0], ["f", 2, false, "B", 10], [
        "f",
        1,
        false,
        "A",
        10,
      ]],
    );
    // Each version was current from when it was made until the next one replaced it.
    assert.equal(h.rows[0]!.replaced, null, "the current version");
    for (let i = 1; i < h.rows.length; i++) {
      assert.equal(h.rows[i]!.replaced, h.rows[i - 1]!.made, `version ${h.rows[i]!.version}`);
      assert.ok(h.rows[i]!.made < h.rows[i - 1]!.made);
    }
    assert.ok(h.rows[3]!.made >= t0 && h.rows[0]!.made <= Date.now());
    assert.equal(h.rows[0]!.hash, H(3));
    // Pages by version, two at a time.
    const paged = await pages(
      (before?: number) => m.history(a, { path: "f", limit: 2, ...(before ? { before } : {}) }),
      (last) => last.version,
    );
    assert.deepEqual(paged.rows.map((v) => v.version), [4, 3, 2, 1]);
    assert.equal(paged.calls, 2);
    // Since an instant: the versions made from then on.
    const since = await m.history(a, { path: "f", since: h.rows[1]!.made, limit: 100 });
    assert.deepEqual(since.rows.map((v) => v.version), [4, 3]);
    assert.deepEqual((await m.history(a, { path: "nope", limit: 10 })).rows, []);
  },

  "history: a folder's is everything below it, newest first; the root's is all": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    const b = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("d/x", [c(1)]), fileItem("d.txt", [c(2)])]); // d 1, x 2, d.txt 3
    await m.commit(a, "A", [fileItem("d-2/y", [c(3)]), fileItem("d/sub/z", [c(4)])]); // 4,5; 6,7
    await m.commit(a, "A", [fileItem("d/x", [c(5)], 2)]); // 8
    await m.commit(b, "B", [fileItem("d/other", [c(1)])]);
    const d = await m.history(a, { path: "d", limit: 100 });
    assert.deepEqual(d.rows.map((v) => [v.path, v.version]), [
      ["d/x", 8],
      ["d/sub/z", 7],
      ["d/sub", 6],
      ["d/x", 2],
      ["d", 1],
    ]);
    const root = await m.history(a, { path: "", limit: 100 });
    assert.deepEqual(root.rows.map((v) => v.version), [8, 7, 6, 5, 4, 3, 2, 1]);
    const paged = await pages(
      (before?: number) => m.history(a, { path: "", limit: 3, ...(before ? { before } : {}) }),
      (last) => last.version,
    );
    assert.deepEqual(paged.rows.map((v) => v.version), [8, 7, 6, 5, 4, 3, 2, 1]);
  },

  "history and listAt: a folder's subtree is exact, whatever the names": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const names = [
      "𝄞 music/a", // a name outside the BMP: UTF-16 and UTF-8 lengths differ
      "𝄞 music/é/b",
      "𝄞 music.txt",
      "𝄞 music-2/c",
      "𝄞 music 3",
      "𝄞 musicz",
      "𝄞 musi",
      "\u{E000}x", // sorts after the astral name in UTF-16, before it in UTF-8
    ];
    await m.commit(a, "A", names.map((p, i) => fileItem(p, [c(1 + (i % 5))])));
    const inside = ["𝄞 music", "𝄞 music/a", "𝄞 music/é", "𝄞 music/é/b"];
    const h = await m.history(a, { path: "𝄞 music", limit: 100 });
    assert.deepEqual(h.rows.map((v) => v.path).sort(), [...inside].sort());
    const l = await m.listAt(a, { path: "𝄞 music", at: Date.now() + 1000, limit: 100 });
    assert.deepEqual(l.rows.map((e) => e.path), inside, "in byte order");
    const all = await m.listAt(a, { path: "", at: Date.now() + 1000, limit: 100 });
    const bytes = (x: string) => Array.from(new TextEncoder().encode(x));
    const sorted = all.rows.map((e) => e.path).sort((x, y) => {
      const [p, q] = [bytes(x), bytes(y)];
      for (let i = 0; i < Math.min(p.length, q.length); i++) {
        if (p[i] !== q[i]) return p[i]! - q[i]!;
      }
      return p.length - q.length;
    });
    assert.deepEqual(all.rows.map((e) => e.path), sorted);
    assert.equal(await m.oldestKept(a, "𝄞 music/é") !== null, true);
    assert.equal(await m.oldestKept(a, "𝄞 musi/x"), null);
  },

  "history: deleted paths still kept, with the version a restore brings back": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("d/x", [c(1)]), fileItem("d/y", [c(2)])]); // d 1, x 2, y 3
    await m.commit(a, "A", [fileItem("d/x", [c(3)], 2)]); // 4
    await m.commit(a, "B", [deleteItem("d/x", 4), deleteItem("d/y", 3)]); // 5, 6
    await m.commit(a, "B", [deleteItem("d", 1, "dir")]); // 7
    await m.commit(a, "A", [fileItem("again", [c(1)])]); // 8
    await m.commit(a, "A", [deleteItem("again", 8)]); // 9
    await m.commit(a, "A", [fileItem("again", [c(2)], 0)]); // 10: back, so not deleted
    const del = await m.deletedPaths(a, { path: "", limit: 100 });
    assert.deepEqual(
      del.rows.map((v) => [v.path, v.version, v.deleted, v.device, v.kept.version, v.kept.size]),
      [["d", 7, true, "B", 1, 0], ["d/y", 6, true, "B", 3, 10], ["d/x", 5, true, "B", 4, 10]],
    );
    assert.equal(del.rows[2]!.kept.hash, H(3), "the last live version");
    assert.equal(del.rows[2]!.kept.replaced, del.rows[2]!.made);
    const inD = await m.deletedPaths(a, { path: "d/x", limit: 100 });
    assert.deepEqual(inD.rows.map((v) => v.path), ["d/x"]);
    const paged = await pages(
      (before?: number) =>
        m.deletedPaths(a, { path: "d", limit: 1, ...(before ? { before } : {}) }),
      (last) => last.version,
    );
    assert.deepEqual(paged.rows.map((v) => v.version), [7, 6, 5]);
    // Once retention forgot the last live version, a deletion is no longer listed.
    assert.ok((await m.forgetVersions(a, [{ path: "d/y", version: 3 }])) === 1);
    assert.deepEqual(
      (await m.deletedPaths(a, { path: "d", limit: 100 })).rows.map((v) => v.path),
      ["d", "d/x"],
    );
  },

  "listAt: a subtree as it was at an instant, deletions included, with its state now": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("d/a", [c(1)]), fileItem("d/b", [c(2)])]); // d 1, a 2, b 3
    await m.commit(a, "A", [fileItem("dx", [c(5)])]); // 4: a sibling of d
    await tick();
    const at = Date.now();
    await tick();
    await m.commit(a, "B", [fileItem("d/a", [c(3)], 2)]); // 5: changed since
    await m.commit(a, "B", [deleteItem("d/b", 3)]); // 6: deleted since
    await m.commit(a, "B", [fileItem("d/new", [c(4)])]); // 7: created since
    const l = await m.listAt(a, { path: "d", at, limit: 100 });
    assert.equal(l.more, false);
    assert.deepEqual(
      l.rows.map((e) => [e.path, e.version, e.deleted, e.current.version, e.current.deleted]),
      [["d", 1, false, 1, false], ["d/a", 2, false, 5, false], ["d/b", 3, false, 6, true]],
    );
    assert.deepEqual(l.rows[1]!.chunks, [c(1)], "the version of then, with its chunks");
    assert.equal(l.rows[1]!.current.hash, H(3), "and the current state");
    assert.ok(l.rows[1]!.replaced! > at && l.rows[0]!.replaced === null);
    // Later: the deletion shows as a deletion, the new file is there.
    const now = await m.listAt(a, { path: "d", at: Date.now() + 1000, limit: 100 });
    assert.deepEqual(now.rows.map((e) => [e.path, e.version, e.deleted]), [
      ["d", 1, false],
      ["d/a", 5, false],
      ["d/b", 6, true],
      ["d/new", 7, false],
    ]);
    // One file; the whole account; before anything existed.
    assert.deepEqual(
      (await m.listAt(a, { path: "d/a", at, limit: 10 })).rows.map((e) => e.version),
      [2],
    );
    assert.deepEqual(
      (await m.listAt(a, { path: "", at, limit: 10 })).rows.map((e) => e.path),
      ["d", "d/a", "d/b", "dx"],
    );
    assert.deepEqual((await m.listAt(a, { path: "d", at: 0, limit: 10 })).rows, []);
    // Paged by path.
    const paged = await pages(
      (after?: string) =>
        m.listAt(a, { path: "", at: Date.now() + 1000, limit: 2, ...(after ? { after } : {}) }),
      (last) => last.path,
    );
    assert.deepEqual(paged.rows.map((e) => e.path), ["d", "d/a", "d/b", "d/new", "dx"]);
    assert.equal(paged.calls, 3);
  },

  "listAt: 2,500 paths in pages, each once, in path order": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const paths = Array.from({ length: 2500 }, (_, i) => `p/${String(i).padStart(5, "0")}`);
    for (let i = 0; i < paths.length; i += 1000) {
      await m.commit(a, "A", paths.slice(i, i + 1000).map((p) => fileItem(p, [c(1)])));
    }
    const edited = (await m.changes(a, 0, 100_000)).filter((e) =>
      e.path < "p/00100" && e.path > "p/"
    );
    await m.commit(a, "A", edited.map((e) => fileItem(e.path, [c(2)], e.version)));
    const got = await pages(
      (after?: string) =>
        m.listAt(a, { path: "p", at: Date.now() + 1000, limit: 700, ...(after ? { after } : {}) }),
      (last) => last.path,
    );
    assert.deepEqual(got.rows.map((e) => e.path), ["p", ...paths]);
    assert.equal(got.rows.filter((e) => e.hash === H(2)).length, 100);
  },

  "oldestKept: when the oldest kept live version below a path was made": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    assert.equal(await m.oldestKept(a, ""), null);
    const t0 = Date.now();
    await m.commit(a, "A", [fileItem("d/a", [c(1)])]);
    await tick();
    await m.commit(a, "A", [fileItem("e", [c(2)])]);
    const first = await m.oldestKept(a, "d");
    assert.ok(first !== null && first >= t0);
    assert.equal(await m.oldestKept(a, ""), first);
    assert.ok((await m.oldestKept(a, "e"))! > first!);
    assert.equal(await m.oldestKept(a, "nope"), null);
  },

  "restore: a kept version becomes current again as a new version, and can be undone": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [{ ...fileItem("d/f", [c(1)]), mtime: 1111, mode: 0o600 }]); // d 1, f 2
    await m.commit(a, "A", [fileItem("d/f", [c(2)], 2)]); // 3
    await m.commit(a, "A", [fileItem("d/g", [c(3)])]); // 4
    await m.commit(a, "A", [deleteItem("d/g", 4)]); // 5
    const before = await m.seq(a);
    const r = await m.restore(a, "phone", [
      { path: "d/f", version: 2, baseVersion: 3 },
      { path: "d/g", version: 4, baseVersion: 5 },
    ]);
    assert.deepEqual(r, [{ ok: true, version: 6 }, { ok: true, version: 7 }]);
    const f = await current(m, a, "d/f");
    assert.deepEqual(
      [f!.hash, f!.chunks, f!.size, f!.mtime, f!.mode, f!.device, f!.deleted],
      [H(1), [c(1)], 10, 1111, 0o600, "phone", false],
      "the old content, time and bits, made by the restoring device",
    );
    const g = await current(m, a, "d/g");
    assert.deepEqual([g!.deleted, g!.hash], [false, H(3)], "a deleted file comes back");
    assert.equal(await m.seq(a), before + 2);
    // The version it replaced is kept: the restore itself can be undone.
    assert.deepEqual(
      await m.restore(a, "phone", [{ path: "d/f", version: 3, baseVersion: 6 }]),
      [{ ok: true, version: 8 }],
    );
    assert.equal((await current(m, a, "d/f"))!.hash, H(2));
    // Checked against the current version, like any commit.
    assert.deepEqual(
      await m.restore(a, "phone", [{ path: "d/f", version: 2, baseVersion: 6 }]),
      [{ ok: false, reason: "conflict", message: "changed on another device", version: 8 }],
    );
    // Not kept (never, or another account's), a deletion: refused, the rest goes through.
    const other = await accountWithChunks(m);
    await m.commit(other, "X", [fileItem("d/f", [c(4)])]);
    const mixed = await m.restore(a, "phone", [
      { path: "d/f", version: 99, baseVersion: 8 },
      { path: "d/g", version: 5, baseVersion: 7 },
      { path: "d/f", version: 2, baseVersion: 8 },
    ]);
    assert.deepEqual(mixed.map(reason), ["missing", "invalid", "ok"]);
    assert.equal(
      (await m.restore(other, "X", [{ path: "d/f", version: 3, baseVersion: 2 }]))[0]!.ok,
      false,
      "another account's versions are not this one's",
    );
    // Restoring what is current already writes nothing.
    const seq = await m.seq(a);
    assert.deepEqual(
      await m.restore(a, "phone", [{ path: "d/f", version: seq, baseVersion: seq }]),
      [{ ok: true, version: seq }],
    );
    assert.equal(await m.seq(a), seq);
  },

  "restore: a deleted folder comes back with its files, parents revived": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    await m.commit(a, "A", [fileItem("t/u/f", [c(1)]), dirItem("t/empty")]); // t 1, u 2, f 3, empty 4
    await m.commit(a, "A", [
      deleteItem("t/u/f", 3),
      deleteItem("t/u", 2, "dir"),
      deleteItem("t/empty", 4, "dir"),
      deleteItem("t", 1, "dir"),
    ]); // 5..8
    const r = await m.restore(a, "A", [
      { path: "t", version: 1, baseVersion: 8 },
      { path: "t/empty", version: 4, baseVersion: 7 },
      { path: "t/u/f", version: 3, baseVersion: 5 },
    ]);
    assert.ok(r.every(ok), JSON.stringify(r));
    const live = (await m.changes(a, 8, 100)).filter((e) => !e.deleted).map((e) => e.path);
    assert.deepEqual(live.sort(), ["t", "t/empty", "t/u", "t/u/f"]);
  },

  "retention: old versions stream in path order; exactly the forgotten ones go": async (
    { store: m },
  ) => {
    const a = await accountWithChunks(m);
    const b = await accountWithChunks(m);
    for (let i = 0; i < 3; i++) {
      await m.commit(a, "A", [fileItem("x", [c(1 + (i % 2))], i === 0 ? 0 : await m.seq(a))]);
    }
    const paths = Array.from({ length: 1200 }, (_, i) => `many/${String(i).padStart(4, "0")}`);
    await m.commit(a, "A", paths.slice(0, 1000).map((p) => fileItem(p, [c(1)])));
    await m.commit(a, "A", paths.slice(1000).map((p) => fileItem(p, [c(1)])));
    await m.commit(a, "A", paths.slice(0, 1000).map((p) => deleteItem(p, 0)));
    const edits = (await m.changes(a, 0, 100_000)).filter((e) =>
      e.path.startsWith("many/") && !e.deleted
    );
    await m.commit(a, "A", edits.map((e) => deleteItem(e.path, e.version)));
    await m.commit(b, "B", [fileItem("x", [c(1)])]);
    await m.commit(b, "B", [fileItem("x", [c(2)], 1)]);
    await tick();
    const cut = Date.now();
    const old = await all(m.oldVersions(a, cut));
    assert.equal(old.length, 2 + 1200);
    for (let i = 1; i < old.length; i++) {
      const [p, q] = [old[i - 1]!, old[i]!];
      assert.ok(p.path < q.path || (p.path === q.path && p.version < q.version), `${i}`);
      assert.ok(q.made <= q.replaced && q.replaced < cut);
    }
    assert.deepEqual(await all(m.oldVersions(a, 0)), []);
    const gone = [old[0]!, old[5]!, old[old.length - 1]!];
    assert.equal(await m.forgetVersions(a, gone), 3);
    assert.equal(await m.forgetVersions(a, gone), 0, "a second time: nothing left");
    const left = await all(m.oldVersions(a, cut));
    assert.equal(left.length, old.length - 3);
    assert.ok(!left.some((v) => gone.some((g) => g.path === v.path && g.version === v.version)));
    assert.equal((await all(m.oldVersions(b, cut))).length, 1, "other accounts untouched");
  },

  "accounts: kept versions and stored bytes are counted": async ({ store: m }) => {
    const a = await accountWithChunks(m);
    const first = await m.commit(a, "A", [fileItem("f", [c(1)]), fileItem("g", [c(2)])]);
    const second = await m.commit(a, "A", [fileItem("f", [c(4)], 1), deleteItem("g", 2)]);
    assert.ok([...first, ...second].every((r) => r.ok));
    const s = (await m.accounts()).find((x) => x.id === a)!;
    assert.deepEqual([s.files, s.bytes, s.versions, s.keptBytes, s.storedBytes], [
      1,
      10,
      2,
      20,
      50,
    ]);
  },
};

Object.assign(CASES, HISTORY_CASES);

/** Registers every case of the suite for `backend`. */
export function metaSuite(backend: MetaBackend): void {
  registerSuite("meta", backend, CASES, async (f) => {
    await f.store.close().catch(() => {});
    await f.cleanup();
  });
}
