/**
 * Tests for the binary frame codec: round trips, every malformed input, fragmented and coalesced
 * reads, size limits and partial writes.
 *
 * @module
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  type ByteReader,
  encodeFrame,
  encodeFrameHead,
  type Frame,
  FrameError,
  FrameReader,
  FrameType,
  HEADER_ZSTD,
  MAX_FRAME,
  writeAll,
} from "../../lib/protocol/frame.ts";

const enc = new TextEncoder();

/** A ByteReader over `data` that hands out at most `chunk` bytes per read; counts reads. */
function sliceReader(data: Uint8Array, chunk: number): ByteReader & { reads: number } {
  let off = 0;
  return {
    reads: 0,
    read(p: Uint8Array): Promise<number | null> {
      this.reads++;
      if (off >= data.length) return Promise.resolve(null);
      const n = Math.min(chunk, p.length, data.length - off);
      p.set(data.subarray(off, off + n));
      off += n;
      return Promise.resolve(n);
    },
  };
}

/** A ReadableStream yielding `data` in chunks of `chunk` bytes. */
function sliceStream(data: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream<Uint8Array>({
    pull(ctrl) {
      if (off >= data.length) {
        ctrl.close();
        return;
      }
      ctrl.enqueue(data.slice(off, off + chunk));
      off += chunk;
    },
  });
}

type SourceKind = "reader" | "stream";
const SOURCES: SourceKind[] = ["reader", "stream"];

function makeReader(kind: SourceKind, data: Uint8Array, chunk: number, maxFrame?: number) {
  const opts = maxFrame === undefined ? {} : { maxFrame };
  return kind === "reader"
    ? new FrameReader(sliceReader(data, chunk), opts)
    : new FrameReader(sliceStream(data, chunk), opts);
}

async function readAll(reader: FrameReader): Promise<Frame[]> {
  const out: Frame[] = [];
  for (;;) {
    const f = await reader.next();
    if (f === null) return out;
    out.push(f);
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Builds raw frame bytes with full control over every field. */
function raw(
  f: { length?: number; type?: number; id?: number; headerLen?: number; header?: Uint8Array },
  body: Uint8Array = new Uint8Array(),
): Uint8Array {
  const header = f.header ?? enc.encode("{}");
  const headerLen = f.headerLen ?? header.length;
  const length = f.length ?? 9 + header.length + body.length;
  const prefix = new Uint8Array(13);
  const v = new DataView(prefix.buffer);
  v.setUint32(0, length);
  v.setUint8(4, f.type ?? 1);
  v.setUint32(5, f.id ?? 1);
  v.setUint32(9, headerLen);
  return concat(prefix, header, body);
}

function patterned(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >>> 8)) & 0xff;
  return b;
}

Deno.test("encodeFrame/FrameReader round trip", async (t) => {
  const cases: { name: string; frame: Frame }[] = [
    {
      name: "empty header and body",
      frame: { type: 1, id: 1, header: {}, body: new Uint8Array() },
    },
    {
      name: "response with small body",
      frame: { type: 2, id: 42, header: { ok: true, n: [1, 2] }, body: patterned(100) },
    },
    {
      name: "notice with unicode header",
      frame: {
        type: 3,
        id: 0,
        header: { t: "héllo ✓ 🚀", nested: { a: null } },
        body: patterned(3),
      },
    },
    {
      name: "max u32 id",
      frame: { type: 1, id: 0xffff_ffff, header: { x: 1 }, body: new Uint8Array() },
    },
    {
      name: "4 MiB body",
      frame: { type: 2, id: 7, header: { op: "chunk" }, body: patterned(4 * 1024 * 1024) },
    },
  ];
  for (const { name, frame } of cases) {
    for (const kind of SOURCES) {
      // Tiny reads for small frames; moderate fragments for the big one to keep the test fast.
      const chunk = frame.body.length > 1 << 20 ? 7777 : 1;
      await t.step(`${name} (${kind}, ${chunk}-byte pieces)`, async () => {
        const bytes = encodeFrame(frame);
        assert.equal(
          bytes.length,
          13 + enc.encode(JSON.stringify(frame.header)).length + frame.body.length,
        );
        const frames = await readAll(makeReader(kind, bytes, chunk));
        assert.equal(frames.length, 1);
        assert.deepEqual(frames[0], frame);
      });
    }
  }
});

