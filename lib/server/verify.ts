/**
 * `cloud-server verify`: an offline consistency check of the server's stores. Per account it checks
 * that every chunk a live entry or a kept version references is in the chunk index and in the blob
 * store with bytes that decompress to the indexed size and hash to the chunk's name (one chunk in
 * memory at a time); that every live file's chunk sizes add up to its size; that the journal is
 * consistent (entry versions unique and at most the account's sequence number); that every live
 * entry's parents are live directories; and that every stored path is a valid wire path.
 *
 * Nothing is written or repaired: each problem is reported as one line naming the account and the
 * path or chunk.
 *
 * @example
 * ```ts
 * const r = await verify(new SqliteMetaStore(dir), new FsBlobStore(dir), {});
 * for (const p of r.problems) console.log(p);
 * ```
 *
 * @module
 */

import type { BlobStore, MetaStore } from "./stores.ts";
import type { RemoteEntry } from "../core/types.ts";
import { checkWirePath, parentPaths } from "../core/paths.ts";
import { decompressChunk } from "../chunk/compress.ts";
import { isSha256Hex, sha256Hex } from "../chunk/hash.ts";

/** Options of {@link verify}. */
export interface VerifyOptions {
  /** Check only this account (default: every account). */
  account?: string;
}

/** What {@link verify} found: problems (one line each; empty when clean) and what it checked. */
export interface VerifyReport {
  problems: string[];
  accounts: number;
  entries: number;
  chunks: number;
}

/** A chunk reference seen in the metadata: the size it was referenced with and one user. */
interface ChunkUse {
  size: number;
  where: string;
}

/** Checks the stores (read-only) and returns every problem found. */
export async function verify(
  meta: MetaStore,
  blobs: BlobStore,
  opts: VerifyOptions,
): Promise<VerifyReport> {
  const report: VerifyReport = { problems: [], accounts: 0, entries: 0, chunks: 0 };
  const ids = await meta.accountIds();
  let accounts = ids;
  if (opts.account !== undefined) {
    if (!ids.includes(opts.account)) {
      report.problems.push(`account ${opts.account}: no such account`);
      return report;
    }
    accounts = [opts.account];
  }
  for (const account of accounts) {
    await verifyAccount(meta, blobs, account, report);
    report.accounts++;
  }
  return report;
}

async function verifyAccount(
  meta: MetaStore,
  blobs: BlobStore,
  account: string,
  report: VerifyReport,
): Promise<void> {
  const problem = (what: string) => report.problems.push(`account ${account}: ${what}`);
  const seq = await meta.seq(account);
  const uses = new Map<string, ChunkUse>();
  const liveDirs = new Set<string>();

  const checkChunks = (e: RemoteEntry, label: string) => {
    let total = 0;
    for (const c of e.chunks) {
      total += c.size;
      if (!isSha256Hex(c.hash)) {
        problem(`${label}: chunk reference ${JSON.stringify(c.hash)} is not a SHA-256`);
        continue;
      }
      const seen = uses.get(c.hash);
      if (!seen) uses.set(c.hash, { size: c.size, where: label });
      else if (seen.size !== c.size) {
        problem(
          `chunk ${c.hash}: ${label} says ${c.size} bytes, ${seen.where} says ${seen.size} bytes`,
        );
      }
    }
    if (total !== e.size) {
      problem(`${label}: chunk sizes add up to ${total} bytes, the entry says ${e.size}`);
    }
  };

  // Pass 1: entries (journal, paths, chunk references); collects the live directories.
  const versions = new Set<number>();
  for await (const e of meta.verifyEntries(account)) {
    report.entries++;
    const label = `path ${JSON.stringify(e.path)}`;
    const bad = checkWirePath(e.path);
    if (bad) problem(`${label}: ${bad}`);
    if (versions.has(e.version)) problem(`${label}: version ${e.version} is used twice`);
    versions.add(e.version);
    if (e.version < 1 || e.version > seq) {
      problem(`${label}: version ${e.version} is outside the journal (seq ${seq})`);
    }
    if (e.deleted) continue;
    if (e.kind === "dir") liveDirs.add(e.path);
    else checkChunks(e, label);
  }

  // Pass 2: every live entry's parents must be live directories.
  for await (const e of meta.verifyEntries(account)) {
    if (e.deleted) continue;
    for (const parent of parentPaths(e.path)) {
      if (!liveDirs.has(parent)) {
        problem(
          `path ${JSON.stringify(e.path)}: parent ${
            JSON.stringify(parent)
          } is not a live directory`,
        );
        break;
      }
    }
  }

  // Kept versions: their content must still be there to be restored.
  for await (const v of meta.verifyKeptVersions(account)) {
    const label = `kept version ${v.version} of ${JSON.stringify(v.path)}`;
    const bad = checkWirePath(v.path);
    if (bad) problem(`${label}: ${bad}`);
    if (v.version < 1 || v.version > seq) {
      problem(`${label}: version ${v.version} is outside the journal (seq ${seq})`);
    }
    if (!v.deleted && v.kind === "file") checkChunks(v, label);
  }

  // Chunks, one at a time.
  for (const [hash, use] of uses) {
    report.chunks++;
    const label = `chunk ${hash} (used by ${use.where})`;
    const info = await meta.chunk(account, hash);
    if (!info) {
      problem(`${label}: missing from the chunk index`);
      continue;
    }
    if (info.size !== use.size) {
      problem(`${label}: indexed as ${info.size} bytes, referenced as ${use.size}`);
    }
    let stored: Uint8Array | null;
    try {
      stored = await blobs.get(account, hash);
    } catch (e) {
      problem(`${label}: cannot read from the blob store: ${(e as Error).message}`);
      continue;
    }
    if (!stored) {
      problem(`${label}: missing from the blob store`);
      continue;
    }
    let plain: Uint8Array;
    try {
      plain = info.compressed ? decompressChunk(stored, info.size) : stored;
    } catch (e) {
      problem(`${label}: ${(e as Error).message}`);
      continue;
    }
    if (plain.length !== info.size) {
      problem(`${label}: stored ${plain.length} bytes, indexed as ${info.size}`);
    } else if (sha256Hex(plain) !== hash) {
      problem(`${label}: content does not match its hash (corrupted)`);
    }
  }
}
