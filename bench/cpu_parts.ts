/**
 * CPU seconds per GiB of the building blocks of a big-file transfer, each alone in this process
 * (run with the product's V8 flags and malloc settings: `deno task bench:parts`). Deno's binary has
 * no symbols, so `perf` cannot split its own time into TLS, SHA-256 and zstd; these figures do
 * (bench/README.md, "Where the CPU goes"). Nothing leaves 127.0.0.1.
 *
 *   deno task bench:parts [--mib=256] [--only=sha,cdc,probe,alloc,tls,write]
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
import { createCipheriv, createHash } from "node:crypto";
import { chunkStream, findCut, resolveChunkerOptions } from "../lib/chunk/fastcdc.ts";
import { acquireScanner } from "../lib/chunk/fastcdc_scanner.ts";
import { compressChunk } from "../lib/chunk/compress.ts";
import { createSelfSigned } from "../lib/transport/tls_cert.ts";

const MiB = 1 << 20;
const { values } = parseArgs({
  args: Deno.args,
  options: { mib: { type: "string", default: "256" }, only: { type: "string" } },
});
const total = Number(values.mib) * MiB;
const only = values.only ? new Set(values.only.split(",")) : null;
const want = (n: string) => !only || only.has(n);

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Runs `fn`, prints CPU and wall seconds per GiB of `bytes`. */
async function measure(name: string, bytes: number, fn: () => Promise<void> | void) {
  const c0 = cpu();
  const t0 = performance.now();
  await fn();
  const c = cpu() - c0;
  const t = (performance.now() - t0) / 1000;
  const gib = bytes / 2 ** 30;
  console.log(
    `${name.padEnd(44)} ${(c / gib).toFixed(2).padStart(6)} CPU s/GiB  ${
      (t / gib).toFixed(2).padStart(6)
    } wall s/GiB`,
  );
}

/** Pseudo-random bytes (AES-256-CTR keystream): incompressible, like the bench's big file. */
function random(n: number): Uint8Array {
  const c = createCipheriv("aes-256-ctr", new Uint8Array(32), new Uint8Array(16));
  return new Uint8Array(c.update(new Uint8Array(n)));
}

const buf = random(16 * MiB);
const o = resolveChunkerOptions();
/** Chunk boundaries of `buf` (the real ones: average ~280 KiB). */
const cuts: [number, number][] = [];
for (let at = 0; at < buf.length;) {
  const n = findCut(buf, at, buf.length, o, true);
  cuts.push([at, n]);
  at += n;
}
const rounds = Math.max(1, Math.round(total / buf.length));
const bytes = rounds * buf.length;

if (want("sha")) {
  await measure("SHA-256 (node:crypto), per chunk", bytes, () => {
    for (let r = 0; r < rounds; r++) {
      for (const [at, n] of cuts) {
        createHash("sha256").update(buf.subarray(at, at + n)).digest("hex");
      }
    }
  });
}
if (want("cdc")) {
  await measure("FastCDC findCut (TypeScript)", bytes, () => {
    for (let r = 0; r < rounds; r++) {
      for (let at = 0; at < buf.length;) at += findCut(buf, at, buf.length, o, true);
    }
  });
  // The same cuts with the data already in the instance's memory, as chunkStream reads it there.
  const scanner = acquireScanner(buf.length);
  if (scanner) {
    scanner.window(buf.length).set(buf);
    await measure("FastCDC findCut (WebAssembly)", bytes, () => {
      for (let r = 0; r < rounds; r++) {
        for (let at = 0; at < buf.length;) at += scanner.findCut(at, buf.length, o, true);
      }
    });
  } else console.log("FastCDC findCut (WebAssembly): unavailable in this runtime");
  // The whole chunker as files use it: 1 MiB reads copied into its buffer, cuts, SHA-256.
  for (const engine of ["typescript", "auto"] as const) {
    await measure(
      `chunkStream, 1 MiB reads (${engine === "auto" ? "WebAssembly" : "TypeScript"})`,
      bytes,
      async () => {
        let r = 0;
        let at = 0;
        const read = (b: Uint8Array) => {
          if (at === buf.length) [r, at] = [r + 1, 0];
          if (r === rounds) return Promise.resolve(null);
          const n = Math.min(b.length, MiB, buf.length - at);
          b.set(buf.subarray(at, at + n));
          at += n;
          return Promise.resolve(n);
        };
        for await (const _ of chunkStream(read, o, engine)) { /* drain */ }
      },
    );
  }
}
if (want("probe")) {
  await measure("compressChunk on incompressible chunks", bytes, () => {
    for (let r = 0; r < rounds; r++) {
      for (const [at, n] of cuts) compressChunk(buf.subarray(at, at + n));
    }
  });
}
if (want("alloc")) {
  await measure("a fresh 4 MiB buffer per 4 MiB, filled", bytes, () => {
    for (let i = 0; i < bytes / (4 * MiB); i++) {
      new Uint8Array(4 * MiB).set(buf.subarray(0, 4 * MiB));
    }
  });
  const reused = new Uint8Array(4 * MiB);
  await measure("one reused 4 MiB buffer, filled", bytes, () => {
    for (let i = 0; i < bytes / (4 * MiB); i++) reused.set(buf.subarray(0, 4 * MiB));
  });
}
if (want("tls")) {
  const { cert, key } = await createSelfSigned(1);
  for (const readSize of [64 * 1024, MiB]) {
    const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
    const port = (listener.addr as Deno.NetAddr).port;
    const recv = (async () => {
      const c = await listener.accept();
      const b = new Uint8Array(readSize);
      let got = 0;
      while (got < bytes) {
        const n = await c.read(b);
        if (n === null) break;
        got += n;
      }
      c.close();
    })();
    const conn = await Deno.startTls(await Deno.connect({ hostname: "127.0.0.1", port }), {
      hostname: "cloud-sync",
      caCerts: [cert],
    });
    await measure(
      `TLS 1 MiB writes -> ${readSize / 1024} KiB reads (both ends)`,
      bytes,
      async () => {
        for (let r = 0; r < rounds; r++) {
          for (let at = 0; at < buf.length; at += MiB) {
            let s = buf.subarray(at, at + MiB);
            while (s.length > 0) s = s.subarray(await conn.write(s));
          }
        }
        await recv;
      },
    );
    conn.close();
    listener.close();
  }
}
if (want("write")) {
  const path = await Deno.makeTempFile({ prefix: "cloudsync-parts-" });
  try {
    await measure("file write 4 MiB pieces + fsync", bytes, async () => {
      const f = await Deno.open(path, { write: true });
      for (let r = 0; r < rounds; r++) {
        for (let at = 0; at < buf.length; at += 4 * MiB) {
          let s = buf.subarray(at, at + 4 * MiB);
          while (s.length > 0) s = s.subarray(await f.write(s));
        }
      }
      await f.sync();
      f.close();
    });
  } finally {
    await Deno.remove(path);
  }
}
