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
import { TieredBlobStore } from "./blob_store.ts";
import { SqliteMetaStore } from "./meta_store.ts";
import { Hub, Session } from "./session.ts";
import { collect, DEFAULT_KEEP_DAYS } from "./retention.ts";
import { listenTls } from "../transport/listen.ts";
import {
  loadCertificateFiles,
  loadOrCreateCertificate,
  type ServerCertificate,
} from "../transport/tls_cert.ts";

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
  log?: (line: string) => void;
}

/** A running server. */
export interface RunningServer {
  hostname: string;
  port: number;
  /** The TLS certificate in use (fingerprint, file, whether this start created it). */
  certificate: Pick<ServerCertificate, "fingerprint" | "certFile" | "created">;
  /** Stops accepting, closes every connection and the stores. */
  close(): Promise<void>;
}

/** Opens the data directory and starts listening. Throws a clear error if the port is taken. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const meta = new SqliteMetaStore(opts.dataDir);
  const blobs = new TieredBlobStore(opts.dataDir);
  const hub = new Hub();
  let listener: Deno.TlsListener;
  let certificate: ServerCertificate;
  try {
    certificate = opts.certFile !== undefined && opts.keyFile !== undefined
      ? await loadCertificateFiles(opts.certFile, opts.keyFile)
      : await loadOrCreateCertificate(opts.dataDir);
    listener = listenTls({ hostname: opts.hostname, port: opts.port, certificate });
  } catch (e) {
    meta.close();
    blobs.close();
    throw e;
  }
  const peers = new Set<Peer>();
  const ctx = { meta, blobs, hub, log };
  const accepting = (async () => {
    for await (const conn of listener) {
      const addr = conn.remoteAddr as Deno.NetAddr;
      const session = new Session(ctx, `${addr.hostname}:${addr.port}`);
      const peer = new Peer(conn, { onRequest: session.handle });
      session.attach(peer);
      peers.add(peer);
      peer.closed.then(() => {
        session.detach();
        peers.delete(peer);
      });
    }
  })().catch(() => {/* listener closed */});
  const keepDays = opts.keepDays ?? DEFAULT_KEEP_DAYS;
  const runCollect = () =>
    collect(meta, blobs, keepDays).then((r) => {
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
    certificate: {
      fingerprint: certificate.fingerprint,
      certFile: certificate.certFile,
      created: certificate.created,
    },
    async close() {
      clearInterval(timer);
      await collecting;
      try {
        listener.close();
      } catch { /* already closed */ }
      await accepting;
      const closing = [...peers].map((p) => {
        p.close();
        return p.closed;
      });
      await Promise.all(closing);
      meta.close();
      blobs.close();
    },
  };
}
