/**
 * Tests for pruning partial downloads once everything is in sync: old unused partials go, recent
 * ones (a transfer that may still resume) and other files stay.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { PARTIAL_GRACE_MS, Staging } from "../../lib/client/staging.ts";
import { DenoFs } from "../../lib/client/fs/deno_fs.ts";

Deno.test("Staging.prune", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-partials-" });
  try {
    const now = Date.now();
    const make = async (name: string, ageMs: number) => {
      await Deno.writeTextFile(join(dir, name), "some bytes");
      const when = new Date(now - ageMs);
      await Deno.utime(join(dir, name), when, when);
    };
    await make("partial-old", PARTIAL_GRACE_MS + 60_000);
    await make("partial-recent", 60_000);
    await make("download-old", PARTIAL_GRACE_MS + 60_000); // not a partial: not this function's
    const removed = await new Staging(new DenoFs(dir), "").prune(PARTIAL_GRACE_MS, now);
    const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
    await t.step("an unused partial older than the grace period is deleted", () => {
      assert.equal(removed, 1);
      assert.equal(left.includes("partial-old"), false);
    });
    await t.step("a recent partial (may still resume) is kept", () => {
      assert.equal(left.includes("partial-recent"), true);
    });
    await t.step("files that are not partial downloads are left alone", () => {
      assert.equal(left.includes("download-old"), true);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
