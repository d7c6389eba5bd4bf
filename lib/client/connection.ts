/**
 * Dialing the server: TLS connection (pinned certificate or CA-verified, see
 * `lib/transport/dial.ts`), protocol handshake (`hello`), then registration, enrollment or
 * sign-in. Returns a ready {@link Peer}.
 *
 * @module
 */

import { Peer } from "../protocol/peer.ts";
import { CAPABILITIES, PROGRAM_VERSION, PROTOCOL_VERSION } from "../protocol/messages.ts";
import { dialTls, type ServerTrust } from "../transport/dial.ts";

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
  /** Called before the handshake when the trust changed (first use, new pin): save it. */
  onTrust?: (trust: ServerTrust, note: string) => void;
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
    ...(opts.onNotice ? { onNotice: (m) => opts.onNotice!(m.header) } : {}),
  });
  try {
    await peer.request({
      t: "hello",
      protocol: PROTOCOL_VERSION,
      program: PROGRAM_VERSION,
      caps: CAPABILITIES,
    });
  } catch (e) {
    peer.close();
    throw e;
  }
  return peer;
}
