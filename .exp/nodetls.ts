import tls from "node:tls";
import net from "node:net";
import { createSelfSigned } from "/work/wt12/lib/transport/tls_cert.ts";
const c = await createSelfSigned();
const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
const srv = net.createServer((sock) => {
  const timer = setTimeout(() => sock.destroy(), 300);
  const t = new tls.TLSSocket(sock, { isServer: true, cert: c.cert, key: c.key });
  t.on("secure", () => { clearTimeout(timer); });
  t.on("error", () => {});
  let n = 0;
  t.on("data", (d) => { n += d.length; if (n >= 256*1024*1024) { t.end("done"); } });
});
await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
const port = (srv.address() as net.AddressInfo).port;
// stuck sockets
const stuck: Deno.Conn[] = [];
for (let i = 0; i < 50; i++) stuck.push(await Deno.connect({ hostname: "127.0.0.1", port }));
await new Promise(r => setTimeout(r, 200));
console.log("fds with stuck", fds());
await new Promise(r => setTimeout(r, 600));
console.log("fds after timeout", fds());
// throughput
const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [c.cert] }).catch(e => { console.log("connect err", e.message); return null; });
if (conn) {
  const buf = new Uint8Array(1024*1024);
  const t0 = performance.now();
  for (let i = 0; i < 256; i++) { let off = 0; while (off < buf.length) off += await conn.write(buf.subarray(off)); }
  const r = new Uint8Array(10); await conn.read(r);
  console.log("256 MiB in", (performance.now()-t0).toFixed(0), "ms");
}
Deno.exit(0);
