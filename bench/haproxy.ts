/**
 * HAProxy in TCP mode in front of server instances, started by the scale-out tests and the load
 * test themselves (`scripts/services.sh` installs it and exports `CLOUDSYNC_HAPROXY`): a config in
 * a temporary directory, `haproxy -f CFG -db` in the foreground on 127.0.0.1 and free ports,
 * stopped by its own handle.
 *
 * - The main frontend balances connections round robin over every instance, with health checks
 *   (a TCP connect every 500 ms; two failures mark an instance down, two successes up again) and
 *   `option redispatch`, so a connection to an instance that just died is retried on another.
 * - With `preferred`, each instance also gets a frontend of its own that sends everything to it
 *   while it is up and to the others (as backups) while it is down: tests use these to put a
 *   device on a given instance, and to see it fail over when that instance is killed.
 *
 * TCP mode passes TLS through untouched: the instances keep their certificate, and clients pin it
 * as they would without the load balancer.
 *
 * @module
 */

import { join } from "node:path";

/** One instance behind the load balancer. */
export interface Backend {
  name: string;
  port: number;
}

/** Options of {@link Haproxy.start}. */
export interface HaproxyOptions {
  backends: Backend[];
  /** Also one frontend per instance that prefers it (see the module's doc). */
  preferred?: boolean;
  /** Most connections at once (default 9,000; HAProxy needs about two descriptors each). */
  maxconn?: number;
  /** The binary (default `$CLOUDSYNC_HAPROXY`, else `haproxy` on the PATH). */
  binary?: string;
}

/** A free TCP port on 127.0.0.1 (closed again at once; taken by HAProxy right after). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The binary to run, or null when there is none (the tests then skip with that reason). */
export function haproxyBinary(): string | null {
  const given = Deno.env.get("CLOUDSYNC_HAPROXY");
  const candidates = given ? [given] : ["/usr/sbin/haproxy", "/usr/bin/haproxy"];
  for (const c of candidates) {
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch { /* not there */ }
  }
  return null;
}

/** The configuration text (exported for the README's example and the tests). */
export function haproxyConfig(
  backends: Backend[],
  ports: { main: number; preferred: Map<string, number> },
  maxconn = 9000,
): string {
  const check = "check inter 500ms fall 2 rise 2";
  const lines = [
    "global",
    `  maxconn ${maxconn}`,
    "  hard-stop-after 5s",
    "defaults",
    "  mode tcp",
    `  maxconn ${maxconn}`,
    "  timeout connect 1s",
    "  timeout client 2m",
    "  timeout server 2m",
    "  timeout check 1s",
    "  option redispatch",
    "  retries 3",
    "frontend cloudsync",
    `  bind 127.0.0.1:${ports.main}`,
    "  default_backend instances",
    "backend instances",
    "  balance roundrobin",
    ...backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} ${check}`),
  ];
  for (const [name, port] of ports.preferred) {
    lines.push(
      `frontend to_${name}`,
      `  bind 127.0.0.1:${port}`,
      `  default_backend to_${name}`,
      `backend to_${name}`,
      ...backends.map((b) =>
        `  server ${b.name} 127.0.0.1:${b.port} track instances/${b.name}${
          b.name === name ? "" : " backup"
        }`
      ),
    );
  }
  return lines.join("\n") + "\n";
}

/** A running HAProxy. */
export class Haproxy {
  /** The round-robin frontend. */
  readonly port: number;
  readonly #preferred: Map<string, number>;
  readonly #child: Deno.ChildProcess;
  readonly #dir: string;
  readonly #output: string[] = [];
  readonly #done: Promise<unknown>;

  private constructor(
    port: number,
    preferred: Map<string, number>,
    child: Deno.ChildProcess,
    dir: string,
  ) {
    this.port = port;
    this.#preferred = preferred;
    this.#child = child;
    this.#dir = dir;
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) this.#output.push(t);
    };
    this.#done = Promise.all([pump(child.stdout), pump(child.stderr), child.status]);
  }

  /** Writes the config and starts HAProxy; resolves once its frontends accept connections. */
  static async start(opts: HaproxyOptions): Promise<Haproxy> {
    const binary = opts.binary ?? haproxyBinary();
    if (!binary) throw new Error("Cannot start HAProxy: it is not installed (scripts/services.sh)");
    const dir = await Deno.makeTempDir({ prefix: "cloudsync-haproxy-" });
    const main = freePort();
    const preferred = new Map<string, number>(
      opts.preferred ? opts.backends.map((b) => [b.name, freePort()]) : [],
    );
    const cfg = join(dir, "haproxy.cfg");
    await Deno.writeTextFile(cfg, haproxyConfig(opts.backends, { main, preferred }, opts.maxconn));
    const child = new Deno.Command(binary, {
      args: ["-f", cfg, "-db"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const h = new Haproxy(main, preferred, child, dir);
    const end = performance.now() + 10_000;
    for (const port of [main, ...preferred.values()]) {
      for (;;) {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          break;
        } catch {
          if (performance.now() > end) {
            await h.stop();
            throw new Error(`Cannot start HAProxy: nothing listens on ${port}: ${h.output()}`);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
    return h;
  }

  /** The frontend that prefers instance `name` (with `preferred`). */
  preferredPort(name: string): number {
    const p = this.#preferred.get(name);
    if (p === undefined) throw new Error(`no frontend prefers ${name}`);
    return p;
  }

  /** What HAProxy printed (warnings, alerts). */
  output(): string {
    return this.#output.join("");
  }

  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch { /* exited */ }
    await this.#done.catch(() => {});
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
