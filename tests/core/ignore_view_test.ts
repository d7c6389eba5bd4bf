/**
 * Tests for `core/ignore_view.ts`: what reconcile plans once ignored paths are out of a pass's
 * view. Each case runs the real `reconcile` on the view and asserts the operations: an ignored
 * path is neither sent, nor received, nor deleted, nor replaced; a folder that holds ignored
 * files is neither deleted here nor created again there; ignoring a folder trips no mass-delete
 * guard.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  applyIgnores,
  type IgnoreViewInput,
  keepIgnoredFolders,
} from "../../lib/core/ignore_view.ts";
import { IgnoreRules } from "../../lib/core/ignore_rules.ts";
import { reconcile } from "../../lib/core/reconcile.ts";
import { massDeleteCheck } from "../../lib/core/guards.ts";
import type { BaseEntry, LocalEntry, RemoteEntry } from "../../lib/core/types.ts";

const bFile = (path: string, version = 1): BaseEntry => ({
  path,
  kind: "file",
  version,
  size: 2,
  mtime: 100,
  exec: false,
  hash: "h0",
  chunks: [{ hash: "c0", size: 2 }],
});
const bDir = (path: string, version = 1): BaseEntry => ({
  path,
  kind: "dir",
  version,
  size: 0,
  mtime: 0,
  exec: false,
  hash: "",
  chunks: [],
});
const lSame = (path: string): LocalEntry => ({
  path,
  kind: "file",
  size: 2,
  mtime: 100,
  exec: false,
});
const lNew = (path: string, hash = "h1"): LocalEntry => ({
  path,
  kind: "file",
  size: 2,
  mtime: 200,
  exec: false,
  hash,
  chunks: [{ hash: `c-${hash}`, size: 2 }],
});
const lDir = (path: string): LocalEntry => ({ path, kind: "dir", size: 0, mtime: 0, exec: false });
const rFile = (path: string, version = 1, hash = "h0"): RemoteEntry => ({
  path,
  kind: "file",
  deleted: false,
  version,
  size: 2,
  mtime: 100,
  exec: false,
  hash,
  chunks: [{ hash: `c-${hash}`, size: 2 }],
  device: "desktop",
});
const rDir = (path: string, version = 1): RemoteEntry => ({
  path,
  kind: "dir",
  deleted: false,
  version,
  size: 0,
  mtime: 0,
  exec: false,
  hash: "",
  chunks: [],
  device: "desktop",
});

const map = <T extends { path: string }>(...xs: T[]) => new Map(xs.map((x) => [x.path, x]));

/** The view with `rules` (a `.cloudignore` text), and the operations reconcile plans on it. */
function plan(
  rules: string,
  input: Omit<IgnoreViewInput, "ignores">,
): { ops: string[]; forget: string[]; hollow: string[] } {
  const r = new IgnoreRules([{ name: ".cloudignore", text: rules }]);
  return planWith(applyIgnores({ ...input, ignores: (p, dir) => r.ignores(p, dir) }));
}

function planWith(
  view: ReturnType<typeof applyIgnores>,
): { ops: string[]; forget: string[]; hollow: string[] } {
  const actions = keepIgnoredFolders(
    reconcile({ ...view, device: "laptop", now: new Date(0) }),
    view,
  );
  const ops = actions.map((a) =>
    a.op === "setBase" ? `setBase ${a.path} ${a.entry ? "=" : "null"}` : `${a.op} ${a.path}`
  );
  return { ops, forget: view.forget.sort(), hollow: view.hollow.sort() };
}

Deno.test("nothing ignored: the maps are passed through as they are", () => {
  const base = map(bFile("a.txt"));
  const local = map(lSame("a.txt"));
  const remote = map(rFile("a.txt"));
  const view = applyIgnores({ base, local, remote, ignores: () => false });
  assert.equal(view.base, base);
  assert.equal(view.local, local);
  assert.equal(view.remote, remote);
  assert.deepEqual(view.forget, []);
});

