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

import { Peer } from "../protocol/peer.ts";
import { Incoming } from "./incoming.ts";
import { type OpenStores, openStores } from "./open_stores.ts";
import { Hub, type ServerContext, Session } from "./session.ts";
import {
  ConnectionCounter,
  ConnGuard,
  DEFAULT_LIMITS,
  describeSize,
  LogLimiter,
  QuotaTracker,
  RateLimiter,
  type ServerLimits,
  SignInThrottle,
} from "./limits.ts";
import { collect, DEFAULT_KEEP_DAYS } from "./retention.ts";
import { listenTls } from "../transport/listen.ts";
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
  const existed = await Deno.stat(opts.dataDir).then(() => true, () => false);
  let certificate: ServerCertificate;
  let listener: Deno.TlsListener | null = null;
  let opened: OpenStores | null = null;
  let shared = false;
  try {
    if (given || !opts.meta) {
      // One instance (or an operator's certificate): listen first, so that a port in use leaves
      // nothing behind; a new certificate is saved once the stores opened too.
      certificate = given ?? await readCertificate(opts.dataDir) ??
        await newCertificate(opts.dataDir);
      listener = listenTls({ hostname: opts.hostname, port: opts.port, certificate });
      opened = await openStores(opts);
    } else {
      // Instances on a shared database present the deployment's certificate, kept there: the
      // stores open first (a port in use is found before that, so it creates nothing).
      checkPortFree(opts.hostname, opts.port);
      opened = await openStores(opts);
      certificate = opened.cluster
        ? await sharedCertificate(opened.cluster, opts.dataDir)
        : await readCertificate(opts.dataDir) ?? await newCertificate(opts.dataDir);
      shared = opened.cluster !== null;
      listener = listenTls({ hostname: opts.hostname, port: opts.port, certificate });
    }
    if (certificate.created && !shared) await saveCertificate(opts.dataDir, certificate);
  } catch (e) {
    listener?.close();
    await opened?.close().catch(() => {});
    if (!existed) await Deno.remove(opts.dataDir, { recursive: true }).catch(() => {});
    throw e;
  }
  const stores = opened;
  const { meta, blobs, cluster } = stores;
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const quota = limits.quotaBytes === null ? null : new QuotaTracker(meta, limits.quotaBytes);
  const logLimit = new LogLimiter(10_000);
  const incoming = new Incoming();
  const ctx: ServerContext = {
    meta,
    blobs,
    hub,
    log,
    // Throttles that must hold across instances count in the shared database.
    signIn: cluster
      ? new SharedSignInThrottle(cluster.counters, limits.ipThrottle, limits.accountThrottle)
      : new SignInThrottle(limits.ipThrottle, limits.accountThrottle),
    registrations: cluster
      ? new SharedRateLimiter(
        cluster.counters,
        "register",
        limits.registerBurst,
        limits.registerPerHour,
      )
      : new RateLimiter(limits.registerBurst, limits.registerPerHour),
    quota,
    logLimit,
    incoming,
    cluster,
  };
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
  const drop = (c: Open, why: string) => {
    if (why && logLimit.allow(`drop ${c.ip}`)) log(`Closing connection from ${c.remote}: ${why}`);
    c.dropped = true;
    c.peer.close();
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const addr = conn.remoteAddr as Deno.NetAddr;
      const remote = `${addr.hostname}:${addr.port}`;
      if (!perIp.add(addr.hostname)) {
        if (logLimit.allow(`conns ${addr.hostname}`)) {
          log(
            `Refused connection from ${remote}: ${perIp.max} connections from this address are open (--max-connections-per-ip)`,
          );
        }
        try {
          conn.close();
        } catch { /* already closed */ }
        continue;
      }
      let session: Session | null = null;
      const guard = new ConnGuard(
        conn,
        limits,
        () => session?.signedIn ?? false,
        performance.now.bind(performance),
      );
      session = new Session(ctx, addr, guard);
      const peer = new Peer(guard, {
        onRequest: session.handle,
        maxIncomingInFlight: limits.maxInFlight,
        idleTimeoutMs: limits.idleTimeoutMs,
      });
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
      peer.closed.then(() => {
        session.detach();
        open.delete(c);
        perIp.remove(addr.hostname);
      });
    }
  })().catch(() => {/* listener closed */});
  /** The revocation check running (close waits for it before it closes the stores). */
  let checking: Promise<void> | null = null;
  // The watchdog: handshake deadlines, slow frames, revoked devices (the CLI that revokes is
  // another process: the shared database is the only channel, so every tick asks it about all
  // signed-in devices at once, in one query).
  const watchdog = setInterval(() => {
    const now = performance.now();
    const signedIn: Open[] = [];
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
      else signedIn.push(c);
    }
    if (checking || signedIn.length === 0) return;
    checking = meta.revokedDevices(signedIn.map((c) => c.session.deviceId!)).then((revoked) => {
      for (const c of signedIn) {
        if (c.dropped || !revoked.has(c.session.deviceId!)) continue;
        c.session.revoked(); // says why
        drop(c, "");
      }
    }, (e) => log(`Cannot check for revoked devices: ${(e as Error).message}`))
      .finally(() => checking = null);
  }, limits.tickMs);
  const keepDays = opts.keepDays ?? DEFAULT_KEEP_DAYS;
  const runCollect = () =>
    collect(meta, blobs, keepDays).then((r) => {
      quota?.forget();
      if (r.versions + r.chunks > 0) {
        log(`Retention: forgot ${r.versions} old versions, ${r.chunks} unused chunks`);
      }
    }).catch((e) => log(`Cannot apply retention: ${(e as Error).message}`));
  let collecting = runCollect();
  const timer = setInterval(() => collecting = runCollect(), 6 * 60 * 60 * 1000);
  // With other instances storing for the same accounts, each one's count of an account's usage
  // is read again from the shared index every minute (between two reads an account uploading
  // through several instances at once can pass its quota by what the others stored meanwhile).
  const recount = cluster && quota ? setInterval(() => quota.forget(), 60_000) : undefined;
  const addr = listener.addr as Deno.NetAddr;
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
      incoming.close();
      await collecting;
      try {
        listener.close();
      } catch { /* already closed */ }
      await accepting;
      const closing = [...open].map(({ peer }) => {
        peer.close();
        return peer.closed;
      });
      await Promise.all(closing);
      await checking;
      await stores.close(); // the cluster's channel first, then the stores
    },
  };
}
