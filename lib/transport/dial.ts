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
 * certificate is pinned by its fingerprint. A self-signed one is its own trust anchor on the real
 * connection; a leaf issued by an authority the system does not know (an operator's internal CA)
 * is anchored at that authority's certificate, which the server must send after the leaf (the
 * probe checks that it really signed the leaf); the pin still decides, at every connection.
 *
 * With `--server-ca FILE` (kept in `config.json` as `serverCa`), the certificate must instead be
 * issued for the host name by that authority, as with HTTPS under a private root: no probe, and
 * renewed certificates need nothing.
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
  /** PEM of the authority (`--server-ca`) that must have issued the server's certificate. */
  ca?: string;
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
  /** `--server-ca`: PEM of the authority that issues the server's certificate (overrides `trust`). */
  serverCa?: string;
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
    /certificate|UnknownIssuer|BadSignature|NotValidForName|Expired|CaUsedAsEndEntity/i.test(m);
}

/** rustls refuses a server certificate that says it is an authority (basicConstraints CA:TRUE). */
function caAsServerCertificate(e: unknown): CertificateError | null {
  if (!/CaUsedAsEndEntity/.test((e as Error)?.message ?? "")) return null;
  return new CertificateError(
    "Cannot connect: the server's certificate is a certificate authority's (CA:TRUE), which TLS " +
      "refuses as a server's certificate; on the server, give --cert a certificate that this " +
      "authority issued (basicConstraints CA:FALSE), or leave --cert out for a self-signed one",
    { cause: e },
  );
}

/** The short name of a certificate's issuer or subject (`CN=…`), for messages. */
function shortName(dn: string): string {
  return dn.split("\n").map((l) => l.trim()).filter(Boolean).join(", ");
}

/**
 * What the real connection anchors its trust at, for a pinned certificate: the certificate
 * itself when it is self-issued; else the certificate in the presented chain that issued it
 * (checked: names and signature). Throws when the issuer is neither (nothing to anchor at).
 */
function anchorFor(der: Uint8Array, chain: Uint8Array[], seen: string): {
  pem: string;
  issuer: string | null;
} {
  // Names and signature (OpenSSL's checkIssued also wants keyCertSign, which a self-signed
  // server certificate rightly lacks).
  const leaf = new X509Certificate(der);
  const issued = (by: X509Certificate) => by.subject === leaf.issuer && leaf.verify(by.publicKey);
  if (issued(leaf)) return { pem: derToPem(der), issuer: null };
  for (const c of chain) {
    const cand = new X509Certificate(c);
    if (issued(cand)) {
      return { pem: derToPem(c), issuer: shortName(cand.subject) };
    }
  }
  throw new CertificateError(
    `Cannot connect: the server's certificate (fingerprint ${seen}) is issued by an authority ` +
      `this computer does not trust (${shortName(leaf.issuer)}), and the server does not send ` +
      `that authority's certificate; give the authority's certificate with --server-ca FILE ` +
      `(or have the server send it after its own in the --cert file)`,
  );
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

/** What the server presents: its certificate and the ones it sends after it (DER). */
export interface Presented {
  leaf: Uint8Array;
  chain: Uint8Array[];
}

/** Fetches the certificates the server presents (DER), sending no application data. */
export function probeCertificate(
  host: string,
  port: number,
  timeoutMs = 15_000,
): Promise<Presented> {
  return new Promise((resolve, reject) => {
    let raw: Presented | null = null;
    let error: Error | null = null;
    const s = tls.connect({
      host,
      port,
      rejectUnauthorized: false,
      ...(isIP(host) ? {} : { servername: host }),
    }, () => {
      const c = s.getPeerCertificate(true);
      if (c?.raw) {
        const chain: Uint8Array[] = [];
        let at = c.issuerCertificate;
        while (at?.raw && at !== c && chain.length < 8) {
          chain.push(new Uint8Array(at.raw));
          if (at.issuerCertificate === at) break;
          at = at.issuerCertificate;
        }
        raw = { leaf: new Uint8Array(c.raw), chain };
      } else error = new Error("the server presented no certificate");
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
  // --server-fingerprint wins over everything; --server-ca over what the folder kept.
  const ca = opts.expectFingerprint ? undefined : opts.serverCa ?? trust.ca;
  const pin = opts.expectFingerprint ?? (opts.serverCa ? undefined : trust.fingerprint);

  if (!pin && ca) {
    try {
      const conn = await connectVerified(host, port, host, [ca], timeoutMs);
      const changed = trust.ca !== ca || trust.fingerprint !== undefined ||
        trust.caVerified === true;
      return {
        conn,
        trust: { ca },
        changed,
        note: changed
          ? `Trusting the server's certificate: it is issued for ${host} by the authority of ` +
            `--server-ca (renewed certificates of that authority are fine).`
          : "",
      };
    } catch (e) {
      if (!isCertificateFailure(e)) throw e;
      throw caAsServerCertificate(e) ?? new CertificateError(
        `Cannot connect: the server's certificate is not valid for ${host} under the authority ` +
          `of --server-ca (${(e as Error).message}). Check that --server-ca is the authority ` +
          `that issued the server's certificate and that it names ${host}; otherwise someone ` +
          `may be intercepting the connection: do not continue.`,
        { cause: e },
      );
    }
  }

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

  const presented = await probeCertificate(host, port, timeoutMs);
  const der = presented.leaf;
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

  const anchor = anchorFor(der, presented.chain, seen);
  const name = new X509Certificate(der).checkHost(CERT_NAME) ? CERT_NAME : host;
  let conn: Deno.TlsConn;
  try {
    conn = await connectVerified(host, port, name, [anchor.pem], timeoutMs);
  } catch (e) {
    if (!isCertificateFailure(e)) throw e;
    const asCa = caAsServerCertificate(e);
    if (asCa) throw asCa;
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
    : `Trusting the server's certificate on first use: fingerprint ${seen}` +
      (anchor.issuer ? ` (issued by ${anchor.issuer})` : "") +
      `. Check that the server printed the same "TLS certificate fingerprint"; a change will be ` +
      `refused.`;
  return { conn, trust: { fingerprint: seen }, changed, note, fingerprint: seen };
}