Deno.test("an ignored path is neither sent, received, deleted nor replaced", async (t) => {
  await t.step("a new local file that is ignored is not sent", () => {
    const r = plan("*.log\n", { base: map(), local: map(lNew("x.log")), remote: map() });
    assert.deepEqual(r.ops, []);
  });
  await t.step("an ignored file on the server is not received", () => {
    const r = plan("*.log\n", { base: map(), local: map(), remote: map(rFile("x.log")) });
    assert.deepEqual(r.ops, []);
  });
  await t.step("a file that becomes ignored stays everywhere as it is", () => {
    const r = plan("*.log\n", {
      base: map(bFile("x.log")),
      local: map(lSame("x.log")),
      remote: map(rFile("x.log")),
    });
    assert.deepEqual(r.ops, []);
    assert.deepEqual(r.forget, []);
  });
  await t.step("deleted here while ignored: not deleted on the server", () => {
    const r = plan("*.log\n", {
      base: map(bFile("x.log")),
      local: map(),
      remote: map(rFile("x.log")),
    });
    assert.deepEqual(r.ops, []);
  });
  await t.step("deleted or edited on the server while ignored here: the local file stays", () => {
    const input = { base: map(bFile("x.log")), local: map(lNew("x.log")) };
    assert.deepEqual(plan("*.log\n", { ...input, remote: map() }).ops, []);
    assert.deepEqual(plan("*.log\n", { ...input, remote: map(rFile("x.log", 2, "h2")) }).ops, []);
  });
  await t.step("an ignored folder takes everything below it out, on every side", () => {
    const r = plan("node_modules/\n", {
      base: map(bDir("web"), bDir("web/node_modules"), bFile("web/node_modules/a.js")),
      local: map(lDir("web")),
      remote: map(rDir("web"), rDir("web/node_modules"), rFile("web/node_modules/b.js")),
      ignoredHere: ["web/node_modules"],
    });
    assert.deepEqual(r.ops, []);
  });
  await t.step("a folder rule on one side takes the same path out of the other side", () => {
    // build/ ignores the remote folder; the local file of that name must not replace it.
    const r = plan("build/\n", {
      base: map(),
      local: map(lNew("build")),
      remote: map(rDir("build"), rFile("build/out.o")),
    });
    assert.deepEqual(r.ops, []);
  });
  await t.step("what the scan left out is taken out below it too, whatever the rules say", () => {
    // The scan judged a local name the rules, applied to the wire path, do not ignore.
    const r = plan("", {
      base: map(bFile("odd/a.txt")),
      local: map(),
      remote: map(rDir("odd"), rFile("odd/a.txt")),
      ignoredHere: ["odd"],
    });
    assert.deepEqual(r.ops, []);
  });
});

Deno.test("a folder holding ignored files is not deleted with them, nor created again", async (t) => {
  await t.step("deleted on the server, only ignored files left here: kept, base forgotten", () => {
    const r = plan("", {
      base: map(bDir("D")),
      local: map(lDir("D")),
      remote: map(),
      ignoredHere: ["D/.DS_Store"],
    });
    assert.deepEqual(r.ops, ["setBase D null"]);
    assert.deepEqual(r.hollow, ["D"]);
  });
  await t.step(
    "...and with synced files in it: those go, the folder is left to the executor",
    () => {
      const r = plan("", {
        base: map(bDir("D"), bFile("D/a.txt")),
        local: map(lDir("D"), lSame("D/a.txt")),
        remote: map(),
        ignoredHere: ["D/.DS_Store"],
      });
      // The executor keeps a folder it finds holding only ignored items (executor tests).
      assert.deepEqual(r.ops, ["deleteLocal D/a.txt", "deleteLocal D"]);
    },
  );
  await t.step("a new folder holding only ignored items is not sent, at any depth", () => {
    const r = plan("*.tmp\n", {
      base: map(),
      local: map(lDir("P"), lDir("P/Q"), lNew("P/Q/x.tmp")),
      remote: map(),
    });
    assert.deepEqual(r.ops, []);
    assert.deepEqual(r.hollow, ["P", "P/Q"]);
  });
  await t.step(
    "an empty folder or a file beside the ignored ones is sent, with its parents",
    () => {
      const r = plan("*.tmp\n", {
        base: map(),
        local: map(
          lDir("P"),
          lDir("P/Q"),
          lNew("P/Q/x.tmp"),
          lDir("P/E"),
          lDir("F"),
          lNew("F/y.tmp"),
          lNew("F/z.txt"),
        ),
        remote: map(),
      });
      assert.deepEqual(r.ops, [
        "mkdirRemote F",
        "mkdirRemote P",
        "mkdirRemote P/E",
        "upload F/z.txt",
      ]);
      assert.deepEqual(r.hollow, ["P/Q"]);
    },
  );
  await t.step("a folder on both sides stays synced, whatever it holds", () => {
    const r = plan("*.tmp\n", {
      base: map(),
      local: map(lDir("D"), lNew("D/x.tmp")),
      remote: map(rDir("D")),
    });
    assert.deepEqual(r.ops, ["setBase D ="]);
  });
  await t.step("deleted here, only ignored files left on the server: no delete to refuse", () => {
    // The server refuses to delete a folder with live entries: asking would repeat forever.
    const r = plan("*.log\n", {
      base: map(bDir("D"), bFile("D/a.txt")),
      local: map(),
      remote: map(rDir("D"), rFile("D/a.txt"), rFile("D/old.log")),
    });
    assert.deepEqual(r.ops, ["setBase D null", "deleteRemote D/a.txt"]);
    const after = plan("*.log\n", {
      base: map(bDir("D")),
      local: map(),
      remote: map(rDir("D"), rFile("D/old.log")),
    });
    assert.deepEqual(after.ops, ["setBase D null"]);
  });
  await t.step("a folder on the server holding only ignored files is not created here", () => {
    const r = plan("*.log\n", {
      base: map(),
      local: map(),
      remote: map(rDir("logs"), rDir("logs/old"), rFile("logs/old/a.log")),
    });
    assert.deepEqual(r.ops, []);
  });
});