Deno.test("encodeFrameHead plus body equals encodeFrame", () => {
  const frame: Frame = { type: 3, id: 0, header: { a: "b" }, body: patterned(10) };
  assert.deepEqual(concat(encodeFrameHead(frame), frame.body), encodeFrame(frame));
});

Deno.test("FrameReader handles several frames per read and many tiny reads", async (t) => {
  const frames: Frame[] = [
    { type: 1, id: 1, header: { a: 1 }, body: patterned(5) },
    { type: 2, id: 1, header: {}, body: new Uint8Array() },
    { type: 3, id: 0, header: { t: "x" }, body: patterned(300) },
  ];
  const bytes = concat(...frames.map((f) => encodeFrame(f)));
  for (const kind of SOURCES) {
    for (const chunk of [1, 2, 3, 13, 64, bytes.length]) {
      await t.step(`${kind}, ${chunk}-byte pieces`, async () => {
        assert.deepEqual(await readAll(makeReader(kind, bytes, chunk)), frames);
      });
    }
  }
  await t.step("all frames arrive in a single read call", async () => {
    const src = sliceReader(bytes, bytes.length);
    const reader = new FrameReader(src);
    assert.deepEqual(await readAll(reader), frames);
    assert.equal(src.reads, 2); // one read with data, one returning EOF
  });
});

Deno.test("FrameReader reads a large body straight into its buffer", async () => {
  const frame: Frame = { type: 2, id: 9, header: {}, body: patterned(4 * 1024 * 1024) };
  const src = sliceReader(encodeFrame(frame), Number.MAX_SAFE_INTEGER);
  const reader = new FrameReader(src);
  assert.deepEqual(await reader.next(), frame);
  // One buffered read (prefix, header and the first 64 KiB) plus one direct read for the rest.
  assert.equal(src.reads, 2);
});

Deno.test("FrameReader rejects malformed input", async (t) => {
  const good = raw({ header: enc.encode('{"a":1}') }, patterned(4));
  const cases: { name: string; bytes: Uint8Array; match: RegExp; maxFrame?: number }[] = [
    { name: "EOF inside length field", bytes: good.subarray(0, 2), match: /2 of 4 length bytes/ },
    { name: "EOF inside fixed prefix", bytes: good.subarray(0, 8), match: /ended mid-frame/ },
    { name: "EOF inside header", bytes: good.subarray(0, 15), match: /ended mid-frame/ },
    {
      name: "EOF inside body",
      bytes: good.subarray(0, good.length - 1),
      match: /ended mid-frame after 23 of 24/,
    },
    { name: "length below 9", bytes: raw({ length: 8 }), match: /below the minimum 9/ },
    { name: "length 0", bytes: raw({ length: 0 }), match: /below the minimum 9/ },
    {
      name: "length above MAX_FRAME",
      bytes: raw({ length: MAX_FRAME + 1 }),
      match: /exceeds limit/,
    },
    { name: "length above custom max", bytes: good, match: /exceeds limit 19/, maxFrame: 19 },
    { name: "type 0", bytes: raw({ type: 0 }), match: /unknown type 0/ },
    { name: "type 4", bytes: raw({ type: 4 }), match: /unknown type 4/ },
    { name: "type 255", bytes: raw({ type: 255 }), match: /unknown type 255/ },
    {
      name: "header length beyond payload",
      bytes: raw({ headerLen: 3, header: enc.encode("{}") }),
      match: /header length 3 exceeds frame payload 2/,
    },
    {
      name: "header length 0xffffffff",
      bytes: raw({ headerLen: 0xffff_ffff }),
      match: /header length 4294967295/,
    },
    {
      name: "empty header",
      bytes: raw({ header: new Uint8Array() }),
      match: /not valid UTF-8 JSON/,
    },
    {
      name: "bad JSON",
      bytes: raw({ header: enc.encode("{a:1}") }),
      match: /not valid UTF-8 JSON/,
    },
    {
      name: "invalid UTF-8",
      bytes: raw({ header: new Uint8Array([0x7b, 0xff, 0x7d]) }),
      match: /not valid UTF-8 JSON/,
    },
    { name: "JSON array", bytes: raw({ header: enc.encode("[1]") }), match: /not a JSON object/ },
    { name: "JSON null", bytes: raw({ header: enc.encode("null") }), match: /not a JSON object/ },
    { name: "JSON number", bytes: raw({ header: enc.encode("12") }), match: /not a JSON object/ },
    { name: "JSON string", bytes: raw({ header: enc.encode('"x"') }), match: /not a JSON object/ },
  ];
  for (const { name, bytes, match, maxFrame } of cases) {
    for (const kind of SOURCES) {
      await t.step(`${name} (${kind})`, async () => {
        const reader = makeReader(kind, bytes, 3, maxFrame);
        const err = await reader.next().then(() => null, (e) => e);
        assert.ok(err instanceof FrameError, `expected FrameError, got ${err}`);
        assert.match(err.message, /^Cannot read frame: /);
        assert.match(err.message, match);
        // The error is sticky: the reader never resynchronizes on a corrupt stream.
        await assert.rejects(reader.next(), (e) => e === err);
      });
    }
  }
});

