/**
 * One run of the benchmark's S3 probe (`services_backend.ts`, `--storage=pg-s3`): PUTs or ranged
 * GETs of `COUNT` objects of `BYTES` each, `CONCURRENCY` at once, with the server's own client
 * code (`S3Objects`, no retries), run as its own process so that it can have the server's V8
 * flags. Prints one line `probe {"seconds":…,"cpuS":…}`: the run's wall time and this process's
 * CPU during it (startup excluded). GETs read the objects a PUT run of the same arguments wrote.
 *
 *   deno run … bench/s3_probe.ts put|get BLOBS_URL BYTES COUNT CONCURRENCY
 *
 * The credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
 *
 * @module
 */

import process from "node:process";
import { parseS3Url } from "../lib/server/open_stores.ts";
import { S3Objects } from "../lib/server/s3_objects.ts";

const [op, url, bytesArg, countArg, concArg] = Deno.args;
const size = Number(bytesArg);
const count = Number(countArg);
const concurrency = Number(concArg);
if ((op !== "put" && op !== "get") || !url || !(size > 0) || !(count > 0) || !(concurrency > 0)) {
  console.error("usage: s3_probe.ts put|get BLOBS_URL BYTES COUNT CONCURRENCY");
  Deno.exit(2);
}
const objects = new S3Objects({
  ...parseS3Url(url),
  prefix: `probe/${size}-${concurrency}/`,
  accessKey: Deno.env.get("AWS_ACCESS_KEY_ID") ?? "",
  secretKey: Deno.env.get("AWS_SECRET_ACCESS_KEY") ?? "",
});
const body = new Uint8Array(size);
for (let i = 0; i < size; i += 65536) crypto.getRandomValues(body.subarray(i, i + 65536));
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const c0 = cpu();
const t0 = performance.now();
let next = 0;
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < count) {
    const key = String(next++);
    if (op === "put") await objects.put(key, [body]);
    else if (!await objects.read(key, 0, [new Uint8Array(size)])) {
      throw new Error(`Cannot read probe object ${key}: missing (run put first)`);
    }
  }
}));
const seconds = (performance.now() - t0) / 1000;
console.log(`probe ${JSON.stringify({ seconds, cpuS: cpu() - c0 })}`);
await objects.close();
