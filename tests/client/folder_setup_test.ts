/**
 * Unit tests for taking the sync folder: the folder lock (a second holder is refused with the
 * first one's PID, a released lock is free again) and the walks for enrolled folders above and
 * below (never through symlinks, bounded in depth).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { FolderInUseError, lockFolder } from "../../lib/client/folder_lock.ts";
import {
  enrolledInside,
  enrolledParent,
  FolderSetupError,
  takeFolder,
} from "../../lib/client/folder_setup.ts";

function enrolledAt(dir: string): void {
  Deno.mkdirSync(join(dir, ".cloudsync"), { recursive: true });
  Deno.writeTextFileSync(join(dir, ".cloudsync", "config.json"), "{}");
}

Deno.test("the folder lock admits one holder and names it", () => {
  const root = Deno.makeTempDirSync({ prefix: "cloudsync-lock-" });
  try {
    Deno.mkdirSync(join(root, ".cloudsync"));
    const first = lockFolder(root);
    assert.throws(
      () => lockFolder(root),
      (e: unknown) => e instanceof FolderInUseError && e.pid === Deno.pid,
    );
    first.release();
    lockFolder(root).release(); // free again
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("enrolled folders are found above and below, never through symlinks", () => {
  const top = Deno.makeTempDirSync({ prefix: "cloudsync-nest-" });
  try {
    const outer = join(top, "outer");
    enrolledAt(outer);
    assert.equal(enrolledParent(join(outer, "a", "b")), outer);
    assert.equal(enrolledParent(join(top, "elsewhere")), null);

    const around = join(top, "around");
    Deno.mkdirSync(join(around, "x"), { recursive: true });
    Deno.symlinkSync(outer, join(around, "x", "link"));
    assert.equal(enrolledInside(around), null, "a symlink to an enrolled folder is not followed");
    enrolledAt(around); // its own .cloudsync does not count
    assert.equal(enrolledInside(around), null);
    const deep = join(around, "x", "1", "2", "3");
    enrolledAt(deep);
    assert.equal(enrolledInside(around), deep);
    assert.equal(enrolledInside(around, 3), null, "deeper than the bound");
  } finally {
    Deno.removeSync(top, { recursive: true });
  }
});

Deno.test("takeFolder refuses a file and undoes what a failed first start made", () => {
  const top = Deno.makeTempDirSync({ prefix: "cloudsync-take-" });
  try {
    const file = join(top, "file");
    Deno.writeTextFileSync(file, "x");
    assert.throws(() => takeFolder(file, { probe: true }), FolderSetupError);
    const fresh = join(top, "new", "folder");
    const taken = takeFolder(fresh, { probe: true });
    assert.equal(taken.createdFolder, true);
    assert.ok(Deno.statSync(join(fresh, ".cloudsync", "tmp")).isDirectory);
    taken.undo();
    assert.throws(() => Deno.statSync(join(top, "new")), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(top, { recursive: true });
  }
});
