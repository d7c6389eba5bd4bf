/**
 * TLS transport: the server's certificate is created once and reused; fingerprints have the
 * SSH/OpenSSL form; the client pins on first use and refuses a different certificate.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  createSelfSigned,
  loadCertificateFiles,
  loadOrCreateCertificate,
  normalizeFingerprint,
  pemFingerprint,
} from "../../lib/transport/tls_cert.ts";
import { CertificateError, dialTls } from "../../lib/transport/dial.ts";
import { listenTls } from "../../lib/transport/listen.ts";
import { makeCa, selfSignedCa } from "./test_ca.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };
const FP = /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/;

/** An echo server over TLS with `cert`; `close()` stops it and its connections. */
function echoServer(cert: { cert: string; key: string }) {
  const listener = listenTls({
    hostname: "127.0.0.1",
    port: 0,
    certificate: { ...cert, fingerprint: pemFingerprint(cert.cert), certFile: "", created: false },
  });
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    const handlers: Promise<void>[] = [];
    for await (const conn of listener) {
      conns.add(conn);
      handlers.push((async () => {
        const buf = new Uint8Array(1024);
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            await conn.write(buf.subarray(0, n));
          }
        } catch { /* the client went away or refused the handshake */ }
        try {
          conn.close();
        } catch { /* already closed */ }
        conns.delete(conn);
      })());
    }
    await Promise.all(handlers);
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    fingerprint: pemFingerprint(cert.cert),
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await serving;
    },
  };
}

async function echo(conn: Deno.TlsConn, text: string): Promise<string> {
  await conn.write(new TextEncoder().encode(text));
  const buf = new Uint8Array(1024);
  const n = await conn.read(buf);
  return new TextDecoder().decode(buf.subarray(0, n ?? 0));
}

Deno.test("the server certificate is created once, private, and reused", opts, async () => {
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-tls-" });
  try {
    const first = await loadOrCreateCertificate(dir);
    assert.equal(first.created, true);
    assert.match(first.fingerprint, FP);
    assert.equal(first.certFile, join(dir, "tls", "cert.pem"));
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(join(dir, "tls", "key.pem"))).mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(join(dir, "tls"))).mode! & 0o777, 0o700);
    }
    // No temporary files left behind.
    const names = [];
    for await (const e of Deno.readDir(join(dir, "tls"))) names.push(e.name);
    assert.deepEqual(names.sort(), ["cert.pem", "key.pem"]);

    const again = await loadOrCreateCertificate(dir);
    assert.equal(again.created, false);
    assert.equal(again.fingerprint, first.fingerprint);
    assert.equal(again.cert, first.cert);
    assert.equal(again.key, first.key);

    // The same files given explicitly (--cert/--key) load the same certificate.
    const given = await loadCertificateFiles(
      join(dir, "tls", "cert.pem"),
      join(dir, "tls", "key.pem"),
    );
    assert.equal(given.fingerprint, first.fingerprint);
    await assert.rejects(
      loadCertificateFiles(join(dir, "tls", "cert.pem"), join(dir, "tls", "cert.pem")),
      /holds no PEM private key/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the fingerprint is SHA-256 of the DER certificate, as colon hex pairs", async () => {
  const { cert } = await createSelfSigned();
  const b64 = cert.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
  const der = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const expected = createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)!
    .join(":");
  assert.equal(pemFingerprint(cert), expected);
  assert.match(expected, FP);
  // Users may type it in any case, with or without colons.
  assert.equal(normalizeFingerprint(expected.toLowerCase()), expected);
  assert.equal(normalizeFingerprint(expected.replaceAll(":", "")), expected);
  assert.equal(normalizeFingerprint(`SHA256:${expected}`), expected);
  assert.equal(normalizeFingerprint("AB:CD"), null);
  assert.equal(normalizeFingerprint(expected.replace(/^../, "ZZ")), null);
});

