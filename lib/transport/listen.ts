/**
 * The server's listening sockets: TLS always, with the certificate from
 * {@link loadOrCreateCertificate} or the operator's files. {@link listenTls} is a plain TLS
 * listener (the server runs it behind its relay, see `tls_front.ts`); {@link listenTcp} is the
 * public, plain TCP side of that relay. Both turn the usual failures into one-line errors.
 *
 * @module
 */

import type { ServerCertificate } from "./tls_cert.ts";

/** Where to listen and with which certificate. */
export interface ListenOptions {
  hostname: string;
  port: number;
  certificate: ServerCertificate;
}

/** The one-line error for a listener that cannot start on `where`. */
function listenError(where: string, e: unknown): Error {
  if (e instanceof Deno.errors.AddrInUse) {
    return new Error(
      `Cannot listen on ${where}: the port is already in use; stop the other program or choose another port`,
    );
  }
  if (e instanceof Deno.errors.InvalidData || /cert|key|pem/i.test((e as Error).message)) {
    return new Error(
      `Cannot listen on ${where}: the TLS certificate or key cannot be used (${
        (e as Error).message
      })`,
    );
  }
  return new Error(`Cannot listen on ${where}: ${(e as Error).message}`);
}

/**
 * Starts a TLS listener. Throws a one-line error for a port in use ("the port is already in
 * use") or a certificate/key that cannot be used.
 */
export function listenTls(opts: ListenOptions): Deno.TlsListener {
  try {
    return Deno.listenTls({
      hostname: opts.hostname,
      port: opts.port,
      transport: "tcp",
      cert: opts.certificate.cert,
      key: opts.certificate.key,
    });
  } catch (e) {
    throw listenError(`${opts.hostname}:${opts.port}`, e);
  }
}

/** Starts a plain TCP listener; the same one-line errors as {@link listenTls}. */
export function listenTcp(hostname: string, port: number): Deno.TcpListener {
  try {
    return Deno.listen({ hostname, port, transport: "tcp" });
  } catch (e) {
    throw listenError(`${hostname}:${port}`, e);
  }
}
