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

  /** Syncs until nothing is left to do (several rounds: a round may leave work for the next). */
  async sync(rounds = 4): Promise<Tally | null> {
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
      const r = await syncUntilStable(this.#ctx, null);
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

/** Windows' name rules (case-insensitive, reserved names), as a {@link MemFs} applies them. */
export const WINDOWS: PlatformTraits = { caseInsensitive: true, windowsNames: true };

/** A temporary folder for a device's state. */
export function stateDirIn(top: string, name: string): string {
  return join(top, `state-${name}`);
}