Deno.test("FrameReader accepts a frame of exactly maxFrame", async () => {
  const bytes = raw({ header: enc.encode("{}") }, patterned(9));
  const reader = new FrameReader(sliceReader(bytes, 5), { maxFrame: 20 });
  const f = await reader.next();
  assert.equal(f?.body.length, 9);
  assert.equal(await reader.next(), null);
});

Deno.test("FrameReader rejects oversize length before reading or allocating more", async (t) => {
  for (const length of [MAX_FRAME + 1, 0xffff_ffff]) {
    await t.step(`length ${length}`, async () => {
      const prefix = new Uint8Array(4);
      new DataView(prefix.buffer).setUint32(0, length);
      let reads = 0;
      const src: ByteReader = {
        read(p) {
          reads++;
          if (reads > 1) throw new Error("read past the length field");
          p.set(prefix);
          return Promise.resolve(4);
        },
      };
      await assert.rejects(new FrameReader(src).next(), (e) => {
        assert.ok(e instanceof FrameError);
        assert.match(e.message, /exceeds limit/);
        return true;
      });
      assert.equal(reads, 1);
    });
  }
});

Deno.test("FrameReader returns null on clean EOF and keeps returning null", async (t) => {
  for (const kind of SOURCES) {
    await t.step(kind, async () => {
      const reader = makeReader(kind, new Uint8Array(), 1);
      assert.equal(await reader.next(), null);
      assert.equal(await reader.next(), null);
    });
  }
});

Deno.test("FrameReader rejects concurrent next() calls", async () => {
  const reader = new FrameReader(sliceReader(
    encodeFrame({
      type: 3,
      id: 0,
      header: {},
      body: new Uint8Array(),
    }),
    1,
  ));
  const first = reader.next();
  await assert.rejects(reader.next(), /another next\(\) call/);
  assert.equal((await first)?.type, FrameType.Notice);
});

Deno.test("encodeFrame rejects invalid frames", async (t) => {
  const body = new Uint8Array();
  const cases: { name: string; frame: Frame; match: RegExp; maxFrame?: number }[] = [
    { name: "type 0", frame: { type: 0 as 1, id: 0, header: {}, body }, match: /unknown type/ },
    { name: "negative id", frame: { type: 1, id: -1, header: {}, body }, match: /not a u32/ },
    { name: "fractional id", frame: { type: 1, id: 1.5, header: {}, body }, match: /not a u32/ },
    { name: "id 2^32", frame: { type: 1, id: 2 ** 32, header: {}, body }, match: /not a u32/ },
    {
      name: "array header",
      frame: { type: 1, id: 1, header: [] as unknown as Record<string, unknown>, body },
      match: /not a plain object/,
    },
    {
      name: "BigInt in header",
      frame: { type: 1, id: 1, header: { n: 1n }, body },
      match: /not JSON-serializable/,
    },
    {
      name: "too large",
      frame: { type: 1, id: 1, header: {}, body: new Uint8Array(100) },
      match: /length 111 exceeds limit 110/,
      maxFrame: 110,
    },
  ];
  for (const { name, frame, match, maxFrame } of cases) {
    await t.step(name, () => {
      assert.throws(() => encodeFrame(frame, maxFrame), (e) => {
        assert.ok(e instanceof FrameError);
        assert.match(e.message, /^Cannot encode frame: /);
        assert.match(e.message, match);
        return true;
      });
    });
  }
});

