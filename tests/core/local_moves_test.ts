/**
 * Tests for pairing downloads with local deletions of the same content (moves): one row per case,
 * plus the end-to-end shape reconcile produces for a move made on another device.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MOVE_MIN_SIZE, pairLocalMoves } from "../../lib/core/local_moves.ts";
import { type Action, reconcile } from "../../lib/core/reconcile.ts";
import type { BaseEntry, LocalEntry, RemoteEntry } from "../../lib/core/types.ts";

function base(path: string, hash: string, size = 10): BaseEntry {
  return { path, kind: "file", version: 1, size, mtime: 5, exec: false, hash, chunks: [] };
}

function local(path: string, size = 10, hash?: string): LocalEntry {
  return { path, kind: "file", size, mtime: 5, exec: false, ...(hash ? { hash } : {}) };
}

function remote(path: string, hash: string, size = 10): RemoteEntry {
  return {
    path,
    kind: "file",
    deleted: false,
    version: 2,
    size,
    mtime: 5,
    exec: false,
    hash,
    chunks: [{ hash, size }],
    device: "other",
  };
}

const download = (path: string, hash: string, size = 10): Action => ({
  op: "download",
  path,
  remote: remote(path, hash, size),
  replace: null,
});
const deleteLocal = (path: string, size = 10, hash?: string): Action => ({
  op: "deleteLocal",
  path,
  expect: local(path, size, hash),
});

Deno.test("pairLocalMoves", async (t) => {
  const rows: [string, Action[], BaseEntry[], [string, string][]][] = [
    [
      "a download and a deletion of the same content pair up",
      [download("new/a", "h1"), deleteLocal("a")],
      [base("a", "h1")],
      [["new/a", "a"]],
    ],
    [
      "the deletion may come first in the actions",
      [deleteLocal("a"), download("new/a", "h1")],
      [base("a", "h1")],
      [["new/a", "a"]],
    ],
    [
      "different content does not pair",
      [download("new/a", "h2"), deleteLocal("a")],
      [base("a", "h1")],
      [],
    ],
    [
      "same hash but another size does not pair",
      [download("new/a", "h1", 11), deleteLocal("a")],
      [base("a", "h1")],
      [],
    ],
    [
      "a rehashed local file pairs by its scan hash, not the base's",
      [download("new/a", "h9"), deleteLocal("a", 10, "h9")],
      [base("a", "h1")],
      [["new/a", "a"]],
    ],
    [
      "each deletion is used once; the second copy is downloaded",
      [download("x", "h1"), download("y", "h1"), deleteLocal("a")],
      [base("a", "h1")],
      [["x", "a"]],
    ],
    [
      "two deletions of the same content serve two downloads",
      [download("x", "h1"), download("y", "h1"), deleteLocal("a"), deleteLocal("b")],
      [base("a", "h1"), base("b", "h1")],
      [["x", "a"], ["y", "b"]],
    ],
    [
      "a deletion without a base entry does not pair",
      [download("new/a", "h1"), deleteLocal("a")],
      [],
      [],
    ],
    [
      "empty files are not worth moving",
      [download("new/a", "e", 0), deleteLocal("a", 0)],
      [base("a", "e", 0)],
      [],
    ],
    [
      "a download that replaces a local item does not pair",
      [
        { ...(download("new/a", "h1") as object), replace: local("new/a") } as Action,
        deleteLocal("a"),
      ],
      [base("a", "h1")],
      [],
    ],
    [
      "a conflict copy download (path differs from the remote path) does not pair",
      [
        { op: "download", path: "a (copy)", remote: remote("a2", "h1"), replace: null },
        deleteLocal("a"),
      ],
      [base("a", "h1")],
      [],
    ],
  ];
  for (const [name, actions, b, want] of rows) {
    await t.step(name, () => {
      const got = pairLocalMoves(actions, new Map(b.map((e) => [e.path, e])), 1);
      assert.deepEqual([...got], want);
    });
  }
});

Deno.test("pairLocalMoves: a move made on another device, as reconcile plans it", () => {
  const b = new Map([["big.bin", base("big.bin", "h1")]]);
  const l = new Map([["big.bin", local("big.bin")]]);
  const r = new Map([["moved/big.bin", remote("moved/big.bin", "h1")]]);
  r.set("moved", { ...remote("moved", ""), kind: "dir", size: 0, chunks: [] });
  const actions = reconcile({ base: b, local: l, remote: r, device: "me", now: new Date(0) });
  assert.deepEqual([...pairLocalMoves(actions, b, 1)], [["moved/big.bin", "big.bin"]]);
});

Deno.test("pairLocalMoves: files under the minimum size are left to the batched download", () => {
  const size = MOVE_MIN_SIZE - 1;
  const b = new Map([["a", base("a", "h1", size)]]);
  const actions = [download("new/a", "h1", size), deleteLocal("a", size)];
  assert.deepEqual([...pairLocalMoves(actions, b)], []);
  const big = new Map([["a", base("a", "h1", MOVE_MIN_SIZE)]]);
  const bigActions = [download("new/a", "h1", MOVE_MIN_SIZE), deleteLocal("a", MOVE_MIN_SIZE)];
  assert.deepEqual([...pairLocalMoves(bigActions, big)], [["new/a", "a"]]);
});
