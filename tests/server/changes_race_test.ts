/**
 * A device pulling `changes` while another commits must never skip an entry: the page's journal
 * position may not move past entries the page does not hold. The server reads the entries and
 * the position with two awaited calls; here a commit lands exactly between them (the store is
 * wrapped so that it does), which used to make the pulling device skip that entry for good.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MemServer } from "../support/mem_server.ts";
import type { MetaStore } from "../../lib/server/stores.ts";
import type { CommitItem } from "../../lib/protocol/calls.ts";

const dir = (path: string, baseVersion = 0): CommitItem => ({
  path,
  baseVersion,
  kind: "dir",
  deleted: false,
  size: 0,
  mtime: 0,
  exec: false,
  hash: "",
  chunks: [],
});

Deno.test("a commit landing while changes are read is not skipped", async () => {
  let sneak: (() => Promise<unknown>) | null = null;
  const s = await MemServer.start({
    wrapMeta: (m) =>
      new Proxy(m, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver);
          if (typeof v !== "function") return v;
          if (prop !== "changes") return v.bind(target);
          return async (...args: unknown[]) => {
            const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            const s2 = sneak;
            sneak = null;
            await s2?.(); // another device's commit, between the two reads
            return out;
          };
        },
      }) as MetaStore,
  });
  try {
    const { peer: a } = await s.connect();
    const reg = (await a.request({ t: "register", device: "A" })).header;
    const { peer: b } = await s.connect();
    await b.request({ t: "enroll", serial: String(reg.serial), device: "B" });
    await a.request({ t: "commit", items: [dir("one")] });
    sneak = () => s.stores.meta.commit(String(reg.account), "A", [dir("two")]);
    const seen = new Set<string>();
    let since = 0;
    for (let round = 0; round < 3; round++) {
      const r = await b.request({ t: "changes", since, limit: 100 });
      for (const e of r.header.entries as { path: string }[]) seen.add(e.path);
      since = r.header.seq as number;
    }
    assert.deepEqual([...seen].sort(), ["one", "two"]);
  } finally {
    await s.close();
  }
});
