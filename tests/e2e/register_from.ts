/**
 * A client for tests and the attack bench, run as its own process: for each loopback address
 * ADDR given (in turn; one may repeat), connects from it over TLS to 127.0.0.1:PORT (trusting
 * CERTFILE for the name `cloud-sync`), sends `hello` and then `register` (MODE `register`) or an
 * `enroll` with a wrong serial code (MODE `enroll`), and prints one line `ADDR ok` or
 * `ADDR CODE` (the error code). Binding other loopback addresses needs `--allow-net` for them,
 * which the test runner lacks.
 *
 * Run: `deno run --allow-net=127.0.0.1,ADDR... --allow-read register_from.ts PORT CERTFILE MODE ADDR...`
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { Readable } from "node:stream";
import { encodeFrame, FrameReader, FrameType } from "../../lib/protocol/frame.ts";

const [portText, certFile, mode, ...addrs] = Deno.args;
const ca = await Deno.readTextFile(certFile!);

function request(id: number, header: Record<string, unknown>): Uint8Array {
  return encodeFrame({ type: FrameType.Request, id, header, body: new Uint8Array() });
}

for (const addr of addrs) {
  const raw = net.connect({ host: "127.0.0.1", port: Number(portText), localAddress: addr });
  const sock = tls.connect({ socket: raw, ca, servername: "cloud-sync" });
  await new Promise<void>((resolve, reject) => {
    sock.once("secureConnect", () => resolve());
    sock.once("error", reject);
  });
  const reader = new FrameReader(Readable.toWeb(sock) as ReadableStream<Uint8Array>);
  sock.write(request(1, { t: "hello", protocol: 1, program: "test", caps: [] }));
  await reader.next();
  sock.write(
    request(
      2,
      mode === "enroll"
        ? { t: "enroll", serial: "0000-0000-0000-0000-0000-0000-0000-0000", device: "guess" }
        : { t: "register", device: `from ${addr}` },
    ),
  );
  const r = await reader.next();
  const error = r?.header.error as { code?: string } | undefined;
  console.log(`${addr} ${error?.code ?? "ok"}`);
  sock.destroy();
}
