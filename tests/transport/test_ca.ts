/**
 * A private certificate authority for tests: a CA certificate (basicConstraints CA:TRUE) and
 * leaves it issues (CA:FALSE, serverAuth, SANs `localhost` and `127.0.0.1` by default), ECDSA
 * P-256, as an operator's internal CA would make them. rustls refuses a certificate that is its
 * own CA as a server's certificate, hence the two levels.
 *
 * @module
 */

import "reflect-metadata";
import * as x509 from "@peculiar/x509";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const DAY = 24 * 3600 * 1000;

/** A CA that can issue leaves. */
export interface TestCa {
  /** PEM of the CA's certificate. */
  pem: string;
  /** A server certificate (PEM) and its key (PEM, PKCS#8) issued by this CA. */
  issue(opts?: { sans?: string[]; ca?: boolean }): Promise<{ cert: string; key: string }>;
}

let serial = 1;
function nextSerial(): string {
  return (serial++).toString(16).padStart(8, "0").replace(/^0/, "1");
}

async function keyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY") +
    "\n";
}

/** Makes a CA named `name`. */
export async function makeCa(name = "Test Internal CA"): Promise<TestCa> {
  x509.cryptoProvider.set(crypto);
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name: `CN=${name}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 365 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    pem: ca.toString("pem") + "\n",
    async issue(o = {}) {
      const leafKeys = await crypto.subtle.generateKey(ALG, true, [
        "sign",
        "verify",
      ]) as CryptoKeyPair;
      const sans = o.sans ?? ["localhost", "127.0.0.1"];
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: nextSerial(),
        subject: "CN=cloud sync server",
        issuer: ca.subject,
        notBefore: new Date(now - DAY),
        notAfter: new Date(now + 90 * DAY),
        signingAlgorithm: ALG,
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.SubjectAlternativeNameExtension(
            sans.map((v) => ({
              type: /^[\d.]+$/.test(v) ? "ip" as const : "dns" as const,
              value: v,
            })),
          ),
          new x509.BasicConstraintsExtension(o.ca ?? false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return { cert: leaf.toString("pem") + "\n", key: await keyPem(leafKeys.privateKey) };
    },
  };
}

/** A self-signed certificate that says it is a CA (CA:TRUE), used as a server's certificate. */
export async function selfSignedCa(): Promise<{ cert: string; key: string }> {
  x509.cryptoProvider.set(crypto);
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name: "CN=cloud-sync",
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 365 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "cloud-sync" }, {
        type: "ip",
        value: "127.0.0.1",
      }]),
      new x509.BasicConstraintsExtension(true, undefined, true),
    ],
  });
  return { cert: cert.toString("pem") + "\n", key: await keyPem(keys.privateKey) };
}