Deno.test("writeAll", async (t) => {
  await t.step("loops on partial writes", async () => {
    const data = patterned(1000);
    const got: number[] = [];
    let calls = 0;
    await writeAll({
      write(p) {
        calls++;
        const n = Math.min(3, p.length);
        got.push(...p.subarray(0, n));
        return Promise.resolve(n);
      },
    }, data);
    assert.deepEqual(new Uint8Array(got), data);
    assert.equal(calls, Math.ceil(1000 / 3));
  });
  await t.step("fails instead of spinning on a zero-byte write", async () => {
    await assert.rejects(
      writeAll({ write: () => Promise.resolve(0) }, patterned(4)),
      /Cannot write data: writer accepted 0 bytes/,
    );
  });
  await t.step("empty data writes nothing", async () => {
    await writeAll({ write: () => Promise.reject(new Error("unexpected")) }, new Uint8Array());
  });
});

Deno.test("frames survive a real loopback TCP connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const frames: Frame[] = [
    { type: 1, id: 1, header: { op: "put" }, body: patterned(4 * 1024 * 1024) },
    { type: 3, id: 0, header: { t: "n" }, body: new Uint8Array() },
  ];
  const [server, client] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
  ]);
  listener.close();
  const writing = (async () => {
    for (const f of frames) await writeAll(client, encodeFrame(f));
    client.close();
  })();
  const got = await readAll(new FrameReader(server));
  await writing;
  server.close();
  assert.deepEqual(got, frames);
});

