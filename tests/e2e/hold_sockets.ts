/**
 * An attacker for tests, run as its own process: opens COUNT plain TCP sockets to
 * 127.0.0.1:PORT from the loopback addresses ADDR... (in turn), sends the first byte of a TLS
 * ClientHello on every fifth and nothing else, and holds them all. Prints `connected N` once
 * all are open, then `ended N` each time the server closes one; exits when its stdin closes.
 *
 * Run: `deno run --allow-net=127.0.0.1,ADDR... hold_sockets.ts PORT COUNT ADDR...`
 *
 * @module
 */

import net from "node:net";

const [portText, countText, ...addrs] = Deno.args;
const port = Number(portText);
const socks: net.Socket[] = [];
let ended = 0;
for (let i = 0; i < Number(countText); i++) {
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: addrs[i % addrs.length] });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
  sock.on("error", () => {});
  sock.on("close", () => console.log(`ended ${++ended}`));
  if (i % 5 === 0) sock.write(new Uint8Array([0x16]));
  socks.push(sock);
}
console.log(`connected ${socks.length}`);
// Hold everything until told to stop (stdin closed).
for await (const _ of Deno.stdin.readable) { /* nothing to read */ }
for (const s of socks) s.destroy();
