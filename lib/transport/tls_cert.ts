/**
 * The server's TLS certificate: created on first start (self-signed, ECDSA P-256) in
 * `DATA/tls/`, reused afterwards, or loaded from files the operator gives (`--cert`, `--key`).
 * Also the certificate fingerprint everyone compares: SHA-256 of the DER certificate, as colon
 * separated upper-case hex pairs (the form SSH and OpenSSL show).
 *
 * @example
 * ```ts
 * const tls = await loadOrCreateCertificate("./cloud-data");
 * console.log(`TLS certificate fingerprint: ${tls.fingerprint}`);
 * ```
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { fsyncDir, tempPath } from "../util/atomic.ts";

/** The name every self-signed Cloud Sync certificate carries; pinned clients verify this name. */
export const CERT_NAME = "cloud-sync";

/** A certificate chain and its key, as PEM text, ready for `Deno.listenTls`. */
export interface ServerCertificate {
  /** PEM of the certificate, possibly followed by its chain. */
  cert: string;
  /** PEM of the private key. */
  key: string;
  /** {@link fingerprint} of the first (leaf) certificate. */
  fingerprint: string;
  /** Where the certificate was read from (or written to). */
  certFile: string;
  /** True when this call created the certificate. */
  created: boolean;
}

/** `AB:CD:…`: SHA-256 of the DER bytes, upper-case hex pairs joined by colons. */
export function fingerprint(der: Uint8Array): string {
  return new X509Certificate(der).fingerprint256;
}

/** The fingerprint of the first certificate in a PEM text. Throws if there is none. */
export function pemFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** Normalizes a fingerprint typed by a user (any case, with or without colons); null if invalid. */
export function normalizeFingerprint(text: string): string | null {
  const hex = text.trim().replace(/^sha256:/i, "").replace(/[:\s-]/g, "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return null;
  return hex.match(/../g)!.join(":");
}

/** PEM text of one DER certificate. */
export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----`;
}

/**
 * Creates a self-signed ECDSA P-256 certificate (SAN: `cloud-sync`, `localhost`, loopback IPs).
 * The X.509 library is loaded only here: a client never needs it (it costs ~20 MB of memory).
 */
export async function createSelfSigned(years = 100): Promise<{ cert: string; key: string }> {
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(crypto);
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = serial[0]! & 0x7f | 0x01; // positive, no leading zero byte
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: [...serial].map((b) => b.toString(16).padStart(2, "0")).join(""),
    name: `CN=${CERT_NAME}`,
    notBefore: new Date(now - 24 * 3600 * 1000),
    notAfter: new Date(now + years * 365.25 * 24 * 3600 * 1000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: CERT_NAME },
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return {
    cert: cert.toString("pem") + "\n",
    key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") + "\n",
  };
}

/** Writes `text` atomically (temp file created with `mode`, fsync, rename, fsync dir). */
async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const dir = join(path, "..");
  const tmp = tempPath(dir, "tls");
  const data = new TextEncoder().encode(text);
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true, mode });
    try {
      let off = 0;
      while (off < data.length) off += await f.write(data.subarray(off));
      await f.sync();
    } finally {
      f.close();
    }
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, mode); // in case of a umask
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await fsyncDir(dir);
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Where the server's own certificate and key live in `dataDir`. */
function ownFiles(dataDir: string): { dir: string; certFile: string; keyFile: string } {
  const dir = join(dataDir, "tls");
  return { dir, certFile: join(dir, "cert.pem"), keyFile: join(dir, "key.pem") };
}

/** The server's own certificate from `DATA/tls/`, or null if there is none yet. */
export async function readCertificate(dataDir: string): Promise<ServerCertificate | null> {
  const { certFile, keyFile } = ownFiles(dataDir);
  const cert = await readIfExists(certFile);
  const key = cert === null ? null : await readIfExists(keyFile);
  if (cert === null || key === null) return null;
  return { cert, key, fingerprint: checkedFingerprint(cert, certFile), certFile, created: false };
}

/**
 * A new self-signed certificate for `dataDir`, in memory only (`created: true`): the server
 * listens with it first and {@link saveCertificate}s it only once it could, so a failed start
 * leaves no key behind.
 */
export async function newCertificate(dataDir: string): Promise<ServerCertificate> {
  const made = await createSelfSigned();
  const { certFile } = ownFiles(dataDir);
  return { ...made, fingerprint: pemFingerprint(made.cert), certFile, created: true };
}

/**
 * Writes a {@link newCertificate} to `DATA/tls/` (key file mode 0600, folder 0700). The key is
 * written before the certificate, so a crash in between leaves no certificate and the next start
 * simply creates a new pair.
 */
export async function saveCertificate(dataDir: string, c: ServerCertificate): Promise<void> {
  const { dir, certFile, keyFile } = ownFiles(dataDir);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  if (Deno.build.os !== "windows") await Deno.chmod(dir, 0o700);
  await writeAtomic(keyFile, c.key, 0o600);
  await writeAtomic(certFile, c.cert, 0o600);
}

/**
 * The server's own certificate: `DATA/tls/cert.pem` and `DATA/tls/key.pem`, created (and saved)
 * on first use.
 */
export async function loadOrCreateCertificate(dataDir: string): Promise<ServerCertificate> {
  const found = await readCertificate(dataDir);
  if (found) return found;
  const made = await newCertificate(dataDir);
  await saveCertificate(dataDir, made);
  return made;
}

/** Reads an operator-provided certificate (chain) and key. Throws a one-line error. */
export async function loadCertificateFiles(
  certFile: string,
  keyFile: string,
): Promise<ServerCertificate> {
  let cert: string, key: string;
  try {
    cert = await Deno.readTextFile(certFile);
    key = await Deno.readTextFile(keyFile);
  } catch (e) {
    throw new Error(`Cannot read the TLS certificate or key: ${(e as Error).message}`);
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
    throw new Error(`Cannot use ${keyFile}: it holds no PEM private key`);
  }
  return { cert, key, fingerprint: checkedFingerprint(cert, certFile), certFile, created: false };
}

function checkedFingerprint(pem: string, file: string): string {
  try {
    return pemFingerprint(pem);
  } catch (e) {
    throw new Error(`Cannot use ${file}: it holds no PEM certificate (${(e as Error).message})`);
  }
}