Deno.test("a path that stops being ignored is merged: a deletion made meanwhile is not sent", async (t) => {
  const before = new IgnoreRules([{ name: ".cloudignore", text: "*.log\nArchive/\n" }]);
  const now = new IgnoreRules([]);
  const unignore = (input: Omit<IgnoreViewInput, "ignores" | "ignoredBefore">) =>
    planWith(applyIgnores({
      ...input,
      ignores: (p, d) => now.ignores(p, d),
      ignoredBefore: (p, d) => before.ignores(p, d),
    }));
  await t.step("edited here meanwhile: the edit is sent as an edit", () => {
    const r = unignore({
      base: map(bFile("x.log")),
      local: map(lNew("x.log")),
      remote: map(rFile("x.log")),
    });
    assert.deepEqual(r.ops, ["upload x.log"]);
    assert.deepEqual(r.forget, []);
  });
  await t.step("deleted here meanwhile (or excluded): it comes back, nothing is deleted", () => {
    const r = unignore({
      base: map(bDir("Archive"), bFile("Archive/a.jpg"), bFile("x.log")),
      local: map(),
      remote: map(rDir("Archive"), rFile("Archive/a.jpg"), rFile("x.log")),
    });
    assert.deepEqual(r.ops, ["mkdirLocal Archive", "download x.log", "download Archive/a.jpg"]);
    assert.deepEqual(r.forget, ["Archive", "Archive/a.jpg", "x.log"]);
  });
  await t.step("deleted on the server meanwhile: the copy here is sent again", () => {
    const r = unignore({ base: map(bFile("x.log")), local: map(lSame("x.log")), remote: map() });
    assert.deepEqual(r.ops, ["upload x.log"]);
  });
  await t.step("without a change of rules, a deletion is a deletion", () => {
    const r = planWith(applyIgnores({
      base: map(bFile("x.txt")),
      local: map(),
      remote: map(rFile("x.txt")),
      ignores: (p, d) => now.ignores(p, d),
    }));
    assert.deepEqual(r.ops, ["deleteRemote x.txt"]);
  });
});

Deno.test("ignoring most of the folder trips no mass-delete guard", () => {
  const base = new Map<string, BaseEntry>();
  const local = new Map<string, LocalEntry>();
  const remote = new Map<string, RemoteEntry>();
  for (let i = 0; i < 500; i++) {
    const p = `cache/f${i}`;
    base.set(p, bFile(p));
    remote.set(p, rFile(p));
  }
  for (const p of ["cache"]) {
    base.set(p, bDir(p));
    remote.set(p, rDir(p));
  }
  for (let i = 0; i < 50; i++) {
    const p = `keep${i}.txt`;
    base.set(p, bFile(p));
    local.set(p, lSame(p));
    remote.set(p, rFile(p));
  }
  // cache/ is now ignored: the scan does not enter it.
  assert.equal(massDeleteCheck(base, local).tripped, true, "without the view it would trip");
  const r = new IgnoreRules([{ name: ".cloudignore", text: "cache/\n" }]);
  const view = applyIgnores({
    base,
    local,
    remote,
    ignores: (p, d) => r.ignores(p, d),
    ignoredHere: ["cache"],
  });
  assert.equal(massDeleteCheck(view.base, view.local).tripped, false);
  assert.deepEqual(reconcile({ ...view, device: "laptop", now: new Date(0) }), []);
});
