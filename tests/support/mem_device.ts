/**
 * A device run in this process: the real sync engine (`syncUntilStable`: scanner, reconcile,
 * executor, transfer, state) on an in-memory filesystem ({@link MemFs}) with chosen name rules,
 * connected to a real server over TLS. How behaviour of other platforms (Windows names, case
 * insensitivity) is tested on Linux, without any switch in the product.
 *
 * @module
 */

import { join } from "node:path";
import { dial } from "../../lib/client/connection.ts";
import type { Peer } from "../../lib/protocol/peer.ts";
import { type EngineContext, syncUntilStable } from "../../lib/client/engine.ts";
import { StateDb } from "../../lib/client/state_db.ts";
import { Staging } from "../../lib/client/staging.ts";
import { newStats } from "../../lib/client/transfer.ts";
import { MemFs } from "../../lib/client/fs/mem_fs.ts";
import type { PlatformTraits } from "../../lib/core/local_names.ts";
import type { Tally } from "../../lib/core/outcomes.ts";
import { MemServer } from "./mem_server.ts";

/** An in-process device joined to an account (see the module doc). */
export class MemDevice {
  readonly warnings: string[] = [];
  readonly fs: MemFs;
  #ctx: EngineContext | null = null;

  private constructor(
    readonly name: string,
    readonly peer: Peer,
    readonly state: StateDb,
    platform: PlatformTraits,
  ) {
    this.fs = new MemFs(platform);
    this.fs.mkdirSync(".cloudsync/tmp", true);
  }

  /** Joins the account of `serial` on the server at 127.0.0.1:`port`; state lives in `dir`. */
  static async join(
    name: string,
    port: number,
    serial: string,
    dir: string,
    platform: PlatformTraits,
  ): Promise<MemDevice> {
    const peer = await dial({ host: "127.0.0.1", port });
    await peer.request({ t: "enroll", serial, device: name }); // signs this connection in
    await Deno.mkdir(dir, { recursive: true });
    return new MemDevice(name, peer, new StateDb(dir), platform);
  }

  /**
   * A device on the in-process `server` (no sockets): registers a new account (serial null) or
   * joins the one of `serial`. Returns it with the account's serial code.
   */
  static async onMemServer(
    server: MemServer,
    name: string,
    serial: string | null,
    dir: string,
    platform: PlatformTraits = LINUX,
  ): Promise<{ device: MemDevice; serial: string }> {
    const { peer } = await server.connect();
    const h = serial
      ? (await peer.request({ t: "enroll", serial, device: name })).header
      : (await peer.request({ t: "register", device: name })).header;
    await Deno.mkdir(dir, { recursive: true });
    const device = new MemDevice(name, peer, new StateDb(dir), platform);
    return { device, serial: serial ?? String(h.serial) };
  }

  /**
   * Syncs until nothing is left to do (several rounds: a round may leave work for the next).
   * `scopes`: what the watcher would report for the first round (null: a full pass; [] a pass
   * with no scan, as a server push asks); later rounds are full.
   */
  async sync(rounds = 4, scopes: string[] | null = null): Promise<Tally | null> {
    this.#ctx ??= {
      peer: this.peer,
      fs: this.fs,
      staging: new Staging(this.fs, ".cloudsync/tmp"),
      state: this.state,
      device: this.name,
      stats: newStats(),
      log: () => {},
      warn: (l) => this.warnings.push(l),
    };
    let last: Tally | null = null;
    for (let i = 0; i < rounds; i++) {
      this.fs.advance(5_000); // what was written has settled
      const r = await syncUntilStable(this.#ctx, i === 0 ? scopes : null);
      if (r) last = r;
    }
    return last;
  }

  /** The folder's items (without `.cloudsync`), `path -> "dir"` or `"file:CONTENT"`. */
  files(): Map<string, string> {
    return this.fs.snapshot({ skip: (p) => p === ".cloudsync" || p.startsWith(".cloudsync/") });
  }

  close(): void {
    this.peer.close();
    this.state.close();
  }
}

/** Linux's name rules (case-sensitive, any name but `/` and NUL). */
export const LINUX: PlatformTraits = { caseInsensitive: false, windowsNames: false };

/** Windows' name rules (case-insensitive, reserved names), as a {@link MemFs} applies them. */
export const WINDOWS: PlatformTraits = { caseInsensitive: true, windowsNames: true };

/** A temporary folder for a device's state. */
export function stateDirIn(top: string, name: string): string {
  return join(top, `state-${name}`);
}

/**
 * Two devices of one new account on an in-process server (`b` on `platformB`), each with its
 * state in a temporary folder; disposing of it closes everything and removes the folder.
 */
export async function memPair(platformB: PlatformTraits = LINUX) {
  const server = await MemServer.start();
  const dir = await Deno.makeTempDir({ prefix: "cloudsync-pair-" });
  const { device: a, serial } = await MemDevice.onMemServer(server, "A", null, join(dir, "a"));
  const { device: b } = await MemDevice.onMemServer(
    server,
    "B",
    serial,
    join(dir, "b"),
    platformB,
  );
  return {
    a,
    b,
    server,
    async [Symbol.asyncDispose]() {
      a.close();
      b.close();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
