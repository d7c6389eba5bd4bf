/**
 * Tests for `planCommit`, the server's whole decision for a commit batch: one row per case on a
 * small in-memory reader, then a randomized check that planning on a prefetched
 * `CommitSnapshot` (as PostgreSQL does, re-planning after misses) gives exactly the plan of a
 * direct reader (as SQLite does).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type CommitItem,
  type CommitPlan,
  type CommitReader,
  commitReads,
  CommitSnapshot,
  planCommit,
} from "../../lib/core/commit_plan.ts";
import type { RemoteEntry } from "../../lib/core/types.ts";

const H = (n: number) => n.toString(16).padStart(64, "0");

function entry(path: string, kind: "file" | "dir", version: number, deleted = false): RemoteEntry {
  const file = kind === "file" && !deleted;
  return {
    path,
    kind,
    deleted,
    version,
    size: file ? 10 : 0,
    mtime: 5,
    exec: false,
    hash: file ? H(version) : "",
    chunks: file ? [{ hash: H(version), size: 10 }] : [],
    device: "old",
  };
}

/** A direct reader over `entries` and chunks 1..9 (10 bytes); records the questions. */
function reader(entries: RemoteEntry[]) {
  const asked: string[] = [];
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const r: CommitReader = {
    entry: (p) => byPath.get(p),
    liveBelow: (dir, limit) => {
      asked.push(`${dir}:${limit}`);
      return entries.filter((e) => !e.deleted && e.path.startsWith(dir + "/")).map((e) => e.path)
        .slice(0, limit);
    },
    chunkSize: (h) => (/^0{63}[1-9]$/.test(h) ? 10 : undefined),
  };
  return { r, asked };
}

const put = (path: string, base: number, chunk = 1): CommitItem => ({
  path,
  baseVersion: base,
  kind: "file",
  deleted: false,
  size: 10,
  mtime: 5,
  exec: false,
  hash: H(chunk),
  chunks: [{ hash: H(chunk), size: 10 }],
});
const mkdir = (path: string, base = 0): CommitItem => ({
  ...put(path, base),
  kind: "dir",
  size: 0,
  hash: "",
  chunks: [],
});
const del = (path: string, base: number, kind: "file" | "dir" = "file"): CommitItem => ({
  ...mkdir(path, base),
  kind,
  deleted: true,
});

const summary = (p: CommitPlan) => ({
  results: p.results.map((r) => r.ok ? `ok ${r.version}` : `${r.reason} ${r.version ?? "-"}`),
  written: p.written.map((e) => `${e.path} ${e.kind}${e.deleted ? " deleted" : ""} v${e.version}`),
  kept: p.kept.map((e) => `${e.path} v${e.version}`),
  seq: p.seq,
});

