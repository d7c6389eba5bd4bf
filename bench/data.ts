/**
 * Workload data and the "does B have it, byte for byte?" check.
 *
 * Data are deterministic pseudo-random bytes (AES-256-CTR keystream of zeros, key = sha256(seed)),
 * like ../shared/bench-peers/make-data.sh. Generation also computes the SHA-256 of each file and of
 * the big file after the 1 MiB in-place edit, so no timed phase has to hash the source.
 *
 * @module
 */

import { createCipheriv, createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { ctimes, DeadlineError, now, sha256File, sleep, statKey } from "./util.ts";

/** One file B must end up with. */
export interface Entry {
  /** Path relative to the synced folder, with `/`. */
  rel: string;
  size: number;
  sha256: string;
}

/** A deterministic keystream. */
export class Prng {
  readonly #cipher;
  readonly #zeros: Uint8Array;
  constructor(seed: string, chunk = 4 << 20) {
    const key = createHash("sha256").update(seed).digest();
    this.#cipher = createCipheriv("aes-256-ctr", key, new Uint8Array(16));
    this.#zeros = new Uint8Array(chunk);
  }
  /** The next `n` bytes (n <= chunk size). */
  next(n: number): Uint8Array {
    return this.#cipher.update(n === this.#zeros.length ? this.#zeros : this.#zeros.subarray(0, n));
  }
}

/** The 1 MiB in-place edit: `bytes` written at `offset`. */
export interface Patch {
  offset: number;
  bytes: Uint8Array;
}

/** The edit for a file of `size` bytes: 1 MiB (or less for tiny files) centred in the middle. */
export function makePatch(size: number, seed: string): Patch {
  const len = Math.min(1 << 20, size);
  const offset = Math.max(0, Math.floor(size / 2) - (len >> 1));
  return { offset, bytes: new Prng(seed, len).next(len) };
}

/**
 * Writes `size` pseudo-random bytes to `path`; returns the SHA-256 of the file and of the file
 * with `patch` applied.
 */
export async function makeBig(
  path: string,
  size: number,
  seed: string,
  patch: Patch,
): Promise<{ sha256: string; patchedSha256: string }> {
  const chunk = 4 << 20;
  const rng = new Prng(seed, chunk);
  const h = createHash("sha256");
  const hp = createHash("sha256");
  const scratch = new Uint8Array(chunk);
  const pEnd = patch.offset + patch.bytes.length;
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (let pos = 0; pos < size;) {
      const n = Math.min(chunk, size - pos);
      const block = rng.next(n);
      let off = 0;
      while (off < n) off += await f.write(off === 0 ? block : block.subarray(off));
      h.update(block);
      const lo = Math.max(pos, patch.offset);
      const hi = Math.min(pos + n, pEnd);
      if (lo < hi) {
        const view = scratch.subarray(0, n);
        view.set(block);
        view.set(patch.bytes.subarray(lo - patch.offset, hi - patch.offset), lo - pos);
        hp.update(view);
      } else {
        hp.update(block);
      }
      pos += n;
    }
  } finally {
    f.close();
  }
  return { sha256: h.digest("hex"), patchedSha256: hp.digest("hex") };
}

/** `files` files of `size` bytes in `dirs` directories `dNNN/fNNNNN` under `root`. */
export async function makeSmall(
  root: string,
  prefix: string,
  files: number,
  dirs: number,
  size: number,
  seed: string,
): Promise<Entry[]> {
  const rng = new Prng(seed, size);
  const per = Math.ceil(files / dirs);
  const out: Entry[] = [];
  for (let d = 0; d < dirs; d++) await Deno.mkdir(join(root, dirName(d)), { recursive: true });
  for (let i = 0; i < files; i++) {
    const rel = `${dirName(Math.floor(i / per))}/f${String(i).padStart(5, "0")}`;
    const data = rng.next(size);
    await Deno.writeFile(join(root, rel), data);
    out.push({
      rel: `${prefix}/${rel}`,
      size,
      sha256: createHash("sha256").update(data).digest("hex"),
    });
  }
  return out;
}

const dirName = (d: number): string => `d${String(d).padStart(3, "0")}`;

/** Applies `patch` in place: open without truncate, seek, write, close. */
export async function applyPatch(path: string, patch: Patch): Promise<void> {
  const f = await Deno.open(path, { write: true, truncate: false, create: false });
  try {
    await f.seek(patch.offset, Deno.SeekMode.Start);
    let off = 0;
    while (off < patch.bytes.length) off += await f.write(patch.bytes.subarray(off));
  } finally {
    f.close();
  }
}

/** Options of {@link waitForTree}. */
export interface WaitOptions {
  /** Paths (relative) that must not exist any more. */
  absent?: string[];
  /** Stat keys known to hold old content (not worth hashing). */
  staleKeys?: Set<string>;
  /** Absolute deadline on the {@link now} clock. */
  deadline: number;
  /** Pause between polling passes (ms). */
  pollMs?: number;
  /** Called every pass; throw from it to abort (e.g. a child died). */
  check?: () => void;
}

