/**
 * Syncthing as a peer row of the benchmark (Debian's `syncthing` package, where installed): a
 * fresh pair A, B sharing one send-receive folder, everything on 127.0.0.1, driven headless over
 * its REST API, as `../shared/bench-peers/syncthing-pair.sh` does (same settings: GUI/REST and the
 * sync listener on 127.0.0.1 only, devices introduced by ID and static address, discovery, relays,
 * NAT, usage/crash reporting and upgrades off, fsync on, `setLowPriority` false, one folder with
 * the watcher on). Each workload places its data with one rename and then calls `POST
 * /rest/db/scan` on A (synchronous), so the watcher's delay is not charged to Syncthing; done is
 * when B's folder holds every file verified (the same {@link waitForTree} as the product's rows).
 *
 * @module
 */

import { join } from "node:path";
import { type Cpu, Proc, readCpu } from "./procs.ts";
import { DeadlineError, freePort, log, now, run, sleep } from "./util.ts";

const FOLDER_ID = "bench";

function configXml(
  folder: string,
  guiPort: number,
  syncPort: number,
  key: string,
  ids: { a: string; b: string },
  ports: { a: number; b: number },
): string {
  const device = (id: string, name: string, port: number) =>
    `<device id="${id}" name="${name}" compression="metadata" introducer="false">` +
    `<address>tcp://127.0.0.1:${port}</address><paused>false</paused>` +
    `<autoAcceptFolders>false</autoAcceptFolders></device>`;
  return `<configuration version="36">
  <folder id="${FOLDER_ID}" label="${FOLDER_ID}" path="${folder}" type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="true" fsWatcherDelayS="10" ignorePerms="false" autoNormalize="true">
    <filesystemType>basic</filesystemType>
    <device id="${ids.a}"></device>
    <device id="${ids.b}"></device>
    <minDiskFree unit="%">1</minDiskFree>
    <copiers>0</copiers><hashers>0</hashers><order>random</order>
    <markerName>.stfolder</markerName>
    <maxConcurrentWrites>2</maxConcurrentWrites>
    <disableFsync>false</disableFsync>
  </folder>
  ${device(ids.a, "A", ports.a)}
  ${device(ids.b, "B", ports.b)}
  <gui enabled="true" tls="false" debugging="false">
    <address>127.0.0.1:${guiPort}</address><apikey>${key}</apikey>
  </gui>
  <options>
    <listenAddress>tcp://127.0.0.1:${syncPort}</listenAddress>
    <globalAnnounceEnabled>false</globalAnnounceEnabled>
    <localAnnounceEnabled>false</localAnnounceEnabled>
    <relaysEnabled>false</relaysEnabled>
    <natEnabled>false</natEnabled>
    <startBrowser>false</startBrowser>
    <urAccepted>-1</urAccepted>
    <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
    <crashReportingEnabled>false</crashReportingEnabled>
    <setLowPriority>false</setLowPriority>
    <announceLANAddresses>false</announceLANAddresses>
    <reconnectionIntervalS>5</reconnectionIntervalS>
  </options>
</configuration>
`;
}

interface Side {
  name: "A" | "B";
  home: string;
  folder: string;
  gui: number;
  key: string;
  id: string;
  proc: Proc | null;
}

/** A running Syncthing pair (see the module doc). */
export class SyncthingPair {
  readonly a: Side;
  readonly b: Side;
  readonly version: string;

  private constructor(a: Side, b: Side, version: string) {
    this.a = a;
    this.b = b;
    this.version = version;
  }

  /** Generates keys and config under `root` and starts both; resolves once they are connected. */
  static async start(bin: string, root: string): Promise<SyncthingPair> {
    const version = (await run(bin, ["--version"])).stdout.trim().split(" ").slice(0, 2).join(" ");
    const sides: Side[] = [];
    for (const name of ["A", "B"] as const) {
      const home = join(root, name, "home");
      const folder = join(root, name, "folder");
      await Deno.mkdir(home, { recursive: true });
      await Deno.mkdir(join(folder, ".stfolder"), { recursive: true });
      const g = await run(bin, [
        "generate",
        `--home=${home}`,
        "--no-default-folder",
        "--skip-port-probing",
      ]);
      const id = (g.stdout + g.stderr).match(/Device ID:\s*([A-Z0-9-]+)/)?.[1];
      if (!id) throw new Error(`syncthing generate gave no device ID: ${g.stderr.slice(-300)}`);
      sides.push({ name, home, folder, gui: freePort(), key: `bench-key-${name}`, id, proc: null });
    }
    const [a, b] = sides as [Side, Side];
    const ports = { a: freePort(), b: freePort() };
    for (const s of sides) {
      await Deno.writeTextFile(
        join(s.home, "config.xml"),
        configXml(s.folder, s.gui, s.name === "A" ? ports.a : ports.b, s.key, {
          a: a.id,
          b: b.id,
        }, ports),
      );
    }
    const pair = new SyncthingPair(a, b, version);
    for (const s of sides) {
      s.proc = new Proc(
        `syncthing-${s.name}`,
        "env",
        [
          "STNORESTART=1",
          "STNOUPGRADE=1",
          "STNODEFAULTFOLDER=1",
          bin,
          "serve",
          `--home=${s.home}`,
          "--no-browser",
          "--no-restart",
          "--no-upgrade",
          "--no-default-folder",
          "--skip-port-probing",
        ],
        root,
        join(s.home, "syncthing.log"),
      );
    }
    try {
      await pair.#ready(90000);
    } catch (e) {
      await pair.stop();
      throw e;
    }
    log(`syncthing pair ready (${version}; pids A ${a.proc!.pid}, B ${b.proc!.pid})`);
    return pair;
  }