Deno.test("planCommit", async (t) => {
  const rows: [string, RemoteEntry[], number, CommitItem[], ReturnType<typeof summary>][] = [
    ["a nested new file writes its parents first", [], 0, [put("a/b/f", 0)], {
      results: ["ok 3"],
      written: ["a dir v1", "a/b dir v2", "a/b/f file v3"],
      kept: [],
      seq: 3,
    }],
    ["an edit at the current version keeps the old one", [entry("f", "file", 4)], 4, [
      put("f", 4, 2),
    ], { results: ["ok 5"], written: ["f file v5"], kept: ["f v4"], seq: 5 }],
    ["the same content writes nothing", [entry("f", "file", 4)], 4, [put("f", 0, 4)], {
      results: ["ok 4"],
      written: [],
      kept: [],
      seq: 4,
    }],
    ["the same content with a new mtime is a new version", [entry("f", "file", 4)], 4, [
      { ...put("f", 4, 4), mtime: 6 },
    ], { results: ["ok 5"], written: ["f file v5"], kept: ["f v4"], seq: 5 }],
    ["the same content with new permission bits is a new version", [entry("f", "file", 4)], 4, [
      { ...put("f", 4, 4), mode: 0o600 },
    ], { results: ["ok 5"], written: ["f file v5"], kept: ["f v4"], seq: 5 }],
    ["the bits an older client's exec implies are the same", [entry("f", "file", 4)], 4, [
      { ...put("f", 0, 4), mode: 0o644 },
    ], { results: ["ok 4"], written: [], kept: [], seq: 4 }],
    ["a metadata change from a stale base is a conflict", [entry("f", "file", 4)], 4, [
      { ...put("f", 3, 4), mtime: 6 },
    ], { results: ["conflict 4"], written: [], kept: [], seq: 4 }],
    ["a stale base is a conflict", [entry("f", "file", 4)], 4, [put("f", 3, 2)], {
      results: ["conflict 4"],
      written: [],
      kept: [],
      seq: 4,
    }],
    [
      "a delete writes a tombstone of the old kind and keeps the file",
      [
        entry("f", "file", 2),
      ],
      2,
      [del("f", 2, "dir")],
      {
        results: ["ok 3"],
        written: ["f file deleted v3"],
        kept: ["f v2"],
        seq: 3,
      },
    ],
    ["over a tombstone the deletion is kept", [entry("f", "file", 2, true)], 2, [put("f", 0)], {
      results: ["ok 3"],
      written: ["f file v3"],
      kept: ["f v2"],
      seq: 3,
    }],
    [
      "a directory with a live child is not deleted",
      [
        entry("d", "dir", 1),
        entry("d/x", "file", 2),
      ],
      2,
      [del("d", 1, "dir")],
      { results: ["conflict 1"], written: [], kept: [], seq: 2 },
    ],
    [
      "children deleted first, then the directory",
      [
        entry("d", "dir", 1),
        entry("d/x", "file", 2),
        entry("d/y", "file", 3),
      ],
      3,
      [del("d/x", 2), del("d/y", 3), del("d", 1, "dir")],
      {
        results: ["ok 4", "ok 5", "ok 6"],
        written: ["d/x file deleted v4", "d/y file deleted v5", "d dir deleted v6"],
        kept: ["d/x v2", "d/y v3", "d v1"],
        seq: 6,
      },
    ],
    ["a child created in the batch keeps its directory", [entry("d", "dir", 1)], 1, [
      put("d/new", 0),
      del("d", 1, "dir"),
    ], { results: ["ok 2", "conflict 1"], written: ["d/new file v2"], kept: [], seq: 2 }],
    ["a missing chunk refuses the item and writes nothing for it", [], 0, [put("a/f", 0, 77)], {
      results: ["missing -"],
      written: [],
      kept: [],
      seq: 0,
    }],
    [
      "nothing under a file; parents revived before stay revived",
      [
        entry("a", "dir", 1, true),
        entry("a/b", "file", 2),
      ],
      2,
      [put("a/b/c", 0)],
      {
        results: ["conflict 2"],
        written: ["a dir v3"],
        kept: ["a v1"], // the revived folder's deletion
        seq: 3,
      },
    ],
    ["a path written twice is written once, its middle state kept", [], 0, [
      put("f", 0, 1),
      put("f", 1, 2),
    ], { results: ["ok 1", "ok 2"], written: ["f file v2"], kept: ["f v1"], seq: 2 }],
  ];
  for (const [name, stored, seq, items, want] of rows) {
    await t.step(name, () => {
      assert.deepEqual(summary(planCommit(reader(stored).r, seq, "dev", items)), want);
    });
  }

  await t.step("permission bits are written for files that carry them, never for others", () => {
    const plan = planCommit(reader([entry("old", "file", 1)]).r, 1, "dev", [
      { ...put("d/f", 0), exec: true, mode: 0o750 },
      { ...mkdir("e"), mode: 0o700 },
      { ...del("old", 1), mode: 0o600 },
      put("plain", 0),
    ]);
    assert.deepEqual(
      plan.written.map((e) => [e.path, "mode" in e ? e.mode : "none"]),
      [["d", "none"], ["d/f", 0o750], ["e", "none"], ["old", "none"], ["plain", "none"]],
    );
  });

  await t.step("sizes must add up", () => {
    const [r] = planCommit(reader([]).r, 0, "dev", [{ ...put("f", 0), size: 11 }]).results;
    assert.deepEqual(r, {
      ok: false,
      reason: "invalid",
      message: "chunk sizes do not add up to the file size",
    });
  });

  await t.step("live children are asked about only when the rule needs them", () => {
    const stored = [entry("d", "dir", 1), entry("d/x", "file", 2), entry("d/y", "file", 3)];
    const { r, asked } = reader(stored);
    planCommit(r, 3, "dev", [mkdir("d", 0), del("d", 0, "dir"), put("d", 0)]); // same, stale, stale
    assert.deepEqual(asked, []);
    planCommit(r, 3, "dev", [del("d/x", 2), del("d", 1, "dir")]);
    assert.deepEqual(asked, ["d:2"], "one stored child can have gone: ask for two");
  });
});

Deno.test("planCommit on a prefetched snapshot equals planCommit on a direct reader", () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const names = ["a", "a/b", "a/b/c", "a/x", "d", "d/e", "d/e/f", "g"];
  for (let round = 0; round < 400; round++) {
    // A random stored state (parents not necessarily consistent: the rule must not care).
    const stored: RemoteEntry[] = [];
    let version = 0;
    for (const p of names) {
      if (rnd(3) === 0) continue;
      stored.push(entry(p, rnd(2) ? "file" : "dir", ++version, rnd(4) === 0));
    }
    const items: CommitItem[] = Array.from({ length: 1 + rnd(6) }, () => {
      const p = names[rnd(names.length)]!;
      const base = rnd(3) === 0 ? 0 : stored.find((e) => e.path === p)?.version ?? 0;
      const k = rnd(4);
      return k === 0 ? del(p, base, rnd(2) ? "dir" : "file") : k === 1 ? mkdir(p, base) : put(
        p,
        base,
        1 + rnd(9),
      );
    });
    const direct = planCommit(reader(stored).r, version, "dev", items);
    // As PostgreSQL does: prefetch what commitReads predicts, plan, fetch what was missed, again.
    const full = reader(stored).r;
    const snap = new CommitSnapshot();
    const first = commitReads(items);
    snap.addEntries(
      first.paths,
      first.paths.map((p) => full.entry(p)).filter((e) => e !== undefined),
    );
    snap.addChunks(
      first.chunks,
      first.chunks.flatMap((h) => {
        const size = full.chunkSize(h);
        return size === undefined ? [] : [{ hash: h, size }];
      }),
    );
    let plan: CommitPlan;
    for (let i = 0;; i++) {
      snap.reset();
      plan = planCommit(snap, version, "dev", items);
      if (snap.complete) break;
      assert.ok(i < 5, "converges");
      const m = snap.missed;
      snap.addEntries(
        m.paths,
        [...m.paths].map((p) => full.entry(p)).filter((e) => e !== undefined),
      );
      for (const [dir, limit] of m.below) {
        snap.addBelow(dir, limit, [...full.liveBelow(dir, limit)]);
      }
    }
    assert.deepEqual(plan, direct, `round ${round}: ${JSON.stringify(items)}`);
  }
});
