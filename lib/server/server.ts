/**
 * The sync server: accepts connections, runs one {@link Session} per connection over a
 * {@link Peer}, and shares the stores and the push hub between them.
 *
 * @example
 * ```ts
 * const server = await startServer({ hostname: "127.0.0.1", port: 0, dataDir: "./cloud-data" });
 * console.log(server.port);
 * await server.close();
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { Peer } from "../protocol/peer.ts";
import { Incoming } from "./incoming.ts";
import { type OpenStores, openStores } from "./open_stores.ts";
import type { BlobStore, MetaStore } from "./stores.ts";
import { Hub, type ServerContext, Session } from "./session.ts";
import {
  AccountBudgets,
  addressGroup,
  ConnectionCounter,
  ConnGuard,
  DEFAULT_LIMITS,
  defaultMaxConnections,
  describeSize,
  LogLimiter,
  QuotaTracker,
  RateLimiter,
  type ServerLimits,
  SignInThrottle,
} from "./limits.ts";
import { ChunkVerifier } from "./chunk_check.ts";
import { BodyPool } from "../protocol/body_pool.ts";
import { escapeForLog } from "../util/log_text.ts";
import { CHUNK_GRACE_MS, collect, collectChunks, DEFAULT_KEEP_DAYS } from "./retention.ts";
import { type FrontConn, TlsFront } from "../transport/tls_front.ts";
import type { RetentionPolicy } from "../core/retention_policy.ts";
import {
  createSelfSigned,
  loadCertificateFiles,
  newCertificate,
  pemFingerprint,
  readCertificate,
  saveCertificate,
  type ServerCertificate,
} from "../transport/tls_cert.ts";
import type { Cluster } from "./cluster.ts";
import type { ClusterOptions } from "./pg_cluster.ts";
import { SharedRateLimiter, SharedSignInThrottle } from "./shared_limits.ts";

/** Options of {@link startServer}. */
export interface ServerOptions {
  hostname: string;
  port: number;
  dataDir: string;
  /** Days to keep overwritten and deleted versions (default 30). */
  keepDays?: number;
  /** Thinning after `keepDays` (`--keep-daily`, `--keep-weekly`, `--keep-monthly`; default none). */
  keep?: { daily?: number; weekly?: number; monthly?: number };
  /** `--cert`/`--key`: an operator's certificate (chain) and key; default: self-signed in DATA/tls/. */
  certFile?: string;
  keyFile?: string;
  /** `--meta`: where metadata lives (`postgres://…`); default: SQLite in `dataDir`. */
  meta?: string;
  /** `--blobs`: where chunks live (`s3://…`); default: local packs in `dataDir`. */
  blobs?: string;
  /** Limits and throttles; anything not given keeps its {@link DEFAULT_LIMITS} value. */
  limits?: Partial<ServerLimits>;
  /** Tuning of the channel between instances on `--meta` (tests shorten it). */
  cluster?: ClusterOptions;
  log?: (line: string) => void;
}

/** A running server. */
export interface RunningServer {
  hostname: string;
  port: number;
  /** Where metadata and chunks are kept, for the start-up lines (no passwords). */
  stores: { meta: string; blobs: string };
  /**
   * The TLS certificate in use (fingerprint, file, whether this start created it); `shared`: the
   * self-signed certificate of every instance on the `--meta` database, kept there.
   */
  certificate: Pick<ServerCertificate, "fingerprint" | "certFile" | "created"> & {
    shared: boolean;
  };
  /** The channel to the other instances (null: one instance on SQLite). */
  cluster: Cluster | null;
  /** Stops accepting, closes every connection and the stores. */
  close(): Promise<void>;
}

/** Says in words why `port` cannot be listened on (checked before anything is created). */
function checkPortFree(hostname: string, port: number): void {
  if (port === 0) return;
  try {
    Deno.listen({ hostname, port, transport: "tcp" }).close();
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `Cannot listen on ${hostname}:${port}: the port is already in use; stop the other program or choose another port`,
      );
    }
    throw new Error(`Cannot listen on ${hostname}:${port}: ${(e as Error).message}`);
  }
}

