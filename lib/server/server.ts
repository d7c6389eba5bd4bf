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
import type { RetentionPolicy } from "../core/retention_policy.ts";
import { listenTls } from "../transport/listen.ts";
import {
  loadCertificateFiles,
  newCertificate,
  readCertificate,
  saveCertificate,
  type ServerCertificate,
} from "../transport/tls_cert.ts";

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
  log?: (line: string) => void;
}

/** A running server. */
export interface RunningServer {
  hostname: string;
  port: number;
  /** Where metadata and chunks are kept, for the start-up lines (no passwords). */
  stores: { meta: string; blobs: string };
  /** The TLS certificate in use (fingerprint, file, whether this start created it). */
  certificate: Pick<ServerCertificate, "fingerprint" | "certFile" | "created">;
  /** Stops accepting, closes every connection and the stores. */
  close(): Promise<void>;
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
  const certificate: ServerCertificate = opts.certFile !== undefined && opts.keyFile !== undefined
    ? await loadCertificateFiles(opts.certFile, opts.keyFile)
    : await readCertificate(opts.dataDir) ?? await newCertificate(opts.dataDir);
  const listener = listenTls({ hostname: opts.hostname, port: opts.port, certificate });
  const existed = await Deno.stat(opts.dataDir).then(() => true, () => false);
  let opened: OpenStores | null = null;
  try {
    opened = await openStores(opts);
    if (certificate.created) await saveCertificate(opts.dataDir, certificate);
  } catch (e) {
    listener.close();
    await opened?.close().catch(() => {});
    if (!existed) await Deno.remove(opts.dataDir, { recursive: true }).catch(() => {});
    throw e;
  }
  const stores = opened;
  const { meta, blobs } = stores;
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const quota = limits.quotaBytes === null ? null : new QuotaTracker(meta, limits.quotaBytes);
  const logLimit = new LogLimiter(10_000);
  const incoming = new Incoming();
  const ctx: ServerContext = {
    meta,
    blobs,
    hub,
    log,
    signIn: new SignInThrottle(limits.ipThrottle, limits.accountThrottle),
    registrations: new RateLimiter(limits.registerBurst, limits.registerPerHour),
    quota,
    logLimit,
    incoming,
  };
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
    /** A revocation check is running (the next tick does not start another). */
    checking: boolean;
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
        checking: false,
      };
      open.add(c);
      peer.closed.then(() => {
        session.detach();
        open.delete(c);
        perIp.remove(addr.hostname);
      });
    }
  })().catch(() => {/* listener closed */});
  /** Revocation checks running (close waits for them before it closes the stores). */
  const checks = new Set<Promise<void>>();
  const revocationChecks = () => Promise.all(checks);
  // The watchdog: handshake deadlines, slow frames, revoked devices (the CLI that revokes is
  // another process: the shared database is the only channel, so open sessions look it up).
  const watchdog = setInterval(() => {
    const now = performance.now();
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
      else if (!c.checking) {
        c.checking = true;
        const check = c.session.checkRevoked().then((revoked) => {
          if (revoked && !c.dropped) drop(c, ""); // checkRevoked logged why
        }, (e) => log(`Cannot check for revoked devices: ${(e as Error).message}`))
          .finally(() => {
            c.checking = false;
            checks.delete(check);
          });
        checks.add(check);
      }
    }
  }, limits.tickMs);
  const policy: RetentionPolicy = {
    keepDays: opts.keepDays ?? DEFAULT_KEEP_DAYS,
    daily: opts.keep?.daily ?? 0,
    weekly: opts.keep?.weekly ?? 0,
    monthly: opts.keep?.monthly ?? 0,
  };
  const runCollect = () =>
    collect(meta, blobs, policy).then((r) => {
      quota?.forget();
      if (r.versions + r.chunks > 0) {
        log(`Retention: forgot ${r.versions} old versions, ${r.chunks} unused chunks`);
      }
    }).catch((e) => log(`Cannot apply retention: ${(e as Error).message}`));
  let collecting = runCollect();
  const timer = setInterval(() => collecting = runCollect(), 6 * 60 * 60 * 1000);
  const addr = listener.addr as Deno.NetAddr;
  return {
    hostname: addr.hostname,
    port: addr.port,
    stores: stores.describe,
    certificate: {
      fingerprint: certificate.fingerprint,
      certFile: certificate.certFile,
      created: certificate.created,
    },
    async close() {
      clearInterval(timer);
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
      await revocationChecks();
      await stores.close();
    },
  };
}
