/**
 * Several instances on one PostgreSQL database and one S3 bucket (in this process: the same
 * `startServer` as `cloud-server`), with simulated devices on given instances (real TLS, real
 * protocol): the shared certificate; push from a commit on one instance to a device on another,
 * and after the notification channel drops (reconnected, or polled meanwhile); big uploads
 * announced on one instance and streamed through another, with their fallbacks; concurrent
 * commits to one account through two instances; throttles and budgets that hold across
 * instances.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Deployment, type Deployment as D, deploymentEnv, type Instance } from "./deployment.ts";
import { SimDevice } from "../../bench/sim_device.ts";
import { RemoteError } from "../../lib/protocol/peer.ts";
import { loadOrCreateCertificate } from "../../lib/transport/tls_cert.ts";
import { IP_THROTTLE } from "../../lib/server/limits.ts";
import { adminRows } from "./services_env.ts";

const opts = {
  ignore: deploymentEnv.skip !== undefined,
  sanitizeResources: true,
  sanitizeOps: true,
};

/** Waits until `check()` holds, polling every 10 ms; fails after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string) {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A device signed in on `inst` (registered, or joined with `serial`). */
async function deviceOn(
  d: D,
  inst: Instance,
  name: string,
  serial?: string,
  onChanged?: (seq: number, at: number) => void,
): Promise<SimDevice & { serial: string }> {
  const dev = new SimDevice({
    host: "127.0.0.1",
    port: inst.server.port,
    ca: await d.ca(),
    ...(onChanged ? { onChanged } : {}),
  }) as SimDevice & { serial: string };
  await dev.connect();
  if (serial) {
    await dev.enroll(serial, name);
    dev.serial = serial;
  } else dev.serial = await dev.register(name);
  await dev.watch();
  return dev;
}

/** Kills the listening connection of `inst` in the database (as a failover or restart would). */
async function cutChannel(d: D, inst: Instance): Promise<void> {
  const pid = inst.server.cluster!.status.listenerPid;
  assert.ok(pid, "the instance listens");
  const [r] = await adminRows<{ ok: boolean }>(d.url, "SELECT pg_terminate_backend($1) AS ok", [
    pid,
  ]);
  assert.equal(r?.ok, true);
  await until(() => !inst.server.cluster!.status.listening, 5_000, "the instance saw the drop");
}

const enc = new TextEncoder();

Deno.test("instances share one certificate: stored once, loaded by the others", opts, async () => {
  await using d = await Deployment.create();
  // Three instances start at once on an empty database: one certificate wins.
  const three = await Promise.all([d.start(), d.start(), d.start()]);
  const prints = new Set(three.map((i) => i.server.certificate.fingerprint));
  assert.equal(prints.size, 1, "every instance presents the same certificate");
  assert.equal(three.filter((i) => i.server.certificate.created).length, 1, "created once");
  assert.ok(three.every((i) => i.server.certificate.shared));
  const rows = await d.rows<{ n: number }>("SELECT COUNT(*)::int AS n FROM tls_certificate");
  assert.equal(rows[0]!.n, 1);
  // A later instance loads it, whatever its data directory holds.
  const dir = join(await d.tempDir(), "data");
  const own = await loadOrCreateCertificate(dir);
  const later = await d.start({ dataDir: dir });
  assert.equal(later.server.certificate.fingerprint, [...prints][0]);
  assert.notEqual(own.fingerprint, [...prints][0]);
  // A device pinned to it connects to each of them.
  for (const inst of [...three, later]) {
    const dev = await deviceOn(d, inst, "probe");
    dev.close();
  }
});

Deno.test("the first instance on a database offers its own certificate", opts, async () => {
  // A server that ran alone (DATA/tls/) moves to --meta: its clients' pins still hold.
  await using d = await Deployment.create();
  const dir = join(await d.tempDir(), "data");
  const own = await loadOrCreateCertificate(dir);
  const first = await d.start({ dataDir: dir });
  assert.equal(first.server.certificate.fingerprint, own.fingerprint);
  const second = await d.start();
  assert.equal(second.server.certificate.fingerprint, own.fingerprint);
});

