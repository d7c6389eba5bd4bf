/**
 * Tests for lib/protocol/header_shape.ts: every header our peers send passes; the shapes that
 * make `JSON.parse` slow (empty objects, many distinct keys, keys in ever new orders, huge
 * objects, deep nesting) are refused before parsing, and quickly.
 *
 * @module
 */

import assert from "node:assert/strict";
import { headerShapeProblem } from "../../lib/protocol/header_shape.ts";

const enc = new TextEncoder();
const problem = (v: unknown) => headerShapeProblem(enc.encode(JSON.stringify(v)));
const hash = "0123456789abcdef".repeat(4);

Deno.test("headerShapeProblem passes what the protocol sends", () => {
  const chunks = Array.from({ length: 50_000 }, (_, i) => ({ hash, size: 262_144 + i }));
  assert.equal(problem({ t: "commit", items: [{ path: "big.iso", chunks }] }), null);
  // A commit of directories with one-letter names: the densest legitimate header.
  const dirs = Array.from({ length: 1000 }, (_, i) => ({
    path: String.fromCharCode(97 + i % 26),
    baseVersion: 0,
    kind: "dir",
    deleted: false,
    size: 0,
    mtime: 0,
    exec: false,
    hash: "",
    chunks: [],
  }));
  assert.equal(problem({ t: "commit", items: dirs }), null);
  assert.equal(problem({ t: "have", hashes: Array(4096).fill(hash) }), null);
  assert.equal(problem({ t: "hello", protocol: 1, program: "x", caps: [] }), null);
  // Brackets, braces and escaped quotes inside strings are text, not structure.
  assert.equal(problem({ t: "x", s: '{[{[\\"]}'.repeat(1000), k: { 'a"{': 1 } }), null);
});

Deno.test("headerShapeProblem refuses what makes parsing slow", async (t) => {
  const refused = (name: string, text: string, re: RegExp) =>
    t.step(name, () => {
      const t0 = performance.now();
      const p = headerShapeProblem(enc.encode(text));
      assert.match(String(p), re);
      assert.ok(performance.now() - t0 < 200, `${performance.now() - t0} ms`);
    });
  await refused(
    "a million empty objects",
    `{"x":[${"{},".repeat(1_000_000)}{}]}`,
    /too many JSON objects/,
  );
  const distinct = Array.from({ length: 300 }, (_, i) => `{"a_rather_long_key_${i}":0}`).join(",");
  await refused("objects with distinct keys", `[${distinct}]`, /more than 256 kinds/);
  const keys = Array.from({ length: 8 }, (_, i) => `"k${i}"`);
  const orders = Array.from({ length: 300 }, (_, i) => {
    const pool = [...keys];
    const k: string[] = [];
    for (let f = pool.length, n = i; f > 0; n = Math.floor(n / f), f--) { // permutation number i
      k.push(pool.splice(n % f, 1)[0]!);
    }
    return `{${k.map((x) => `${x}:0`).join(",")}}`;
  });
  await refused("the same keys in ever new orders", `[${orders.join(",")}]`, /kinds of objects/);
  const many = Array.from({ length: 65 }, (_, i) => `"k${i}":0`).join(",");
  await refused("an object with too many keys", `{${many}}`, /more than 64 keys/);
  await refused("duplicate keys", `{${'"a":0,'.repeat(100)}"a":0}`, /more than 64 keys/);
  await refused("deep nesting", `{"a":${"[".repeat(40)}${"]".repeat(40)}}`, /deeper than 32/);
});
