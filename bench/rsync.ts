/**
 * The rsync floor, as in ../shared/bench-peers/bench-rsync.sh: an rsync daemon bound to 127.0.0.1
 * (module `bench`, `hosts allow = 127.0.0.1`, no chroot), and `rsync -a --stats SRC/ URL` as the
 * client. Time = client run; bytes = the client's "Total bytes sent" + "Total bytes received".
 *
 * @module
 */

import { join } from "node:path";
import { Proc } from "./procs.ts";
import { freePort, now, run, sleep } from "./util.ts";

/** Figures of one rsync client run. */
export interface RsyncRun {
  seconds: number;
  sent: number;
  received: number;
  literal: number;
  matched: number;
}

/** A running rsync daemon with its module directory. */
export class RsyncDaemon {
  readonly port: number;
  readonly dst: string;
  readonly #proc: Proc;

  private constructor(port: number, dst: string, proc: Proc) {
    this.port = port;
    this.dst = dst;
    this.#proc = proc;
  }

  /** Writes the config into `base` and starts the daemon (module path `base/dst`). */
  static async start(rsync: string, base: string): Promise<RsyncDaemon> {
    const dst = join(base, "dst");
    await Deno.mkdir(dst, { recursive: true });
    const conf = join(base, "rsyncd.conf");
    await Deno.writeTextFile(
      conf,
      [
        "# rsyncd config for the Cloud Sync benchmark (127.0.0.1 only)",
        `log file = ${join(base, "rsyncd.log")}`,
        "use chroot = false",
        "max connections = 4",
        "timeout = 600",
        "[bench]",
        `    path = ${dst}`,
        "    read only = false",
        "    list = true",
        "    hosts allow = 127.0.0.1",
        `    uid = ${Deno.uid() ?? 0}`,
        `    gid = ${Deno.gid() ?? 0}`,
        "",
      ].join("\n"),
    );
    const port = freePort();
    const proc = new Proc(
      "rsyncd",
      rsync,
      ["--daemon", "--no-detach", "--address=127.0.0.1", `--port=${port}`, `--config=${conf}`],
      base,
      join(base, "daemon.out"),
    );
    const d = new RsyncDaemon(port, dst, proc);
    const deadline = now() + 15000;
    for (;;) {
      proc.assertAlive();
      const r = await run(rsync, ["--contimeout=2", `rsync://127.0.0.1:${port}/`]);
      if (r.code === 0 && /\bbench\b/.test(r.stdout)) return d;
      if (now() > deadline) {
        await proc.stop();
        throw new Error(`rsync daemon did not come up on 127.0.0.1:${port}: ${r.stderr.trim()}`);
      }
      await sleep(100);
    }
  }

  /** `rsync -a --stats SRC/ rsync://127.0.0.1:PORT/bench/SUB/`, timed. */
  async sync(rsync: string, src: string, sub: string): Promise<RsyncRun> {
    this.#proc.assertAlive();
    const r = await run(rsync, [
      "-a",
      "--stats",
      `${src.replace(/\/$/, "")}/`,
      `rsync://127.0.0.1:${this.port}/bench/${sub}/`,
    ]);
    if (r.code !== 0) throw new Error(`rsync failed (${r.code}): ${r.stderr.trim().slice(-400)}`);
    const num = (label: string) => {
      const m = r.stdout.match(new RegExp(`^${label}: *([\\d,]+)`, "m"));
      return m ? Number(m[1]!.replaceAll(",", "")) : NaN;
    };
    return {
      seconds: r.seconds,
      sent: num("Total bytes sent"),
      received: num("Total bytes received"),
      literal: num("Literal data"),
      matched: num("Matched data"),
    };
  }

  async stop(): Promise<void> {
    await this.#proc.stop(3000);
  }
}

/** `rsync --version` first line. */
export async function rsyncVersion(rsync: string): Promise<string> {
  const r = await run(rsync, ["--version"]);
  return r.stdout.split("\n")[0]?.trim() ?? "";
}
