/**
 * End to end: a real server and two real clients keep two folders identical, for every kind of
 * item and change listed in the core issue (the scenarios are in `sync_scenarios.ts`, which the
 * scale-out test runs through two instances behind a load balancer too).
 *
 * @module
 */

import { join } from "node:path";
import { ServerProc, tempDir } from "./harness.ts";
import {
  everyKindOfChange,
  liveChanges,
  type Servers,
  symlinksSkipped,
  unsupportedNames,
} from "./sync_scenarios.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

/** Runs `fn` against one server process in a temporary directory (data in `ROOT/data`). */
async function withServer(fn: (root: string, servers: Servers) => Promise<void>): Promise<void> {
  await using tmp = await tempDir();
  const server = await ServerProc.start(join(tmp.path, "data"));
  const p = server.port;
  try {
    await fn(tmp.path, { portA: p, portB: p, portC: p, procs: [server] });
  } finally {
    await server.stop();
  }
}

Deno.test(
  "two devices converge on every kind of item and change",
  opts,
  (t) => withServer((root, servers) => everyKindOfChange(t, root, servers)),
);

Deno.test(
  "names the protocol cannot carry are skipped with a warning; the rest syncs",
  opts,
  () => withServer(unsupportedNames),
);

Deno.test(
  "symlinks are skipped with a warning and never followed",
  opts,
  () => withServer(symlinksSkipped),
);

Deno.test(
  "changes travel within seconds through the watcher, not the periodic pass",
  opts,
  (t) => withServer((root, servers) => liveChanges(t, root, servers)),
);
