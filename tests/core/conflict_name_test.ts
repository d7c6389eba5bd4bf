/**
 * Tests for conflict-copy names.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  caseConflictName,
  conflictName,
  sanitizeDeviceName,
} from "../../lib/core/conflict_name.ts";
import { checkWirePath, MAX_NAME_BYTES, utf8Length } from "../../lib/core/paths.ts";

const WHEN = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
const none = () => false;
const takenSet = (...names: string[]) => (c: string) => names.includes(c);

Deno.test("conflictName", async (t) => {
  for (
    const [name, path, device, taken, expected] of [
      [
        "a simple file keeps its extension",
        "notes.txt",
        "laptop",
        none,
        "notes (conflict from laptop 2026-01-02 030405).txt",
      ],
      [
        "the directory is kept",
        "a/b/notes.txt",
        "laptop",
        none,
        "a/b/notes (conflict from laptop 2026-01-02 030405).txt",
      ],
      [
        "only the last extension is moved",
        "a.tar.gz",
        "pc",
        none,
        "a.tar (conflict from pc 2026-01-02 030405).gz",
      ],
      [
        "a dot file has no extension",
        ".bashrc",
        "pc",
        none,
        ".bashrc (conflict from pc 2026-01-02 030405)",
      ],
      [
        "a dot file with an extension keeps it",
        "d/.env.local",
        "pc",
        none,
        "d/.env (conflict from pc 2026-01-02 030405).local",
      ],
      [
        "a name without a dot has no extension",
        "Makefile",
        "pc",
        none,
        "Makefile (conflict from pc 2026-01-02 030405)",
      ],
      [
        "a trailing dot is not an extension",
        "odd.",
        "pc",
        none,
        "odd. (conflict from pc 2026-01-02 030405)",
      ],
      [
        "a dot in a directory name is not an extension",
        "v1.2/README",
        "pc",
        none,
        "v1.2/README (conflict from pc 2026-01-02 030405)",
      ],
      [
        "slashes and backslashes in the device are replaced",
        "x",
        "a/b\\c",
        none,
        "x (conflict from a_b_c 2026-01-02 030405)",
      ],
      [
        "control characters in the device are replaced",
        "x",
        "a\nb",
        none,
        "x (conflict from a_b 2026-01-02 030405)",
      ],
      ["the device is trimmed", "x", "  pc  ", none, "x (conflict from pc 2026-01-02 030405)"],
      [
        "a long device is cut to 40 characters",
        "x",
        "d".repeat(50),
        none,
        `x (conflict from ${"d".repeat(40)} 2026-01-02 030405)`,
      ],
      [
        "an empty device becomes unknown",
        "x",
        " ",
        none,
        "x (conflict from unknown 2026-01-02 030405)",
      ],
      [
        "a taken name gets counter 2",
        "n.txt",
        "pc",
        takenSet("n (conflict from pc 2026-01-02 030405).txt"),
        "n (conflict from pc 2026-01-02 030405 2).txt",
      ],
      [
        "two taken names get counter 3",
        "n.txt",
        "pc",
        takenSet(
          "n (conflict from pc 2026-01-02 030405).txt",
          "n (conflict from pc 2026-01-02 030405 2).txt",
        ),
        "n (conflict from pc 2026-01-02 030405 3).txt",
      ],
    ] as [string, string, string, (c: string) => boolean, string][]
  ) {
    await t.step(name, () => {
      const got = conflictName(path, device, WHEN, taken);
      assert.equal(got, expected);
      assert.equal(checkWirePath(got), null);
    });
  }

  await t.step("the time is UTC whatever the local time zone", () => {
    const when = new Date("2025-12-31T23:59:59-05:00");
    assert.equal(conflictName("x", "pc", when, none), "x (conflict from pc 2026-01-01 045959)");
  });

  await t.step("the result is deterministic", () => {
    const a = conflictName("a/b.txt", "pc", WHEN, none);
    assert.equal(conflictName("a/b.txt", "pc", new Date(WHEN.getTime()), none), a);
  });

  await t.step("a long name is shortened to fit 255 bytes", () => {
    const got = conflictName("d/" + "é".repeat(127) + ".txt", "pc", WHEN, none);
    const base = got.slice(2);
    assert.ok(utf8Length(base) <= MAX_NAME_BYTES);
    assert.ok(base.endsWith(" (conflict from pc 2026-01-02 030405).txt"));
    assert.equal(checkWirePath(got), null);
  });

  await t.step("an invalid date is refused", () => {
    assert.throws(
      () => conflictName("x", "pc", new Date(NaN), none),
      /^Error: Cannot name conflict copy: /,
    );
  });

  await t.step("a name that is always taken gives up with an error", () => {
    assert.throws(
      () => conflictName("x", "pc", WHEN, () => true),
      /^Error: Cannot name conflict copy: .*all taken/,
    );
  });

  await t.step("sanitizeDeviceName replaces characters Windows forbids", () => {
    assert.equal(sanitizeDeviceName('my:pc<>"|?*'), "my_pc______");
  });
});

Deno.test("caseConflictName", async (t) => {
  for (
    const [name, path, taken, expected] of [
      ["a file keeps its extension", "Docs/Readme.md", none, "Docs/Readme (case conflict).md"],
      ["a dot file has no extension", ".Profile", none, ".Profile (case conflict)"],
      [
        "a taken name gets counter 2",
        "A.txt",
        takenSet("A (case conflict).txt"),
        "A (case conflict 2).txt",
      ],
    ] as [string, string, (c: string) => boolean, string][]
  ) {
    await t.step(name, () => {
      assert.equal(caseConflictName(path, taken), expected);
    });
  }
});

Deno.test("conflict copies of git's own files go where git does not look", async (t) => {
  const when = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  const none = () => false;
  const rows: [string, string, string][] = [
    [
      "a ref",
      "proj/.git/refs/heads/main",
      "proj/.git/cloudsync-conflicts/refs/heads/main (conflict from A 2026-01-02 030405)",
    ],
    [
      "the index",
      ".git/index",
      ".git/cloudsync-conflicts/index (conflict from A 2026-01-02 030405)",
    ],
    [
      "a file beside .git is not moved",
      "proj/readme.txt",
      "proj/readme (conflict from A 2026-01-02 030405).txt",
    ],
    [
      "a folder named .git itself is not moved",
      "proj/.git",
      "proj/.git (conflict from A 2026-01-02 030405)",
    ],
    [
      "a copy already in the conflicts folder stays there",
      "proj/.git/cloudsync-conflicts/x",
      "proj/.git/cloudsync-conflicts/x (conflict from A 2026-01-02 030405)",
    ],
  ];
  for (const [name, path, want] of rows) {
    await t.step(name, () => assert.equal(conflictName(path, "A", when, none), want));
  }
});
