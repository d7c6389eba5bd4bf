/**
 * Tests for `cloud-client status` without a running client, on a real `state.db`: what a client
 * that was killed left in the database's write-ahead log counts (the conflict copies, the files
 * still to come), with the permissions of `deno task client` (no `file:` URIs), and the command
 * creates nothing in `.cloudsync/` when it is not the folder's owner.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readView } from "../../lib/client/status_command.ts";
import { ensureStateDir, stateDir } from "../../lib/client/config.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import type { BaseEntry, RemoteEntry } from "../../lib/core/types.ts";

const COPY = "c (conflict from B 2026-12-01 120000).txt";

function file(path: string, version: number): BaseEntry & RemoteEntry {
  return {
    path,
    kind: "file",
    deleted: false,
    version,
    size: 1,
    mtime: 0,
    exec: false,
    hash: "00",
    chunks: [],
    device: "B",
  };
}

Deno.test("status without a client reads what a killed client left in state.db's WAL", async () => {
  const root = await Deno.makeTempDir({ prefix: "cloudsync-status-" });
  ensureStateDir(root);
  // Left open, as by a client killed with SIGKILL: its commits are only in state.db-wal.
  const state = new StateDb(stateDir(root));
  try {
    state.setRemoteMany([file(COPY, 3), file("later.txt", 4)]);
    state.setBase([[COPY, file(COPY, 3)]]);
    await Deno.writeTextFile(join(root, COPY), "x");
    const before = new Set([...Deno.readDirSync(stateDir(root))].map((e) => e.name));
    assert.ok(before.has("state.db-wal"), "the rows are in the WAL");
    const v = readView(root);
    assert.equal(v.state, "stopped");
    assert.deepEqual(v.conflicts, [COPY]);
    assert.equal(v.pending.files, 1, "later.txt is still to come");
    const after = new Set([...Deno.readDirSync(stateDir(root))].map((e) => e.name));
    assert.deepEqual(after, before, "nothing created");
  } finally {
    state.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("status without a client on a cleanly closed state.db; not opened as another user", async () => {
  const root = await Deno.makeTempDir({ prefix: "cloudsync-status-" });
  ensureStateDir(root);
  const names = () => [...Deno.readDirSync(stateDir(root))].map((e) => e.name).sort();
  try {
    let state = new StateDb(stateDir(root));
    state.setRemoteMany([file(COPY, 3)]);
    state.setBase([[COPY, file(COPY, 3)]]);
    state.close();
    await Deno.writeTextFile(join(root, COPY), "x");
    const v = readView(root);
    assert.deepEqual(v.conflicts, [COPY]);
    assert.equal(v.pending.files, 0);
    // The next client opens and writes it as before.
    state = new StateDb(stateDir(root));
    state.setBase([[COPY, null]]);
    state.close();
    if (Deno.build.os === "windows" || Deno.uid() !== 0) return;
    // Owned by someone else (root looking at a user's folder): not opened, so no -wal or -shm
    // of root's is left for the owner's client to trip on.
    for (const n of names()) {
      if (n.startsWith("state.db-")) Deno.removeSync(join(stateDir(root), n));
    }
    Deno.chownSync(join(stateDir(root), "state.db"), 65534, 65534);
    const before = names();
    assert.equal(readView(root).state, "stopped");
    assert.deepEqual(names(), before, "nothing created");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
