/**
 * Dialing the server: TLS connection (pinned certificate or CA-verified, see
 * `lib/transport/dial.ts`) and protocol handshake (`hello`); returns a ready {@link Peer}. Also
 * what a failed connection means, in words ({@link describeConnectError}): users see
 * `Cannot connect to HOST:PORT: <why>`, never a TLS library's message, and a port that answers
 * but does not speak Cloud Sync is named as such.
 *
 * @module
 */

import { BodyPool } from "../protocol/body_pool.ts";
import { ConnectionClosedError, Peer, RemoteError } from "../protocol/peer.ts";
import {
  CAPABILITIES,
  PROGRAM_VERSION,
  PROTOCOL_VERSION,
  readCapabilities,
} from "../protocol/messages.ts";
import { dialTls, type ServerTrust } from "../transport/dial.ts";

/**
 * Reply bodies of 256 KiB and more (chunk batches) come from one pool per process and go back
 * once written into their file (`releasePrefetched`): a fresh 4 MiB buffer per batch left
 * garbage that raised a receiving client's peak RSS by tens of MB on a 2 GiB file.
 */
const downloadBodies = new BodyPool();

export { CertificateError, type ServerTrust } from "../transport/dial.ts";

/** Where and how to connect. */
export interface DialOptions {
  host: string;
  port: number;
  onNotice?: (header: Record<string, unknown>) => void;
  /** What this folder already trusts about the server's certificate (empty: first contact). */
  trust?: ServerTrust;
  /** `--server-fingerprint`: the server's certificate must have this fingerprint. */
  expectFingerprint?: string;
  /** `--server-ca`: PEM of the authority that issues the server's certificate. */
  serverCa?: string;
  /** Called before the handshake when the trust changed (first use, new pin): save it. */
  onTrust?: (trust: ServerTrust, note: string) => void;
}

/** Longest wait for the answer to `hello` once TLS is up. */
export const HELLO_TIMEOUT_MS = 15_000;

/** The other end answered, but not as a Cloud Sync server does (a wrong port, say). */
export class NotCloudSyncError extends Error {
  /** Creates the error; `message` says what was seen. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NotCloudSyncError";
  }
}

const NOT_TLS = "it does not speak TLS, so it is not a Cloud Sync server; check the port " +
  "(cloud-server prints it at start)";
const TLS_NOT_OURS = "it speaks TLS but not the Cloud Sync protocol; check the port " +
  "(cloud-server prints it at start)";

/**
 * Why a connection to the server failed or ended, in words (no library text, no links), for
 * `Cannot connect to HOST:PORT: …`.
 */
export function describeConnectError(e: unknown): string {
  if (e instanceof NotCloudSyncError) return e.message;
  const err = e as { message?: unknown; code?: unknown; cause?: unknown } | null;
  const cause = err?.cause as { message?: unknown } | undefined;
  const text = `${err?.code ?? ""} ${err?.message ?? String(e)} ${cause?.message ?? ""}`;
  if (/ECONNREFUSED|ConnectionRefused|connection refused/i.test(text)) {
    return "nothing is listening on that port (is the server running?)";
  }
  if (/ENOTFOUND|EAI_AGAIN|failed to lookup address|name or service not known/i.test(text)) {
    return "the host name is unknown";
  }
  if (/EHOSTUNREACH|ENETUNREACH|unreachable/i.test(text)) {
    return "the network cannot reach the server";
  }
  if (
    /WRONG_VERSION_NUMBER|InvalidContentType|corrupt message|unexpected handshake message|got ClientHello|ERR_SSL_/i
      .test(text)
  ) return NOT_TLS;
  if (/TLS handshake timed out/i.test(text)) {
    return "no TLS answer within 15 s: it is not a Cloud Sync server, or something drops the traffic";
  }
  if (/ETIMEDOUT|timed out/i.test(text)) return "no answer (check the address and any firewall)";
  if (/no data from peer/i.test(text)) return "the server stopped answering";
  if (
    e instanceof ConnectionClosedError ||
    /close_notify|unexpected.?eof|ECONNRESET|connection reset|broken pipe|EPIPE|socket disconnected|connection closed|BadResource/i
      .test(text)
  ) return "the server closed the connection";
  return String(err?.message ?? e).replace(/:?\s*https?:\/\/\S+/g, "").replace(
    /\s*\(os error \d+\)/g,
    "",
  );
}

/**
 * Connects and performs the handshake. Throws `CertificateError` if the server's certificate
 * cannot be trusted (fatal), other errors if the server is unreachable or incompatible.
 */
export async function dial(opts: DialOptions): Promise<Peer> {
  const r = await dialTls({
    host: opts.host,
    port: opts.port,
    ...(opts.trust ? { trust: opts.trust } : {}),
    ...(opts.expectFingerprint ? { expectFingerprint: opts.expectFingerprint } : {}),
    ...(opts.serverCa ? { serverCa: opts.serverCa } : {}),
  });
  if (r.changed) {
    try {
      opts.onTrust?.(r.trust, r.note);
    } catch (e) {
      r.conn.close();
      throw e;
    }
  }
  const peer = new Peer(r.conn, {
    ackEagerly: true, // the server's TLS connection cannot turn off Nagle's algorithm
    bodyPool: downloadBodies,
    ...(opts.onNotice ? { onNotice: (m) => opts.onNotice!(m.header) } : {}),
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new NotCloudSyncError(
              `it speaks TLS but did not answer the Cloud Sync handshake within ${
                HELLO_TIMEOUT_MS / 1000
              } s; check the port (cloud-server prints it at start)`,
            ),
          ),
        HELLO_TIMEOUT_MS,
      );
    });
    const r = await Promise.race([
      peer.request({
        t: "hello",
        protocol: PROTOCOL_VERSION,
        program: PROGRAM_VERSION,
        caps: CAPABILITIES,
      }),
      late,
    ]);
    if (typeof r.header.protocol !== "number") throw new NotCloudSyncError(TLS_NOT_OURS);
    peer.caps = readCapabilities(r.header.caps);
  } catch (e) {
    peer.close();
    // A Cloud Sync server answers hello, or refuses the protocol version; anything else (an
    // error of another kind, bytes that are no frame) is another program.
    if (e instanceof RemoteError && e.code !== "unsupported-protocol") {
      throw new NotCloudSyncError(TLS_NOT_OURS, { cause: e });
    }
    if (
      e instanceof ConnectionClosedError &&
      /Cannot read frame: (length|unknown type|header)/.test(e.message)
    ) {
      throw new NotCloudSyncError(TLS_NOT_OURS, { cause: e });
    }
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return peer;
}
