const dir = "/work/wt12";
import { createSelfSigned } from "/work/wt12/lib/transport/tls_cert.ts";
const c = await createSelfSigned();
const l = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: c.cert, key: c.key });
const port = (l.addr as Deno.NetAddr).port;
const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
console.log("fds start", fds());
const accepted: Deno.TlsConn[] = [];
(async () => { for (;;) { const conn = await l.accept(); accepted.push(conn);
  // start a read to trigger handshake like the Peer
  conn.read(new Uint8Array(10)).catch((e)=>{}); } })();
const clients: Deno.Conn[] = [];
for (let i = 0; i < 50; i++) clients.push(await Deno.connect({ hostname: "127.0.0.1", port }));
await new Promise(r => setTimeout(r, 300));
console.log("accepted", accepted.length, "fds", fds());
for (const a of accepted) a.close();
await new Promise(r => setTimeout(r, 500));
console.log("after server close fds", fds());
// do the client sides see EOF?
let eof = 0;
await Promise.all(clients.map(async (c) => { const t = setTimeout(()=>{}, 0); try { const r = await Promise.race([c.read(new Uint8Array(10)), new Promise(r=>setTimeout(()=>r("to"),500))]); if (r === null) eof++; else console.log("r", r); } catch (e) { eof++; } }));
console.log("clients saw close", eof);
Deno.exit(0);
