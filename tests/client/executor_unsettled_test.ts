/**
 * Tests for what an execution leaves for the next pass to look at (`unsettledPaths`): steps that
 * did not settle, conflict copies, and the folder of every deleted item (a tree being deleted
 * while a pass ran must vanish whole, its top folder included, at the next pass).
 *
 * @module
 */

import assert from "node:assert/strict";
import { unsettledPaths } from "../../lib/client/executor.ts";
import type { Action } from "../../lib/core/reconcile.ts";
import type { Outcome } from "../../lib/core/outcomes.ts";

Deno.test("unsettledPaths: deleted items' folders, unsettled steps and copies are rechecked", () => {
  const actions: Action[] = [
    { op: "deleteRemote", path: "t/a/f1", kind: "file", baseVersion: 3 },
    { op: "deleteRemote", path: "t/a/f2", kind: "file", baseVersion: 4 },
    { op: "deleteRemote", path: "t/g", kind: "file", baseVersion: 5 },
    {
      op: "deleteLocal",
      path: "u/x",
      expect: { path: "u/x", kind: "file", size: 1, mtime: 1, exec: false },
    },
    { op: "setBase", path: "top.txt", entry: null },
  ];
  const outcomes: Outcome[] = [
    { path: "t/a/f1", kind: "deletedThere" },
    { path: "t/a/f2", kind: "deletedThere" },
    { path: "t/g", kind: "refused", reason: "changed on another device" },
    { path: "u/x", kind: "deletedHere" },
    { path: "c (conflict from A 2026-01-01 000000).txt", kind: "conflict" },
  ];
  const settled = new Set(["t/a/f1", "t/a/f2", "u/x", "top.txt"]);
  assert.deepEqual(unsettledPaths(actions, outcomes, settled).sort(), [
    "c (conflict from A 2026-01-01 000000).txt",
    "t/a",
    "t/g",
    "u",
  ]);
});
