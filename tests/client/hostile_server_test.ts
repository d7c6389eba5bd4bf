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
import { pullChanges, syncPass } from "../../lib/client/engine.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { prefetchChunks } from "../../lib/client/chunk_source.ts";
import zlib from "node:zlib";
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
 * `beforeChunks` runs before chunks are sent (what a local attacker does meanwhile); `z`: the
 * bytes are zstd and flagged so (size taken from the entries, as a hostile server would).
 */
function fakeServer(
  entries: RemoteEntry[],
  blobs: Map<string, Uint8Array>,
  beforeChunks: () => void = () => {},
  z = false,
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
        const zz = z && hash !== undefined && parts[i]!.length > 100;
        return { hash, size: parts[i]!.length, z: zz, len: parts[i]!.length };
      });
      const zOne = z && (parts[0]?.length ?? 0) > 100;
      return Promise.resolve({ header: h.t === "get" ? { z: zOne } : { chunks }, body });
    }
    return Promise.reject(new Error(`unexpected request ${String(h.t)}`));
  };
  return { request, release() {} } as unknown as Peer;
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

Deno.test("a hostile server's impossible chunks are refused before anything is allocated", async () => {
  const top = await Deno.makeTempDir({ prefix: "cloudsync-hostile-" });
  const root = join(top, "folder");
  await Deno.mkdir(join(root, ".cloudsync", "tmp"), { recursive: true });
  const state = new StateDb(join(root, ".cloudsync"));
  const warnings: string[] = [];
  const blobs = new Map<string, Uint8Array>();
  const huge = sha256Hex(enc.encode("huge"));
  // A 1-byte entry whose one chunk claims 1.5 GiB (zstd of zeros is tiny on the wire).
  const bomb: RemoteEntry = {
    ...entry("bomb.bin", "x", 1),
    chunks: [{ hash: huge, size: 1536 * 1024 * 1024 }],
  };
  blobs.set(huge, new Uint8Array(zlib.zstdCompressSync(new Uint8Array(1024 * 1024))));
  // Chunk sizes that do not add up to the entry's size.
  const liar = entry("sum.txt", "abc", 2);
  const fine = entry("fine.txt", "fine", 3);
  blobs.set(liar.chunks[0]!.hash, enc.encode("abc"));
  blobs.set(fine.chunks[0]!.hash, enc.encode("fine"));
  const liarEntry = { ...liar, size: 10 };
  try {
    await syncPass({
      peer: fakeServer([bomb, liarEntry, fine], blobs, () => {}, true),
      ...folder(root),
      state,
      device: "me",
      stats: newStats(),
      log: () => {},
      warn: (l) => warnings.push(l),
    });
    await assert.rejects(Deno.stat(join(root, "bomb.bin")), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(join(root, "sum.txt")), Deno.errors.NotFound);
    assert.equal(await Deno.readTextFile(join(root, "fine.txt")), "fine");
    assert.ok(
      warnings.some((w) => /chunk of \d+ bytes is not possible/.test(w)),
      warnings.join("\n"),
    );
    assert.ok(warnings.some((w) => /do not add up/.test(w)), warnings.join("\n"));
  } finally {
    state.close();
    await Deno.remove(top, { recursive: true });
  }
});

Deno.test("a getMany reply with chunks nobody asked for is refused", async () => {
  const a = enc.encode("asked");
  const b = enc.encode("never asked");
  const peer = {
    request: () =>
      Promise.resolve({
        header: {
          chunks: [
            { hash: sha256Hex(a), size: a.length, z: false, len: a.length },
            { hash: sha256Hex(b), size: b.length, z: false, len: b.length },
          ],
        },
        body: new Uint8Array([...a, ...b]),
      }),
    release() {},
  } as unknown as Peer;
  const ctx = {
    peer,
    fs: new DenoFs("/nonexistent"),
    local: new Map(),
    stats: newStats(),
  };
  await assert.rejects(prefetchChunks(ctx, [sha256Hex(a)]), /malformed reply/);
});

Deno.test("a changes reply larger than asked, or one that never advances, is refused", async () => {
  const top = await Deno.makeTempDir({ prefix: "cloudsync-hostile-" });
  const state = new StateDb(top);
  try {
    const ctxWith = (header: Record<string, unknown>) => {
      let asked = 0;
      const peer = {
        request: () => {
          if (++asked > 5) throw new Error("asked again and again");
          return Promise.resolve({ header, body: new Uint8Array() });
        },
        release() {},
      } as unknown as Peer;
      return {
        peer,
        ...folder(top),
        state,
        device: "me",
        stats: newStats(),
        log: () => {},
        warn: () => {},
      };
    };
    const e = entry("a.txt", "a", 1);
    // 2,001 entries for a limit of 2,000.
    await assert.rejects(
      pullChanges(ctxWith({ entries: Array(2001).fill(e), seq: 5000, more: false })),
      /malformed reply/,
    );
    // "more" at the same position, forever.
    await assert.rejects(
      pullChanges(ctxWith({ entries: [e], seq: 0, more: true })),
      /malformed reply/,
    );
    // A well-formed reply is applied.
    assert.equal(await pullChanges(ctxWith({ entries: [e], seq: 1, more: false })), 1);
  } finally {
    state.close();
    await Deno.remove(top, { recursive: true });
  }
});
