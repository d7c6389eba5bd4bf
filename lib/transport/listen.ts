/**
 * The server's listener: TLS always, with the certificate from {@link loadOrCreateCertificate}
 * or the operator's files.
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

/**
 * Starts a TLS listener. Throws a one-line error for a port in use ("the port is already in
 * use") or a certificate/key that cannot be used.
 */
export function listenTls(opts: ListenOptions): Deno.TlsListener {
  const where = `${opts.hostname}:${opts.port}`;
  try {
    return Deno.listenTls({
      hostname: opts.hostname,
      port: opts.port,
      transport: "tcp",
      cert: opts.certificate.cert,
      key: opts.certificate.key,
    });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `Cannot listen on ${where}: the port is already in use; stop the other program or choose another port`,
      );
    }
    if (e instanceof Deno.errors.InvalidData || /cert|key|pem/i.test((e as Error).message)) {
      throw new Error(
        `Cannot listen on ${where}: the TLS certificate or key cannot be used (${
          (e as Error).message
        })`,
      );
    }
    throw new Error(`Cannot listen on ${where}: ${(e as Error).message}`);
  }
}
