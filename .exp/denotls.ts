import { createSelfSigned } from "/work/wt12/lib/transport/tls_cert.ts";
const c = await createSelfSigned();
const l = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: c.cert, key: c.key });
const port = (l.addr as Deno.NetAddr).port;
(async () => { const s = await l.accept(); const b = new Uint8Array(1024*1024); let n = 0; while (n < 256*1024*1024) { const k = await s.read(b); if (k === null) break; n += k; } await s.write(new Uint8Array([1])); })();
const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [c.cert] });
const buf = new Uint8Array(1024*1024);
const t0 = performance.now();
for (let i = 0; i < 256; i++) { let off = 0; while (off < buf.length) off += await conn.write(buf.subarray(off)); }
const r = new Uint8Array(10); await conn.read(r);
console.log("deno tls 256 MiB in", (performance.now()-t0).toFixed(0), "ms");
Deno.exit(0);
