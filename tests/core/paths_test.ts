/**
 * Tests for the wire-path rules: one row per rule.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkWirePath,
  isUnder,
  isWindowsUnsafeName,
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  parentPaths,
  toWirePath,
  utf8Length,
} from "../../lib/core/paths.ts";

const longName = "a".repeat(MAX_NAME_BYTES);
/** A path of exactly MAX_PATH_BYTES bytes: 15 names of 255 bytes, then 200 and 55, 16 slashes. */
const longPath = [...Array(15).fill(longName), "b".repeat(200), "c".repeat(55)].join("/");

Deno.test("checkWirePath", async (t) => {
  await t.step("the boundary fixtures have the intended byte lengths", () => {
    assert.equal(utf8Length(longName), MAX_NAME_BYTES);
    assert.equal(utf8Length(longPath), MAX_PATH_BYTES);
  });
  for (
    const [name, path, error] of [
      ["a simple name is valid", "a.txt", null],
      ["a nested path is valid", "docs/2026/report.pdf", null],
      ["a dot file is valid", ".bashrc", null],
      ["a name with dots inside is valid", "a/..b/c..", null],
      ["spaces and unicode in NFC are valid", "Café menu/résumé.txt", null],
      ["a name of exactly 255 bytes is valid", longName, null],
      ["a path of exactly 4096 bytes is valid", longPath, null],
      ["a name that only starts like the private folder is valid", ".cloudsyncx/a", null],
      // A sync folder nested in another must never leak its state or its device token.
      ["the private folder name deeper down is rejected", "a/.cloudsync", /private/],
      ["a file inside a nested private folder is rejected", "a/b/.CloudSync/x", /private/],
      ["the empty path is rejected", "", /it is empty/],
      ["an absolute path with a slash is rejected", "/etc/passwd", /it is absolute/],
      ["an absolute path with a backslash is rejected", "\\x", /it is absolute/],
      ["a drive path is rejected (its backslash)", "C:\\x", /it contains a backslash/],
      ["a colon is a valid Linux name (Windows devices skip it)", "c:x", null],
      ["a folder named like a drive is a valid Linux name", "C:/x", null],
      ["a backslash inside is rejected", "a\\b", /it contains a backslash/],
      ["a dot segment is rejected", "a/./b", /it has a "\." segment/],
      ["a dot-dot segment is rejected", "a/../b", /it has a "\.\." segment/],
      ["a leading dot-dot is rejected", "../x", /it has a "\.\." segment/],
      ["a lone dot is rejected", ".", /it has a "\." segment/],
      ["an empty segment is rejected", "a//b", /it has an empty segment/],
      ["a trailing slash is rejected", "a/", /it has an empty segment/],
      ["a NUL byte is rejected", "a\0b", /control character/],
      ["a newline is rejected", "a\nb", /control character/],
      ["DEL is rejected", "a\x7fb", /control character/],
      ["an unpaired surrogate is rejected", "a\ud800b", /unpaired surrogate/],
      ["a name over 255 bytes is rejected", "d/" + longName + "x", /name longer than 255 bytes/],
      ["a name over 255 bytes in UTF-8 is rejected", "é".repeat(128), /name longer than 255/],
      ["a path over 4096 bytes is rejected", longPath + "b", /longer than 4096 bytes/],
      ["a non-NFC path is rejected", "Cafe\u0301", /not NFC-normalized/],
      ["the private folder is rejected", ".cloudsync", /private \.cloudsync folder/],
      ["its 8.3 short name is rejected", "CLOUDS~1/config.json", /private \.cloudsync folder/],
      ["its other 8.3 short names too", "clouds~2", /private \.cloudsync folder/],
      ["with a trailing dot (Windows drops it)", ".cloudsync./x", /private \.cloudsync folder/],
      ["with a trailing space (Windows drops it)", ".cloudsync /x", /private \.cloudsync/],
      ["a zero-width space is rejected", ".cloud\u200bsync/x", /ignorable character U\+200B/],
      ["a word joiner is rejected", "a\u2060b", /ignorable character U\+2060/],
      ["a soft hyphen is rejected", "re\u00adport.txt", /ignorable character U\+00AD/],
      ["a byte-order mark is rejected", "\ufeffa", /ignorable character U\+FEFF/],
      ["a bidi override is rejected", "x\u202egnp.exe", /ignorable character U\+202E/],
      ["an emoji with joiners is valid", "👨\u200d👩\u200d👧.jpg", null],
      ["an emoji with a variation selector is valid", "\u2764\ufe0f.txt", null],
      ["anything under the private folder is rejected", ".cloudsync/db", /private/],
      ["the private folder in other case is rejected", ".CloudSync/x", /private/],
      ["the private folder spelled with a long s is rejected", ".cloud\u017fync", /private/],
    ] as [string, string, RegExp | null][]
  ) {
    await t.step(name, () => {
      const got = checkWirePath(path);
      if (error === null) assert.equal(got, null);
      else {
        assert.ok(got !== null, "expected an error");
        assert.match(got, /^Cannot use path/);
        assert.match(got, error);
      }
    });
  }
});

