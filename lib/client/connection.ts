/**
 * Dialing the server: TCP connection, protocol handshake (`hello`), then registration, enrollment
 * or sign-in. Returns a ready {@link Peer}.
 *
 * @module
 */

import { Peer } from "../protocol/peer.ts";
import { CAPABILITIES, PROGRAM_VERSION, PROTOCOL_VERSION } from "../protocol/messages.ts";

/** Where and how to connect. */
export interface DialOptions {
  host: string;
  port: number;
  onNotice?: (header: Record<string, unknown>) => void;
}

/** Connects and performs the handshake. Throws if the server is unreachable or incompatible. */
export async function dial(opts: DialOptions): Promise<Peer> {
  const conn = await Deno.connect({ hostname: opts.host, port: opts.port, transport: "tcp" });
  conn.setNoDelay(true);
  const peer = new Peer(conn, {
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
