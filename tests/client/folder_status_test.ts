/**
 * FolderStatus: what a pass that ended with held items reports. A file held because it is being
 * written here is an upload to come, not a download (found when the quiet time before reading a
 * file went to 50 ms: `status` showed a 24 MiB file caught mid-write as "1 to receive").
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { FolderStatus } from "../../lib/client/folder_status.ts";
import { Attention } from "../../lib/core/attention.ts";

Deno.test("a file held while it is written is a pending upload, not a download", () => {
  const root = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(join(root, ".cloudsync"));
    const status = new FolderStatus(root, {
      host: "127.0.0.1",
      port: 1,
      account: "acct",
      deviceId: "dev",
      token: "t",
      deviceName: "A",
    });
    const attention = new Attention();
    const now = Date.now();
    attention.unstable("big.bin", now + 60_000, "it is being written", now);
    status.passEnded({
      tally: null,
      full: false,
      startedAt: now,
      attention,
      synced: () => [],
      holdingDeletions: false,
    });
    const r = status.record;
    assert.equal(r.state, "syncing");
    assert.deepEqual(r.pending, { files: 1, bytes: 0, uploads: 1 });
    status.stop();
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
