/**
 * What a restore does, as tables: one path at TIME against now, the TIME used without `--at`,
 * the server's commit of a kept version, and the summary line.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  decideRestore,
  DefaultTime,
  DELETION_RUN_GAP_MS,
  type PointInTime,
  restoreCommit,
  restoreSummary,
  type VersionInfo,
} from "../../lib/core/restore_plan.ts";

const H = (n: number) => n.toString(16).padStart(64, "0");

function version(p: Partial<VersionInfo> & { version: number }): VersionInfo {
  return {
    path: "f",
    kind: "file",
    deleted: false,
    size: 10,
    mtime: 1000,
    exec: false,
    hash: H(p.version),
    device: "A",
    made: p.version * 1000,
    replaced: null,
    ...p,
  };
}

function at(then: Partial<VersionInfo>, now: Partial<PointInTime["current"]>): PointInTime {
  const v = version({ version: 2, ...then });
  return {
    ...v,
    chunks: [],
    current: {
      kind: v.kind,
      deleted: false,
      version: v.version,
      size: v.size,
      mtime: v.mtime,
      exec: v.exec,
      hash: v.hash,
      ...now,
    },
  };
}

Deno.test("decideRestore: deleted since comes back, changed since goes back, never a deletion", async (t) => {
  const rows: [string, PointInTime, ReturnType<typeof decideRestore>][] = [
    ["unchanged since", at({}, {}), { action: "unchanged" }],
    ["deleted since", at({}, { deleted: true, version: 5, hash: "" }), {
      action: "restore",
      why: "deleted",
    }],
    ["changed since", at({}, { version: 5, hash: H(5) }), { action: "restore", why: "changed" }],
    ["only its time changed since", at({}, { version: 5, mtime: 2000 }), {
      action: "restore",
      why: "changed",
    }],
    ["only its permission bits changed since", at({ mode: 0o644 }, { version: 5, mode: 0o600 }), {
      action: "restore",
      why: "changed",
    }],
    ["changed, then changed back (same content, time and bits)", at({}, { version: 9 }), {
      action: "unchanged",
    }],
    [
      "deleted at TIME (it was created after): left alone",
      at({ deleted: true }, {
        version: 5,
      }),
      { action: "skip", why: "absent" },
    ],
    [
      "a folder then, a file now: left alone",
      at({ kind: "dir", hash: "" }, {
        version: 5,
        kind: "file",
      }),
      { action: "skip", why: "kind" },
    ],
    ["a folder then and now", at({ kind: "dir", hash: "" }, { version: 5, kind: "dir" }), {
      action: "unchanged",
    }],
    ["a deleted folder", at({ kind: "dir", hash: "" }, { version: 5, deleted: true }), {
      action: "restore",
      why: "deleted",
    }],
  ];
  for (const [name, row, want] of rows) {
    await t.step(name, () => assert.deepEqual(decideRestore(row), want));
  }
});

Deno.test("DefaultTime: the TIME a restore without --at uses", async (t) => {
  const MIN = 60_000;
  const rows: [string, string, VersionInfo[], ReturnType<DefaultTime["result"]>][] = [
    ["nothing kept", "f", [], { none: "none" }],
    [
      "a live file: the last moment of the version before the current one",
      "f",
      [
        version({ version: 3, made: 30_000 }),
        version({ version: 2, made: 20_000, replaced: 30_000 }),
        version({ version: 1, made: 10_000, replaced: 20_000 }),
      ],
      { at: 29_999 },
    ],
    [
      "a live file recreated after a deletion: the version before the deletion",
      "f",
      [
        version({ version: 3, made: 30_000 }),
        version({ version: 2, made: 20_000, replaced: 30_000, deleted: true }),
        version({ version: 1, made: 10_000, replaced: 20_000 }),
      ],
      { at: 19_999 },
    ],
    [
      "a live file whose previous version lived no time (same commit): the one before",
      "f",
      [
        version({ version: 3, made: 30_000 }),
        version({ version: 2, made: 30_000, replaced: 30_000 }),
        version({ version: 1, made: 10_000, replaced: 30_000 }),
      ],
      { at: 29_999 },
    ],
    ["a live file with no earlier version", "f", [version({ version: 3 })], { none: "first" }],
    [
      "a live folder: say which TIME",
      "d",
      [version({ path: "d", kind: "dir", version: 9 }), version({ path: "d/x", version: 8 })],
      { none: "folder" },
    ],
    [
      "a deleted file: just before its deletion",
      "f",
      [
        version({ version: 5, made: 50_000, deleted: true }),
        version({ version: 4, made: 40_000, replaced: 50_000 }),
      ],
      { at: 49_999 },
    ],
    [
      "a deleted folder: just before the run of deletions that ended with its own",
      "d",
      [
        version({ path: "d", kind: "dir", version: 20, made: 100 * MIN, deleted: true }),
        version({ path: "d/b", version: 19, made: 99 * MIN, deleted: true }),
        version({ path: "d/a", version: 18, made: 90 * MIN, deleted: true }),
        // An edit before the run: the files live then come back, as they were.
        version({ path: "d/a", version: 17, made: 80 * MIN, replaced: 90 * MIN }),
        version({ path: "d/old", version: 16, made: 50 * MIN, deleted: true }),
      ],
      { at: 90 * MIN - 1 },
    ],
    [
      "a deleted folder: a deletion long before the run stays deleted",
      "d",
      [
        version({ path: "d", kind: "dir", version: 20, made: 100 * MIN, deleted: true }),
        version({ path: "d/b", version: 19, made: 99 * MIN, deleted: true }),
        version({
          path: "d/old",
          version: 16,
          made: 99 * MIN - DELETION_RUN_GAP_MS - 1,
          deleted: true,
        }),
      ],
      { at: 99 * MIN - 1 },
    ],
    [
      "a deleted folder whose whole kept history is the run",
      "d",
      [
        version({ path: "d", kind: "dir", version: 20, made: 100 * MIN, deleted: true }),
        version({ path: "d/b", version: 19, made: 99 * MIN, deleted: true }),
      ],
      { at: 99 * MIN - 1 },
    ],
  ];
  for (const [name, path, history, want] of rows) {
    await t.step(name, () => {
      const d = new DefaultTime(path);
      let fed = 0;
      for (const v of history) {
        fed++;
        if (!d.add(v)) break;
      }
      assert.deepEqual(d.result(), want);
      if (want && "at" in want && name.includes("long before")) assert.equal(fed, history.length);
    });
  }
});

Deno.test("restoreCommit: kept versions as commit items, refusals in their place", () => {
  const kept = {
    ...version({ version: 2, mode: 0o600, exec: false }),
    chunks: [{ hash: H(2), size: 10 }],
  };
  const dir = { ...version({ path: "d", kind: "dir", version: 3, hash: "" }), chunks: [] };
  const deletion = { ...version({ version: 4, deleted: true }), chunks: [] };
  const plan = restoreCommit([
    { path: "f", version: 2, baseVersion: 7 },
    { path: "f", version: 99, baseVersion: 7 },
    { path: "d", version: 3, baseVersion: 8 },
    { path: "f", version: 4, baseVersion: 7 },
  ], [kept, null, dir, deletion]);
  assert.deepEqual(plan.valid, [
    {
      path: "f",
      baseVersion: 7,
      kind: "file",
      deleted: false,
      size: 10,
      mtime: 1000,
      exec: false,
      mode: 0o600,
      hash: H(2),
      chunks: [{ hash: H(2), size: 10 }],
    },
    {
      path: "d",
      baseVersion: 8,
      kind: "dir",
      deleted: false,
      size: 0,
      mtime: 1000,
      exec: false,
      hash: "",
      chunks: [],
    },
  ]);
  assert.deepEqual(plan.results([{ ok: true, version: 10 }, { ok: true, version: 11 }]), [
    { ok: true, version: 10 },
    { ok: false, reason: "missing", message: "version 99 of f is no longer kept" },
    { ok: true, version: 11 },
    { ok: false, reason: "invalid", message: "version 4 is a deletion" },
  ]);
});

Deno.test("restoreSummary: the line a restore ends with", async (t) => {
  const rows: [string, { files: number; folders: number; bytes: number }, string][] = [
    [
      "Restored",
      { files: 1204, folders: 0, bytes: 3.2 * 1024 ** 3 },
      "Restored 1,204 files (3.2 GiB) as of 2026-12-01 09:00 +01:00",
    ],
    [
      "Restored",
      { files: 1, folders: 0, bytes: 10 },
      "Restored 1 file (10 B) as of 2026-12-01 09:00 +01:00",
    ],
    [
      "Would restore",
      { files: 12, folders: 3, bytes: 2048 },
      "Would restore 12 files and 3 folders (2.0 KiB) as of 2026-12-01 09:00 +01:00",
    ],
    [
      "Copied",
      { files: 1234567, folders: 1, bytes: 0 },
      "Copied 1,234,567 files and 1 folder (0 B) as of 2026-12-01 09:00 +01:00",
    ],
  ];
  for (const [verb, counts, want] of rows) {
    await t.step(
      want,
      () => assert.equal(restoreSummary(verb, counts, "2026-12-01 09:00 +01:00"), want),
    );
  }
});
