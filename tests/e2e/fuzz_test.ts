/**
 * Fuzzing the real server process over TLS while a well-behaved client keeps syncing.
 *
 * Valid frames (hello, register, enroll, auth, changes, have, put, putMany, get, getMany, commit,
 * watch) are built with the real codec, then mutated: bits flipped, truncated, lengths changed,
 * header fields given wrong types, huge numbers, deep nesting, long strings, bad paths,
 * compressed-header bombs (a few KB that expand to up to 31 MiB of `{}`), headers shaped to
 * be slow to parse (keys in ever new orders, distinct keys), and valid sessions sent pipelined
 * with one request's field made wrong. Checked:
 * the server never crashes, answers or closes every connection within a deadline, never answers
 * `internal` (an unexpected exception), stays under a memory bound (VmRSS from /proc), and two
 * clients keep syncing meanwhile.
 *
 * CI runs 300 frames; `FUZZ_FRAMES=N` runs N (and `FUZZ_SEED=S` repeats a run).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import zlib from "node:zlib";
import {
  Proc,
  put,
  ServerProc,
  startClient,
  startFirstClient,
  tempDir,
  waitForContent,
} from "./harness.ts";
import { encodeFrame, FrameReader, FrameType } from "../../lib/protocol/frame.ts";
import { sha256Hex } from "../../lib/chunk/hash.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };
const FRAMES = Number(Deno.env.get("FUZZ_FRAMES") ?? 300);
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 1_000_000);
const WORKERS = 8;
/** Longest wait for an answer or a close, per connection. */
const DEADLINE_MS = 8_000;
const RSS_LIMIT_MB = 300;

/** A small deterministic PRNG (mulberry32), so a failing seed can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
    chance: (p: number) => next() < p,
  };
}
type Rng = ReturnType<typeof prng>;

const enc = new TextEncoder();

/** The resident memory of process `pid` (Linux: /proc; read by `cat`, as /proc needs -A). */
async function rssMb(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stderr: "null" })
    .output();
  const m = new TextDecoder().decode(out.stdout).match(/^VmRSS:\s+(\d+) kB$/m);
  return m ? Number(m[1]) / 1024 : 0;
}

/** A frame from a raw JSON header text (to send what JSON.stringify cannot build). */
function rawFrame(
  type: number,
  id: number,
  headerText: string,
  body: Uint8Array = new Uint8Array(),
) {
  const header = enc.encode(headerText);
  const out = new Uint8Array(13 + header.length + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 9 + header.length + body.length);
  v.setUint8(4, type);
  v.setUint32(5, id);
  v.setUint32(9, header.length);
  out.set(header, 13);
  out.set(body, 13 + header.length);
  return out;
}

function request(id: number, header: Record<string, unknown>, body: Uint8Array = new Uint8Array()) {
  return encodeFrame({ type: FrameType.Request, id, header, body });
}

interface Creds {
  account: string;
  deviceId: string;
  token: string;
}

/** The valid requests the mutations start from. */
function templates(
  creds: Creds,
  rng: Rng,
): { header: Record<string, unknown>; body: Uint8Array }[] {
  const data = crypto.getRandomValues(new Uint8Array(1000 + rng.int(3000)));
  const hash = sha256Hex(data);
  const item = {
    path: "fuzz/f.bin",
    baseVersion: 0,
    kind: "file",
    deleted: false,
    size: data.length,
    mtime: 1_700_000_000_000,
    exec: false,
    hash,
    chunks: [{ hash, size: data.length }],
  };
  const none = new Uint8Array();
  return [
    { header: { t: "hello", protocol: 1, program: "fuzz", caps: ["zstd"] }, body: none },
    { header: { t: "register", device: "fuzz" }, body: none },
    {
      header: { t: "enroll", serial: "0000-0000-0000-0000-0000-0000-0000-0000", device: "x" },
      body: none,
    },
    { header: { t: "auth", ...creds }, body: none },
    { header: { t: "changes", since: 0, limit: 100 }, body: none },
    { header: { t: "have", hashes: [hash, "0".repeat(64)] }, body: none },
    { header: { t: "put", hash, size: data.length, z: false }, body: data },
    {
      header: { t: "putMany", chunks: [{ hash, size: data.length, z: false, len: data.length }] },
      body: data,
    },
    { header: { t: "get", hash }, body: none },
    { header: { t: "getMany", hashes: [hash] }, body: none },
    { header: { t: "commit", items: [item] }, body: none },
    { header: { t: "watch" }, body: none },
  ];
}

