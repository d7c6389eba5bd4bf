/**
 * The server's storage interfaces, split by role and asynchronous, so that one server process
 * with SQLite and local pack files (the default) and many instances on PostgreSQL and S3 run the
 * same sync logic:
 *
 * - {@link AccountStore}: accounts and devices;
 * - {@link JournalStore}: each account's journal of entries and its kept versions;
 * - {@link ChunkIndex}: which chunks each account has (sizes, compression, age);
 * - {@link MetaStore}: the three together, in one database (`meta_store.ts`: SQLite;
 *   `pg_meta.ts`: PostgreSQL);
 * - {@link BlobStore}: the chunk bytes (`blob_store.ts`: local; `packed_store.ts` over
 *   `s3_objects.ts`: S3).
 *
 * The commit rule is not here: it is `planCommit` in `lib/core/commit_plan.ts`, which every
 * backend applies in its transaction. `tests/server/meta_suite.ts` and
 * `tests/server/blob_suite.ts` are the contract every backend passes.
 *
 * Batch methods (`chunks`, `missingChunks`, `addChunks`, `getMany`) exist so that a batch of
 * requests costs one call (one query or one transaction), never one per item.
 *
 * @module
 */

import type { CommitItem, CommitResult } from "../core/commit_plan.ts";
import type { PointInTime, RestoreItem, VersionInfo } from "../core/restore_plan.ts";
import type { RemoteEntry } from "../core/types.ts";

export type { CommitItem, CommitResult, PointInTime, RestoreItem, VersionInfo };

/** A page of a paged query: its rows, and whether more follow. */
export interface Page<T> {
  rows: T[];
  more: boolean;
}

/**
 * History of a path and everything below it ("" the whole account), newest first: the current
 * entries and the kept versions, paged by version.
 */
export interface HistoryQuery {
  path: string;
  /** Only versions older than this one (the previous page's last). */
  before?: number;
  /** Only versions made at or after this instant (ms). */
  since?: number;
  /** At most this many rows. */
  limit: number;
}

/** A deleted path whose last live version is still kept (`history --deleted`). */
export interface DeletedInfo extends VersionInfo {
  /** The last live version, what a restore brings back. */
  kept: VersionInfo;
}

/** The state of a path and everything below it at one instant, paged by path. */
export interface ListAtQuery {
  path: string;
  /** The instant (ms). */
  at: number;
  /** Only paths after this one (the previous page's last). */
  after?: string;
  limit: number;
}

/** A kept version, by path and version. */
export interface VersionRef {
  path: string;
  version: number;
}

/** What retention needs to know of a kept version. */
export interface OldVersion extends VersionRef {
  made: number;
  replaced: number;
}

/** A device record. */
export interface DeviceRecord {
  id: string;
  account: string;
  name: string;
  tokenHash: string;
  revoked: boolean;
}

/** One line of `cloud-server accounts`. */
export interface AccountSummary {
  id: string;
  created: number;
  devices: number;
  lastSeen: number | null;
  files: number;
  bytes: number;
  seq: number;
  /** Kept (replaced or deleted) file versions, and their size. */
  versions: number;
  keptBytes: number;
  /** What the account stores, as stored (compressed, each chunk once, old versions included). */
  storedBytes: number;
}

/** One line of `cloud-server devices ACCOUNT`. */
export interface DeviceSummary {
  id: string;
  name: string;
  created: number;
  lastSeen: number | null;
  revoked: boolean;
}

/** What an account holds: what `cloud-server delete-account` deletes. */
export interface AccountFootprint {
  devices: number;
  /** Live files. */
  files: number;
  /** Kept (replaced or deleted) versions. */
  versions: number;
  /** Indexed chunks, and their stored bytes. */
  chunks: number;
  storedBytes: number;
}

/** What the chunk index records of a stored chunk. */
export interface ChunkInfo {
  /** Plain (uncompressed) size. */
  size: number;
  /** Size as stored (maybe zstd-compressed). */
  stored: number;
  compressed: boolean;
}

