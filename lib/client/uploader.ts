/**
 * Uploading: makes sure the server holds every chunk of some files. It asks which chunks the
 * server lacks (batched `have`), then reads, compresses and sends only those, small chunks many
 * to a `putMany` (one request and one server transaction per 4 MiB), big ones alone, a few
 * requests in flight, each read straight into a reused batch buffer (no garbage per chunk). The
 * server checks every chunk against its name, so a file changed since the scan is refused there
 * and reported here, never committed.
 *
 * @example
 * ```ts
 * const changed = await uploadChunks(peer, fs, [{ path: "a.bin", chunks }], stats);
 * ```
 *
 * @module
 */

import { type Peer, RemoteError } from "../protocol/peer.ts";
import type { ChunkRef } from "../core/types.ts";
import { MAX_HAVE } from "../protocol/messages.ts";
import { CompressionHint } from "../chunk/compress.ts";
import * as call from "../protocol/calls.ts";
import { pool } from "../util/pool.ts";
import type { LocalFs } from "./fs/local_fs.ts";
import {
  BATCH_BYTES,
  BATCH_CHUNK_MAX,
  BATCH_COUNT,
  readRangeInto,
  type TransferStats,
} from "./transfer.ts";

const spareBuffers: Uint8Array[] = [];

/** A batch-sized buffer from a small free list (uploads reuse them instead of making garbage). */
function acquireBuffer(): Uint8Array {
  return spareBuffers.pop() ?? new Uint8Array(BATCH_BYTES);
}

function releaseBuffer(b: Uint8Array): void {
  if (spareBuffers.length < 8) spareBuffers.push(b);
}

/** A file and its chunk list, for upload. */
export interface UploadSource {
  path: string;
  chunks: ChunkRef[];
}

/**
 * Makes sure the server holds every chunk of `files`. Returns the paths whose content no longer
 * matches the scan (changed while we read them); those must not be committed. Each file counts
 * in `stats.filesDone` as soon as the server holds all of its chunks (unless `countFiles` is
 * false: a retry of files counted before), so the progress line moves as files finish, not only
 * when their commit is answered.
 */