Deno.test("a commit on one instance reaches a device on another at once", opts, async () => {
  await using d = await Deployment.create();
  const [i1, i2] = [await d.start(), await d.start()];
  const seen = new Map<number, number>();
  const a = await deviceOn(d, i1, "A");
  const b = await deviceOn(d, i2, "B", a.serial, (seq, at) => {
    if (!seen.has(seq)) seen.set(seq, at);
  });
  try {
    const lat: number[] = [];
    for (let k = 0; k < 30; k++) {
      const r = await a.commitFile(`f${k}.txt`, enc.encode(`file ${k}`));
      assert.ok(r.ok);
      const done = performance.now();
      await until(() => seen.has(r.version), 2_000, `B told of version ${r.version}`);
      lat.push(Math.max(0, seen.get(r.version)! - done));
    }
    lat.sort((x, y) => x - y);
    const median = lat[Math.floor(lat.length / 2)]!;
    console.log(
      `cross-instance push: median ${median.toFixed(1)} ms, max ${lat.at(-1)!.toFixed(1)} ms`,
    );
    assert.ok(median < 200, `median ${median} ms`);
    assert.equal(i2.server.cluster!.status.listening, true);
    await b.pull();
    assert.equal(b.tree.size, 30);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test(
  "when the channel drops, changes still arrive: polled meanwhile, then heard again",
  opts,
  async (t) => {
    await using d = await Deployment.create();
    const i1 = await d.start();
    // i2 waits long before listening again: only its poll can tell B meanwhile.
    const i2 = await d.start({ cluster: { pollMs: 200, reconnectMs: 60_000 } });
    const i3 = await d.start({ cluster: { pollMs: 200, reconnectMs: 50 } });
    let lastB = 0;
    let lastC = 0;
    const a = await deviceOn(d, i1, "A");
    const b = await deviceOn(d, i2, "B", a.serial, (seq) => lastB = Math.max(lastB, seq));
    const c = await deviceOn(d, i3, "C", a.serial, (seq) => lastC = Math.max(lastC, seq));
    try {
      await t.step("polled while the channel is down", async () => {
        await cutChannel(d, i2);
        const polls = i2.server.cluster!.status.polls;
        const r = await a.commitFile("while-down.txt", enc.encode("x"));
        assert.ok(r.ok);
        await until(() => lastB >= r.version, 2_000, "B told by the poll");
        assert.ok(i2.server.cluster!.status.polls > polls);
        assert.equal(i2.server.cluster!.status.listening, false, "still not listening");
      });
      await t.step("listening again, with what came meanwhile", async () => {
        await cutChannel(d, i3);
        const r = await a.commitFile("meanwhile.txt", enc.encode("y"));
        assert.ok(r.ok);
        await until(() => i3.server.cluster!.status.listening, 5_000, "i3 listens again");
        assert.equal(i3.server.cluster!.status.reconnects, 1);
        await until(() => lastC >= r.version, 2_000, "C told");
        const r2 = await a.commitFile("after.txt", enc.encode("z"));
        assert.ok(r2.ok);
        await until(() => lastC >= r2.version, 1_000, "C told through the channel again");
      });
    } finally {
      a.close();
      b.close();
      c.close();
    }
  },
);

Deno.test(
  "an upload withdrawn on one instance ends the waits on another at once",
  opts,
  async () => {
    await using d = await Deployment.create();
    const i1 = await d.start();
    const i2 = await d.start();
    const incoming: Record<string, unknown>[] = [];
    const a = await deviceOn(d, i1, "A");
    const b = new SimDevice({
      host: "127.0.0.1",
      port: i2.server.port,
      ca: await d.ca(),
      onIncoming: (e) => incoming.push(e),
    });
    await b.connect();
    await b.enroll(a.serial, "B");
    await b.watch();
    const { sha256 } = await import("../../bench/sim_device.ts");
    const data = crypto.getRandomValues(new Uint8Array(30_000));
    const ref = { hash: sha256(data), size: data.length };
    try {
      await a.request({
        t: "announce",
        path: "big.bin",
        size: ref.size,
        mtime: 1,
        exec: false,
        hash: "ef".repeat(32),
        chunks: [ref],
      });
      await until(() => incoming.length === 1, 2_000, "B got the incoming notice");
      const t0 = performance.now();
      const waiting = b.request({ t: "get", hash: ref.hash, wait: true }).catch((x) => x);
      await new Promise((r) => setTimeout(r, 200));
      await a.request({ t: "withdraw" }); // A's upload failed (a full disk, the file changed)
      const e = await waiting;
      assert.ok(e instanceof RemoteError && e.code === "not-found", String(e));
      const waited = performance.now() - t0;
      assert.ok(waited < 1_500, `B waited ${waited} ms (the announcement lasts 10 minutes)`);
    } finally {
      a.close();
      b.close();
    }
  },
);

Deno.test(
  "a big upload announced on one instance streams to a device on another",
  opts,
  async (t) => {
    await using d = await Deployment.create();
    const i1 = await d.start();
    const i2 = await d.start({ cluster: { reconnectMs: 60_000 } });
    const incoming: Record<string, unknown>[] = [];
    const a = await deviceOn(d, i1, "A");
    const b = new SimDevice({
      host: "127.0.0.1",
      port: i2.server.port,
      ca: await d.ca(),
      onIncoming: (e) => incoming.push(e),
    });
    await b.connect();
    await b.enroll(a.serial, "B");
    await b.watch();
    const chunks = [1, 2, 3].map((k) => crypto.getRandomValues(new Uint8Array(20_000 + k)));
    const { sha256 } = await import("../../bench/sim_device.ts");
    const refs = chunks.map((c) => ({ hash: sha256(c), size: c.length }));
    try {
      await t.step("B hears of it and its wait ends when A's chunk is stored", async () => {
        await a.request({
          t: "announce",
          path: "big.bin",
          size: 40_003,
          mtime: 1,
          exec: false,
          hash: "ab".repeat(32),
          chunks: refs.slice(0, 2),
        });
        await until(() => incoming.length === 1, 2_000, "B got the incoming notice");
        assert.equal((incoming[0] as { path: string }).path, "big.bin");
        const t0 = performance.now();
        const waiting = b.request({ t: "getMany", hashes: [refs[0]!.hash], wait: true });
        await new Promise((r) => setTimeout(r, 300));
        await a.put([chunks[0]!]);
        const got = await waiting;
        assert.equal(got.body.length, chunks[0]!.length);
        const waited = performance.now() - t0;
        assert.ok(waited >= 290 && waited < 1_000, `waited ${waited} ms`);
      });
      await t.step("with the channel down, the wait ends when the index has it", async () => {
        await cutChannel(d, i2);
        const t0 = performance.now();
        const waiting = b.request({ t: "get", hash: refs[1]!.hash, wait: true });
        await new Promise((r) => setTimeout(r, 100));
        await a.put([chunks[1]!]); // its notice cannot reach i2
        const got = await waiting;
        assert.equal(got.body.length, chunks[1]!.length);
        assert.ok(performance.now() - t0 < 2_500, "found by the index re-check");
      });
      await t.step("an announcement i2 never heard: a normal download", async () => {
        await a.request({
          t: "announce",
          path: "big2.bin",
          size: 20_003,
          mtime: 1,
          exec: false,
          hash: "cd".repeat(32),
          chunks: [refs[2]!],
        });
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(incoming.length, 1, "no notice while the channel is down");
        // Not announced as far as i2 knows: answered at once, not held.
        const t0 = performance.now();
        const e = await b.request({ t: "get", hash: refs[2]!.hash, wait: true }).catch((x) => x);
        assert.ok(e instanceof RemoteError && e.code === "not-found", String(e));
        assert.ok(performance.now() - t0 < 1_000, "not held");
        await a.put([chunks[2]!]);
        const r = await a.commit([{
          path: "big2.bin",
          baseVersion: 0,
          kind: "file",
          deleted: false,
          size: 20_003,
          mtime: 1,
          exec: false,
          hash: refs[2]!.hash,
          chunks: [refs[2]!],
        }]);
        assert.ok(r[0]!.ok);
        await b.pull();
        assert.equal(b.tree.get("big2.bin")?.hash, refs[2]!.hash);
        assert.equal(await b.download([refs[2]!.hash]), 20_003);
      });
    } finally {
      a.close();
      b.close();
    }
  },
);

Deno.test(
  "concurrent commits through two instances: never two accepted against the same base",
  opts,
  async () => {
    await using d = await Deployment.create();
    const [i1, i2] = [await d.start(), await d.start()];
    const a = await deviceOn(d, i1, "A");
    const devices = [
      a,
      await deviceOn(d, i2, "B", a.serial),
      await deviceOn(d, i1, "C", a.serial),
      await deviceOn(d, i2, "D", a.serial),
    ];
    const accepted: { path: string; base: number; version: number }[] = [];
    let conflicts = 0;
    try {
      await Promise.all(devices.map(async (dev, k) => {
        for (let n = 0; n < 25; n++) {
          const path = `shared/${n % 3}.txt`;
          await dev.pull();
          const base = dev.tree.get(path)?.version ?? 0;
          const r = await dev.commitFile(path, enc.encode(`device ${k} round ${n}`));
          if (r.ok) accepted.push({ path, base, version: r.version });
          else {
            assert.equal(r.reason, "conflict");
            conflicts++;
          }
        }
      }));
      const bases = new Set(accepted.map((x) => `${x.path}@${x.base}`));
      assert.equal(bases.size, accepted.length, "one accepted commit per (path, base)");
      const versions = new Set(accepted.map((x) => x.version));
      assert.equal(versions.size, accepted.length, "every accepted commit has its own version");
      assert.ok(conflicts > 0, "the devices did race");
      // The journal holds each accepted version: the entries and the kept versions.
      const history = await d.rows<{ version: number }>(
        `SELECT version::int FROM entries WHERE kind = 'file' UNION ALL
         SELECT version::int FROM versions WHERE kind = 'file'`,
      );
      assert.deepEqual(
        history.map((h) => h.version).sort((x, y) => x - y),
        [...versions].sort((x, y) => x - y),
      );
      console.log(`${accepted.length} accepted, ${conflicts} conflicts`);
    } finally {
      for (const dev of devices) dev.close();
    }
  },
);

Deno.test("throttles and registration budgets hold across instances", opts, async () => {
  await using d = await Deployment.create();
  const LONG = 60 * 60_000;
  const limits = {
    ipThrottle: { ...IP_THROTTLE, freeFailures: 3, baseLockoutMs: LONG, maxLockoutMs: LONG },
    registerBurst: 2,
    registerPerHour: 1,
  };
  const [i1, i2] = [await d.start({ limits }), await d.start({ limits })];
  const ca = await d.ca();
  const on = async (inst: Instance) => {
    const dev = new SimDevice({ host: "127.0.0.1", port: inst.server.port, ca });
    await dev.connect();
    return dev;
  };
  const code = (p: Promise<unknown>) =>
    p.then(() => "ok", (e) => e instanceof RemoteError ? e.code : String(e));
  const opened: SimDevice[] = [];
  try {
    // Registrations: two from this address in all, whichever instance is asked.
    const r1 = await on(i1);
    const r2 = await on(i2);
    const r3 = await on(i1);
    opened.push(r1, r2, r3);
    assert.equal(await code(r1.register("one")), "ok");
    assert.equal(await code(r2.register("two")), "ok");
    assert.equal(await code(r3.register("three")), "throttled");
    // Failed enrollments, spread over both instances, count once.
    const codes = [];
    for (let k = 0; k < 5; k++) {
      const dev = await on(k % 2 ? i2 : i1);
      opened.push(dev);
      codes.push(await code(dev.enroll("0000-0000-0000-0000-0000-0000-0000-0000", "x")));
    }
    assert.deepEqual(codes, ["bad-serial", "bad-serial", "bad-serial", "bad-serial", "throttled"]);
  } finally {
    for (const dev of opened) dev.close();
  }
});