/** A chunk to index. */
export interface NewChunk extends ChunkInfo {
  hash: string;
}

/** Accounts and their devices. */
export interface AccountStore {
  /** Creates an account with this serial hash; returns its id. */
  createAccount(serialHash: string): Promise<string>;
  /** Replaces the account's serial hash; false if there is no such account. */
  setSerialHash(account: string, serialHash: string): Promise<boolean>;
  accountBySerialHash(serialHash: string): Promise<string | null>;
  /** Whether the account exists. */
  hasAccount(account: string): Promise<boolean>;
  /** Every account id. */
  accountIds(): Promise<string[]>;
  /** Every account with its counts, oldest first. */
  accounts(): Promise<AccountSummary[]>;
  /** Adds a device to `account`; returns its id. */
  addDevice(account: string, name: string, tokenHash: string): Promise<string>;
  device(id: string): Promise<DeviceRecord | null>;
  /** Records that the device was seen now. */
  touchDevice(id: string): Promise<void>;
  /** The devices of `account` (revoked ones included), oldest first. */
  devices(account: string): Promise<DeviceSummary[]>;
  /** Marks a device of `account` revoked; false if `account` has no such device. */
  revokeDevice(account: string, deviceId: string): Promise<boolean>;
  /** Renames a device of `account` (`setDeviceName`); false if `account` has no such device. */
  renameDevice(account: string, deviceId: string, name: string): Promise<boolean>;
  /** True if the device is revoked or unknown (checked on every request of a session). */
  deviceRevoked(deviceId: string): Promise<boolean>;
  /** Records a one-time invite code (its hash) that lets one new account register. */
  addInvite(codeHash: string): Promise<void>;
  /** Uses up the invite code with this hash; false if there is none (or it was used). */
  useInvite(codeHash: string): Promise<boolean>;
}

/** Each account's journal of entries (tombstones included) and the versions kept. */
export interface JournalStore {
  /** The account's sequence number: the highest version it wrote (0: none). */
  seq(account: string): Promise<number>;
  /** Entries with version > since, oldest first, at most `limit`. */
  changes(account: string, since: number, limit: number): Promise<RemoteEntry[]>;
  /**
   * Applies the items in order, in one transaction, by `planCommit`: a change is accepted only
   * against the current version, also when other server processes commit to the same account
   * at the same time.
   */
  commit(account: string, device: string, items: CommitItem[]): Promise<CommitResult[]>;
  /** Forgets kept versions replaced before `cutoff` (ms); returns how many. */
  pruneVersions(cutoff: number): Promise<number>;
  /**
   * History (see {@link HistoryQuery}): current entries and kept versions of the path and below,
   * newest first; each version once.
   */
  history(account: string, q: HistoryQuery): Promise<Page<VersionInfo>>;
  /**
   * Deleted paths at or below `q.path` whose last live version is still kept, most recently
   * deleted first (paged by the deletion's version).
   */
  deletedPaths(account: string, q: HistoryQuery): Promise<Page<DeletedInfo>>;
  /**
   * The state at `q.at` of the path and everything below it, in path order: per path the version
   * that was current then (a deletion too), with its chunks and the path's current state. Paths
   * that did not exist then, or whose version of then is no longer kept, are absent.
   */
  listAt(account: string, q: ListAtQuery): Promise<Page<PointInTime>>;
  /** When the oldest kept live version of the path or below was made (ms); null: none. */
  oldestKept(account: string, path: string): Promise<number | null>;
  /**
   * Makes kept versions current again, in order and in one transaction, as a commit of their
   * content (no chunk is sent: they are stored), each checked against the current version by
   * `planCommit` (`baseVersion`). A version no longer kept is refused as `missing`, a deletion
   * as `invalid`.
   */
  restore(account: string, device: string, items: RestoreItem[]): Promise<CommitResult[]>;
  /** Kept versions of `account` replaced before `cutoff`, in path then version order (paged). */
  oldVersions(account: string, cutoff: number): AsyncIterable<OldVersion>;
  /** Forgets these kept versions (retention); returns how many were there. */
  forgetVersions(account: string, refs: readonly VersionRef[]): Promise<number>;
  /**
   * Bytes of metadata `account` makes the server keep: its journal entries and kept versions,
   * each counted as `rowBytes` in session.ts does (path, chunk list, a fixed 200). Counted by
   * the quota.
   */
  metadataBytes(account: string): Promise<number>;
  /** Every entry of `account`, live and tombstones, in path order (streamed, not buffered). */
  verifyEntries(account: string): AsyncIterable<RemoteEntry>;
  /** Every kept version of `account`, in path then version order (streamed). */
  verifyKeptVersions(account: string): AsyncIterable<RemoteEntry>;
}

