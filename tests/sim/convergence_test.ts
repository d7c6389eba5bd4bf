/**
 * Convergence of the real sync code, by simulation (see `world.ts`): a server and three devices
 * make random changes, go offline and online, edit the same files concurrently, and suffer faults
 * (dropped connections, lost replies, full disks, edits during transfers, unreadable files,
 * kills between any two filesystem steps); once everyone syncs, all trees must equal the server's
 * and no content may be lost.
 *
 * ```sh
 * deno test --allow-all tests/sim/convergence_test.ts -- --seed=17 --ops=100   # replay one seed
 * deno test --allow-all tests/sim/convergence_test.ts -- --seed=17 --windows   # the Windows variant
 * deno test --allow-all tests/sim/convergence_test.ts -- --seeds=20000 --ops=400  # a long run
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { runSeed } from "./world.ts";

function arg(name: string): number | undefined {
  const prefix = `--${name}=`;
  const a = Deno.args.find((x) => x.startsWith(prefix));
  if (a === undefined) return undefined;
  const n = Number(a.slice(prefix.length));
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
  return n;
}

const ONE_SEED = arg("seed");
const OPS = arg("ops") ?? 100;
const SEEDS = arg("seeds") ?? 500;
const FIRST = arg("first") ?? 1;
/** `--windows`: replay or run only the variant with a Windows-like device. */
const WINDOWS_ONLY = Deno.args.includes("--windows");

/** Runs `count` seeds from `first`; fails with the first few failures. */
async function runSeeds(first: number, count: number, windows: boolean): Promise<void> {
  if (ONE_SEED !== undefined) {
    const failure = await runSeed(ONE_SEED, OPS, { verbose: true, windows });
    assert.equal(failure, null, failure ?? "");
    return;
  }
  const failures: string[] = [];
  for (let seed = first; seed < first + count; seed++) {
    const failure = await runSeed(seed, OPS, { windows });
    if (failure) failures.push(failure);
    if (failures.length >= 5) break;
  }
  assert.equal(
    failures.length,
    0,
    `${failures.length} seeds failed; first ones:\n${failures.slice(0, 3).join("\n")}`,
  );
}

Deno.test({
  name: "simulation: random operations and faults on three devices converge, losing nothing",
  ignore: WINDOWS_ONLY,
  sanitizeResources: false, // in-memory connections' timers end with the world
  sanitizeOps: false,
  fn: () => runSeeds(FIRST, SEEDS, false),
});

Deno.test({
  name: "simulation: the same with a case-insensitive, Windows-named third device",
  ignore: ONE_SEED !== undefined && !WINDOWS_ONLY,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => runSeeds(FIRST, arg("windows-seeds") ?? Math.ceil(SEEDS / 3), true),
});
