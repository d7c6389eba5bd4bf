/**
 * The mass-delete guard's timing (`lib/client/mass_delete.ts`), on {@link MemFs} and its clock:
 * a big deletion is judged only once it stopped growing for {@link MASS_DELETE_QUIET_MS}, so a
 * user (or a loaded machine's `rm -r`) still deleting never lets part of it through.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MASS_DELETE_QUIET_MS, massDeleteGuard } from "../../lib/client/mass_delete.ts";
import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import type { BaseEntry, LocalEntry } from "../../lib/core/types.ts";

const FILES = 300;

function file(i: number): BaseEntry {
  const path = `docs/f${String(i).padStart(4, "0")}.txt`;
  return {
    path,
    kind: "file",
    version: i + 1,
    size: 2,
    mtime: 1000,
    exec: false,
    hash: `h${i}`,
    chunks: [],
  };
}

const base = new Map<string, BaseEntry>(Array.from({ length: FILES }, (_, i) => {
  const b = file(i);
  return [b.path, b];
}));

/** The local scan with the first `gone` files of the base missing. */
function scanWithout(gone: number): Map<string, LocalEntry> {
  const local = new Map<string, LocalEntry>();
  let i = 0;
  for (const [path, b] of base) {
    if (i++ < gone) continue;
    local.set(path, {
      path,
      kind: "file",
      size: b.size,
      mtime: b.mtime,
      exec: false,
      hash: b.hash,
    });
  }
  return local;
}

async function withGuard(
  fn: (pass: (gone: number) => number, fs: MemFs, said: string[], rechecks: () => number) => void,
) {
  const dir = await Deno.makeTempDir();
  const state = new StateDb(dir);
  try {
    const fs = new MemFs();
    fs.mkdirSync(".cloudsync/tmp", true);
    const said: string[] = [];
    let rechecks = 0;
    const ctx = {
      fs,
      state,
      log: (l: string) => said.push(l),
      warn: (l: string) => said.push(l),
      recheckSoon: () => rechecks++,
    };
    /** One full pass that finds `gone` files missing: how many deletions it lets through. */
    const pass = (gone: number) => {
      const out = massDeleteGuard(ctx, base, scanWithout(gone), true);
      return [...base.keys()].filter((p) => !out.local.has(p)).length;
    };
    fn(pass, fs, said, () => rechecks);
  } finally {
    state.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a deletion of more than 100 files waits until it stopped growing, then is judged whole", () =>
  withGuard((pass, fs, said, rechecks) => {
    assert.equal(pass(120), 0, "just seen: held back, looked at again");
    assert.equal(rechecks(), 1);
    fs.advance(1000);
    assert.equal(pass(120), 0, "not grown for 1 s: still held");
    fs.advance(1500); // the user deletes more, 2.5 s after the first part
    assert.equal(pass(200), 0, "grown: the wait starts again");
    fs.advance(MASS_DELETE_QUIET_MS - 1);
    assert.equal(pass(200), 0);
    assert.deepEqual(said, [], "nothing is said while it waits");
    fs.advance(1);
    assert.equal(pass(200), 0, "200 of 300 gone: the guard holds all of it back");
    assert.match(said.join("\n"), /Cannot propagate deletions: 200 of 300 synced files vanished/);
  }));

Deno.test("a deletion under half of the files goes through once it stopped growing", () =>
  withGuard((pass, fs, said) => {
    assert.equal(pass(20), 20, "100 files or fewer: at once");
    assert.equal(pass(140), 0, "grew past 100: waits");
    fs.advance(MASS_DELETE_QUIET_MS);
    assert.equal(pass(140), 140, "stable and under half: the deletions are sent");
    assert.deepEqual(said, []);
  }));
