/**
 * Tests for `core/ignore_rules.ts`: gitignore's rules as the matcher applies them (negation, `**`,
 * a trailing `/`, anchoring, comments, escapes, a folder that cannot be re-entered), the
 * built-in defaults and re-including one, the order of the layers, the rule named in messages, and
 * the exact pattern `cloud-client exclude` writes.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DEFAULT_RULES,
  describeRule,
  exactPattern,
  IgnoreRules,
  type RuleSource,
} from "../../lib/core/ignore_rules.ts";

const shared = (text: string): RuleSource[] => [{ name: ".cloudignore", text }];
/** `[path, isDir, ignored]` rows checked against one set of rules. */
type Row = [string, boolean, boolean];

function check(rules: IgnoreRules, rows: Row[]): void {
  for (const [path, dir, want] of rows) {
    assert.equal(rules.ignores(path, dir), want, `${path}${dir ? "/" : ""}: want ${want}`);
  }
}

Deno.test("the defaults ignore operating-system, office, editor and download litter", () => {
  check(new IgnoreRules(), [
    [".DS_Store", false, true],
    ["photos/2024/.DS_Store", false, true],
    ["photos/._IMG_0001.jpg", false, true],
    ["Thumbs.db", false, true],
    ["pics/thumbs.db", false, true], // any letter case
    ["desktop.ini", false, true],
    ["$RECYCLE.BIN", true, true],
    ["$RECYCLE.BIN/S-1-5/x.txt", false, true],
    ["System Volume Information", true, true],
    [".Trash-1000", true, true],
    [".Spotlight-V100", true, true],
    ["docs/~$report.docx", false, true],
    ["docs/~WRL0001.tmp", false, true],
    ["docs/.~lock.report.odt#", false, true],
    ["src/.main.c.swp", false, true],
    ["src/.main.c.swo", false, true],
    ["src/.main.c.swx", false, true],
    ["dl/big.iso.crdownload", false, true],
    ["dl/film.mkv.part", false, true],
    [".fuse_hidden000001", false, true],
    [".git/index.lock", false, true],
    ["repo/.git/refs/heads/main.lock", false, true],
    // Not litter.
    ["notes.lock", false, false],
    ["repo/locks/index.lock", false, false],
    ["report.odt", false, false],
    ["docs/report.docx", false, false],
    ["my.DS_Store.txt", false, false],
    ["part", false, false],
    ["$RECYCLE.BIN", false, false], // a file of that name is not the recycle bin
    ["src/main.c.swp", false, false], // vim's swap files start with a dot
    ["~notes.txt", false, false],
    [".cloudignore", false, false],
  ]);
  assert.ok(DEFAULT_RULES.length >= 10);
  for (const r of DEFAULT_RULES) assert.ok(r.what.length > 0, r.pattern);
});

Deno.test("the README lists every built-in rule", () => {
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const section = readme.slice(readme.indexOf("### Built-in rules"));
  for (const r of DEFAULT_RULES) {
    const cell = "`" + r.pattern.replace(/\|/g, "\\|") + "`";
    assert.ok(section.includes(`| ${cell} `), `README: no row for ${r.pattern}`);
  }
});

Deno.test("a ! in .cloudignore re-includes a default; git's lock files never sync", () => {
  const rules = new IgnoreRules(shared("!.DS_Store\n!*.part\n!*.lock\n!.git/index.lock\n"));
  check(rules, [
    ["a/.DS_Store", false, false],
    ["film.part", false, false],
    ["Thumbs.db", false, true],
    [".git/index.lock", false, true],
  ]);
});

Deno.test("the root's .cloudignore always syncs, whatever the rules say", () => {
  for (const text of [".*\n", "*\n!keep/\n", ".cloudignore\n", "/.CloudIgnore\n"]) {
    const rules = new IgnoreRules([...shared(text), { name: ".cloudsync/ignore", text }]);
    check(rules, [
      [".cloudignore", false, false],
      [".CloudIgnore", false, false], // the same file on a case-insensitive device
    ]);
    assert.equal(rules.why(".cloudignore", false), null);
  }
  // Below the root it is just a file.
  const rules = new IgnoreRules(shared(".*\n"));
  check(rules, [["sub/.cloudignore", false, true]]);
});

