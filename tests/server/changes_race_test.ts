/**
 * A `changes` reply never claims a journal position past what it returned: a commit that lands
 * between the server reading the entries and reading the account's sequence number (another
 * request of this instance at an `await`, or a commit on another instance) must reach the device
 * at its next pull, not be skipped for good. The session runs on a real SQLite store wrapped so
 * that such a commit lands exactly there.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Hub, Session } from "../../lib/server/session.ts";
import { SqliteMetaStore } from "../../lib/server/meta_store.ts";
import { TieredBlobStore } from "../../lib/server/blob_store.ts";
import { LogLimiter, RateLimiter, SignInThrottle } from "../../lib/server/limits.ts";
import type { CommitItem, MetaStore } from "../../lib/server/stores.ts";
import { PROTOCOL_VERSION } from "../../lib/protocol/messages.ts";

const dir = (path: string): CommitItem => ({
  path,
  baseVersion: 0,
  kind: "dir",
  deleted: false,
  size: 0,
  mtime: 1,
  exec: false,
  hash: "",
  chunks: [],
});

Deno.test("a commit between reading changes and the sequence number is not skipped", async () => {
  const data = await Deno.makeTempDir({ prefix: "cloudsync-changes-" });
  const store = new SqliteMetaStore(data);
  const blobs = new TieredBlobStore(data);
  let account = "";
  let interleave = false;
  // The store as the session sees it: right after `changes` has read its rows, another device's
  // commit lands (once), before the session asks for the sequence number.
  const meta = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop !== "changes") return typeof v === "function" ? v.bind(target) : v;
      return async (...args: Parameters<MetaStore["changes"]>) => {
        const rows = await target.changes(...args);
        if (interleave) {
          interleave = false;
          await target.commit(account, "other", [dir("late")]);
        }
        return rows;
      };
    },
  }) as MetaStore;
  const session = new Session({
    meta,
    blobs,
    hub: new Hub(),
    log: () => {},
    signIn: new SignInThrottle(),
    registrations: new RateLimiter(10, 10),
    quota: null,
    logLimit: new LogLimiter(1000),
  }, { hostname: "127.0.0.1", port: 1 });
  const ask = async (header: Record<string, unknown>) =>
    (await session.handle({ header, body: new Uint8Array(0) })).header;
  try {
    await ask({ t: "hello", protocol: PROTOCOL_VERSION, program: "test", caps: [] });
    account = (await ask({ t: "register", device: "A" })).account as string;
    await ask({ t: "commit", items: [dir("early")] });
    interleave = true;
    const first = await ask({ t: "changes", since: 0, limit: 100 });
    const paths = (first.entries as { path: string }[]).map((e) => e.path);
    assert.deepEqual(paths, ["early"]);
    assert.equal(first.more, false);
    assert.equal(first.seq, 1, "the position is that of the entries returned");
    const next = await ask({ t: "changes", since: first.seq, limit: 100 });
    assert.deepEqual((next.entries as { path: string }[]).map((e) => e.path), ["late"]);
    assert.equal(next.seq, 2);
    // Nothing new: the position stays (a device ahead of the server is brought back, though).
    assert.equal((await ask({ t: "changes", since: 2, limit: 100 })).seq, 2);
    assert.equal((await ask({ t: "changes", since: 50, limit: 100 })).seq, 2);
  } finally {
    await blobs.close();
    await store.close();
    await Deno.remove(data, { recursive: true });
  }
});