/**
 * Polls `root` until every entry exists with its size and SHA-256 and every `absent` path is gone.
 * Sizes are compared first; a file is hashed only once its size is right and its stat key has not
 * been hashed before. Returns the time from which B provably had everything, in epoch
 * milliseconds: per file, the change time (ctime, from {@link ctimes}) of the version that was
 * verified (the product's rename into place sets it; a later write or chmod would only move it
 * later), or where find is unavailable the time of the poll that first saw that version; for
 * `absent` paths, the time of the first poll that found them gone. A file whose key changes again
 * is hashed again. Neither the hashing nor the polling interval is charged to the product, so
 * the polling of many files can be slow and cheap: on two cores, listing 100 directories every
 * 100 ms took CPU from the product being measured. Callers take t0 from the same clock
 * (`ctimes(placed, true)`).
 */
export async function waitForTree(
  root: string,
  entries: Entry[],
  opts: WaitOptions,
): Promise<number> {
  const buf = new Uint8Array(1 << 20);
  const pollMs = opts.pollMs ?? 10;
  const stale = new Set(opts.staleKeys ?? []);
  const byDir = new Map<string, Entry[]>();
  for (const e of entries) {
    const d = dirname(e.rel);
    const list = byDir.get(d);
    if (list) list.push(e);
    else byDir.set(d, [e]);
  }
  /** rel -> key and time it was first seen with the right size (candidate, not yet hashed). */
  const seen = new Map<string, { key: string; t: number }>();
  /** rel -> verified key and its first-seen time. */
  const good = new Map<string, { key: string; t: number }>();
  let absentAt = opts.absent && opts.absent.length > 0 ? -1 : 0;

  for (;;) {
    opts.check?.();
    if (now() > opts.deadline) {
      throw new DeadlineError(
        `B has ${good.size}/${entries.length} files verified` +
          (absentAt < 0 ? ", old paths still present" : "") + " at the deadline",
      );
    }
    // 1. sizes: list each directory that still has unverified files, stat what is there
    for (const [dir, list] of byDir) {
      if (list.every((e) => good.has(e.rel) || seen.has(e.rel))) continue;
      let names: Set<string>;
      try {
        names = new Set<string>();
        for await (const de of Deno.readDir(join(root, dir))) names.add(de.name);
      } catch {
        continue;
      }
      for (const e of list) {
        if (good.has(e.rel) || seen.has(e.rel) || !names.has(basename(e.rel))) continue;
        const t = Date.now();
        const st = await statKey(join(root, e.rel));
        if (!st || st.size !== e.size || stale.has(st.key)) continue;
        seen.set(e.rel, { key: st.key, t });
      }
    }
    // 2. absent paths
    if (absentAt < 0) {
      const t = Date.now();
      let gone = true;
      for (const rel of opts.absent ?? []) {
        if (await statKey(join(root, rel))) gone = false;
      }
      if (gone) absentAt = t;
    }
    // 3. once every file has a size-right candidate, hash the candidates
    if (entries.every((e) => good.has(e.rel) || seen.has(e.rel)) && absentAt >= 0) {
      for (const e of entries) {
        const c = seen.get(e.rel);
        if (!c || good.has(e.rel)) continue;
        seen.delete(e.rel);
        const path = join(root, e.rel);
        let sum: string;
        try {
          sum = await sha256File(path, buf);
        } catch {
          continue;
        }
        const after = await statKey(path);
        if (!after || after.key !== c.key) continue; // changed while hashing: look again
        if (sum === e.sha256) good.set(e.rel, c);
        else stale.add(c.key);
      }
      if (good.size === entries.length) {
        // 4. nothing moved since it was verified? Then the kernel's change times say when.
        const changed = await ctimes(root);
        let t1 = absentAt;
        let stable = true;
        for (const e of entries) {
          const g = good.get(e.rel)!;
          const st = await statKey(join(root, e.rel));
          if (!st || st.key !== g.key) {
            good.delete(e.rel);
            stable = false;
          } else t1 = Math.max(t1, changed?.get(e.rel) ?? g.t);
        }
        if (stable) return t1;
      }
    }
    await sleep(pollMs);
  }
}

/** SHA-256 check of a whole tree (untimed verification of the floors). */
export async function verifyTree(root: string, entries: Entry[]): Promise<string | null> {
  const buf = new Uint8Array(1 << 20);
  for (const e of entries) {
    const path = join(root, e.rel);
    const st = await statKey(path);
    if (!st) return `${e.rel} missing`;
    if (st.size !== e.size) return `${e.rel} has ${st.size} bytes, expected ${e.size}`;
    if ((await sha256File(path, buf)) !== e.sha256) return `${e.rel} content differs`;
  }
  return null;
}
