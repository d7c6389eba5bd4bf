/**
 * Tests for pairing downloads with local deletions of the same content (moves): one row per case,
 * plus the end-to-end shape reconcile produces for a move made on another device.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  keepMovesTogether,
  pairLocalMoves,
  segmentsKeepingPairs,
} from "../../lib/core/local_moves.ts";
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

Deno.test("segmentsKeepingPairs never splits a move between two commits", async (t) => {
  const rows: {
    name: string;
    actions: string[];
    pairs: [string, string][];
    size: number;
    want: string[][];
  }[] = [
    {
      name: "no pairs: plain cuts",
      actions: ["a", "b", "c", "d", "e"],
      pairs: [],
      size: 2,
      want: [["a", "b"], ["c", "d"], ["e"]],
    },
    {
      name: "a pair across a cut stays whole",
      actions: ["a", "u", "d", "b"],
      pairs: [["u", "d"]],
      size: 2,
      want: [["a", "u", "d"], ["b"]],
    },
    {
      name: "a pair inside a segment changes nothing",
      actions: ["u", "d", "a", "b"],
      pairs: [["u", "d"]],
      size: 2,
      want: [["u", "d"], ["a", "b"]],
    },
    {
      name: "size 1: each move is one segment",
      actions: ["u", "d", "v", "e", "x"],
      pairs: [["u", "d"], ["v", "e"]],
      size: 1,
      want: [["u", "d"], ["v", "e"], ["x"]],
    },
    {
      name: "a pair not adjacent is not forced",
      actions: ["u", "x", "d"],
      pairs: [["u", "d"]],
      size: 1,
      want: [["u"], ["x"], ["d"]],
    },
    { name: "nothing", actions: [], pairs: [], size: 3, want: [] },
  ];
  for (const r of rows) {
    await t.step(r.name, () => {
      assert.deepEqual(segmentsKeepingPairs(r.actions, new Map(r.pairs), r.size), r.want);
    });
  }
  await t.step("random: same order, every segment full unless it ends a pair or the list", () => {
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let run = 0; run < 500; run++) {
      const actions: string[] = [];
      const pairs = new Map<string, string>();
      const n = rand(40);
      for (let i = 0; i < n; i++) {
        if (rand(2) === 0) {
          actions.push(`u${i}`, `d${i}`);
          pairs.set(`u${i}`, `d${i}`);
        } else actions.push(`x${i}`);
      }
      const size = 1 + rand(6);
      const segs = segmentsKeepingPairs(actions, pairs, size);
      assert.deepEqual(segs.flat(), actions);
      for (const [k, seg] of segs.entries()) {
        const last = k === segs.length - 1;
        assert.ok(seg.length > 0);
        assert.ok(seg.length <= size + 1, `segment of ${seg.length} > ${size + 1}`);
        if (!last) assert.ok(seg.length >= size);
        const end = seg[seg.length - 1]!;
        const next = segs[k + 1]?.[0];
        assert.ok(next === undefined || pairs.get(end) !== next, `${end} and ${next} split`);
      }
    }
  });
});
