/**
 * End to end, scaled out: two `cloud-server` processes on one PostgreSQL database and one S3
 * bucket, behind HAProxy in TCP mode (started here, `bench/haproxy.ts`). Device A connects through
 * the frontend that prefers instance 1, B through the one that prefers instance 2 (each fails
 * over to the other), C through the round-robin one. Every scenario of the core end-to-end test
 * (`tests/e2e/sync_scenarios.ts`) passes so; then the instance A uses is killed (`kill -9`)
 * while A uploads a big file and many small ones, A reconnects through the load balancer to the
 * other instance, and both folders converge, nothing lost; the restarted instance serves again
 * and the stores verify.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Proc,
  put,
  randomBytes,
  ServerProc,
  startClient,
  startFirstClient,
  tree,
  waitConverged,
  waitFor,
} from "../e2e/harness.ts";
import {
  everyKindOfChange,
  liveChanges,
  type Servers,
  symlinksSkipped,
  unsupportedNames,
} from "../e2e/sync_scenarios.ts";
import { Deployment, deploymentEnv } from "./deployment.ts";
import { servicesEnv } from "./services_env.ts";
import { Haproxy, haproxyBinary } from "../../bench/haproxy.ts";

const skip = deploymentEnv.skip ?? servicesEnv(["CLOUDSYNC_HAPROXY"]).skip ??
  (haproxyBinary() ? undefined : "CLOUDSYNC_HAPROXY is not an executable: run scripts/services.sh");

Deno.test({
  name: "e2e, two instances on PostgreSQL + S3 behind HAProxy: every core scenario, then failover",
  ignore: skip !== undefined,
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async (t) => {
    await using d = await Deployment.create();
    const root = await d.tempDir("cloudsync-e2e-cluster-");
    const servers: ServerProc[] = [];
    const start = async (name: string, port = 0) => {
      const s = await ServerProc.start(join(root, `data-${name}`), port, d.flags);
      s.lines.push(`(instance ${name})`);
      servers.push(s);
      return s;
    };
    let i1 = await start("i1");
    const i2 = await start("i2");
    const lb = await Haproxy.start({
      backends: [{ name: "i1", port: i1.port }, { name: "i2", port: i2.port }],
      preferred: true,
    });
    const serverState = async (prefix: string) =>
      JSON.stringify(
        await d.rows(
          "SELECT path, kind, deleted, version::int FROM entries WHERE path LIKE $1 ORDER BY version",
          [`${prefix}%`],
        ),
      );
    const via: Servers = {
      portA: lb.preferredPort("i1"),
      portB: lb.preferredPort("i2"),
      portC: lb.port,
      procs: servers,
      serverState,
    };
    const clients: Proc[] = [];
    try {
      await t.step("the instances share one certificate", async () => {
        const fp = (s: ServerProc) =>
          s.waitForLine(/^TLS certificate fingerprint: (\S+)$/).then((m) => m[1]);
        assert.equal(await fp(i1), await fp(i2));
        assert.match(i1.output(), /^TLS certificate: in the --meta database/m);
      });
      await t.step("every kind of item and change, A on instance 1, B on instance 2", async (t) => {
        await everyKindOfChange(t, join(root, "kinds"), via);
        // Where they were: A registered on i1, B joined on i2.
        assert.match(i1.output(), /registered by device "A"/);
        assert.match(i2.output(), /Device "B" joined account/);
      });
      await t.step("live changes within seconds, across instances", async (t) => {
        await liveChanges(t, join(root, "live"), via);
      });
      await t.step("names the protocol cannot carry", async () => {
        await unsupportedNames(join(root, "names"), via);
      });
      await t.step("symlinks", async () => {
        await symlinksSkipped(join(root, "links"), via);
      });

      await t.step("instance 1 is killed while A uploads: A fails over, nothing lost", async () => {
        const a = join(root, "kill", "a");
        const b = join(root, "kill", "b");
        const [ca, serial] = await startFirstClient("A", via.portA, a);
        clients.push(ca);
        const cb = startClient("B", via.portB, b, { serial });
        clients.push(cb);
        await cb.waitForLine(/^Syncing /, 30_000);
        const account = JSON.parse(
          await Deno.readTextFile(join(a, ".cloudsync", "config.json")),
        ).account as string;
        await put(root, "kill/staging/big.bin", randomBytes(128 * 1024 * 1024));
        for (let i = 0; i < 300; i++) {
          await put(root, `kill/staging/small/${i % 7}/f${i}.txt`, `small ${i}\n`.repeat(i % 50));
        }
        await Deno.rename(join(root, "kill/staging"), join(a, "new"));
        // Mid-upload: chunks are arriving, the big file is not committed yet.
        const stored = async () =>
          (await d.rows<{ n: number }>(
            "SELECT COALESCE(SUM(stored), 0)::bigint::float8 AS n FROM chunks WHERE account = $1",
            [account],
          ))[0]!.n;
        await waitFor(
          async () => await stored() > 16 * 1024 * 1024,
          () => `no upload seen\n${ca.output()}`,
          60_000,
        );
        await i1.stop("SIGKILL");
        const committed = await d.rows<{ n: number }>(
          "SELECT COUNT(*)::int AS n FROM entries WHERE account = $1 AND path = 'new/big.bin'",
          [account],
        );
        assert.equal(committed[0]!.n, 0, "killed before the big file was committed");
        await waitConverged([a, b], 120_000, [...servers, ca, cb]);
        const tb = await tree(b);
        assert.equal(tb.get("new/big.bin")?.kind, "file");
        assert.equal(
          [...tb.keys()].filter((p) => p.startsWith("new/small/") && p.endsWith(".txt")).length,
          300,
        );
        assert.match(ca.output(), /^Connected to 127\.0\.0\.1:\d+ again$/m);
        // Instance 1 comes back; a change from B still reaches A (wherever A is now).
        i1 = await start("i1", i1.port);
        await put(b, "after-failover.txt", "back\n");
        await waitConverged([a, b], 60_000, [...servers, ca, cb]);
      });

      await t.step("the stores verify", async () => {
        const check = new Proc("verify", [
          "server.ts",
          "verify",
          "--data",
          join(root, "data-i2"),
          ...d.flags,
        ]);
        assert.equal((await check.exited()).code, 0, check.output());
        assert.match(check.output(), /^OK: \d+ accounts, \d+ entries, \d+ chunks verified$/m);
      });
    } finally {
      for (const c of clients.reverse()) await c.stop();
      await lb.stop();
      for (const s of servers) await s.stop();
    }
  },
});