/**
 * The certificate of an instance on a shared database, without `--cert`: the deployment's, from
 * the database; the first instance stores its own `DATA/tls/` certificate if it has one (an
 * existing server moving to `--meta` keeps the one its clients pinned), else a new one.
 */
async function sharedCertificate(cluster: Cluster, dataDir: string): Promise<ServerCertificate> {
  const c = await cluster.certificate(async () => {
    const own = await readCertificate(dataDir);
    return own ?? await createSelfSigned();
  });
  return {
    cert: c.cert,
    key: c.key,
    fingerprint: pemFingerprint(c.cert),
    certFile: "the --meta database",
    created: c.created,
  };
}

/**
 * The data directory and its databases are the server user's only (0700 / 0600), also in a data
 * directory made by an older version: other local users must not read any account's content.
 * (The server sets its umask to 077 too, so everything created later is private as well.)
 */
function restrictDataDir(dataDir: string): void {
  if (Deno.build.os === "windows") return;
  Deno.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  Deno.chmodSync(dataDir, 0o700);
  for (const name of ["meta.db", "small-chunks.db", "packs.db"]) {
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        Deno.chmodSync(join(dataDir, name + suffix), 0o600);
      } catch { /* not there yet */ }
    }
  }
}

/**
 * What every session of a server shares (stores, the push hub, throttles, quota, budgets), for
 * `limits`. The server builds one; the simulator builds one over in-memory connections. With a
 * `cluster` (instances sharing `--meta`), the throttles and budgets that must hold across
 * instances count in the shared database (`shared_limits.ts`).
 */
export function serverContext(
  meta: MetaStore,
  blobs: BlobStore,
  limits: ServerLimits,
  log: (line: string) => void,
  hub = new Hub(),
  cluster: Cluster | null = null,
): ServerContext & { quota: QuotaTracker | null; incoming: Incoming } {
  const bucket = (scope: string, burst: number, perHour: number) =>
    cluster
      ? new SharedRateLimiter(cluster.counters, scope, burst, perHour)
      : new RateLimiter(burst, perHour);
  return {
    meta,
    blobs,
    hub,
    log,
    signIn: cluster
      ? new SharedSignInThrottle(cluster.counters, limits.ipThrottle, limits.deviceThrottle)
      : new SignInThrottle(limits.ipThrottle, limits.deviceThrottle),
    registrations: bucket("register", limits.registerBurst, limits.registerPerHour),
    registrationsGlobal: bucket(
      "register-global",
      limits.registerGlobalBurst,
      limits.registerGlobalPerHour,
    ),
    failedEnrollGlobal: bucket(
      "failed-enroll-global",
      limits.failedEnrollGlobalBurst,
      limits.failedEnrollGlobalPerHour,
    ),
    cluster,
    quota: limits.quotaBytes === null ? null : new QuotaTracker(
      meta,
      limits.quotaBytes,
      (account) => collectChunks(meta, blobs, account, Date.now() - limits.orphanGraceMs),
    ),
    logLimit: new LogLimiter(10_000),
    incoming: new Incoming(),
    limits,
    budgets: new AccountBudgets(),
    verifier: new ChunkVerifier(),
    bodies: new BodyPool(),
  };
}

