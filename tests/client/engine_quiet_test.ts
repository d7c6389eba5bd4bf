/**
 * Tests for `quietWatch`: when a pass pauses the folder watcher because it changes many local
 * items itself.
 *
 * @module
 */

import assert from "node:assert/strict";
import { quietWatch } from "../../lib/client/engine.ts";
import type { Action } from "../../lib/core/reconcile.ts";
import type { LocalEntry, RemoteEntry } from "../../lib/core/types.ts";

const remote: RemoteEntry = {
  path: "f",
  kind: "file",
  version: 1,
  size: 1,
  mtime: 1,
  exec: false,
  hash: "h",
  chunks: [],
  device: "A",
  deleted: false,
};
const local: LocalEntry = { path: "f", kind: "file", size: 1, mtime: 1, exec: false };
const downloads = (n: number): Action[] =>
  Array.from({ length: n }, (_, i) => ({
    op: "download",
    path: `f${i}`,
    remote,
    replace: null,
  }));
const uploads = (n: number): Action[] =>
  Array.from({ length: n }, (_, i) => ({ op: "upload", path: `u${i}`, local, baseVersion: 0 }));
const deletes = (n: number): Action[] =>
  Array.from({ length: n }, (_, i) => ({ op: "deleteLocal", path: `d${i}`, expect: local }));

Deno.test("quietWatch pauses the watcher only for many local changes", async (t) => {
  const rows: { name: string; actions: Action[]; synced: number; want: boolean }[] = [
    { name: "a few downloads", actions: downloads(10), synced: 0, want: false },
    { name: "255 downloads into an empty folder", actions: downloads(255), synced: 0, want: false },
    { name: "256 downloads into an empty folder", actions: downloads(256), synced: 0, want: true },
    {
      name: "downloads and deletions add up",
      actions: [...downloads(200), ...deletes(56)],
      synced: 1000,
      want: true,
    },
    { name: "uploads change nothing locally", actions: uploads(5000), synced: 0, want: false },
    {
      name: "300 of 100,000 synced items: the rescan costs more",
      actions: downloads(300),
      synced: 100_000,
      want: false,
    },
    {
      name: "5,000 of 100,000 synced items",
      actions: downloads(5000),
      synced: 100_000,
      want: true,
    },
  ];
  for (const r of rows) {
    await t.step(r.name, () => assert.equal(quietWatch(r.actions, r.synced), r.want));
  }
});
