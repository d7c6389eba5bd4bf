/**
 * End to end: two running devices that save the same file at (nearly) the same moment both keep
 * their save. Whatever the order in which the two uploads reach the server, every saved version
 * ends up in some file on every device: one under the name, the other as a conflict copy. Both
 * clients run with a long period, so only the mechanism under test (a refused upload rescans its
 * path before anything touches it) can save the day, not a later full pass.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { hashFile } from "../../lib/chunk/fastcdc.ts";
import { ServerProc, startClient, tempDir, tree, waitConverged, waitFor } from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Every file's content hash under `root`. */
async function contents(root: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const item of (await tree(root)).values()) if (item.sha) out.add(item.sha);
  return out;
}

/** The content id the server records for `data` (the hash of its chunk list). */
async function contentId(data: Uint8Array): Promise<string> {
  await using tmp = await tempDir();
  await Deno.writeFile(join(tmp.path, "f"), data);
  return (await hashFile(join(tmp.path, "f"))).hash;
}

/** Content ids the server holds: current entries and kept versions. */
function onServer(dataDir: string): Set<string> {
  const db = new DatabaseSync(join(dataDir, "meta.db"), { readOnly: true });
  try {
    const rows = db.prepare("SELECT hash FROM entries UNION SELECT hash FROM versions").all();
    return new Set(rows.map((r) => String((r as { hash: string }).hash)));
  } finally {
    db.close();
  }
}

/** For failure messages: the server's versions of notes.txt (version, size, hash prefix). */
function serverLog(dataDir: string): string {
  const db = new DatabaseSync(join(dataDir, "meta.db"), { readOnly: true });
  try {
    const q = `SELECT version, size, substr(hash, 1, 8) AS h, 'kept' AS t FROM versions
      WHERE path = 'notes.txt' UNION SELECT version, size, substr(hash, 1, 8), 'current'
      FROM entries WHERE path = 'notes.txt' ORDER BY version`;
    return JSON.stringify(db.prepare(q).all());
  } finally {
    db.close();
  }
}

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** Saves `first` into `firstPath`, then after `gapMs` `second` into `secondPath`, from a shell. */
async function saveBoth(
  firstPath: string,
  first: Uint8Array,
  secondPath: string,
  second: Uint8Array,
  gapMs: number,
): Promise<void> {
  await using tmp = await tempDir();
  await Deno.writeFile(join(tmp.path, "1"), first);
  await Deno.writeFile(join(tmp.path, "2"), second);
  // `cat x > file` truncates the file and writes it in place, as editors and shells do.
  const script = `cat "$1" > "$2" & sleep ${gapMs / 1000}; cat "$3" > "$4"; wait`;
  const out = await new Deno.Command("sh", {
    args: ["-c", script, "sh", join(tmp.path, "1"), firstPath, join(tmp.path, "2"), secondPath],
  }).output();
  if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
}

Deno.test(
  "two devices saving the same file at once both keep their save, round after round",
  opts,
  async () => {
    await using tmp = await tempDir();
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    await Deno.mkdir(a);
    await Deno.writeTextFile(join(a, "notes.txt"), "first version\n");
    const server = await ServerProc.start(join(tmp.path, "data"));
    const env = { CLOUDSYNC_DEBUG: "1" };
    const ca = startClient("A", server.port, a, { env, seconds: 60 });
    const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
    await ca.waitForLine(/^Synced: 1 sent/);
    const cb = startClient("B", server.port, b, { serial, env, seconds: 60 });
    const procs = [server, ca, cb];
    const enc = new TextEncoder();
    try {
      await waitConverged([a, b], 30_000, procs);
      // Small saves with no gap and small gaps, each device first in turn; then a big save on
      // one device with a small one on the other while the big upload runs.
      const rounds: { gap: number; big?: boolean }[] = [
        { gap: 0 },
        { gap: 0 },
        { gap: 0 },
        { gap: 0 },
        { gap: 50 },
        { gap: 100 },
        { gap: 20 },
        { gap: 0 },
        { gap: 100, big: true },
        { gap: 400, big: true },
      ];
      for (let i = 0; i < rounds.length; i++) {
        const { gap, big } = rounds[i]!;
        const fromA = big ? random(24 * 1024 * 1024) : enc.encode(`saved on A, round ${i}\n`);
        const fromB = enc.encode(`saved on B, round ${i}\n`);
        const [pa, pb] = [join(a, "notes.txt"), join(b, "notes.txt")];
        if (i % 2 === 0 || big) await saveBoth(pa, fromA, pb, fromB, gap);
        else await saveBoth(pb, fromB, pa, fromA, gap);
        // Each save survives: in a file on both devices (a conflict copy when the saves crossed),
        // or, when one device received the other's save before saving over it (a later edit,
        // not a conflict), among the server's kept versions.
        const want = [sha(fromA), sha(fromB)];
        const ids = [await contentId(fromA), await contentId(fromB)];
        await waitFor(
          async () => {
            const [ta, tb] = [await contents(a), await contents(b)];
            const kept = onServer(join(tmp.path, "data"));
            return want.every((h, k) => (ta.has(h) && tb.has(h)) || kept.has(ids[k]!));
          },
          async () =>
            `round ${i}: A has ${[...(await tree(a)).keys()]}, B has ${[
              ...(await tree(b)).keys(),
            ]}; A's save on A: ${(await contents(a)).has(want[0]!)}, on B: ${
              (await contents(b)).has(want[0]!)
            }; B's save on A: ${(await contents(a)).has(want[1]!)}, on B: ${
              (await contents(b)).has(want[1]!)
            }; server: ${serverLog(join(tmp.path, "data"))}\n${
              procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n")
            }`,
          30_000,
        );
        await waitConverged([a, b], 30_000, procs);
      }
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);