const BAD_PATHS = [
  "../x",
  "/etc/passwd",
  "a/../../x",
  "a\u0000b",
  ".cloudsync/x",
  ".cloudsync",
  "",
  ".",
  "..",
  "a//b",
  "C:\\Windows",
  "\\\\server\\share",
  "x".repeat(5000),
  "é".repeat(300),
  "a/\n/b",
  "e\u0301",
];

function wrongValue(rng: Rng): unknown {
  const deep = (n: number): unknown => {
    let v: unknown = 1;
    for (let i = 0; i < n; i++) v = [v];
    return v;
  };
  return rng.pick<() => unknown>([
    () => null,
    () => true,
    () => -1,
    () => 1.5,
    () => 2 ** 53,
    () => 1e308,
    () => -0,
    () => "",
    () => "x".repeat(rng.pick([100, 10_000, 60_000])),
    () => [],
    () => [1, "a", null],
    () => ({}),
    () => ({ t: "hello" }),
    () => deep(rng.pick([10, 100, 1000])),
    () => rng.pick(BAD_PATHS),
    () => Array.from({ length: 5000 }, () => "0".repeat(64)),
  ])();
}

/**
 * Mutates a template. `complete`: a well-framed request that must be answered (or the connection
 * closed); false when the declared lengths may be off or the frame is not a request (a response
 * or notice from the client is ignored, as the protocol says).
 */
