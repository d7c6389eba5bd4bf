/**
 * The client's TLS connection with trust on first use (like SSH).
 *
 * 1. Unless the server is known to have a CA-issued certificate, a probe connection
 *    (`node:tls`, nothing sent) fetches the certificate the server presents and computes its
 *    fingerprint.
 * 2. A pinned fingerprint (from `config.json` or `--server-fingerprint`) must match exactly;
 *    otherwise {@link CertificateError} ("the server's certificate changed").
 * 3. The real connection (`Deno.startTls`, fast) trusts exactly that certificate (`caCerts`) and
 *    verifies the name `cloud-sync` in it (or the host name for an operator's own certificate).
 *    A certificate swapped between the probe and this connection fails the handshake.
 *
 * On first contact without a pin, a certificate that verifies against the system's roots for
 * the host name is remembered as "CA-verified" (renewals are then fine, as with HTTPS); any other
 * certificate is pinned by its fingerprint.
 *
 * @module
 */

import tls from "node:tls";
import { isIP } from "node:net";
import { X509Certificate } from "node:crypto";
import { CERT_NAME, derToPem, fingerprint } from "./tls_cert.ts";

/** What the client trusts about its server; kept in `config.json`. */
export interface ServerTrust {
  /** Pinned SHA-256 fingerprint of the server's certificate (`AB:CD:…`). */
  fingerprint?: string;
  /** The server's certificate verified against the system roots at first contact. */
  caVerified?: boolean;
}