Deno.test("big headers travel zstd-compressed and come back identical", async () => {
  const { FrameReader, encodeFrame, HEADER_ZSTD } = await import(
    "../../lib/protocol/frame.ts"
  );
  const header = {
    t: "commit",
    chunks: Array.from(
      { length: 2000 },
      (_, i) => ({ hash: i.toString(16).padStart(64, "0"), size: i }),
    ),
  };
  const bytes = encodeFrame({ type: 1, id: 7, header, body: new Uint8Array([1, 2, 3]) });
  assert.equal(bytes[4]! & HEADER_ZSTD, HEADER_ZSTD);
  assert.ok(bytes.length < JSON.stringify(header).length / 2);
  let at = 0;
  const reader = new FrameReader({
    read(p: Uint8Array) {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  });
  const f = await reader.next();
  assert.deepEqual(f?.header, header);
  assert.deepEqual([...f!.body], [1, 2, 3]);
  assert.equal(f?.type, 1);
});

Deno.test("a header too repetitive for every receiver's ratio travels plain and is read back", async () => {
  const { FrameReader, encodeFrame, HEADER_ZSTD, HEADER_RATIO } = await import(
    "../../lib/protocol/frame.ts"
  );
  // The chunk list of a 32 GiB file of zeros: 2 MiB of the same reference, which zstd shrinks
  // more than a thousandfold (a receiver with the default limits refused it: the connection
  // closed, pass after pass).
  const same = { hash: "0".repeat(64), size: 16384 };
  const header = { t: "changes", chunks: Array.from({ length: 25_000 }, () => same) };
  const json = JSON.stringify(header);
  assert.ok(json.length > zlib.zstdCompressSync(json).length * HEADER_RATIO);
  const bytes = encodeFrame({ type: 2, id: 9, header, body: new Uint8Array(0) });
  assert.equal(bytes[4]! & HEADER_ZSTD, 0);
  let at = 0;
  const reader = new FrameReader({
    read(p: Uint8Array) {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  });
  assert.deepEqual((await reader.next())?.header, header);
});

Deno.test("FrameReader says when only the last bytes of a frame are missing", async (t) => {
  const body = (n: number) => new Uint8Array(n).fill(7);
  const frames = [
    encodeFrame({ type: FrameType.Response, id: 1, header: {}, body: body(300_000) }),
    encodeFrame({ type: FrameType.Notice, id: 0, header: { t: "ping" }, body: body(0) }),
    encodeFrame({ type: FrameType.Response, id: 2, header: { a: 1 }, body: body(200_000) }),
  ];
  const data = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let off = 0;
  for (const f of frames) {
    data.set(f, off);
    off += f.length;
  }
  const rows: { name: string; nearEndBytes?: number; chunk: number; whole?: boolean }[] = [
    { name: "default threshold (64 KiB), 16 KiB reads", chunk: 16_384 },
    { name: "1,000 bytes, 1,000-byte reads", nearEndBytes: 1_000, chunk: 1_000 },
    { name: "frames that arrive whole: never", chunk: 1 << 20, whole: true },
  ];
  for (const r of rows) {
    await t.step(r.name, async () => {
      let calls: number[] = [];
      const reader = new FrameReader(sliceReader(data, r.chunk), {
        onNearEnd: (n) => calls.push(n),
        ...(r.nearEndBytes === undefined ? {} : { nearEndBytes: r.nearEndBytes }),
      });
      const limit = r.nearEndBytes ?? 64 * 1024;
      for (const f of frames) {
        const got = await reader.next();
        assert.equal(got?.id, f === frames[0] ? 1 : f === frames[1] ? 0 : 2);
        if (r.whole || f === frames[1]) assert.deepEqual(calls, [], "a frame that came whole");
        else {
          assert.ok(calls.length > 0, "no call for a big frame");
          for (const n of calls) assert.ok(n > 0 && n <= limit, `missing ${n} not in 1..${limit}`);
          // Also after the last read before the final one: what is missing then is its tail.
          assert.ok(calls[calls.length - 1]! <= r.chunk, `last call at ${calls.at(-1)} missing`);
        }
        calls = [];
      }
    });
  }
});

Deno.test("FrameReader bounds headers before parsing them", async (t) => {
  const big = { t: "x", list: Array.from({ length: 2000 }, (_, i) => `item-${i}`) };
  const compressed = encodeFrame({
    type: FrameType.Request,
    id: 1,
    header: big,
    body: new Uint8Array(),
  });
  assert.ok((compressed[4]! & HEADER_ZSTD) !== 0, "the fixture must travel compressed");
  await t.step("a compressed header is refused where it is not accepted", async () => {
    const r = new FrameReader(sliceReader(compressed, 4096), {
      headerLimits: { maxHeader: 1 << 20, compressed: false, maxRatio: 1 },
    });
    await assert.rejects(
      r.next(),
      (e: Error) => e instanceof FrameError && /compressed header is not accepted/.test(e.message),
    );
  });
  await t.step("a header is refused past maxHeader, on the wire or decompressed", async () => {
    const r = new FrameReader(sliceReader(compressed, 4096), {
      headerLimits: { maxHeader: 8 * 1024, compressed: true, maxRatio: 4096 },
    });
    await assert.rejects(
      r.next(),
      (e: Error) => e instanceof FrameError && /expands beyond/.test(e.message),
    );
    const plain = encodeFrame({
      type: FrameType.Request,
      id: 1,
      header: { p: "x".repeat(3000) },
      body: new Uint8Array(),
    });
    const r2 = new FrameReader(sliceReader(plain, 4096), {
      headerLimits: { maxHeader: 1024, compressed: true, maxRatio: 4096 },
    });
    await assert.rejects(
      r2.next(),
      (e: Error) => e instanceof FrameError && /exceeds the limit/.test(e.message),
    );
  });
  await t.step("a header of millions of empty objects is refused unparsed", async () => {
    const text = enc.encode(`{"t":"x","a":[${"{},".repeat(1_000_000)}{}]}`);
    const z = zlib.zstdCompressSync(text);
    const frame = raw({ type: 1 | HEADER_ZSTD, header: new Uint8Array(z) });
    const t0 = performance.now();
    const r = new FrameReader(sliceReader(frame, 65536), {
      headerLimits: { maxHeader: 32 << 20, compressed: true, maxRatio: 1e9 },
    });
    await assert.rejects(
      r.next(),
      (e: Error) => e instanceof FrameError && /too many JSON objects/.test(e.message),
    );
    assert.ok(performance.now() - t0 < 500, `${performance.now() - t0} ms`);
  });
});