Deno.test("gitignore syntax: negation, **, folder-only, anchoring, comments, escapes", async (t) => {
  await t.step("negation: the last matching rule decides", () => {
    check(new IgnoreRules(shared("*.log\n!keep.log\nlogs2/keep.log\n")), [
      ["a.log", false, true],
      ["deep/er/b.log", false, true],
      ["keep.log", false, false],
      ["x/keep.log", false, false],
      ["logs2/keep.log", false, true],
      ["a.txt", false, false],
    ]);
  });
  await t.step("** matches any number of folders", () => {
    check(new IgnoreRules(shared("a/**/z\n**/cache\ndocs/**\n")), [
      ["a/z", false, true],
      ["a/b/c/z", false, true],
      ["b/a/z", false, false], // a/ is anchored: it has a slash
      ["cache", true, true],
      ["x/y/cache", true, true],
      ["x/y/cache/blob", false, true],
      ["docs/readme.md", false, true],
      ["docs", true, false], // docs/** is what is inside docs, not docs itself
      ["other/docs/readme.md", false, false],
    ]);
  });
  await t.step("a trailing / matches folders only, and everything inside them", () => {
    check(new IgnoreRules(shared("build/\n")), [
      ["build", true, true],
      ["app/build", true, true],
      ["app/build/out.o", false, true],
      ["app/build/deep/x", true, true],
      ["build", false, false],
      ["app/build", false, false],
      ["builder", true, false],
    ]);
  });
  await t.step("a leading or inner / anchors at the folder's root", () => {
    check(new IgnoreRules(shared("/todo.txt\ndoc/frotz\n")), [
      ["todo.txt", false, true],
      ["sub/todo.txt", false, false],
      ["doc/frotz", false, true],
      ["a/doc/frotz", false, false],
    ]);
  });
  await t.step("comments, blank lines, escapes and trailing spaces", () => {
    const text = "# a comment\n\n   \n\\#hash\n\\!bang\nstar\\*\nspace\\ \ntrail   \r\n";
    check(new IgnoreRules(shared(text)), [
      ["# a comment", false, false],
      ["#hash", false, true],
      ["!bang", false, true],
      ["star*", false, true],
      ["starry", false, false],
      ["space ", false, true],
      ["trail", false, true],
    ]);
  });
  await t.step("nothing inside an ignored folder can be re-included", () => {
    check(new IgnoreRules(shared("logs/\n!logs/keep.txt\n")), [["logs/keep.txt", false, true]]);
    check(new IgnoreRules(shared("logs/*\n!logs/keep.txt\n")), [
      ["logs/keep.txt", false, false],
      ["logs/other.txt", false, true],
      ["logs", true, false],
    ]);
  });
  await t.step("letter case does not matter", () => {
    check(new IgnoreRules(shared("*.ISO\nNode_Modules/\n")), [
      ["disk.iso", false, true],
      ["web/node_modules", true, true],
      ["web/NODE_MODULES/x.js", false, true],
    ]);
  });
});

Deno.test("the device's rules come last: they may ignore more, or re-include", () => {
  const rules = new IgnoreRules([
    { name: ".cloudignore", text: "*.iso\n!/Archive/\n" },
    { name: ".cloudsync/ignore", text: "/Archive\n!keep.iso\n" },
  ]);
  check(rules, [
    ["disk.iso", false, true],
    ["keep.iso", false, false],
    ["Archive", true, true],
    ["Archive/2019/a.txt", false, true],
    ["archive2", true, false],
    ["docs/Archive", true, false],
  ]);
});

Deno.test("why names the rule that decided, with its file and line", () => {
  const rules = new IgnoreRules([
    { name: ".cloudignore", text: "# mine\n*.iso\nbuild/\n" },
    { name: ".cloudsync/ignore", text: "/Archive\n" },
  ]);
  assert.equal(
    describeRule(rules.why("a/disk.iso", false)!),
    'the rule "*.iso" (.cloudignore, line 2)',
  );
  assert.deepEqual(rules.why("x/build/out.o", false), {
    origin: ".cloudignore",
    line: 3,
    pattern: "build/",
  });
  assert.deepEqual(rules.why("Archive/a.txt", false), {
    origin: ".cloudsync/ignore",
    line: 1,
    pattern: "/Archive",
  });
  assert.equal(describeRule(rules.why("Thumbs.db", false)!), 'the rule "Thumbs.db" (built in)');
  assert.equal(rules.why("a.txt", false), null);
});

Deno.test("exactPattern matches that one path, file or folder, whatever its characters", () => {
  const names = ["Archive", "a b/c d", "star*", "q?", "[x]", "!bang", "#hash", "trail ", "ümlaut"];
  for (const n of names) {
    const rules = new IgnoreRules([{ name: ".cloudsync/ignore", text: exactPattern(n) + "\n" }]);
    assert.equal(rules.ignores(n, false), true, `${n} as a file`);
    assert.equal(rules.ignores(n, true), true, `${n} as a folder`);
    assert.equal(rules.ignores(`${n}/inside.txt`, false), true, `inside ${n}`);
    assert.equal(rules.ignores(`sub/${n}`, false), false, `sub/${n}`);
    for (const other of ["starry", "qq", "x", "bang", "hash", "trail", "Archive2"]) {
      if (other !== n) assert.equal(rules.ignores(other, false), false, `${other} for ${n}`);
    }
  }
});

Deno.test("verdicts are cached and stay right for many paths", () => {
  const rules = new IgnoreRules(shared("*.tmp\n"));
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 3000; i++) {
      assert.equal(rules.ignores(`d${i % 10}/f${i}.tmp`, false), true);
      assert.equal(rules.ignores(`d${i % 10}/f${i}.txt`, false), false);
    }
  }
});
