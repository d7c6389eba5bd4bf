/**
 * Tests for the folder watcher: changes are reported (debounced) with their paths, the client's
 * own state folder is not (except the device's ignore rules, which ask for a full rescan), and a pause (while the client writes many files itself) ends with a
 * request for a full rescan, so nothing changed during the pause goes unseen.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { FolderWatcher } from "../../lib/client/watcher.ts";
import { createNonUtf8File, waitFor } from "../e2e/harness.ts";

/** A started watcher on a new folder, with the callbacks it made so far. */
function watched(): { root: string; calls: (string[] | null)[]; w: FolderWatcher } {
  const root = Deno.makeTempDirSync({ prefix: "cloudsync-watch-" });
  Deno.mkdirSync(join(root, ".cloudsync"));
  const calls: (string[] | null)[] = [];
  const w = new FolderWatcher(root, (paths) => calls.push(paths), { debounceMs: 20 });
  assert.equal(w.start(), true);
  return { root, calls, w };
}

/** Writes `name` in `root` until a callback names it (a new watcher may miss the first events). */
async function seen(root: string, calls: (string[] | null)[], name: string): Promise<void> {
  const path = join(root, name);
  await waitFor(
    () => {
      Deno.writeTextFileSync(path, String(Date.now()));
      return calls.some((c) => c?.includes(path));
    },
    () => `no callback named ${name}: ${JSON.stringify(calls)}`,
    5_000,
  );
}

Deno.test("FolderWatcher reports changed paths, not its own state folder", async () => {
  const { root, calls, w } = watched();
  try {
    Deno.writeTextFileSync(join(root, ".cloudsync", "state"), "x");
    await seen(root, calls, "a.txt");
    assert.ok(calls.every((c) => c?.every((p) => !p.includes(".cloudsync"))), String(calls));
  } finally {
    w.close();
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("FolderWatcher asks for a full rescan when .cloudsync/ignore changes", async () => {
  const { root, calls, w } = watched();
  try {
    await seen(root, calls, "a.txt"); // the watcher delivers events
    calls.length = 0;
    Deno.writeTextFileSync(join(root, ".cloudsync", "state"), "not the user's");
    await seen(root, calls, "b.txt");
    assert.ok(!calls.includes(null), `rescan for another state file: ${JSON.stringify(calls)}`);
    calls.length = 0;
    // As cloud-client exclude and include write it: a temporary file renamed into place.
    const tmp = join(root, ".cloudsync", "ignore.tmp");
    Deno.writeTextFileSync(tmp, "/Archive\n");
    Deno.renameSync(tmp, join(root, ".cloudsync", "ignore"));
    await waitFor(() => calls.includes(null), () => `no rescan: ${JSON.stringify(calls)}`, 5_000);
  } finally {
    w.close();
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("FolderWatcher pause ends with a full rescan and watching again", async (t) => {
  const { root, calls, w } = watched();
  try {
    await seen(root, calls, "before.txt");
    await t.step("nested pauses: only the last resume restarts", async () => {
      w.pause();
      w.pause();
      calls.length = 0;
      Deno.writeTextFileSync(join(root, "during.txt"), "written while paused");
      w.resume();
      // Still paused: the rescan request must not come yet. Let the debounce pass several times.
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(!calls.includes(null), `rescan asked before the last resume: ${calls}`);
      w.resume();
      await waitFor(() => calls.includes(null), () => `no rescan asked: ${calls}`, 5_000);
    });
    await t.step("events come again after the resume", async () => {
      calls.length = 0;
      await seen(root, calls, "after.txt");
    });
    await t.step("an extra resume is harmless", async () => {
      w.resume();
      calls.length = 0;
      await seen(root, calls, "after2.txt");
      assert.ok(!calls.includes(null), `unexpected rescan: ${calls}`);
    });
  } finally {
    w.close();
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("FolderWatcher closed while paused stays closed", async () => {
  const { root, calls, w } = watched();
  try {
    w.pause();
    w.close();
    w.resume();
    Deno.writeTextFileSync(join(root, "x.txt"), "x");
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(calls, []);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("FolderWatcher survives a non-UTF-8 name and keeps reporting changes", async () => {
  const root = Deno.makeTempDirSync({ prefix: "cloudsync-watch-" });
  const calls: (string[] | null)[] = [];
  const errors: string[] = [];
  const w = new FolderWatcher(root, (paths) => calls.push(paths), {
    debounceMs: 20,
    onError: (m) => errors.push(m),
  });
  assert.equal(w.start(), true);
  try {
    await seen(root, calls, "before.txt");
    for (let round = 0; round < 3; round++) {
      calls.length = 0;
      createNonUtf8File(root);
      // The unreadable event asks for a full rescan (the scan finds what changed)...
      await waitFor(() => calls.includes(null), () => `no rescan asked: ${calls}`, 5_000);
      // ...and later changes are still reported one by one, at once.
      await seen(root, calls, `after-${round}.txt`);
      Deno.removeSync(join(root, `after-${round}.txt`));
    }
    assert.equal(errors.length, 1, `warned once, not per event: ${errors.join("\n")}`);
    assert.match(errors[0]!, /invalid UTF-8/);
  } finally {
    w.close();
    Deno.removeSync(root, { recursive: true });
  }
});