Deno.test("first contact pins the certificate; later contacts must match it", opts, async () => {
  const server = echoServer(await createSelfSigned());
  try {
    const first = await dialTls({ host: "127.0.0.1", port: server.port });
    assert.equal(first.changed, true);
    assert.deepEqual(first.trust, { fingerprint: server.fingerprint });
    assert.match(first.note, /on first use/);
    assert.equal(await echo(first.conn, "hello"), "hello");
    first.conn.close();

    const again = await dialTls({ host: "127.0.0.1", port: server.port, trust: first.trust });
    assert.equal(again.changed, false);
    assert.equal(await echo(again.conn, "again"), "again");
    again.conn.close();

    const given = await dialTls({
      host: "127.0.0.1",
      port: server.port,
      expectFingerprint: server.fingerprint,
    });
    assert.equal(given.changed, true);
    assert.deepEqual(given.trust, { fingerprint: server.fingerprint });
    given.conn.close();
  } finally {
    await server.close();
  }
});

Deno.test("a client with a wrong pinned fingerprint is refused", opts, async () => {
  const server = echoServer(await createSelfSigned());
  const other = pemFingerprint((await createSelfSigned()).cert);
  try {
    // Pinned up front with --server-fingerprint (the first connection must match).
    const given = await dialTls({ host: "127.0.0.1", port: server.port, expectFingerprint: other })
      .then(() => null, (e) => e);
    assert.ok(given instanceof CertificateError, String(given));
    assert.match(given.message, /^Cannot connect: the server's certificate does not match/);
    assert.match(given.message, /someone may be intercepting/);
    assert.ok(given.message.includes(server.fingerprint) && given.message.includes(other));
    // Pinned in the folder's config (trust on first use, earlier).
    const kept = await dialTls({
      host: "127.0.0.1",
      port: server.port,
      trust: { fingerprint: other },
    })
      .then(() => null, (e) => e);
    assert.ok(kept instanceof CertificateError, String(kept));
    assert.match(kept.message, /^Cannot connect: the server's certificate changed/);
    assert.match(kept.message, /on purpose.*--server-fingerprint/);
    assert.match(kept.message, /someone may be intercepting/);
    assert.ok(kept.message.includes(server.fingerprint) && kept.message.includes(other));
    // The stored pin yields to --server-fingerprint (how a new certificate is accepted).
    const repinned = await dialTls({
      host: "127.0.0.1",
      port: server.port,
      trust: { fingerprint: other },
      expectFingerprint: server.fingerprint,
    });
    assert.equal(repinned.changed, true);
    assert.deepEqual(repinned.trust, { fingerprint: server.fingerprint });
    repinned.conn.close();
  } finally {
    await server.close();
  }
});

Deno.test("a changed server certificate is refused after trust on first use", opts, async () => {
  const before = echoServer(await createSelfSigned());
  const port = before.port;
  const first = await dialTls({ host: "127.0.0.1", port });
  first.conn.close();
  await before.close();
  // Same address, new certificate (an impostor, or a server whose tls/ folder was deleted).
  const after = echoServer(await createSelfSigned());
  try {
    const err = await dialTls({ host: "127.0.0.1", port: after.port, trust: first.trust })
      .then(() => null, (e) => e);
    assert.ok(err instanceof CertificateError, String(err));
    assert.match(err.message, /the server's certificate changed/);
    // A self-signed certificate is no substitute for a CA-verified one either.
    const ca = await dialTls({
      host: "127.0.0.1",
      port: after.port,
      trust: { caVerified: true },
    }).then(() => null, (e) => e);
    assert.ok(ca instanceof CertificateError, String(ca));
    assert.match(ca.message, /not valid for 127\.0\.0\.1/);
  } finally {
    await after.close();
  }
});

Deno.test("an unreachable server is an ordinary (retryable) error", opts, async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const err = await dialTls({ host: "127.0.0.1", port }).then(() => null, (e) => e);
  assert.ok(err instanceof Error);
  assert.ok(!(err instanceof CertificateError), String(err));
});

Deno.test(
  "a leaf of a private CA is pinned on first use when the server sends its chain",
  opts,
  async () => {
    const ca = await makeCa();
    const leaf = await ca.issue();
    const server = echoServer({ cert: leaf.cert + ca.pem, key: leaf.key });
    try {
      const first = await dialTls({ host: "127.0.0.1", port: server.port });
      assert.deepEqual(first.trust, { fingerprint: server.fingerprint });
      assert.match(first.note, /on first use: fingerprint .*issued by CN=Test Internal CA/);
      assert.equal(await echo(first.conn, "hello"), "hello");
      first.conn.close();
      const again = await dialTls({ host: "127.0.0.1", port: server.port, trust: first.trust });
      assert.equal(again.changed, false);
      assert.equal(await echo(again.conn, "again"), "again");
      again.conn.close();
    } finally {
      await server.close();
    }
  },
);

Deno.test(
  "--server-ca: leaves of that authority are trusted, renewed ones too; others are refused",
  opts,
  async () => {
    const ca = await makeCa();
    const leaf = await ca.issue();
    const server = echoServer(leaf); // the leaf alone: nothing to pin it by
    const renewed = echoServer(await ca.issue());
    const other = await makeCa("Another CA");
    const stranger = echoServer(await createSelfSigned()); // an ordinary self-signed one
    const impostor = echoServer(await other.issue());
    try {
      const without = await dialTls({ host: "127.0.0.1", port: server.port }).then(
        () => null,
        (e) => e,
      );
      assert.ok(without instanceof CertificateError, String(without));
      assert.match(
        without.message,
        /^Cannot connect: the server's certificate .* is issued by an authority this computer does not trust \(CN=Test Internal CA\), and the server does not send that authority's certificate; .*--server-ca FILE/,
      );
      const first = await dialTls({ host: "127.0.0.1", port: server.port, serverCa: ca.pem });
      assert.deepEqual(first.trust, { ca: ca.pem });
      assert.equal(first.changed, true);
      assert.match(first.note, /issued for 127\.0\.0\.1 by the authority of --server-ca/);
      assert.equal(await echo(first.conn, "hi"), "hi");
      first.conn.close();
      // Kept in the folder: later connections need no flag, and a renewed leaf is fine.
      for (const port of [server.port, renewed.port]) {
        const again = await dialTls({ host: "127.0.0.1", port, trust: first.trust });
        assert.equal(again.changed, false);
        again.conn.close();
      }
      for (const port of [impostor.port, stranger.port]) {
        const e = await dialTls({ host: "127.0.0.1", port, trust: first.trust }).then(
          () => null,
          (x) => x,
        );
        assert.ok(e instanceof CertificateError, String(e));
        assert.match(
          e.message,
          /^Cannot connect: the server's certificate is not valid for 127\.0\.0\.1 under the authority of --server-ca/,
        );
      }
    } finally {
      for (const s of [server, renewed, stranger, impostor]) await s.close();
    }
  },
);

Deno.test("a chain whose authority did not issue the leaf pins nothing", opts, async () => {
  const ca = await makeCa();
  const decoy = await makeCa("Test Internal CA"); // the same name, another key
  const leaf = await ca.issue();
  const server = echoServer({ cert: leaf.cert + decoy.pem, key: leaf.key });
  try {
    const e = await dialTls({ host: "127.0.0.1", port: server.port }).then(() => null, (x) => x);
    assert.ok(e instanceof CertificateError, String(e));
    assert.match(e.message, /does not send that authority's certificate/);
  } finally {
    await server.close();
  }
});

Deno.test(
  "a CA certificate used as the server's certificate is refused in words",
  opts,
  async () => {
    const server = echoServer(await selfSignedCa());
    try {
      const e = await dialTls({ host: "127.0.0.1", port: server.port }).then(() => null, (x) => x);
      assert.ok(e instanceof CertificateError, String(e));
      assert.match(
        e.message,
        /^Cannot connect: the server's certificate is a certificate authority's \(CA:TRUE\)/,
      );
    } finally {
      await server.close();
    }
  },
);
