/**
 * What the server instances of one deployment share besides the stores: push between instances
 * (a commit, an announced upload, its chunks arriving), the TLS certificate every instance
 * presents, and the counters of throttles that must hold across instances. One server on SQLite
 * has none (`null`: its hub and memory are the whole deployment); on PostgreSQL it is
 * `pg_cluster.ts` (LISTEN/NOTIFY, with a poll while the channel is down).
 *
 * @module
 */

import type { LimitCounters } from "./shared_limits.ts";

/** What other instances publish, delivered to this one. */
export interface ClusterEvents {
  /** The journal of `account` reached `seq` (a commit on another instance, or found by a poll). */
  changed(account: string, seq: number): void;
  /** A device of `account` on another instance announced a big upload (`announce`). */
  incoming(account: string, entry: Record<string, unknown>): void;
  /** Chunks of `account` that were announced are stored now (on another instance). */
  stored(account: string, hashes: string[]): void;
  /** Announced chunks of `account` will not come (the uploading device withdrew or left). */
  withdrawn(account: string, hashes: string[]): void;
}

/** The certificate and key every instance of the deployment presents. */
export interface SharedCertificate {
  cert: string;
  key: string;
  /** True when this instance created it (and stored it for the others). */
  created: boolean;
}

/** How the channel between instances is doing, for logs and tests. */
export interface ClusterStatus {
  /** The notification channel is up (else changes are found by polling). */
  listening: boolean;
  /** Times the channel was set up again after it dropped. */
  reconnects: number;
  /** Polls run while the channel was down or just after it came back. */
  polls: number;
  /** The database's process id of the listening connection (to find it in the database). */
  listenerPid: number | null;
}

/** The shared part of a deployment of several instances. */
export interface Cluster {
  /** Throttle and budget counters shared by every instance (`shared_limits.ts`). */
  readonly counters: LimitCounters;
  /**
   * The deployment's self-signed certificate: the stored one, or else `make()`'s, stored so that
   * every other instance loads it (if two instances start at once, both end up with the one
   * stored first).
   */
  certificate(make: () => Promise<{ cert: string; key: string }>): Promise<SharedCertificate>;
  /**
   * Starts delivering what the other instances publish. `watched` gives the accounts with devices
   * watching on this instance and the last sequence number they were told, for the poll that
   * stands in while the channel is down.
   */
  start(events: ClusterEvents, watched: () => ReadonlyMap<string, number>): Promise<void>;
  /** Tells the other instances about an announced upload (their devices may stream it). */
  announce(account: string, entry: Record<string, unknown>): Promise<void>;
  /** Tells the other instances that announced chunks of `account` are stored. */
  stored(account: string, hashes: readonly string[]): Promise<void>;
  /** Tells the other instances that announced chunks of `account` will not come. */
  withdrawn(account: string, hashes: readonly string[]): Promise<void>;
  readonly status: ClusterStatus;
  /** Stops listening (the stores stay open: their owner closes them). */
  close(): Promise<void>;
}
