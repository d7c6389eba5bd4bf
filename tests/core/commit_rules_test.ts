/**
 * Tests for the server's commit rule: one row per case.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type CommitVerdict,
  decideCommit,
  type ProposedChange,
} from "../../lib/core/commit_rules.ts";
import type { RemoteEntry } from "../../lib/core/types.ts";

function entry(
  kind: "file" | "dir",
  version: number,
  opts: { hash?: string; exec?: boolean; deleted?: boolean } = {},
): RemoteEntry {
  const deleted = opts.deleted ?? false;
  return {
    path: "p",
    kind,
    deleted,
    version,
    size: 0,
    mtime: 0,
    exec: opts.exec ?? false,
    hash: deleted || kind === "dir" ? "" : (opts.hash ?? "h0"),
    chunks: [],
    device: "pc",
  };
}

const file = (version: number, hash = "h0", exec = false) => entry("file", version, { hash, exec });
const dir = (version: number) => entry("dir", version);
const tomb = (kind: "file" | "dir", version: number) => entry(kind, version, { deleted: true });

function put(kind: "file" | "dir", baseVersion: number, hash = "h1", exec = false): ProposedChange {
  return { deleted: false, kind, hash: kind === "dir" ? "" : hash, exec, mtime: 0, baseVersion };
}

function del(kind: "file" | "dir", baseVersion: number): ProposedChange {
  return { deleted: true, kind, hash: "", exec: false, mtime: 0, baseVersion };
}

const accept: CommitVerdict = { verdict: "accept" };
const same = (version: number): CommitVerdict => ({ verdict: "same", version });
const conflict = (version: number): CommitVerdict => ({ verdict: "conflict", version });

Deno.test("decideCommit", async (t) => {
  const rows: [string, RemoteEntry | undefined, ProposedChange, boolean, CommitVerdict][] = [
    // Creating over nothing or over a tombstone: always accepted (an edit beats a delete).
    ["a new file on a path never seen is accepted", undefined, put("file", 0), false, accept],
    ["a new directory on a path never seen is accepted", undefined, put("dir", 0), false, accept],
    ["a file over a tombstone is accepted", tomb("file", 4), put("file", 0), false, accept],
    [
      "a file over a tombstone is accepted even with a stale base version",
      tomb("file", 4),
      put("file", 2),
      false,
      accept,
    ],
    [
      "a directory over a file tombstone is accepted",
      tomb("file", 4),
      put("dir", 0),
      false,
      accept,
    ],
    // Replacing a live entry: only from its current version.
    ["an edit based on the current version is accepted", file(3), put("file", 3), false, accept],
    ["an edit based on an older version conflicts", file(3), put("file", 2), false, conflict(3)],
    [
      "an edit based on nothing over a live file conflicts",
      file(3),
      put("file", 0),
      false,
      conflict(3),
    ],
    [
      "a chmod based on the current version is accepted",
      file(3),
      put("file", 3, "h0", true),
      false,
      accept,
    ],
    [
      "a chmod based on an older version conflicts",
      file(3),
      put("file", 1, "h0", true),
      false,
      conflict(3),
    ],
    // No-op changes are "same" whatever their base version.
    [
      "the same content with a stale base version is same, not a conflict",
      file(3, "h1"),
      put("file", 1, "h1"),
      false,
      same(3),
    ],
    [
      "the same content as a new file is same",
      file(3, "h1"),
      put("file", 0, "h1"),
      false,
      same(3),
    ],
    ["a directory over a live directory is same", dir(3), put("dir", 0), true, same(3)],
    // Type changes.
    [
      "a directory replacing a file at its version is accepted",
      file(3),
      put("dir", 3),
      false,
      accept,
    ],
    ["a directory replacing a newer file conflicts", file(3), put("dir", 1), false, conflict(3)],
    [
      "a file replacing an empty directory at its version is accepted",
      dir(3),
      put("file", 3),
      false,
      accept,
    ],
    [
      "a file replacing a directory that has live children conflicts",
      dir(3),
      put("file", 3),
      true,
      conflict(3),
    ],
    ["a file replacing a newer directory conflicts", dir(3), put("file", 2), false, conflict(3)],
    // Deletes.
    ["a delete at the current version is accepted", file(3), del("file", 3), false, accept],
    [
      "a delete of an edited file conflicts (the edit wins)",
      file(3),
      del("file", 2),
      false,
      conflict(3),
    ],
    [
      "a delete of a path never seen is same at version 0",
      undefined,
      del("file", 2),
      false,
      same(0),
    ],
    [
      "a delete of a tombstone is same at its version",
      tomb("file", 4),
      del("file", 2),
      false,
      same(4),
    ],
    ["a delete of an empty directory is accepted", dir(3), del("dir", 3), false, accept],
    [
      "a delete of a directory with live children conflicts",
      dir(3),
      del("dir", 3),
      true,
      conflict(3),
    ],
    [
      "a delete of a directory rewritten meanwhile conflicts",
      dir(5),
      del("dir", 3),
      false,
      conflict(5),
    ],
  ];
  for (const [name, current, change, children, expected] of rows) {
    await t.step(name, () => {
      assert.deepEqual(decideCommit(current, change, children), expected);
    });
  }
});