export async function uploadChunks(
  peer: Peer,
  fs: LocalFs,
  files: UploadSource[],
  stats: TransferStats,
  known?: ReadonlySet<string>,
  countFiles = true,
): Promise<Set<string>> {
  const where = new Map<string, { path: string; offset: number; size: number }>();
  for (const f of files) {
    let offset = 0;
    for (const c of f.chunks) {
      if (!where.has(c.hash)) where.set(c.hash, { path: f.path, offset, size: c.size });
      offset += c.size;
    }
  }
  const hashes = known ? [...where.keys()].filter((h) => !known.has(h)) : [...where.keys()];
  const missing: string[] = [];
  const batches: string[][] = [];
  for (let i = 0; i < hashes.length; i += MAX_HAVE) batches.push(hashes.slice(i, i + MAX_HAVE));
  await pool(batches, 4, async (batch) => {
    missing.push(...await call.have(peer, batch));
  });
  const changed = new Set<string>();
  let missingBytes = 0;
  for (const h of missing) missingBytes += where.get(h)!.size;
  let allBytes = 0;
  for (const f of files) for (const c of f.chunks) allBytes += c.size;
  stats.bytesDone += allBytes - missingBytes;
  const finished = countFiles ? fileCounter(files, missing, stats) : () => {};
  // Small chunks travel in batches (one request, one server transaction each); big ones alone.
  const jobs: string[][] = [];
  let batch: string[] = [];
  let batchBytes = 0;
  for (const h of missing) {
    const size = where.get(h)!.size;
    if (size > BATCH_CHUNK_MAX) {
      jobs.push([h]);
      continue;
    }
    if (batch.length >= BATCH_COUNT || batchBytes + size > BATCH_BYTES) {
      jobs.push(batch);
      batch = [];
      batchBytes = 0;
    }
    batch.push(h);
    batchBytes += size;
  }
  if (batch.length > 0) jobs.push(batch);
  const zstd = peer.caps.has("zstd");
  // A file's chunks after one that did not compress are sent raw without trying (re-probed).
  const hint = new CompressionHint();
  await pool(jobs, 3, async (job) => {
    // Each chunk is read straight into one reused batch buffer (no garbage per chunk), then
    // compressed chunks are compacted in place: a compressed chunk is never longer than raw.
    const raw = job.map((hash) => where.get(hash)!);
    const total = raw.reduce((n, r) => n + r.size, 0);
    const body = total <= BATCH_BYTES ? acquireBuffer() : new Uint8Array(total);
    try {
      const offsets: number[] = [];
      let at = 0;
      for (const r of raw) {
        offsets.push(at);
        at += r.size;
      }
      // Neighbouring chunks of one file (a big file's batch) are read with one open and one read.
      const runs: { path: string; offset: number; at: number; size: number; first: number }[] = [];
      raw.forEach((r, i) => {
        const last = runs[runs.length - 1];
        if (last && last.path === r.path && last.offset + last.size === r.offset) {
          last.size += r.size;
        } else {
          runs.push({ path: r.path, offset: r.offset, at: offsets[i]!, size: r.size, first: i });
        }
      });
      const runOk = await Promise.all(
        runs.map((run) =>
          readRangeInto(fs, run.path, run.offset, body.subarray(run.at, run.at + run.size))
        ),
      );
      const ok: boolean[] = [];
      runs.forEach((run, k) => {
        const end = runs[k + 1]?.first ?? raw.length;
        for (let i = run.first; i < end; i++) ok.push(runOk[k]!);
      });
      const parts: { hash: string; size: number; z: boolean; len: number }[] = [];
      let w = 0;
      job.forEach((hash, i) => {
        const r = raw[i]!;
        // The server checks every chunk against its name (a file changed since the scan is
        // refused as "bad-chunk" below), so the data is not hashed a second time here.
        if (!ok[i]) {
          changed.add(r.path);
          return;
        }
        const data = body.subarray(offsets[i]!, offsets[i]! + r.size);
        const z = zstd ? hint.compress(r.path, data) : { data, compressed: false };
        if (z.compressed) body.set(z.data, w);
        else if (w !== offsets[i]) body.copyWithin(w, offsets[i]!, offsets[i]! + r.size);
        parts.push({ hash, size: r.size, z: z.compressed, len: z.data.length });
        w += z.data.length;
      });
      if (parts.length === 0) return;
      const sent = body.subarray(0, w);
      try {
        if (parts.length === 1 && job.length === 1) {
          const p = parts[0]!;
          await peer.request({ t: "put", hash: p.hash, size: p.size, z: p.z }, sent);
        } else {
          await peer.request({ t: "putMany", chunks: parts }, sent);
        }
      } catch (e) {
        if (!(e instanceof RemoteError && e.code === "bad-chunk")) throw e;
        // Some file changed since the scan: retry all of this batch's files on the next pass.
        for (const p of parts) changed.add(where.get(p.hash)!.path);
        return;
      }
      for (const p of parts) {
        stats.bytesUp += p.len;
        stats.bytesDone += p.size;
        finished(p.hash);
      }
    } finally {
      if (body.length === BATCH_BYTES) releaseBuffer(body);
    }
  });

  // A chunk shared by several files was read from one of them only: if that one changed, the
  // others are still fine, but simplest and safe is to let them all be retried next pass.
  if (changed.size > 0) {
    for (const f of files) {
      if (f.chunks.some((c) => changed.has(where.get(c.hash)!.path))) changed.add(f.path);
    }
  }
  return changed;
}

/**
 * Counts in `stats.filesDone` each file of `files` whose chunks are all on the server: at once
 * for those that miss none, and for the others as the returned function is told, chunk by chunk,
 * that the last one they missed is stored.
 */
function fileCounter(
  files: UploadSource[],
  missing: readonly string[],
  stats: TransferStats,
): (hash: string) => void {
  const lacking = new Set(missing);
  const done = () => {
    stats.filesDone++;
    stats.uploadsDone++;
  };
  const left: number[] = [];
  const users = new Map<string, number[]>();
  files.forEach((f, i) => {
    const need = new Set(f.chunks.map((c) => c.hash).filter((h) => lacking.has(h)));
    left.push(need.size);
    if (need.size === 0) done();
    for (const h of need) {
      const list = users.get(h);
      if (list) list.push(i);
      else users.set(h, [i]);
    }
  });
  return (hash) => {
    const list = users.get(hash);
    if (!list) return;
    users.delete(hash);
    for (const i of list) if (--left[i]! === 0) done();
  };
}
