/**
 * Tests for Crockford base32, serials and random tokens.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CROCKFORD_ALPHABET,
  crockfordEncode,
  newSerial,
  normalizeSerial,
  randomToken,
} from "../../lib/util/crockford.ts";

const SERIAL_RE = /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){7}$/;
const CANON = "0123-4567-89AB-CDEF-GHJK-MNPQ-RSTV-WXYZ";

Deno.test("crockford", async (t) => {
  for (
    const [name, bytes, expected] of [
      ["no bytes encode to nothing", [], ""],
      ["one zero byte pads to two characters", [0], "00"],
      ["0xff encodes as ZW (the last group is zero-padded)", [0xff], "ZW"],
      ["five bytes encode to eight characters", [0xff, 0xff, 0xff, 0xff, 0xff], "ZZZZZZZZ"],
      [
        "'foobar' matches the reference encoding",
        [...new TextEncoder().encode("foobar")],
        "CSQPYRK1E8",
      ],
      ["bits are read most significant first", [0x08, 0x86], "1230"],
    ] as [string, number[], string][]
  ) {
    await t.step(name, () => {
      assert.equal(crockfordEncode(new Uint8Array(bytes)), expected);
    });
  }

  await t.step("a new serial is 32 characters in 8 groups of 4", () => {
    const s = newSerial();
    assert.match(s, SERIAL_RE);
    assert.equal(normalizeSerial(s), s);
  });

  await t.step("new serials differ", () => {
    const seen = new Set(Array.from({ length: 100 }, () => newSerial()));
    assert.equal(seen.size, 100);
  });

  for (
    const [name, input, expected] of [
      ["the canonical form is unchanged", CANON, CANON],
      ["dashes are optional", CANON.replaceAll("-", ""), CANON],
      ["spaces and surrounding whitespace are dropped", `  ${CANON.replaceAll("-", " ")}\n`, CANON],
      ["lower case is upper-cased", CANON.toLowerCase(), CANON],
      [
        "I and L read as 1 and O as 0",
        "OI23-4567-89AB-CDEF-GHJK-MNPQ-RSTV-WXYZ".replace("I", "l"),
        "0123-4567-89AB-CDEF-GHJK-MNPQ-RSTV-WXYZ",
      ],
      ["a short serial is null", CANON.slice(0, -1), null],
      ["a long serial is null", CANON + "0", null],
      ["U is not in the alphabet", CANON.replace("Z", "U"), null],
      ["punctuation is not in the alphabet", CANON.replace("Z", "*"), null],
      ["non-ASCII that upper-cases to letters is null", CANON.slice(0, -2) + "ß", null],
      ["the empty string is null", "", null],
    ] as [string, string, string | null][]
  ) {
    await t.step(name, () => {
      assert.equal(normalizeSerial(input), expected);
    });
  }

  await t.step("the alphabet has 32 distinct characters without I L O U", () => {
    assert.equal(new Set(CROCKFORD_ALPHABET).size, 32);
    assert.doesNotMatch(CROCKFORD_ALPHABET, /[ILOU]/);
  });

  for (
    const [name, bytes, length] of [
      ["the default token is 32 bytes (43 characters)", undefined, 43],
      ["a 16-byte token is 22 characters", 16, 22],
      ["a 1-byte token is 2 characters", 1, 2],
    ] as [string, number | undefined, number][]
  ) {
    await t.step(name, () => {
      const tok = bytes === undefined ? randomToken() : randomToken(bytes);
      assert.equal(tok.length, length);
      assert.match(tok, /^[A-Za-z0-9_-]+$/);
    });
  }

  await t.step("tokens differ", () => {
    assert.notEqual(randomToken(), randomToken());
  });

  await t.step("a zero-byte token is refused", () => {
    assert.throws(() => randomToken(0), /^RangeError: Cannot make token: /);
  });
});
