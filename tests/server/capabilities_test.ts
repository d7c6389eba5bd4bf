/**
 * Each side reads the other's capabilities at `hello`: a client that does not list `zstd` is
 * sent every chunk as plain bytes (the server stores chunks compressed where that helps), and a
 * client's peer learns what the server offers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MemServer } from "../support/mem_server.ts";
import { compressChunk } from "../../lib/chunk/compress.ts";
import { CAPABILITIES } from "../../lib/protocol/messages.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

Deno.test("a client without zstd gets plain chunks; a client's peer knows the server's caps", async () => {
  const s = await MemServer.start();
  try {
    const { peer: a } = await s.connect();
    assert.deepEqual([...a.caps].sort(), [...CAPABILITIES].sort());
    const reg = (await a.request({ t: "register", device: "A" })).header;
    const data = new TextEncoder().encode("compressible ".repeat(4000));
    const z = compressChunk(data);
    assert.ok(z.compressed);
    const hash = sha(data);
    await a.request({ t: "put", hash, size: data.length, z: true }, z.data);

    const { peer: b } = await s.connect({ caps: ["chunks-sha256"] });
    await b.request({ t: "enroll", serial: String(reg.serial), device: "B" });
    const one = await b.request({ t: "get", hash });
    assert.equal(one.header.z, false);
    assert.equal(sha(one.body), hash);
    const many = await b.request({ t: "getMany", hashes: [hash, hash] });
    const chunks = many.header.chunks as { z: boolean; len: number }[];
    assert.deepEqual(chunks.map((c) => [c.z, c.len]), [[false, data.length], [false, data.length]]);
    assert.equal(sha(many.body.subarray(0, data.length)), hash);
    assert.equal(sha(many.body.subarray(data.length)), hash);

    const { peer: c } = await s.connect();
    await c.request({ t: "enroll", serial: String(reg.serial), device: "C" });
    const zipped = await c.request({ t: "get", hash });
    assert.equal(zipped.header.z, true);
    assert.equal(zipped.body.length, z.data.length);
  } finally {
    await s.close();
  }
});