/** Which chunks each account has. */
export interface ChunkIndex {
  /** Those of `hashes` the account does not have, in order. */
  missingChunks(account: string, hashes: string[]): Promise<string[]>;
  /** A stored chunk's record, or null. */
  chunk(account: string, hash: string): Promise<ChunkInfo | null>;
  /** The records of `hashes`, in order (null where missing). */
  chunks(account: string, hashes: readonly string[]): Promise<(ChunkInfo | null)[]>;
  /** Indexes stored chunks in one transaction; indexing one again marks it as stored now. */
  addChunks(account: string, items: readonly NewChunk[]): Promise<void>;
  /** Sum of the stored bytes of the account's chunks. */
  storedBytes(account: string): Promise<number>;
  /**
   * Garbage collection, step 1: removes from the index every chunk indexed before `cutoff` (ms)
   * that no entry and no kept version references, and returns their hashes; never one that a
   * commit references, also one that runs meanwhile (PostgreSQL: one transaction holding the
   * account's lock; SQLite: small steps, each page re-checked and forgotten in one synchronous
   * step). A commit after this finds them missing.
   */
  forgetUnreferenced(account: string, cutoff: number): Promise<string[]>;
}

/** Everything the server keeps besides chunk bytes, in one database. */
export interface MetaStore extends AccountStore, JournalStore, ChunkIndex {
  /** What `account` holds in all three roles; null if there is no such account. */
  accountFootprint(account: string): Promise<AccountFootprint | null>;
  /**
   * Deletes `account` and all its rows (devices, entries, kept versions, chunk index) in one
   * transaction; false if there is no such account. The chunk bytes are the blob store's
   * ({@link BlobStore.deleteAccount}).
   */
  deleteAccount(account: string): Promise<boolean>;
  close(): Promise<void>;
}

/** One chunk to read: `into` has exactly the stored length the index recorded. */
export interface ChunkRead {
  hash: string;
  into: Uint8Array;
}

/** Storage of chunk bytes, addressed by account and hash. */
export interface BlobStore {
  /** Stores `data` under `hash` for `account` (durable when resolved; storing again is harmless). */
  put(account: string, hash: string, data: Uint8Array): Promise<void>;
  /** Stores several chunks; all are durable when the promise resolves. */
  putMany(account: string, items: { hash: string; data: Uint8Array }[]): Promise<void>;
  /**
   * Returns the stored bytes, or null if missing. With `into` (a buffer of exactly the stored
   * length, as the index recorded it) the bytes are read into it and it is returned, which
   * saves a copy on the hot path; a stored chunk of another length is treated as missing.
   */
  get(account: string, hash: string, into?: Uint8Array): Promise<Uint8Array | null>;
  /** Reads each chunk into its buffer; true where found (see {@link get} with `into`). */
  getMany(account: string, reads: readonly ChunkRead[]): Promise<boolean[]>;
  /**
   * Garbage collection, step 2: deletes those of `hashes` last stored before `before` (ms); a
   * chunk stored (or stored again) since is kept. Returns the hashes deleted.
   */
  sweep(account: string, hashes: readonly string[], before: number): Promise<string[]>;
  /**
   * Deletes every chunk of `account` (`cloud-server delete-account`), the index of where they
   * sit first, then the bytes; idempotent (a run cut short is finished by the next).
   */
  deleteAccount(account: string): Promise<void>;
  close(): Promise<void>;
}
