/**
 * The real server's sessions and stores, in this process, over in-memory connections
 * (tests/support/mem_pipe.ts): what the simulator and protocol-level tests run against. The stores
 * are the real SQLite and pack stores in a temporary folder; the sessions are `Session` itself.
 *
 * @module
 */

import { type OpenStores, openStores } from "../../lib/server/open_stores.ts";
import { serverContext } from "../../lib/server/server.ts";
import { Session } from "../../lib/server/session.ts";
import { Peer } from "../../lib/protocol/peer.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "../../lib/server/limits.ts";
import type { MetaStore } from "../../lib/server/stores.ts";
import { MemPipe } from "./mem_pipe.ts";
import { CAPABILITIES, PROTOCOL_VERSION, readCapabilities } from "../../lib/protocol/messages.ts";

/** A server whose connections are in memory (see the module doc). */
export class MemServer {
  readonly ctx: ReturnType<typeof serverContext>;
  readonly lines: string[] = [];
  readonly #peers = new Set<Peer>();
  #next = 1;

  private constructor(readonly stores: OpenStores, readonly dir: string, limits: ServerLimits) {
    this.ctx = serverContext(stores.meta, stores.blobs, limits, (l) => this.lines.push(l));
  }

  /** Opens fresh stores in a temporary folder. `wrapMeta` may stand between sessions and store. */
  static async start(
    opts: { limits?: Partial<ServerLimits>; wrapMeta?: (m: MetaStore) => MetaStore } = {},
  ): Promise<MemServer> {
    // In memory (tmpfs) where there is one: the simulator commits thousands of times.
    const shm = await Deno.stat("/dev/shm").then((st) => st.isDirectory, () => false);
    const dir = await Deno.makeTempDir({
      prefix: "cloudsync-memserver-",
      ...(shm ? { dir: "/dev/shm" } : {}),
    });
    const stores = await openStores({ dataDir: dir });
    const limits: ServerLimits = {
      ...DEFAULT_LIMITS,
      registerBurst: 1_000_000,
      registerGlobalBurst: 1_000_000,
      ...opts.limits,
    };
    const s = new MemServer(stores, dir, limits);
    if (opts.wrapMeta) s.ctx.meta = opts.wrapMeta(stores.meta);
    return s;
  }

  /**
   * A new connection: the client's peer (hello done), and the pipe (to cut it). `afterHandle` is
   * told each request the server handled, before its reply leaves (a fault may cut the pipe
   * there: the server did the work, the client never hears).
   */
  async connect(
    opts: {
      onNotice?: (h: Record<string, unknown>) => void;
      afterHandle?: (type: string, pipe: MemPipe) => void;
      /** What this client says it supports (default: everything this build does). */
      caps?: string[];
    } = {},
  ): Promise<{ peer: Peer; pipe: MemPipe }> {
    const pipe = new MemPipe();
    const session = new Session(this.ctx, { hostname: "127.0.0.1", port: this.#next++ });
    const big = { maxHeader: 16 << 20, compressed: true, maxRatio: 4096 };
    const after = opts.afterHandle;
    const handle = after
      ? async (m: Parameters<typeof session.handle>[0]) => {
        const t = String(m.header.t);
        const r = await session.handle(m);
        after(t, pipe);
        return r;
      }
      : session.handle;
    const server = new Peer(pipe.b, { onRequest: handle, headerLimits: big });
    session.attach(server);
    server.closed.then(() => session.detach());
    const client = new Peer(pipe.a, {
      headerLimits: big,
      ...(opts.onNotice ? { onNotice: (m) => opts.onNotice!(m.header) } : {}),
    });
    this.#peers.add(server).add(client);
    const hello = await client.request({
      t: "hello",
      protocol: PROTOCOL_VERSION,
      program: "sim",
      caps: opts.caps ?? CAPABILITIES,
    });
    client.caps = readCapabilities(hello.header.caps);
    return { peer: client, pipe };
  }

  async close(): Promise<void> {
    for (const p of this.#peers) p.close();
    await Promise.all([...this.#peers].map((p) => p.closed.catch(() => {})));
    await this.stores.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
