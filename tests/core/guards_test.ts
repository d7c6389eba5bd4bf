import assert from "node:assert/strict";
import { massDeleteCheck, splitConfirmed, withVanishedKept } from "../../lib/core/guards.ts";
import type { BaseEntry, LocalEntry } from "../../lib/core/types.ts";

function base(n: number): Map<string, BaseEntry> {
  const m = new Map<string, BaseEntry>();
  for (let i = 0; i < n; i++) {
    const path = `f${i}`;
    m.set(path, {
      path,
      kind: "file",
      version: i + 1,
      size: 1,
      mtime: 5,
      exec: false,
      hash: "h",
      chunks: [],
    });
  }
  return m;
}

function localWithout(b: Map<string, BaseEntry>, vanish: number): Map<string, LocalEntry> {
  const m = new Map<string, LocalEntry>();
  let i = 0;
  for (const [path, e] of b) {
    if (i++ < vanish) continue;
    m.set(path, { path, kind: e.kind, size: e.size, mtime: e.mtime, exec: e.exec });
  }
  return m;
}

Deno.test("mass-delete guard", async (t) => {
  const rows: [string, number, number, boolean][] = [
    ["deleting a few files does not trip it", 300, 10, false],
    ["deleting 101 of 300 files (under half) does not trip it", 300, 101, false],
    ["deleting 151 of 300 files trips it", 300, 151, true],
    ["deleting everything of 100 files (not more than 100) does not trip it", 100, 100, false],
    ["deleting everything of 101 files trips it", 101, 101, true],
  ];
  for (const [name, total, vanish, tripped] of rows) {
    await t.step(name, () => {
      const b = base(total);
      const r = massDeleteCheck(b, localWithout(b, vanish));
      assert.equal(r.tripped, tripped);
      assert.equal(r.vanished.length, vanish);
      assert.equal(r.total, total);
    });
  }
  await t.step("held-back files look unchanged, so nothing is deleted", () => {
    const b = base(200);
    const l = localWithout(b, 150);
    const kept = withVanishedKept(b, l, massDeleteCheck(b, l).vanished);
    assert.equal(kept.size, 200);
    assert.deepEqual(kept.get("f0"), { path: "f0", kind: "file", size: 1, mtime: 5, exec: false });
  });
});

Deno.test("mass-delete guard: a renamed folder is a move, not a mass deletion", async (t) => {
  const b = base(300);
  // Every file is gone from its path and back under renamed/ (the scan knows its content).
  const moved = new Map<string, LocalEntry>();
  let i = 0;
  for (const e of b.values()) {
    const path = `renamed/${e.path}`;
    moved.set(path, {
      path,
      kind: "file",
      size: e.size,
      mtime: e.mtime,
      exec: false,
      hash: e.hash,
    });
    if (++i >= 250) break;
  }
  await t.step("moved files neither count nor are held back", () => {
    const r = massDeleteCheck(b, moved);
    assert.equal(r.moved, 250);
    assert.equal(r.vanishedFiles, 50);
    assert.equal(r.vanished.length, 50);
    assert.equal(r.tripped, false);
  });
  await t.step("content not seen again still counts as vanished", () => {
    const other = new Map(
      [...moved].map(([p, l]) => [p, { ...l, hash: "something else" }] as const),
    );
    const r = massDeleteCheck(b, other);
    assert.equal(r.moved, 0);
    assert.equal(r.tripped, true);
  });
  await t.step("a file already in the base does not count as a move target", () => {
    const l = localWithout(b, 200); // f200..f299 still there with their hashes unknown
    for (const e of [...b.values()].slice(200)) l.set(e.path, { ...l.get(e.path)!, hash: e.hash });
    const r = massDeleteCheck(b, l);
    assert.equal(r.moved, 0);
    assert.equal(r.tripped, true);
  });
});

Deno.test("mass-delete guard: a one-time confirmation lets exactly its files through", async (t) => {
  const b = base(300);
  const local = localWithout(b, 200); // f0..f199 vanished
  const check = massDeleteCheck(b, local);
  assert.equal(check.tripped, true);
  const at = (paths: string[]) => new Map(paths.map((p) => [p, b.get(p)!.version]));
  const names = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => `f${from + i}`);
  const rows: [string, Map<string, number>, number, number][] = [
    ["nothing confirmed: everything held", new Map(), 0, 200],
    ["all confirmed: all go, nothing held", at(names(0, 200)), 200, 0],
    ["half confirmed: the rest (100, not over 100) no longer trips it", at(names(0, 100)), 100, 0],
    ["a few confirmed: the rest still trips it", at(names(0, 20)), 20, 180],
    [
      "confirmed at another version: not these files",
      new Map(names(0, 200).map((p) => [p, 999])),
      0,
      200,
    ],
    ["confirmed files that did not vanish: nothing more goes", at(names(200, 300)), 0, 200],
  ];
  for (const [name, confirmed, release, hold] of rows) {
    await t.step(name, () => {
      const r = splitConfirmed(check, b, confirmed);
      assert.equal(r.release.length, release);
      assert.equal(r.hold.length, hold);
      for (const p of r.release) assert.ok(confirmed.has(p) && !local.has(p));
    });
  }
});
