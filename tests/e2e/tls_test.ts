/**
 * End to end: everything on the wire is TLS (a relay between client and server sees neither
 * file content nor secrets), and an enrolled client refuses a server whose certificate changed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  waitForContent,
} from "./harness.ts";
import { makeCa } from "../transport/test_ca.ts";
import { startRelay } from "./relay.ts";
import { EXIT } from "../../lib/util/exit_codes.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

async function fingerprintOf(server: Proc): Promise<string> {
  const m = await server.waitForLine(
    /^TLS certificate fingerprint: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$/,
  );
  return m[1]!;
}

async function readConfig(folder: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(folder, ".cloudsync", "config.json")));
}

Deno.test("a relay between client and server sees no content and no secret", opts, async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  const b = join(tmp.path, "b");
  // Random hex: distinctive, and too short and random for compression to hide it.
  const secret = `distinctive-${crypto.randomUUID()}-${crypto.randomUUID()}`;
  await put(a, "secret.txt", `${secret}\n`);
  const server = await ServerProc.start(join(tmp.path, "data"));
  const relay = startRelay(server.port, { record: true });
  const procs: Proc[] = [server];
  try {
    const [ca, serial] = await startFirstClient("A", relay.port, a);
    procs.push(ca);
    const cb = startClient("B", relay.port, b, { serial });
    procs.push(cb);
    await waitForContent(b, "secret.txt", `${secret}\n`, 30_000);
    const fp = await fingerprintOf(server);
    const configA = await readConfig(a);
    const configB = await readConfig(b);
    assert.equal(configA.serverFingerprint, fp);
    assert.equal(configB.serverFingerprint, fp);
    assert.match(ca.output(), /Trusting the server's certificate on first use: fingerprint /);

    const wire = relay.bytes();
    assert.ok(relay.count() > 1000, `only ${relay.count()} bytes relayed`);
    assert.equal(wire.charCodeAt(0), 0x16, "the first byte is not a TLS handshake record");
    assert.ok(!wire.includes(secret), "file content seen on the wire");
    assert.ok(!wire.includes(serial), "serial code seen on the wire");
    assert.ok(!wire.includes(serial.replaceAll("-", "")), "serial code seen on the wire");
    for (const token of [configA.token, configB.token]) {
      assert.equal(typeof token, "string");
      assert.ok((token as string).length >= 16);
      assert.ok(!wire.includes(token as string), "device token seen on the wire");
    }
    assert.ok(!wire.includes("secret.txt"), "file name seen on the wire");
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await relay.close();
  }
});

Deno.test("an enrolled client refuses a server whose certificate changed", opts, async () => {
  await using tmp = await tempDir();
  const data = join(tmp.path, "data");
  const a = join(tmp.path, "a");
  await put(a, "f.txt", "before the change\n");
  let server = await ServerProc.start(data);
  const port = server.port;
  const oldFp = await fingerprintOf(server);
  const procs: Proc[] = [server];
  try {
    const [ca] = await startFirstClient("A", port, a);
    procs.push(ca);
    await ca.waitForLine(/^Synced: 1 sent/);
    await ca.stop();
    assert.equal((await readConfig(a)).serverFingerprint, oldFp);

    // The same data on restart: the same certificate.
    await server.stop();
    server = await ServerProc.start(data, port);
    procs.push(server);
    assert.equal(await fingerprintOf(server), oldFp);
    assert.match(server.output(), /^TLS certificate: .*cert\.pem$/m);

    // A new certificate (as an impostor would present): the client refuses and exits 4 (certificate).
    await server.stop();
    await Deno.remove(join(data, "tls"), { recursive: true });
    server = await ServerProc.start(data, port);
    procs.push(server);
    const newFp = await fingerprintOf(server);
    assert.notEqual(newFp, oldFp);
    assert.match(server.output(), /created now, self-signed/);
    const refused = startClient("A", port, a);
    procs.push(refused);
    assert.equal((await refused.exited()).code, EXIT.certificate, refused.output());
    assert.match(
      refused.output(),
      /^Cannot connect: the server's certificate changed\..*on purpose.*--server-fingerprint .*someone may be intercepting/m,
    );
    assert.ok(refused.output().includes(newFp));
    assert.equal((await readConfig(a)).serverFingerprint, oldFp, "the pin must not change");

    // A wrong --server-fingerprint at first contact: refused, nothing written.
    const fresh = join(tmp.path, "fresh");
    const wrong = new Proc("wrong", [
      "client.ts",
      "127.0.0.1",
      String(port),
      fresh,
      "2",
      "--server-fingerprint",
      oldFp,
    ]);
    procs.push(wrong);
    assert.equal((await wrong.exited()).code, EXIT.certificate, wrong.output());
    assert.match(wrong.output(), /^Cannot connect: the server's certificate does not match/m);
    await assert.rejects(Deno.stat(fresh), Deno.errors.NotFound);

    // The owner accepts the new certificate on purpose: --server-fingerprint NEW re-pins.
    const accepted = new Proc("A", [
      "client.ts",
      "127.0.0.1",
      String(port),
      a,
      "2",
      "--server-fingerprint",
      newFp.toLowerCase(),
    ]);
    procs.push(accepted);
    await accepted.waitForLine(/^Pinned the server's certificate/);
    await accepted.waitForLine(/^Syncing /);
    await put(a, "g.txt", "after the change\n");
    await accepted.waitForLine(/^Synced: 1 sent/);
    assert.equal((await readConfig(a)).serverFingerprint, newFp);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
});

Deno.test(
  "a server certificate from an internal CA: --server-ca, or pinned on first use",
  opts,
  async () => {
    await using tmp = await tempDir();
    const ca = await makeCa();
    const leaf = await ca.issue();
    const files = {
      ca: join(tmp.path, "ca.pem"),
      cert: join(tmp.path, "cert.pem"),
      chain: join(tmp.path, "chain.pem"),
      key: join(tmp.path, "key.pem"),
    };
    await Deno.writeTextFile(files.ca, ca.pem);
    await Deno.writeTextFile(files.cert, leaf.cert);
    await Deno.writeTextFile(files.chain, leaf.cert + ca.pem);
    await Deno.writeTextFile(files.key, leaf.key, { mode: 0o600 });
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    await put(a, "f.txt", "under an internal CA\n");
    // The leaf alone: A trusts the authority with --server-ca.
    let server = await ServerProc.start(join(tmp.path, "data"), 0, [
      "--cert",
      files.cert,
      "--key",
      files.key,
    ]);
    const port = server.port;
    const procs: Proc[] = [server];
    try {
      const ca1 = new Proc("A", [
        "client.ts",
        "127.0.0.1",
        String(port),
        a,
        "2",
        "--server-ca",
        files.ca,
      ]);
      procs.push(ca1);
      const serial = (await ca1.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
      assert.match(ca1.output(), /issued for 127\.0\.0\.1 by the authority of --server-ca/);
      assert.equal((await readConfig(a)).serverCa, ca.pem);
      // B without --server-ca: the server does not send the authority, so nothing to pin.
      const noCa = startClient("B", port, b, { serial });
      procs.push(noCa);
      assert.equal(await noCa.exitCode(), EXIT.certificate, noCa.output()); // permanent: no restart
      assert.match(noCa.output(), /does not send that authority's certificate; .*--server-ca FILE/);
      // The server sends its chain: B pins its certificate on first use.
      await server.stop();
      server = await ServerProc.start(join(tmp.path, "data"), port, [
        "--cert",
        files.chain,
        "--key",
        files.key,
      ]);
      procs.push(server);
      const cb = startClient("B", port, b, { serial });
      procs.push(cb);
      await waitForContent(b, "f.txt", "under an internal CA\n", 30_000);
      assert.match(cb.output(), /on first use: fingerprint .* \(issued by CN=Test Internal CA\)/);
      assert.equal((await readConfig(b)).serverFingerprint, await fingerprintOf(server));
      // A (its authority kept in the folder) carries on after the restart, without the flag.
      await ca1.stop();
      const again = startClient("A", port, a);
      procs.push(again);
      await put(b, "g.txt", "back\n");
      await waitForContent(a, "g.txt", "back\n", 30_000);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
);
