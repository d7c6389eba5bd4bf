/**
 * WalSync: a store's promise resolves only once every change made before it is durable (an
 * fsync of the log that started after the change), reads included; changes made while an fsync
 * runs share the next one; a failed fsync fails the call. The fsync is a fake here, so each
 * test decides when it ends.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { fsyncFile, WalSync } from "../../lib/util/wal_sync.ts";

/** A fake fsync whose calls the test ends one by one. */
class Syncs {
  started: { path: string; end: (e?: Error) => void }[] = [];
  sync = (path: string): Promise<void> =>
    new Promise((resolve, reject) => {
      this.started.push({ path, end: (e) => e ? reject(e) : resolve() });
    });
}

function setup(): { db: DatabaseSync; wal: WalSync; syncs: Syncs; file: string; dir: string } {
  const dir = Deno.makeTempDirSync();
  const file = join(dir, "t.db");
  const db = new DatabaseSync(file);
  db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(x INTEGER)");
  const syncs = new Syncs();
  return { db, wal: new WalSync(db, syncs.sync), syncs, file, dir };
}

/** Whether `p` has settled after the current microtasks. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => done = true, () => done = true);
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return done;
}

const insert = (db: DatabaseSync) => () => {
  db.prepare("INSERT INTO t VALUES (1)").run();
  return Promise.resolve("written");
};

Deno.test("a write resolves only after an fsync of the log that started after it", async () => {
  const { db, wal, syncs, file, dir } = setup();
  try {
    const sync = db.prepare("PRAGMA synchronous").get() as { synchronous: number };
    assert.equal(sync.synchronous, 1, "the connection commits without fsync (NORMAL)");
    const w = wal.settle(insert(db));
    assert.equal(await settled(w), false, "not before the fsync ends");
    assert.equal(syncs.started.length, 1);
    assert.equal(syncs.started[0]!.path, `${file}-wal`);
    syncs.started[0]!.end();
    assert.equal(await w, "written");
  } finally {
    db.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a read waits for the fsync of changes it may have seen; with none it does not", async () => {
  const { db, wal, syncs, dir } = setup();
  try {
    const read = () => Promise.resolve(db.prepare("SELECT COUNT(*) AS n FROM t").get());
    assert.equal(await settled(wal.settle(read)), true, "nothing unsynced: at once");
    const w = wal.settle(insert(db));
    const r = wal.settle(read);
    assert.equal(await settled(r), false, "the read saw an unsynced row: it waits");
    assert.equal(syncs.started.length, 1, "and asks for no fsync of its own");
    syncs.started[0]!.end();
    await w;
    assert.deepEqual({ ...(await r) as object }, { n: 1 });
  } finally {
    db.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("writes of one moment share an fsync; one made while it runs starts its own at once", async () => {
  const { db, wal, syncs, dir } = setup();
  try {
    const first = [wal.settle(insert(db)), wal.settle(insert(db))];
    await settled(Promise.all(first));
    assert.equal(syncs.started.length, 1, "one fsync for both");
    const more = [wal.settle(insert(db)), wal.settle(insert(db))];
    await settled(Promise.all(more));
    assert.equal(syncs.started.length, 2, "not queued behind the running fsync");
    syncs.started[1]!.end();
    assert.equal(await settled(Promise.all(more)), true, "the later fsync covers them");
    assert.equal(await settled(Promise.all(first)), false, "the first still runs");
    const read = wal.settle(() => Promise.resolve(1));
    assert.equal(await settled(read), true, "a read waits only for the latest fsync, done");
    syncs.started[0]!.end();
    await Promise.all(first);
  } finally {
    db.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a failed fsync fails the call and every later one: reads of what it left are not durable", async () => {
  const { db, wal, syncs, dir } = setup();
  try {
    const w = wal.settle(insert(db));
    await settled(w);
    syncs.started[0]!.end(new Error("Input/output error"));
    await assert.rejects(w, /Cannot keep the database durable: the fsync of .* failed \(Input/);
    // The row is committed and visible: a reader (another device's `changes`) must not get it.
    const read = wal.settle(() => Promise.resolve(db.prepare("SELECT COUNT(*) AS n FROM t").get()));
    await assert.rejects(read, /restart the server/);
    await assert.rejects(wal.settle(insert(db)), /restart the server/);
    assert.equal(syncs.started.length, 1, "no fsync is trusted after a failed one");
  } finally {
    db.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an error of the work itself is passed on once earlier changes are durable", async () => {
  const { db, wal, syncs, dir } = setup();
  try {
    const w = wal.settle(() => {
      db.prepare("INSERT INTO t VALUES (2)").run();
      throw new Error("Cannot commit: the work failed after one write");
    });
    assert.equal(await settled(w), false);
    syncs.started[0]!.end();
    await assert.rejects(w, /the work failed/);
  } finally {
    db.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the real fsync: the log SQLite writes, also beside a symlinked database", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(join(dir, "data"));
    Deno.mkdirSync(join(dir, "ssd"));
    Deno.symlinkSync(join(dir, "ssd", "r.db"), join(dir, "data", "r.db"));
    const db = new DatabaseSync(join(dir, "data", "r.db"));
    db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER)");
    const synced: string[] = [];
    const wal = new WalSync(db, (p) => {
      synced.push(p);
      return fsyncFile(p);
    });
    await wal.settle(insert(db));
    assert.equal(synced.length, 1);
    assert.equal(Deno.realPathSync(synced[0]!), Deno.realPathSync(join(dir, "ssd", "r.db-wal")));
    db.close();
    await assert.rejects(fsyncFile(join(dir, "absent.db-wal")), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("not in WAL mode: nothing to fsync, the connection is left as it is", async () => {
  const db = new DatabaseSync(":memory:");
  try {
    db.exec("CREATE TABLE t(x INTEGER)");
    const wal = new WalSync(db, () => Promise.reject(new Error("no fsync expected")));
    assert.equal(await wal.settle(insert(db)), "written");
  } finally {
    db.close();
  }
});

Deno.test("read: chunk bytes and the chunk index are answered at once, not after the fsync", async () => {
  const { db, wal, syncs, dir } = setup();
  try {
    const w = wal.settle(insert(db));
    const r = wal.read(() => Promise.resolve(db.prepare("SELECT COUNT(*) AS n FROM t").get()));
    assert.equal(await settled(r), true, "no wait for the write's fsync");
    assert.equal(await settled(w), false);
    syncs.started[0]!.end(new Error("Input/output error"));
    await assert.rejects(w);
    await assert.rejects(wal.read(() => Promise.resolve(1)), /restart the server/, "fail-stop");
  } finally {
    db.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