  /** REST call on one side; the JSON answer (or null for an empty one). */
  async api(s: Side, method: string, path: string, timeoutMs = 10000): Promise<unknown> {
    const r = await fetch(`http://127.0.0.1:${s.gui}${path}`, {
      method,
      headers: { "X-API-Key": s.key },
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`syncthing ${s.name} ${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async #state(s: Side): Promise<string> {
    const st = await this.api(s, "GET", `/rest/db/status?folder=${FOLDER_ID}`) as {
      state?: string;
    };
    return st.state ?? "";
  }

  async #ready(timeoutMs: number): Promise<void> {
    const end = now() + timeoutMs;
    for (;;) {
      this.check();
      try {
        const ca = await this.api(this.a, "GET", "/rest/system/connections") as {
          connections: Record<string, { connected: boolean }>;
        };
        if (
          ca.connections[this.b.id]?.connected && await this.#state(this.a) === "idle" &&
          await this.#state(this.b) === "idle"
        ) return;
      } catch {
        // not listening yet
      }
      if (now() > end) throw new DeadlineError("syncthing pair not connected and idle in time");
      await sleep(300);
    }
  }

  /** Both processes (for CPU and memory). */
  procs(): Proc[] {
    return [this.a.proc, this.b.proc].filter((p): p is Proc => p !== null);
  }

  /**
   * CPU used so far by each side, its process and all descendants (Syncthing's monitor process
   * runs the real one as a child).
   */
  async cpu(): Promise<Record<string, Cpu>> {
    const out: Record<string, Cpu> = {};
    for (const s of [this.a, this.b]) {
      if (!s.proc) continue;
      const total: Cpu = { user: 0, sys: 0 };
      for (const pid of await descendants(s.proc.pid)) {
        const c = await readCpu(pid);
        if (c) {
          total.user += c.user;
          total.sys += c.sys;
        }
      }
      out[s.name] = total;
    }
    return out;
  }

  /** Throws if one of them died. */
  check(): void {
    for (const p of this.procs()) p.assertAlive();
  }

  /** Makes A scan now (returns when its scan is done). */
  async scanA(): Promise<void> {
    await this.api(this.a, "POST", `/rest/db/scan?folder=${FOLDER_ID}`, 600000);
  }

  /** Waits until both folders are idle (after a workload, before the next one's t0). */
  async idle(timeoutMs = 60000): Promise<void> {
    const end = now() + timeoutMs;
    while (now() < end) {
      if (await this.#state(this.a) === "idle" && await this.#state(this.b) === "idle") return;
      await sleep(200);
    }
  }

  /** Bytes A sent to its peers so far (`/rest/system/connections` total). */
  async sentByA(): Promise<number> {
    const c = await this.api(this.a, "GET", "/rest/system/connections") as {
      total: { outBytesTotal: number };
    };
    return c.total.outBytesTotal;
  }

  /** REST shutdown, then TERM/KILL of both by their own handle. */
  async stop(): Promise<void> {
    await Promise.all(
      [this.a, this.b].map(async (s) => {
        if (!s.proc || s.proc.exit) return;
        await this.api(s, "POST", "/rest/system/shutdown", 3000).catch(() => {});
        await s.proc.stop(5000);
      }),
    );
  }
}

/** `pid` and all its descendants (from /proc/PID/task/TID/children). */
async function descendants(pid: number): Promise<number[]> {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const r = await run("sh", ["-c", `cat /proc/${out[i]}/task/*/children 2>/dev/null`]);
    for (const w of r.stdout.split(/\s+/)) if (/^\d+$/.test(w)) out.push(Number(w));
  }
  return out;
}
