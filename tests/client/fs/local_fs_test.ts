/**
 * Every {@link LocalFs} passes the same conformance suite (`local_fs_suite.ts`): the real disk
 * (`DenoFs`, in a temporary folder) and the in-memory double (`MemFs`, with Linux and with
 * Windows name rules). Then the helpers that need no filesystem.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DenoFs } from "../../../lib/client/fs/deno_fs.ts";
import { MemFs } from "../../../lib/client/fs/mem_fs.ts";
import { isDiskFullError } from "../../../lib/client/fs/local_fs.ts";
import type { PlatformTraits } from "../../../lib/core/local_names.ts";
import { type LocalFsFixture, localFsSuite } from "./local_fs_suite.ts";

async function denoFixture(): Promise<LocalFsFixture> {
  const top = await Deno.makeTempDir({ prefix: "cloudsync-localfs-" });
  const root = join(top, "folder");
  const outside = join(top, "outside");
  await Deno.mkdir(root);
  await Deno.mkdir(outside);
  return {
    fs: new DenoFs(root),
    symlinkOut: (path) => Deno.symlink(outside, join(root, path)),
    fifo: async (path) => {
      const r = await new Deno.Command("mkfifo", { args: [join(root, path)] }).output();
      if (!r.success) throw new Error(`mkfifo failed: ${new TextDecoder().decode(r.stderr)}`);
    },
    close: () => Deno.remove(top, { recursive: true }),
  };
}

function memFixture(platform: PlatformTraits): Promise<LocalFsFixture> {
  const fs = new MemFs(platform);
  return Promise.resolve({
    fs,
    symlinkOut: (path) => Promise.resolve(fs.addOther(path, "symlink")),
    fifo: (path) => Promise.resolve(fs.addOther(path, "fifo")),
    close: () => Promise.resolve(),
  });
}

Deno.test({
  name: "LocalFs conformance: DenoFs (the real disk)",
  ignore: Deno.build.os === "windows", // symlinks need privileges, FIFOs do not exist there
  fn: (t) => localFsSuite(t, denoFixture),
});

Deno.test("LocalFs conformance: MemFs with Linux name rules", (t) =>
  localFsSuite(t, () => memFixture({ caseInsensitive: false, windowsNames: false })));

Deno.test("LocalFs conformance: MemFs with Windows name rules (case-insensitive)", (t) =>
  localFsSuite(t, () => memFixture({ caseInsensitive: true, windowsNames: true })));

Deno.test("isDiskFullError: the forms a full disk takes, and nothing else", () => {
  for (
    const e of [
      new Error("No space left on device (os error 28)"),
      new Error("write failed: ENOSPC"),
      "No space left on device",
      new Deno.errors.NotFound("No space left on device (os error 28): x"),
    ]
  ) assert.equal(isDiskFullError(e), true, String(e));
  for (
    const e of [
      new Error("Permission denied (os error 13)"),
      new Error("Input/output error (os error 5)"),
      new Error("Disk quota exceeded (os error 122)"),
      null,
      undefined,
    ]
  ) assert.equal(isDiskFullError(e), false, String(e));
});
