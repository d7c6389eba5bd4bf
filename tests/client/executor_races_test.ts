/**
 * The user changes something between the scan and the step that acts on it: every step of the
 * local phase re-checks the disk first (`stillAs`, the parents, `inside`), defers instead of
 * overwriting, and the change reaches every device in later passes. Two in-process devices (the
 * real engine on MemFs, the real server); the change is made by MemFs's `before` hook at the
 * n-th look at a path in the pass, which is the step's own check (asserted through the outcome).
 *
 * @module
 */

import assert from "node:assert/strict";
import type { MemOp } from "../../lib/client/fs/mem_fs.ts";
import type { ExecutionReport } from "../../lib/client/executor.ts";
import { type MemClient, withClients } from "../support/mem_client.ts";

/** Runs `change` (as the user) just before the `n`-th `op` on `path` during `c`'s next pass. */
function raceAt(c: MemClient, op: MemOp, path: string, n: number, change: () => void): void {
  let seen = 0;
  c.fs.before = (o, p) => {
    if (o !== op || p !== path || ++seen !== n) return;
    c.fs.before = null;
    change();
  };
}

/** Syncs everyone a few rounds, letting holds and back-offs run out. */
async function settle(...cs: MemClient[]): Promise<void> {
  for (let i = 0; i < 3; i++) {
    for (const c of cs) {
      c.fs.advance(10 * 60_000);
      await c.sync();
    }
  }
}

function contents(c: MemClient): string[] {
  return [...c.files().values()].filter((v) => v.startsWith("file:")).map((v) => v.slice(5))
    .sort();
}

/** Both converged, and `text` is a file's content on both. */
function keptEverywhere(a: MemClient, b: MemClient, text: string): void {
  assert.deepEqual(b.files(), a.files(), "converged");
  assert.ok(contents(a).includes(text), `${JSON.stringify(text)} kept: ${contents(a)}`);
}

/** The pass deferred the step at `path` for `why`. */
function deferred(r: ExecutionReport | null, path: string, why: RegExp): void {
  const o = r?.outcomes.find((o) => o.path === path && o.kind === "deferred");
  assert.ok(o, `${path} deferred: ${JSON.stringify(r?.outcomes)}`);
  assert.match(o.reason ?? "", why);
}

Deno.test("a file edited after the scan is not deleted for a remote deletion", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("f.txt", "v1");
    await a.sync();
    await b.sync();
    a.fs.removeSync("f.txt");
    await a.sync();
    // 1: the scan's stat; 2: the deletion's own check.
    raceAt(b, "read", "f.txt", 2, () => b.fs.writeText("f.txt", "edited on b"));
    deferred(await b.pass(), "f.txt", /changed since it was scanned/);
    assert.equal(b.fs.readText("f.txt"), "edited on b");
    await settle(a, b);
    keptEverywhere(a, b, "edited on b");
  }));

Deno.test("a file edited after the scan keeps its edit when only metadata arrives", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("f.txt", "v1");
    await a.sync();
    await b.sync();
    a.fs.chmodSync("f.txt", 0o755);
    await a.sync();
    raceAt(b, "read", "f.txt", 2, () => b.fs.writeText("f.txt", "edited on b"));
    deferred(await b.pass(), "f.txt", /changed since it was scanned/);
    assert.equal(b.fs.readText("f.txt"), "edited on b");
    await settle(a, b);
    keptEverywhere(a, b, "edited on b");
  }));

Deno.test("an edit landing between the metadata check and the chmod: the base is left alone", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("f.txt", "v1");
    await a.sync();
    await b.sync();
    a.fs.chmodSync("f.txt", 0o700);
    await a.sync();
    const base = b.state.loadBase().get("f.txt");
    raceAt(b, "chmod", "f.txt", 1, () => b.fs.writeText("f.txt", "edited meanwhile"));
    deferred(await b.pass(), "f.txt", /changed since it was scanned/);
    assert.equal(b.fs.readText("f.txt"), "edited meanwhile");
    // The server's permissions were set on the edited file (the RACE), but the base still says
    // "v1": the next scan sees the edit as the change it is.
    assert.equal(b.state.loadBase().get("f.txt")?.hash, base?.hash);
    await settle(a, b);
    keptEverywhere(a, b, "edited meanwhile");
  }));

Deno.test("a conflict copy is not made of a file that changed again after the scan", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("f.txt", "v1");
    await a.sync();
    await b.sync();
    a.fs.writeText("f.txt", "a's edit");
    b.fs.writeText("f.txt", "b's edit");
    await a.sync();
    // The scan reads b's edit (stat, read, stat again); the 4th look is the move aside.
    raceAt(b, "read", "f.txt", 4, () => b.fs.writeText("f.txt", "b's second edit"));
    deferred(await b.pass(), "f.txt", /changed since it was scanned/);
    assert.equal(b.fs.readText("f.txt"), "b's second edit");
    await settle(a, b);
    keptEverywhere(a, b, "b's second edit");
    keptEverywhere(a, b, "a's edit");
  }));

Deno.test("a remote folder does not replace a local file edited after the scan", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("x", "a file");
    await a.sync();
    await b.sync();
    a.fs.removeSync("x");
    a.fs.writeText("x/inside.txt", "now a folder");
    await a.sync();
    raceAt(b, "read", "x", 2, () => b.fs.writeText("x", "edited on b"));
    deferred(await b.pass(), "x", /changed since it was scanned/);
    assert.equal(b.fs.readText("x"), "edited on b");
    await settle(a, b);
    keptEverywhere(a, b, "edited on b");
    keptEverywhere(a, b, "now a folder");
  }));

Deno.test("a file appearing where a remote folder goes: the folder and what is in it wait", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("d/e/f.txt", "deep");
    await a.sync();
    // b's mkdir of d looks at d first: a file of the user's appears there at that moment.
    raceAt(b, "read", "d", 1, () => b.fs.writeText("d", "the user's file"));
    const r = await b.pass();
    deferred(r, "d", /changed since it was scanned/);
    deferred(r, "d/e", /a parent folder is not a plain folder/);
    assert.equal(b.fs.readText("d"), "the user's file");
    await settle(a, b);
    keptEverywhere(a, b, "the user's file");
    keptEverywhere(a, b, "deep");
  }));

Deno.test("an edit that follows a remote move is not moved if it changed again after the scan", () =>
  withClients({}, async ([a, b]) => {
    a.fs.writeText("old.txt", "v1");
    await a.sync();
    await b.sync();
    a.fs.renameSync("old.txt", "new.txt");
    b.fs.writeText("old.txt", "b's edit");
    await a.sync();
    raceAt(b, "read", "old.txt", 4, () => b.fs.writeText("old.txt", "b's later edit"));
    deferred(await b.pass(), "old.txt", /changed since it was scanned/);
    assert.equal(b.fs.readText("old.txt"), "b's later edit");
    await settle(a, b);
    keptEverywhere(a, b, "b's later edit");
  }));
