/**
 * Where a chunk comes from when a file is built: bytes fetched ahead in a batch, a file on this
 * device that holds it (a moved, copied or previous version), or the server. Whatever the source,
 * one verification path: the bytes must hash to the chunk's name and have its size, or they are
 * not used. Replies are hostile until checked: a `getMany` reply may only carry chunks that were
 * asked for, each once and at most one chunk long, filling exactly the body it came with.
 *
 * @example
 * ```ts
 * const data = await fetchChunk(ctx, { hash, size }); // verified, from wherever it was cheapest
 * ```
 *
 * @module
 */

import type { Peer } from "../protocol/peer.ts";
import type { ChunkRef } from "../core/types.ts";
import { decompressChunk } from "../chunk/compress.ts";
import { sha256Hex } from "../chunk/hash.ts";
import { debug } from "../util/debug.ts";
import { MAX_CHUNK } from "../protocol/messages.ts";
import type { LocalFs } from "./fs/local_fs.ts";
import { type LocalChunkIndex, readRange, type TransferStats } from "./transfer.ts";

/** A chunk as received: maybe compressed, not yet verified. */
export interface RawChunk {
  z: boolean;
  data: Uint8Array;
}

/**
 * Where each chunk of a file being rebuilt comes from: bytes in hand (verified), the same offset
 * of the version being replaced (`inPlace`: already in the partial file, which started as a copy
 * of it), or an offset of that old version (`old`: copied from it).
 */
export type ChunkOrigin =
  | { from: "bytes"; data: Uint8Array }
  | { from: "inPlace" }
  | { from: "old"; offset: number };

/** What fetching chunks needs. */
export interface FetchContext {
  fs: LocalFs;
  peer: Peer;
  /** Chunks already on this device, to copy instead of download. */
  local: LocalChunkIndex;
  stats: TransferStats;
  /** Ask the server to wait for chunks another device is still uploading (prefetch). */
  wait?: boolean;
  /** Chunks fetched ahead in batches. */
  prefetched?: Map<string, RawChunk>;
}

/** The chunk's bytes, decompressed if needed, checked against its size and hash. */
export function verified(c: ChunkRef, z: boolean, raw: Uint8Array): Uint8Array {
  const data = z ? decompressChunk(raw, c.size) : raw;
  if (data.length !== c.size || sha256Hex(data) !== c.hash) {
    throw new Error(
      `Cannot download chunk ${c.hash.slice(0, 12)}: its content does not match its hash`,
    );
  }
  return data;
}

/** One chunk, verified, from the cheapest source: fetched ahead, on this device, or the server. */
export async function fetchChunk(ctx: FetchContext, c: ChunkRef): Promise<Uint8Array> {
  const pre = ctx.prefetched?.get(c.hash);
  if (pre) return verified(c, pre.z, pre.data);
  const src = ctx.local.get(c.hash);
  if (src) {
    const data = await readRange(ctx.fs, src.path, src.offset, c.size);
    if (data && sha256Hex(data) === c.hash) {
      ctx.stats.chunksReused++;
      return data;
    }
  }
  const r = await ctx.peer.request({ t: "get", hash: c.hash, ...(ctx.wait ? { wait: true } : {}) });
  ctx.stats.bytesDown += r.body.length;
  if (r.body.length > MAX_CHUNK) {
    throw new Error("Cannot download chunks: the server sent more than one chunk's worth");
  }
  return verified(c, r.header.z === true, r.body);
}

/** The reply body each {@link prefetchChunks} result is a view of (see {@link releasePrefetched}). */
const replyBodies = new WeakMap<Map<string, RawChunk>, Uint8Array>();

/**
 * Gives the reply body behind `chunks` (a {@link prefetchChunks} result) back to the connection's
 * pool, so that the next batch reuses its pages: only once every chunk of it has been written
 * (or dropped) and nothing holds a view of it.
 */
export function releasePrefetched(ctx: FetchContext, chunks: Map<string, RawChunk> | undefined) {
  const body = chunks ? replyBodies.get(chunks) : undefined;
  if (!body) return;
  replyBodies.delete(chunks!);
  chunks!.clear();
  ctx.peer.release(body);
}

/**
 * Fetches many small chunks in one `getMany` round trip. The reply must list only chunks that
 * were asked for, each at most once, laid out within its body; anything else is refused.
 */
export async function prefetchChunks(
  ctx: FetchContext,
  hashes: string[],
): Promise<Map<string, RawChunk>> {
  const out = new Map<string, RawChunk>();
  if (hashes.length === 0) return out;
  const t0 = performance.now();
  const r = await ctx.peer.request({ t: "getMany", hashes, ...(ctx.wait ? { wait: true } : {}) });
  debug(() =>
    `getMany ${hashes.length}: ${r.body.length} B in ${(performance.now() - t0).toFixed(0)} ms`
  );
  const malformed = () => new Error("Cannot download chunks: the server sent a malformed reply");
  const list = r.header.chunks;
  if (!Array.isArray(list) || list.length > hashes.length) throw malformed();
  const asked = new Set(hashes);
  let off = 0;
  for (const v of list) {
    const o = v as { hash?: unknown; z?: unknown; len?: unknown };
    if (
      typeof o.hash !== "string" || !asked.has(o.hash) || out.has(o.hash) ||
      typeof o.len !== "number" || !Number.isSafeInteger(o.len) || o.len < 0 ||
      o.len > MAX_CHUNK || off + o.len > r.body.length
    ) throw malformed();
    out.set(o.hash, { z: o.z === true, data: r.body.subarray(off, off + o.len) });
    off += o.len;
  }
  if (off !== r.body.length) throw malformed();
  ctx.stats.bytesDown += r.body.length;
  replyBodies.set(out, r.body);
  return out;
}