Deno.test("toWirePath", async (t) => {
  for (
    const [name, local, sep, wire] of [
      ["a POSIX path keeps its slashes", "a/b/c.txt", "/", "a/b/c.txt"],
      ["a Windows path turns backslashes into slashes", "a\\b\\c.txt", "\\", "a/b/c.txt"],
      ["a Windows path may also use slashes", "a/b\\c", "\\", "a/b/c"],
      ["a POSIX path keeps backslashes in names", "a\\b", "/", "a\\b"],
      ["decomposed names are NFC-normalized", "Cafe\u0301/x", "/", "Caf\u00e9/x"],
      ["empty and dot segments are dropped", "./a//b/", "/", "a/b"],
    ] as [string, string, string, string][]
  ) {
    await t.step(name, () => {
      assert.equal(toWirePath(local, sep), wire);
    });
  }
});

Deno.test("isWindowsUnsafeName", async (t) => {
  for (
    const [name, input, unsafe] of [
      ["an ordinary name is safe", "report.pdf", false],
      ["a dot file is safe", ".gitignore", false],
      ["a name containing a reserved word is safe", "CONSOLE.txt", false],
      ["COM0 is unsafe", "COM0", true],
      ["LPT0 is unsafe", "lpt0.txt", true],
      ["COM with a superscript digit is unsafe", "COM¹", true],
      ["CONIN$ is unsafe", "CONIN$", true],
      ["CONOUT$ is unsafe", "conout$.log", true],
      ["CLOCK$ is unsafe", "CLOCK$", true],
      ["COM10 is safe", "COM10", false],
      ["a colon is unsafe", "a:b", true],
      ['each of <>"|?*\\ is unsafe', '<>"|?*\\', true],
      ["a question mark alone is unsafe", "why?", true],
      ["a control character is unsafe", "a\tb", true],
      ["a trailing dot is unsafe", "name.", true],
      ["a trailing space is unsafe", "name ", true],
      ["CON is unsafe", "CON", true],
      ["reserved names are unsafe in any case", "nul", true],
      ["a reserved name with an extension is unsafe", "aux.txt", true],
      ["a reserved name with two extensions is unsafe", "Prn.tar.gz", true],
      ["COM1 through COM9 are unsafe", "com9.log", true],
      ["LPT1 through LPT9 are unsafe", "LPT1", true],
      ["a reserved name with a space before the dot is unsafe", "CON .txt", true],
      ["the empty name is unsafe", "", true],
    ] as [string, string, boolean][]
  ) {
    await t.step(name, () => {
      assert.equal(isWindowsUnsafeName(input), unsafe);
    });
  }
});

Deno.test("parentPaths and isUnder", async (t) => {
  for (
    const [name, path, parents] of [
      ["a top-level path has no parents", "a", []],
      ["a nested path lists its ancestors outermost first", "a/b/c", ["a", "a/b"]],
    ] as [string, string, string[]][]
  ) {
    await t.step(name, () => {
      assert.deepEqual(parentPaths(path), parents);
    });
  }
  for (
    const [name, path, dir, under] of [
      ["a child is under its directory", "a/b", "a", true],
      ["a grandchild is under its directory", "a/b/c", "a", true],
      ["a directory is not under itself", "a", "a", false],
      ["a sibling with a common prefix is not under", "ab/c", "a", false],
      ["a parent is not under its child", "a", "a/b", false],
      ["case matters", "A/b", "a", false],
      ["everything is under the root", "a", "", true],
    ] as [string, string, string, boolean][]
  ) {
    await t.step(name, () => {
      assert.equal(isUnder(path, dir), under);
    });
  }
});
