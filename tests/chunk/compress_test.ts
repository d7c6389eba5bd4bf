/**
 * Tests for zstd chunk compression and the SHA-256 helper.
 *
 * @module
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  compressChunk,
  CompressionHint,
  decompressChunk,
  SKIP_AFTER_INCOMPRESSIBLE,
} from "../../lib/chunk/compress.ts";
import { EMPTY_SHA256, isSha256Hex, sha256Hex } from "../../lib/chunk/hash.ts";

function randomBytes(n: number): Uint8Array {
  const d = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(d.subarray(i, i + 65536));
  return d;
}

const text = new TextEncoder().encode("the quick brown fox jumps over the lazy dog\n".repeat(5000));

Deno.test("compress", async (t) => {
  for (
    const [name, data, compressed] of [
      ["repetitive text is compressed", text, true],
      ["zeros are compressed", new Uint8Array(1 << 20), true],
      ["random bytes are left raw", randomBytes(100_000), false],
      ["the empty chunk is left raw", new Uint8Array(0), false],
      ["a one-byte chunk is left raw", new Uint8Array([42]), false],
    ] as [string, Uint8Array, boolean][]
  ) {
    await t.step(name, () => {
      const r = compressChunk(data);
      assert.equal(r.compressed, compressed);
      if (r.compressed) {
        assert.ok(r.data.length <= data.length * 0.95);
        assert.ok(r.data instanceof Uint8Array);
        assert.deepEqual(decompressChunk(r.data, data.length), data);
      } else {
        assert.equal(r.data, data);
      }
    });
  }

  await t.step("data saving less than 5% is left raw", () => {
    // 96% random + 4% zeros: zstd saves roughly 4%, under the threshold.
    const data = randomBytes(100_000);
    data.fill(0, 0, 4000);
    const r = compressChunk(data);
    assert.equal(r.compressed, false);
  });

  await t.step("the empty chunk round-trips through zstd", () => {
    const z = zlib.zstdCompressSync(new Uint8Array(0));
    assert.deepEqual(decompressChunk(z, 0), new Uint8Array(0));
  });

  const z = compressChunk(text).data;
  for (
    const [name, data, expected, message] of [
      ["a larger output than expected is refused", z, text.length - 1, /exceeds the expected/],
      ["a smaller output than expected is refused", z, text.length + 1, /got \d+ bytes, expected/],
      ["garbage is refused", new Uint8Array([1, 2, 3, 4, 5]), 10, /not valid zstd/],
      ["a truncated frame is refused", z.subarray(0, z.length - 3), text.length, /Cannot/],
      ["a negative expected size is refused", z, -1, /expected size -1 is not valid/],
      [
        "a zip bomb is refused without expanding it",
        zlib.zstdCompressSync(
          new Uint8Array(64 << 20),
        ),
        1024,
        /exceeds the expected 1024 bytes/,
      ],
    ] as [string, Uint8Array, number, RegExp][]
  ) {
    await t.step(name, () => {
      assert.throws(() => decompressChunk(data, expected), (e: Error) => {
        assert.match(e.message, /^Cannot decompress chunk: /);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  for (
    const [name, input, hex] of [
      ["sha256 of empty input", "", EMPTY_SHA256],
      ["sha256 of abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    ] as [string, string, string][]
  ) {
    await t.step(name, () => {
      const h = sha256Hex(new TextEncoder().encode(input));
      assert.equal(h, hex);
      assert.ok(isSha256Hex(h));
    });
  }

  await t.step("isSha256Hex rejects upper case and wrong lengths", () => {
    assert.equal(isSha256Hex(EMPTY_SHA256.toUpperCase()), false);
    assert.equal(isSha256Hex(EMPTY_SHA256.slice(1)), false);
  });
});

Deno.test("CompressionHint: an incompressible file is probed once per 16 chunks, others always", () => {
  const hint = new CompressionHint();
  const noise = randomBytes(300_000);
  const period = SKIP_AFTER_INCOMPRESSIBLE + 1;
  for (let i = 0; i < 4 * period; i++) {
    const r = hint.compress("media.bin", noise);
    assert.equal(r.compressed, false);
    assert.equal(r.data, noise); // raw bytes, not a copy
  }
  assert.equal(hint.tried, 4);
  // Another file is not affected, and compressible data is compressed every time.
  for (let i = 0; i < 3; i++) {
    const r = hint.compress("notes.txt", text);
    assert.equal(r.compressed, true);
    assert.deepEqual(decompressChunk(r.data, text.length), text);
  }
  assert.equal(hint.tried, 7);
});

Deno.test("CompressionHint: a file whose content turns compressible gets compression back at the re-probe", () => {
  const hint = new CompressionHint();
  const noise = randomBytes(300_000);
  assert.equal(hint.compress("disk.img", noise).compressed, false);
  let skipped = 0;
  while (!hint.compress("disk.img", text).compressed) skipped++;
  assert.equal(skipped, SKIP_AFTER_INCOMPRESSIBLE);
  // Compressible from then on: every chunk is tried (and compressed) again.
  for (let i = 0; i < 3; i++) assert.equal(hint.compress("disk.img", text).compressed, true);
});
