/**
 * The durable floor: a copy of a tree that writes every file the way the product must (the rule
 * above all rules: temp file, fsync, rename), with nothing else — no network, no hashing, no
 * metadata. It runs in the bench's own Deno process, so it pays the same runtime's file calls as
 * the product's clients.
 *
 * Each file: open a temp name beside the target, write its bytes, `fdatasync`, close, rename; each
 * directory is fsynced once after its last rename (what makes the renames durable). Files are
 * copied by {@link DURABLE_CONCURRENCY} workers, as a receiving client writes a group of small
 * files at once.
 *
 * `cp -a` and rsync do not fsync, so on a file system where fsync costs milliseconds they are
 * not a floor any design that keeps the rule can reach; this is.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { now } from "./util.ts";
import { fsyncDir } from "../lib/util/atomic.ts";

/** Files copied at once (a receiving client writes a group of small files concurrently). */
export const DURABLE_CONCURRENCY = 16;

/** Copies `src` (a file or a directory tree) to `dst` durably; returns the seconds it took. */
export async function durableCopy(src: string, dst: string): Promise<number> {
  const files: [string, string][] = [];
  const dirs: string[] = [];
  const walk = async (s: string, d: string): Promise<void> => {
    const st = await Deno.stat(s);
    if (st.isFile) {
      files.push([s, d]);
      return;
    }
    dirs.push(d);
    for await (const e of Deno.readDir(s)) await walk(join(s, e.name), join(d, e.name));
  };
  await walk(src, dst);
  const t0 = now();
  await Deno.mkdir(dirname(dst), { recursive: true });
  for (const d of dirs) await Deno.mkdir(d, { recursive: true });
  const buf = new Uint8Array(4 << 20);
  let next = 0;
  const worker = async (mine: Uint8Array): Promise<void> => {
    for (let i = next++; i < files.length; i = next++) {
      const [s, d] = files[i]!;
      await copyOne(s, d, mine);
    }
  };
  const workers = [worker(buf)];
  for (let i = 1; i < DURABLE_CONCURRENCY; i++) workers.push(worker(new Uint8Array(64 << 10)));
  await Promise.all(workers);
  for (const d of [...dirs, dirname(dst)]) await fsyncDir(d);
  return (now() - t0) / 1000;
}

async function copyOne(src: string, dst: string, buf: Uint8Array): Promise<void> {
  const tmp = `${dst}.durable-tmp`;
  const from = await Deno.open(src, { read: true });
  try {
    const to = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
      await to.syncData();
    } finally {
      to.close();
    }
  } finally {
    from.close();
  }
  await Deno.rename(tmp, dst);
}