/** The server's certificate cannot be trusted; retrying will not help, the user must act. */
export class CertificateError extends Error {
  /** Creates the error with its user-facing message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CertificateError";
  }
}

/** Options of {@link dialTls}. */
export interface TlsDialOptions {
  host: string;
  port: number;
  /** What is already trusted (from `config.json`); empty = first contact. */
  trust?: ServerTrust;
  /** `--server-fingerprint`: the certificate must have this fingerprint (overrides `trust`). */
  expectFingerprint?: string;
  /** Limit for connecting and the TLS handshake (default 15 s). */
  timeoutMs?: number;
}

/** A verified connection, and the trust to keep if it changed. */
export interface TlsDialResult {
  conn: Deno.TlsConn;
  trust: ServerTrust;
  /** True when `trust` differs from the one given (save it); `note` says why. */
  changed: boolean;
  note: string;
  /** Fingerprint of the certificate the server presented (absent for CA-verified servers). */
  fingerprint?: string;
}

/** How the user is told the certificate changed. */
export function changedMessage(host: string, port: number, pinned: string, seen: string): string {
  return `Cannot connect: the server's certificate changed. ${host}:${port} presented a certificate ` +
    `with fingerprint ${seen}, but this folder trusts ${pinned}. If you replaced the server's ` +
    `certificate on purpose, compare the new fingerprint with the "TLS certificate fingerprint" ` +
    `line the server prints at start and run the client once with --server-fingerprint ${seen}; ` +
    `otherwise someone may be intercepting the connection: do not continue.`;
}

/** How the user is told the certificate is not the one given with `--server-fingerprint`. */
export function mismatchMessage(host: string, port: number, given: string, seen: string): string {
  return `Cannot connect: the server's certificate does not match --server-fingerprint. ` +
    `${host}:${port} presented a certificate with fingerprint ${seen}, not ${given}. Check the ` +
    `"TLS certificate fingerprint" line the server prints at start; if it shows ${given}, someone ` +
    `may be intercepting the connection: do not continue.`;
}

function isCertificateFailure(e: unknown): boolean {
  const m = (e as Error)?.message ?? "";
  return e instanceof Deno.errors.InvalidData ||
    /certificate|UnknownIssuer|BadSignature|NotValidForName|Expired/i.test(m);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, cleanup: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what} timed out after ${ms / 1000} s`));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Fetches the DER certificate the server presents, sending no application data. */
export function probeCertificate(
  host: string,
  port: number,
  timeoutMs = 15_000,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    let raw: Uint8Array | null = null;
    let error: Error | null = null;
    const s = tls.connect({
      host,
      port,
      rejectUnauthorized: false,
      ...(isIP(host) ? {} : { servername: host }),
    }, () => {
      const c = s.getPeerCertificate(true);
      if (c?.raw) raw = new Uint8Array(c.raw);
      else error = new Error("the server presented no certificate");
      s.destroy();
    });
    const timer = setTimeout(() => {
      error = new Error(`TLS handshake timed out after ${timeoutMs / 1000} s`);
      s.destroy();
    }, timeoutMs);
    s.on("error", (e: Error) => error ??= e);
    s.on("close", () => {
      clearTimeout(timer);
      if (raw) resolve(raw);
      else reject(error ?? new Error("connection closed during the TLS handshake"));
    });
  });
}

/** TCP connect + TLS handshake verifying `name` against the system roots plus `caCerts`. */
async function connectVerified(
  host: string,
  port: number,
  name: string,
  caCerts: string[],
  timeoutMs: number,
): Promise<Deno.TlsConn> {
  const tcp = await Deno.connect({ hostname: host, port, transport: "tcp" });
  tcp.setNoDelay(true);
  let conn: Deno.TlsConn | null = null;
  const close = () => {
    try {
      (conn ?? tcp).close();
    } catch { /* already closed */ }
  };
  try {
    conn = await Deno.startTls(tcp, { hostname: name, ...(caCerts.length ? { caCerts } : {}) });
    await withTimeout(conn.handshake(), timeoutMs, "TLS handshake", close);
    return conn;
  } catch (e) {
    close();
    throw e;
  }
}

/**
 * Connects with TLS, applying the pin / trust-on-first-use rules of this module. Throws
 * {@link CertificateError} when the server cannot be trusted, other errors when it is
 * unreachable (worth retrying).
 */
export async function dialTls(opts: TlsDialOptions): Promise<TlsDialResult> {
  const { host, port } = opts;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const trust = opts.trust ?? {};
  const pin = opts.expectFingerprint ?? trust.fingerprint;

  if (!pin && trust.caVerified) {
    try {
      const conn = await connectVerified(host, port, host, [], timeoutMs);
      return { conn, trust, changed: false, note: "" };
    } catch (e) {
      if (!isCertificateFailure(e)) throw e;
      throw new CertificateError(
        `Cannot connect: the server's certificate is not valid for ${host} (${
          (e as Error).message
        }). If you replaced the server's certificate on purpose, run the client once with ` +
          `--server-fingerprint FINGERPRINT (the server prints it at start); otherwise someone ` +
          `may be intercepting the connection: do not continue.`,
        { cause: e },
      );
    }
  }

  const der = await probeCertificate(host, port, timeoutMs);
  const seen = fingerprint(der);
  if (pin && pin !== seen) {
    throw new CertificateError(
      opts.expectFingerprint
        ? mismatchMessage(host, port, pin, seen)
        : changedMessage(host, port, pin, seen),
    );
  }

  if (!pin) {
    // First contact: a certificate valid for the host name under the system roots needs no pin.
    try {
      const conn = await connectVerified(host, port, host, [], timeoutMs);
      return {
        conn,
        trust: { caVerified: true },
        changed: true,
        note: `The server's certificate is valid for ${host} (issued by a trusted authority).`,
      };
    } catch (e) {
      if (!isCertificateFailure(e)) throw e;
    }
  }

  const pem = derToPem(der);
  const name = new X509Certificate(der).checkHost(CERT_NAME) ? CERT_NAME : host;
  let conn: Deno.TlsConn;
  try {
    conn = await connectVerified(host, port, name, [pem], timeoutMs);
  } catch (e) {
    if (!isCertificateFailure(e)) throw e;
    throw new CertificateError(
      `Cannot connect: the server's certificate changed during the connection, or it is not ` +
        `valid for the name ${name} (${(e as Error).message}); someone may be intercepting the ` +
        `connection.`,
      { cause: e },
    );
  }
  const changed = trust.fingerprint !== seen || trust.caVerified === true;
  const note = !changed
    ? ""
    : opts.expectFingerprint
    ? `Pinned the server's certificate ${seen} (as given with --server-fingerprint).`
    : `Trusting the server's certificate on first use: fingerprint ${seen}. Check that the ` +
      `server printed the same "TLS certificate fingerprint"; a change will be refused.`;
  return { conn, trust: { fingerprint: seen }, changed, note, fingerprint: seen };
}
