/**
 * A malicious or broken server must not make the client write outside its folder, into
 * `.cloudsync/`, through a symlink, or write content that does not match its hash. Drives one
 * real sync pass (`syncPass`) against a fake server.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { Peer } from "../../lib/protocol/peer.ts";
import { syncPass } from "../../lib/client/engine.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { DenoFs } from "../../lib/client/fs/deno_fs.ts";
import { Staging } from "../../lib/client/staging.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";
import type { RemoteEntry } from "../../lib/core/types.ts";

const enc = new TextEncoder();

/** The real disk under `root`, as the client sees its folder. */
function folder(root: string) {
  const fs = new DenoFs(root, { caseInsensitive: false, windowsNames: false });
  return { fs, staging: new Staging(fs, ".cloudsync/tmp") };
}

function entry(path: string, content: string, version: number, claimed?: string): RemoteEntry {
  const data = enc.encode(content);
  const hash = claimed ?? sha256Hex(data);
  return {
    path,
    kind: "file",
    deleted: false,
    version,
    size: data.length,
    mtime: 1_700_000_000_000,
    exec: false,
    hash,
    chunks: [{ hash, size: data.length }],
    device: "evil",
  };
}

/**
 * A fake server: serves `entries` and the bytes in `blobs` (by hash), accepts nothing else.
 * `beforeChunks` runs before chunks are sent (what a local attacker does meanwhile).
 */
function fakeServer(
  entries: RemoteEntry[],
  blobs: Map<string, Uint8Array>,
  beforeChunks: () => void = () => {},
): Peer {
  const request = (h: Record<string, unknown>) => {
    if (h.t === "changes") {
      return Promise.resolve({
        header: { entries, seq: 100, more: false },
        body: new Uint8Array(),
      });
    }
    if (h.t === "getMany" || h.t === "get") {
      beforeChunks();
      const hashes = (h.hashes as string[] | undefined) ?? [h.hash as string];
      const parts = hashes.map((x) => blobs.get(x) ?? new Uint8Array());
      const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      const chunks = hashes.map((hash, i) => {
        body.set(parts[i]!, off);
        off += parts[i]!.length;
        return { hash, size: parts[i]!.length, z: false, len: parts[i]!.length };
      });
      return Promise.resolve({ header: h.t === "get" ? { z: false } : { chunks }, body });
    }
    return Promise.reject(new Error(`unexpected request ${String(h.t)}`));
  };
  return { request } as unknown as Peer;
}

Deno.test("a hostile server cannot make the client write outside its folder", async (t) => {
  const top = await Deno.makeTempDir({ prefix: "cloudsync-hostile-" });
  const root = join(top, "folder");
  const outside = join(top, "outside");
  await Deno.mkdir(join(root, ".cloudsync", "tmp"), { recursive: true });
  await Deno.mkdir(outside);
  await Deno.writeTextFile(join(root, ".cloudsync", "config.json"), "original");
  await Deno.symlink(outside, join(root, "link"));
  const state = new StateDb(join(root, ".cloudsync"));
  const warnings: string[] = [];
  const blobs = new Map<string, Uint8Array>();
  const evil = [
    entry("../escape.txt", "pwned", 1),
    entry("/tmp/abs.txt", "pwned", 2),
    entry("a/../../x.txt", "pwned", 3),
    entry(".cloudsync/config.json", "pwned", 4),
    entry("link/through-symlink.txt", "pwned", 5),
    entry("liar.txt", "real content", 6, sha256Hex(enc.encode("other content"))),
    entry("fine.txt", "fine", 7),
  ];
  for (const e of evil) {
    blobs.set(
      e.chunks[0]!.hash,
      enc.encode(e.path === "liar.txt" ? "real content" : e.path === "fine.txt" ? "fine" : "pwned"),
    );
  }
  try {
    await syncPass({
      peer: fakeServer(evil, blobs),
      ...folder(root),
      state,
      device: "me",
      stats: newStats(),
      log: () => {},
      warn: (l) => warnings.push(l),
    });
    await t.step(
      "paths that climb out, are absolute or reach .cloudsync are ignored with a warning",
      async () => {
        for (
          const p of ["../escape.txt", "/tmp/abs.txt", "a/../../x.txt", ".cloudsync/config.json"]
        ) {
          assert.ok(
            warnings.some((w) => w.includes(JSON.stringify(p))),
            `no warning for ${p}: ${warnings.join("\n")}`,
          );
        }
        await assert.rejects(Deno.stat(join(top, "escape.txt")), Deno.errors.NotFound);
        assert.equal(await Deno.readTextFile(join(root, ".cloudsync", "config.json")), "original");
      },
    );
    await t.step("nothing is written through a symlinked folder", () => {
      assert.deepEqual([...Deno.readDirSync(outside)], []);
    });
    await t.step("content that does not match its hash is never written", async () => {
      await assert.rejects(Deno.stat(join(root, "liar.txt")), Deno.errors.NotFound);
    });
    await t.step("a well-formed entry from the same server still arrives", async () => {
      assert.equal(await Deno.readTextFile(join(root, "fine.txt")), "fine");
    });
  } finally {
    state.close();
    await Deno.remove(top, { recursive: true });
  }
});

Deno.test("a folder swapped for a symlink while its files download receives nothing", async () => {
  // A local attacker who can write into the folder replaces `d` (checked before the download)
  // by a symlink to a folder outside, while the file's chunks are on their way.
  const top = await Deno.makeTempDir({ prefix: "cloudsync-swap-" });
  const root = join(top, "folder");
  const outside = join(top, "outside");
  await Deno.mkdir(join(root, ".cloudsync", "tmp"), { recursive: true });
  await Deno.mkdir(join(root, "d"));
  await Deno.mkdir(outside);
  const state = new StateDb(join(root, ".cloudsync"));
  const files = [entry("d/small.txt", "small", 1), entry("d/other.txt", "other", 2)];
  const blobs = new Map(
    files.map((e, i) => [e.chunks[0]!.hash, enc.encode(["small", "other"][i]!)]),
  );
  let swapped = false;
  const swap = () => {
    if (swapped) return;
    swapped = true;
    Deno.renameSync(join(root, "d"), join(root, "d-away"));
    Deno.symlinkSync(outside, join(root, "d"));
  };
  try {
    await syncPass({
      peer: fakeServer(files, blobs, swap),
      ...folder(root),
      state,
      device: "me",
      stats: newStats(),
      log: () => {},
      warn: () => {},
    }).catch(() => {}); // the fake server accepts no commit
    assert.ok(swapped, "the download never asked for its chunks");
    assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name), []);
  } finally {
    state.close();
    await Deno.remove(top, { recursive: true });
  }
});