function mutate(
  rng: Rng,
  id: number,
  t: { header: Record<string, unknown>; body: Uint8Array },
  sessionSteps: { header: Record<string, unknown>; body: Uint8Array }[] = [t],
): { bytes: Uint8Array; complete: boolean; what: string } {
  const kind = rng.int(14);
  const header = structuredClone(t.header);
  switch (kind) {
    case 0: { // a field of the wrong type / value
      const keys = Object.keys(header);
      const k = rng.pick(keys);
      header[k] = wrongValue(rng);
      return { bytes: request(id, header, t.body), complete: true, what: `field ${k}` };
    }
    case 1: { // commit items with bad paths or wrong shapes
      const item = {
        path: rng.pick(BAD_PATHS),
        baseVersion: rng.pick([0, -1, 2 ** 60, 1.5]),
        kind: rng.pick(["file", "dir", "link", 3]),
        deleted: rng.pick([false, true, "no"]),
        size: rng.pick([0, 10, -5, 1e20]),
        mtime: rng.pick([0, -1, 1e300]),
        exec: rng.pick([false, 1]),
        hash: rng.pick(["", "0".repeat(64), "zz", "A".repeat(64)]),
        chunks: rng.pick([[], [{ hash: "0".repeat(64), size: 1 }], null, "x", [[]]]),
      };
      const items = rng.chance(0.1) ? Array.from({ length: 1001 }, () => item) : [item];
      return { bytes: request(id, { t: "commit", items }), complete: true, what: "commit item" };
    }
    case 2: { // deep nesting in raw JSON
      const depth = rng.pick([1000, 10_000, 50_000]);
      const text = `{"t":"${t.header.t}","x":${"[".repeat(depth)}${"]".repeat(depth)}}`;
      return { bytes: rawFrame(1, id, text), complete: true, what: `nesting ${depth}` };
    }
    case 3: { // not JSON / not an object / invalid UTF-8
      const text = rng.pick(["", "null", "[]", "42", '"s"', "{", '{"t":', "\ud800", "{}"]);
      const bytes = rawFrame(1, id, text);
      if (rng.chance(0.3)) bytes[13] = 0xff;
      return { bytes, complete: true, what: `header ${JSON.stringify(text)}` };
    }
    case 4: { // bit flips anywhere
      const bytes = request(id, header, t.body);
      const flips = 1 + rng.int(8);
      for (let i = 0; i < flips; i++) bytes[rng.int(bytes.length)]! ^= 1 << rng.int(8);
      return { bytes, complete: false, what: `${flips} bit flips` };
    }
    case 5: { // truncated
      const bytes = request(id, header, t.body);
      return {
        bytes: bytes.subarray(0, rng.int(bytes.length)),
        complete: false,
        what: "truncated",
      };
    }
    case 6: { // length field changed
      const bytes = request(id, header, t.body);
      const v = new DataView(bytes.buffer, bytes.byteOffset);
      const len = v.getUint32(0);
      v.setUint32(
        0,
        rng.pick([0, 1, 8, 9, len - 1, len + 1, len + 1000, 0x7fffffff, 0xffffffff, 8 << 20]) >>> 0,
      );
      return { bytes, complete: false, what: "length" };
    }
    case 7: { // header length / type / id changed
      const bytes = request(id, header, t.body);
      const v = new DataView(bytes.buffer, bytes.byteOffset);
      const which = rng.int(3);
      if (which === 0) v.setUint32(9, rng.pick([0, 1, 0xffffffff, v.getUint32(0)]) >>> 0);
      if (which === 1) v.setUint8(4, rng.pick([0, 2, 3, 4, 255]));
      if (which === 2) v.setUint32(5, rng.pick([0, 0xffffffff]));
      return { bytes, complete: which === 2, what: ["headerLen", "type", "id"][which]! };
    }
    case 8: { // random bytes
      const bytes = crypto.getRandomValues(new Uint8Array(1 + rng.int(2000)));
      return { bytes, complete: false, what: "random bytes" };
    }
    case 9: { // body changed: garbage, wrong size, claimed compressed
      const body = rng.chance(0.5)
        ? crypto.getRandomValues(new Uint8Array(rng.int(5000)))
        : t.body.subarray(0, rng.int(t.body.length + 1));
      const h = { ...header };
      if ("z" in h) h.z = rng.chance(0.5);
      if ("size" in h && rng.chance(0.5)) h.size = rng.pick([0, 4 * 1024 * 1024, 2 ** 40]);
      if (Array.isArray(h.chunks) && rng.chance(0.5)) {
        h.chunks = [{ ...(h.chunks[0] as object), z: true, size: 1 << 22, len: body.length }];
      }
      return { bytes: request(id, h, body), complete: true, what: "body" };
    }
    case 11: { // a compressed-header bomb: a few KB on the wire, megabytes of `{}` inside
      const mib = rng.pick([1, 4, 16, 31]);
      const text = enc.encode(
        `{"t":"${t.header.t}","x":[${"{},".repeat(Math.floor(mib * 349_525))}{}]}`,
      );
      const z = zlib.zstdCompressSync(text);
      const bytes = rawFrame(1 | 0x80, id, "", new Uint8Array(z));
      new DataView(bytes.buffer).setUint32(9, z.length); // the whole payload is the header
      return { bytes, complete: true, what: `header bomb ${mib} MiB` };
    }
    case 13: { // a header shaped to be slow to parse: keys in ever new orders, distinct keys
      const keys = Array.from({ length: 8 + rng.int(9) }, (_, i) => `"k${i}":${i}`);
      const objs: string[] = [];
      const n = rng.pick([2_000, 50_000, 200_000]);
      for (let i = 0; i < n; i++) {
        const k = rng.int(2) === 0
          ? [...keys].sort(() => rng.int(3) - 1)
          : [`"d${i}":0`, `"e${i}":1`];
        objs.push(`{${k.join(",")}}`);
      }
      const z = zlib.zstdCompressSync(enc.encode(`{"t":"${t.header.t}","x":[${objs}]}`));
      const bytes = rawFrame(1 | 0x80, id, "", new Uint8Array(z));
      new DataView(bytes.buffer).setUint32(9, z.length);
      return { bytes, complete: true, what: `slow-shaped header of ${n} objects` };
    }
    case 12: { // a valid session, pipelined, with one request's field made wrong
      const picks = Array.from({ length: 2 + rng.int(5) }, () => rng.pick(sessionSteps));
      const bad = rng.int(picks.length);
      const parts = picks.map((step, i) => {
        const h = structuredClone(step.header);
        if (i === bad) h[rng.pick(Object.keys(h))] = wrongValue(rng);
        return request(id + i, h, step.body);
      });
      const bytes = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
      let off = 0;
      for (const x of parts) {
        bytes.set(x, off);
        off += x.length;
      }
      return { bytes, complete: true, what: `session of ${picks.length}, step ${bad} wrong` };
    }
    default: { // the valid frame, repeated fast (a flood)
      const one = request(id, header, t.body);
      const n = 1 + rng.int(50);
      const bytes = new Uint8Array(one.length * n);
      for (let i = 0; i < n; i++) {
        bytes.set(one, i * one.length);
        new DataView(bytes.buffer).setUint32(i * one.length + 5, id + i);
      }
      return { bytes, complete: true, what: `flood of ${n}` };
    }
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Reads frames until one is a response or the stream ends; "timeout" after `ms`. */
async function awaitAnswer(
  reader: FrameReader,
  conn: Deno.Conn,
  ms: number,
  onError: (code: string) => void,
): Promise<"answered" | "closed" | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const timeout = new Promise<"timeout">((r) =>
    timer = setTimeout(() => {
      timedOut = true;
      r("timeout");
    }, ms)
  );
  const reading = (async (): Promise<"answered" | "closed"> => {
    try {
      for (;;) {
        const f = await reader.next();
        if (f === null) return "closed";
        if (f.type !== FrameType.Response) continue;
        const err = f.header.error as { code?: string } | undefined;
        if (err?.code) onError(err.code);
        return "answered";
      }
    } catch {
      return "closed";
    }
  })();
  const r = await Promise.race([reading, timeout]);
  clearTimeout(timer);
  if (timedOut) {
    try {
      conn.close();
    } catch { /* closed */ }
    await reading;
  }
  return r;
}

Deno.test(
  `fuzz: ${FRAMES} mutated frames; the server survives and clients keep syncing`,
  opts,
  async () => {
    await using tmp = await tempDir();
    const data = join(tmp.path, "data");
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    await put(a, "start.txt", "start");
    const server = await ServerProc.start(data);
    const pid = server.child.pid;
    const [ca, serial] = await startFirstClient("A", server.port, a);
    const procs: Proc[] = [server, ca];
    let alive = true;
    server.child.status.then(() => alive = false);
    let sampling = true;
    let maxRss = 0;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        const mb = await rssMb(pid).catch(() => 0);
        if (mb > 0) samples++;
        maxRss = Math.max(maxRss, mb);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    try {
      const cb = startClient("B", server.port, b, { serial });
      procs.push(cb);
      await waitForContent(b, "start.txt", "start", 30_000);
      const pem = await Deno.readTextFile(join(data, "tls", "cert.pem"));
      const connect = () =>
        Deno.connectTls({ hostname: "127.0.0.1", port: server.port, caCerts: [pem] });

      // The fuzzer's own account (for signed-in fuzzing), made before any failure is counted.
      const setup = await connect();
      const setupReader = new FrameReader(setup);
      await writeAll(setup, request(1, { t: "hello", protocol: 1, program: "fuzz", caps: [] }));
      await setupReader.next();
      await writeAll(setup, request(2, { t: "register", device: "fuzzer" }));
      const reg = (await setupReader.next())!.header;
      setup.close();
      const creds = {
        account: String(reg.account),
        deviceId: String(reg.deviceId),
        token: String(reg.token),
      };

      const stats = {
        frames: 0,
        cases: 0,
        answered: 0,
        closed: 0,
        signedIn: 0,
        codes: new Map<string, number>(),
      };
      const problems: string[] = [];
      const started = Date.now();
      const budgetMs = FRAMES <= 300 ? 25_000 : FRAMES * 200;
      let wrote = 0;

      const worker = async (w: number) => {
        const wr = prng(SEED * 31 + w);
        while (stats.frames < FRAMES && Date.now() - started < budgetMs) {
          stats.cases++;
          const tpls = templates(creds, wr);
          let conn: Deno.TlsConn;
          try {
            conn = await connect();
          } catch (e) {
            problems.push(`cannot connect: ${(e as Error).message}`);
            continue;
          }
          const reader = new FrameReader(conn);
          const onError = (code: string) => stats.codes.set(code, (stats.codes.get(code) ?? 0) + 1);
          const steps: string[] = [];
          try {
            let id = 1;
            if (wr.chance(0.85)) {
              await writeAll(conn, request(id++, tpls[0]!.header));
              const r = await awaitAnswer(reader, conn, DEADLINE_MS, onError);
              if (r === "timeout") problems.push("no answer to a valid hello");
              if (r !== "answered") continue;
              if (wr.chance(0.6)) {
                await writeAll(conn, request(id++, tpls[3]!.header));
                const codes: string[] = [];
                const r2 = await awaitAnswer(reader, conn, DEADLINE_MS, (c) => {
                  codes.push(c);
                  onError(c);
                });
                if (r2 === "timeout") problems.push("no answer to a valid auth");
                if (r2 !== "answered") continue;
                if (codes.length === 0) stats.signedIn++;
              }
            }
            const n = 1 + wr.int(3);
            for (let i = 0; i < n; i++) {
              // Steps of a signed-in session (changes .. watch) for the pipelined sessions.
              const m = mutate(wr, id, wr.pick(tpls), tpls.slice(4));
              id += 100;
              stats.frames++;
              steps.push(m.what);
              await writeAll(conn, m.bytes);
              if (!m.complete) break;
              const r = await awaitAnswer(reader, conn, DEADLINE_MS, onError);
              if (r === "timeout") {
                problems.push(
                  `no answer within ${DEADLINE_MS} ms to: ${steps.join(", ")}`,
                );
              }
              if (r === "answered") stats.answered++;
              if (r !== "answered") break;
            }
            // Whatever state the connection is in, the server closes it once we stop sending.
            await conn.closeWrite().catch(() => {});
            let closed = false;
            let timer: ReturnType<typeof setTimeout> | undefined;
            await Promise.race([
              (async () => {
                try {
                  while ((await reader.next()) !== null) { /* drain */ }
                } catch { /* closed with an error: fine */ }
                closed = true;
              })(),
              new Promise((r) => timer = setTimeout(r, DEADLINE_MS)),
            ]);
            clearTimeout(timer);
            if (closed) stats.closed++;
            else problems.push(`not closed within ${DEADLINE_MS} ms after: ${steps.join(", ")}`);
          } catch {
            /* the server closed the connection mid-write: fine */
          } finally {
            try {
              conn.close();
            } catch { /* already closed */ }
          }
          // Meanwhile the user keeps working.
          if (w === 0 && stats.frames > (wrote + 1) * FRAMES / 4) {
            wrote++;
            await put(a, `during-${wrote}.txt`, `written during fuzzing ${wrote}`);
          }
        }
      };
      await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
      const elapsed = Date.now() - started;
      const summary =
        `seed ${SEED}: ${stats.frames} frames in ${stats.cases} connections, ${elapsed} ms, ` +
        `${stats.signedIn} signed in, ${stats.answered} answered, ${stats.closed} closed, max RSS ` +
        `${maxRss.toFixed(0)} MB, codes ${JSON.stringify(Object.fromEntries(stats.codes))}`;
      if (Deno.env.get("FUZZ_VERBOSE")) console.error(summary);

      // The server is alive, answered or closed everything, never failed internally.
      assert.ok(alive, `the server died\n${server.output()}`);
      assert.deepEqual(problems.slice(0, 5), [], summary);
      assert.equal(stats.codes.get("internal") ?? 0, 0, `internal errors: ${summary}`);
      assert.ok(stats.frames >= Math.min(FRAMES, 100), `too few frames: ${summary}`);
      if (Deno.build.os === "linux") assert.ok(samples > 0, "no memory sample taken");
      assert.ok(maxRss < RSS_LIMIT_MB, `memory: ${summary}`);
      // A fresh connection is still served.
      const fresh = await connect();
      const fr = new FrameReader(fresh);
      await writeAll(fresh, request(1, { t: "hello", protocol: 1, program: "fuzz", caps: [] }));
      assert.equal((await fr.next())?.header.protocol, 1);
      fresh.close();
      // And the well-behaved clients kept syncing.
      await put(a, "after.txt", "after fuzzing");
      for (let i = 1; i <= wrote; i++) {
        await waitForContent(b, `during-${i}.txt`, `written during fuzzing ${i}`, 20_000);
      }
      await waitForContent(b, "after.txt", "after fuzzing", 20_000);
      assert.ok(wrote >= 1 || stats.frames < 8, summary);
    } finally {
      sampling = false;
      await sampler;
      for (const p of procs.reverse()) await p.stop();
    }
  },
);
