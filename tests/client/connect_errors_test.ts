/**
 * Unit tests for {@link describeConnectError}: connection failures in words, without library
 * text or links.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describeConnectError, NotCloudSyncError } from "../../lib/client/connection.ts";
import { ConnectionClosedError } from "../../lib/protocol/peer.ts";

function coded(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

Deno.test("describeConnectError says what happened in words", () => {
  const cases: [unknown, string][] = [
    [
      coded("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:9"),
      "nothing is listening on that port (is the server running?)",
    ],
    [
      new Deno.errors.ConnectionRefused("Connection refused (os error 111)"),
      "nothing is listening on that port (is the server running?)",
    ],
    [coded("ENOTFOUND", "getaddrinfo ENOTFOUND nowhere.invalid"), "the host name is unknown"],
    [
      new Error(
        "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
      ),
      "the server closed the connection",
    ],
    [
      new ConnectionClosedError("Cannot complete request: connection closed"),
      "the server closed the connection",
    ],
    [
      coded("ERR_SSL_WRONG_VERSION_NUMBER", "received corrupt message of type InvalidContentType"),
      "it does not speak TLS, so it is not a Cloud Sync server; check the port (cloud-server prints it at start)",
    ],
    [
      new NotCloudSyncError("it speaks TLS but not the Cloud Sync protocol"),
      "it speaks TLS but not the Cloud Sync protocol",
    ],
    [new Error("Something odd (os error 99): https://example.invalid/x"), "Something odd"],
  ];
  for (const [e, words] of cases) assert.equal(describeConnectError(e), words, String(e));
});
