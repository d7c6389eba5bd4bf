/**
 * Attackers from other loopback addresses (127.0.x.y), for tests and the attack bench. Binding
 * those addresses needs `--allow-net` for each, which the test runner lacks, so each attacker is
 * its own process: {@link holdSockets} runs `hold_sockets.ts` (plain TCP sockets that never start
 * TLS), {@link fromAddresses} runs `register_from.ts` (one `register` or wrong `enroll` per
 * address) and returns its lines.
 *
 * @module
 */

const DIR = new URL(".", import.meta.url).pathname;

/** Sockets held open by another process until {@link stop}. */
export interface HeldSockets {
  /** Its output so far (`connected N`, then `ended N` for each socket the server closed). */
  lines: string[];
  /** Whether all are connected. */
  connected(): boolean;
  /** How many the server has closed so far. */
  closed(): number;
  /** Lets go of every socket and waits for the process to end. */
  stop(): Promise<void>;
}

/** `count` plain TCP sockets to 127.0.0.1:`port` from `addrs` in turn, held (see module doc). */
export function holdSockets(port: number, count: number, addrs: string[]): HeldSockets {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-net=127.0.0.1,${[...new Set(addrs)].join(",")}`,
      `${DIR}hold_sockets.ts`,
      String(port),
      String(count),
      ...addrs,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines: string[] = [];
  const reading = (async () => {
    const dec = new TextDecoder();
    let rest = "";
    for await (const c of child.stdout) {
      const parts = (rest + dec.decode(c, { stream: true })).split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
    }
  })();
  return {
    lines,
    connected: () => lines.includes(`connected ${count}`),
    closed: () => lines.filter((l) => l.startsWith("ended ")).length,
    async stop() {
      await child.stdin.close().catch(() => {});
      await child.status;
      await reading;
    },
  };
}

/**
 * For each of `addrs` in turn (they may repeat): TLS from it to 127.0.0.1:`port` (trusting
 * `certFile`), `hello`, then `register` or an `enroll` with a wrong serial; one line `ADDR ok`
 * or `ADDR CODE` each.
 */
export async function fromAddresses(
  port: number,
  certFile: string,
  mode: "register" | "enroll",
  addrs: string[],
): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-net=127.0.0.1,${[...new Set(addrs)].join(",")}`,
      `--allow-read=${certFile}`,
      `${DIR}register_from.ts`,
      String(port),
      certFile,
      mode,
      ...addrs,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const lines = dec.decode(out.stdout).trim().split("\n").filter((l) => l !== "");
  if (!out.success && lines.length === 0) throw new Error(dec.decode(out.stderr));
  return lines;
}