/**
 * Starts listening, then opens the stores (`open_stores.ts`). Throws a clear error if the port is
 * taken or a store cannot be opened; a start that fails leaves no new data directory or TLS key
 * behind (a new certificate is saved only once the server listens with it and its stores are
 * open).
 */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const hub = new Hub();
  const given = opts.certFile !== undefined && opts.keyFile !== undefined
    ? await loadCertificateFiles(opts.certFile, opts.keyFile)
    : null;
  const front = (certificate: ServerCertificate) =>
    new TlsFront({
      hostname: opts.hostname,
      port: opts.port,
      certificate,
      onStranger: (from) => {
        if (logLimit.allow("stranger")) {
          log(`Closed a connection to the internal TLS port from ${from}: not made by this server`);
        }
      },
    });
  const existed = await Deno.stat(opts.dataDir).then(() => true, () => false);
  let certificate: ServerCertificate;
  let listener: TlsFront | null = null;
  let opened: OpenStores | null = null;
  let shared = false;
  try {
    if (given || !opts.meta) {
      // One instance (or an operator's certificate): listen first, so that a port in use leaves
      // nothing behind; a new certificate is saved once the stores opened too.
      certificate = given ?? await readCertificate(opts.dataDir) ??
        await newCertificate(opts.dataDir);
      listener = front(certificate);
      restrictDataDir(opts.dataDir);
      opened = await openStores(opts);
    } else {
      // Instances on a shared database present the deployment's certificate, kept there: the
      // stores open first (a port in use is found before that, so it creates nothing).
      checkPortFree(opts.hostname, opts.port);
      restrictDataDir(opts.dataDir);
      opened = await openStores(opts);
      certificate = opened.cluster
        ? await sharedCertificate(opened.cluster, opts.dataDir)
        : await readCertificate(opts.dataDir) ?? await newCertificate(opts.dataDir);
      shared = opened.cluster !== null;
      listener = front(certificate);
    }
    if (certificate.created && !shared) await saveCertificate(opts.dataDir, certificate);
  } catch (e) {
    await listener?.close();
    await opened?.close().catch(() => {});
    if (!existed) await Deno.remove(opts.dataDir, { recursive: true }).catch(() => {});
    throw e;
  }
  const tls = listener;
  const stores = opened;
  const { meta, blobs, cluster } = stores;
  const limits: ServerLimits = {
    ...DEFAULT_LIMITS,
    maxConnections: defaultMaxConnections(),
    ...opts.limits,
  };
  const ctx = serverContext(meta, blobs, limits, log, hub, cluster);
  const { quota, logLimit, incoming } = ctx;
  const budgets = ctx.budgets!;
  // What the other instances publish reaches this instance's devices as if it happened here.
  await cluster?.start({
    changed: (account, seq) => hub.notify(account, seq, null),
    incoming: (account, entry) => {
      const chunks = Array.isArray(entry.chunks) ? entry.chunks : [];
      const hashes = chunks.map((c) => (c as { hash?: unknown })?.hash).filter((h) =>
        typeof h === "string"
      ) as string[];
      incoming.announce(account, hashes);
      hub.send(account, { t: "incoming", entry }, null);
    },
    stored: (account, hashes) => incoming.stored(account, hashes),
    // Relayed announcements have no owner here (see `incoming.announce` above).
    withdrawn: (account, hashes) => void incoming.withdraw(account, undefined, hashes),
  }, () => hub.watched());
  if (quota) log(`Quota: ${describeSize(quota.limit)} of stored content per account`);
  /** One open connection, as the watchdog sees it. */
  interface Open {
    peer: Peer;
    session: Session;
    guard: ConnGuard;
    remote: string;
    ip: string;
    deadline: number;
    dropped: boolean;
  }
  const open = new Set<Open>();
  const perIp = new ConnectionCounter(limits.maxConnectionsPerIp);
  const perGroup = new ConnectionCounter(limits.maxConnectionsPerGroup);
  const drop = (c: Open, why: string) => {
    if (why && logLimit.allow(`drop ${c.ip}`)) log(`Closing connection from ${c.remote}: ${why}`);
    c.dropped = true;
    c.peer.close();
  };
  // Before sign-in: small and never compressed. After: 16 MiB (the chunk list of a file of
  // about 50 GB; clients cut their batches far smaller), at most 4096 times the wire size (a
  // repetitive commit of 1,000 copies compresses well); what the parse may cost is bounded by
  // the header's structure in the frame reader (see header_shape.ts).
  const preSignIn = { maxHeader: limits.maxHeaderBeforeSignIn, compressed: false, maxRatio: 1 };
  const signedIn = { maxHeader: limits.maxHeader, compressed: true, maxRatio: 4096 };
  let stopping = false;
  /** Public sockets accepted and not yet closed (handshakes in progress included). */
  let sockets = 0;
  let slotFreed: (() => void) | null = null;
  /** Every connection being served (awaited when the server stops). */
  const serving = new Set<Promise<void>>();
  const serve = async (tcp: Deno.TcpConn): Promise<void> => {
    const addr = tcp.remoteAddr as Deno.NetAddr;
    const remote = `${addr.hostname}:${addr.port}`;
    const group = addressGroup(addr.hostname);
    const over = () =>
      perIp.count(addr.hostname) >= perIp.max || perGroup.count(group) >= perGroup.max;
    // At the limit, wait a moment for one to end: a client's certificate probe, just closed, is
    // followed at once by its real connection, often before the server saw the probe end.
    if (over()) await new Promise((r) => setTimeout(r, 50));
    const overIp = perIp.count(addr.hostname) >= perIp.max;
    const overGroup = perGroup.count(group) >= perGroup.max;
    if (overIp || overGroup) {
      if (logLimit.allow(`conns ${group}`)) {
        log(
          overIp
            ? `Refused connection from ${remote}: ${perIp.max} connections from this address are open (--max-connections-per-ip)`
            : `Refused connection from ${remote}: ${perGroup.max} connections from ${group} are open`,
        );
      }
      try {
        tcp.close(); // plain TCP: freed at once
      } catch { /* already closed */ }
      return;
    }
    perIp.add(addr.hostname);
    perGroup.add(group);
    let front: FrontConn | null = null;
    try {
      // The whole TLS handshake (first bytes included) within the deadline, else every socket
      // of the connection is closed and freed (see tls_front.ts).
      const secured = await tls.secure(tcp, limits.tlsHandshakeTimeoutMs);
      if (typeof secured === "string") {
        if (secured === "timeout" && logLimit.allow(`tls ${group}`)) {
          log(
            `Closed connection from ${remote}: no TLS handshake within ${
              limits.tlsHandshakeTimeoutMs / 1000
            } s`,
          );
        }
        return;
      }
      front = secured;
      if (stopping) return;
      const conn = front.tls;
      let session: Session | null = null;
      const guard = new ConnGuard(
        conn,
        limits,
        () => session?.signedIn ?? false,
        performance.now.bind(performance),
      );
      let peer: Peer | null = null;
      session = new Session(ctx, addr, guard, (account) => {
        peer?.setHeaderLimits(signedIn);
        guard.joinAccount(budgets.of(account));
      });
      peer = new Peer(guard, {
        onRequest: session.handle,
        ...(ctx.bodies ? { bodyPool: ctx.bodies } : {}),
        maxIncomingInFlight: limits.maxInFlight,
        idleTimeoutMs: limits.idleTimeoutMs,
        headerLimits: preSignIn,
        maxQueuedBytes: limits.maxQueuedBytes,
        onWritten: () => guard.written(),
      });
      const p = peer;
      guard.countQueued(() => p.queuedBytes);
      session.attach(peer);
      const c: Open = {
        peer,
        session,
        guard,
        remote,
        ip: addr.hostname,
        deadline: performance.now() + limits.handshakeTimeoutMs,
        dropped: false,
      };
      open.add(c);
      const why = await peer.closed;
      if (why && /does not read/.test(why.message) && logLimit.allow(`unread ${group}`)) {
        log(`Closed connection from ${remote}: ${escapeForLog(why.message)}`);
      }
      session.detach();
      guard.leaveAccount();
      const account = session.device?.account;
      if (account) budgets.release(account);
      open.delete(c);
    } finally {
      front?.close();
      perIp.remove(addr.hostname);
      perGroup.remove(group);
    }
  };
  // Our own accept loop: `for await` over the listener ends for good at the first accept error
  // (EMFILE once descriptors run out). Errors are logged once (at most every 10 s), then retried
  // with a back-off; at the global cap accepting pauses (the kernel's backlog holds newcomers).
  const accepting = (async () => {
    let backoff = 10;
    let failing = false;
    let full = false;
    while (!stopping) {
      if (sockets >= limits.maxConnections) {
        if (!full && logLimit.allow("full")) {
          log(
            `Not accepting connections for now: ${sockets} are open (--max-connections ${limits.maxConnections})`,
          );
        }
        full = true;
        await new Promise<void>((r) => slotFreed = r);
        continue;
      }
      full = false;
      let conn: Deno.TcpConn;
      try {
        conn = await tls.accept();
      } catch (e) {
        if (stopping || e instanceof Deno.errors.BadResource) break;
        if (!failing && logLimit.allow("accept failing")) {
          log(
            `Cannot accept connections: ${
              escapeForLog((e as Error).message)
            }; retrying (open connections: ${sockets})`,
          );
        }
        failing = true;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 1000);
        continue;
      }
      if (failing && logLimit.allow("accept again")) {
        log(`Accepting connections again (open connections: ${sockets + 1})`);
      }
      failing = false;
      backoff = 10;
      sockets++;
      const served: Promise<void> = serve(conn).catch((e) => {
        log(`Cannot serve connection: ${escapeForLog((e as Error).message)}`);
      }).finally(() => {
        serving.delete(served);
        sockets--;
        const w = slotFreed;
        slotFreed = null;
        w?.();
      });
      serving.add(served);
    }
  })();
  /** The revocation check running (close waits for it before it closes the stores). */
  let checking: Promise<void> | null = null;
  // The watchdog: handshake deadlines, slow frames, revoked devices (the CLI that revokes is
  // another process, or another instance: the shared database is the only channel, so every
  // tick asks it about all signed-in devices at once, in one query).
  const watchdog = setInterval(() => {
    const now = performance.now();
    const watched: Open[] = [];
    for (const c of open) {
      if (c.dropped) continue;
      if (!c.session.signedIn) {
        if (now > c.deadline) {
          drop(
            c,
            `did not sign in within ${limits.handshakeTimeoutMs / 1000} s (TLS, hello, sign-in)`,
          );
        }
        continue;
      }
      const slow = c.guard.overdue(now);
      if (slow) drop(c, slow);
      else if (c.peer.writeStalledFor(now) > limits.writeStallMs) {
        drop(c, `the peer does not read (nothing written for ${limits.writeStallMs / 1000} s)`);
      } else watched.push(c);
    }
    if (checking || watched.length === 0) return;
    checking = meta.revokedDevices(watched.map((c) => c.session.deviceId!)).then((revoked) => {
      for (const c of watched) {
        if (c.dropped || !revoked.has(c.session.deviceId!)) continue;
        c.session.revoked(); // says why
        drop(c, "");
      }
    }, (e) => log(`Cannot check for revoked devices: ${(e as Error).message}`))
      .finally(() => checking = null);
  }, limits.tickMs);
  const policy: RetentionPolicy = {
    keepDays: opts.keepDays ?? DEFAULT_KEEP_DAYS,
    daily: opts.keep?.daily ?? 0,
    weekly: opts.keep?.weekly ?? 0,
    monthly: opts.keep?.monthly ?? 0,
  };
  const stopCollecting = new AbortController();
  let collectRunning = false;
  const runCollect = (): Promise<void> => {
    if (collectRunning) return collecting; // the previous one is still at work (a big store)
    collectRunning = true;
    return collect(meta, blobs, policy, Date.now(), CHUNK_GRACE_MS, stopCollecting.signal).then(
      (r) => {
        quota?.forget();
        if (r.versions + r.chunks > 0) {
          log(`Retention: forgot ${r.versions} old versions, ${r.chunks} unused chunks`);
        }
      },
    ).catch((e) => log(`Cannot apply retention: ${(e as Error).message}`))
      .finally(() => collectRunning = false);
  };
  let collecting: Promise<void> = Promise.resolve();
  collecting = runCollect();
  const timer = setInterval(() => collecting = runCollect(), 6 * 60 * 60 * 1000);
  // With other instances storing for the same accounts, each one's count of an account's usage
  // is read again from the shared index every minute (between two reads an account uploading
  // through several instances at once can pass its quota by what the others stored meanwhile).
  const recount = cluster && quota ? setInterval(() => quota.forget(), 60_000) : undefined;
  const addr = tls.addr;
  return {
    hostname: addr.hostname,
    port: addr.port,
    stores: stores.describe,
    certificate: {
      fingerprint: certificate.fingerprint,
      certFile: certificate.certFile,
      created: certificate.created,
      shared,
    },
    cluster,
    async close() {
      clearInterval(timer);
      clearInterval(recount);
      clearInterval(watchdog);
      stopping = true;
      incoming.close();
      stopCollecting.abort();
      await collecting;
      const closingFront = tls.close();
      const w = slotFreed;
      slotFreed = null;
      w?.();
      await accepting;
      const closing = [...open].map(({ peer }) => {
        peer.close();
        return peer.closed;
      });
      await Promise.all(closing);
      await closingFront;
      await Promise.all([...serving]);
      await checking;
      await stores.close(); // the cluster's channel first, then the stores
    },
  };
}
