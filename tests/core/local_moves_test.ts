/**
 * Tests for pairing downloads with local deletions of the same content (moves): one row per case,
 * plus the end-to-end shape reconcile produces for a move made on another device.
 *
 * @module
 */

import assert from "node:assert/strict";
import { keepMovesTogether, pairLocalMoves } from "../../lib/core/local_moves.ts";
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
      const got = pairLocalMoves(actions, new Map(b.map((e) => [e.path, e])));
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
  assert.deepEqual([...pairLocalMoves(actions, b)], [["moved/big.bin", "big.bin"]]);
});

const upload = (path: string, hash: string, size = 10): Action => ({
  op: "upload",
  path,
  local: local(path, size, hash),
  baseVersion: 0,
});
const deleteRemote = (path: string, kind: "file" | "dir" = "file"): Action => ({
  op: "deleteRemote",
  path,
  kind,
  baseVersion: 1,
});
const mkdirRemote = (path: string): Action => ({
  op: "mkdirRemote",
  path,
  local: { path, kind: "dir", size: 0, mtime: 0, exec: false },
  baseVersion: 0,
});

Deno.test("keepMovesTogether", async (t) => {
  const show = (actions: Action[]) => actions.map((a) => `${a.op} ${a.path}`);
  const rows: [string, Action[], BaseEntry[], string[]][] = [
    [
      "each deletion follows the upload of the same content; folders still go last",
      [
        mkdirRemote("new"),
        upload("new/a", "h1"),
        upload("new/b", "h2"),
        upload("other", "h9"),
        deleteRemote("old/a"),
        deleteRemote("old/b"),
        deleteRemote("old", "dir"),
      ],
      [base("old/a", "h1"), base("old/b", "h2")],
      [
        "mkdirRemote new",
        "upload new/a",
        "deleteRemote old/a",
        "upload new/b",
        "deleteRemote old/b",
        "upload other",
        "deleteRemote old",
      ],
    ],
    [
      "a deletion of other content keeps its place",
      [upload("x", "h1"), deleteRemote("y")],
      [base("y", "h2")],
      ["upload x", "deleteRemote y"],
    ],
    [
      "same hash but another size does not pair",
      [upload("x", "h1", 11), deleteRemote("y")],
      [base("y", "h1")],
      ["upload x", "deleteRemote y"],
    ],
    [
      "two copies of one content: one deletion each, in order",
      [upload("x", "h1"), upload("z", "h1"), deleteRemote("y")],
      [base("y", "h1")],
      ["upload x", "deleteRemote y", "upload z"],
    ],
    [
      "an upload of an edited file (its hash from the scan) pairs by that hash",
      [upload("x", "h5"), deleteRemote("y")],
      [base("x", "h0"), base("y", "h5")],
      ["upload x", "deleteRemote y"],
    ],
  ];
  for (const [name, actions, b, want] of rows) {
    await t.step(name, () => {
      const { actions: got, pairs } = keepMovesTogether(
        actions,
        new Map(b.map((e) => [e.path, e])),
      );
      assert.deepEqual(show(got), want);
      assert.equal(got.length, actions.length); // nothing lost or duplicated
      for (const [u, d] of pairs) assert.equal(got[got.indexOf(u) + 1], d);
    });
  }
});
