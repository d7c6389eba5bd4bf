/**
 * Tests for local naming: Windows-unsafe names skipped, case collisions kept apart with
 * `(case conflict)` names, case-only renames in both directions, all checked with full sync
 * rounds (plan -> reconcile -> execute) against a case-insensitive file system double.
 *
 * @module
 */

import assert from "node:assert/strict";
import { win32 } from "node:path";
import {
  applyAliases,
  foldName,
  localBaseView,
  type LocalNames,
  planLocalNames,
  type PlatformTraits,
  windowsNameProblem,
  withoutSkipped,
} from "../../lib/core/local_names.ts";
import { type Action, reconcile } from "../../lib/core/reconcile.ts";
import type { BaseEntry, LocalEntry, RemoteEntry } from "../../lib/core/types.ts";
import { chunksOf, CiFs, hashOf } from "./ci_fs.ts";

const WINDOWS: PlatformTraits = { caseInsensitive: true, windowsNames: true };
const MAC: PlatformTraits = { caseInsensitive: true, windowsNames: false };
const LINUX: PlatformTraits = { caseInsensitive: false, windowsNames: false };

// ---------------------------------------------------------------------------------------------
// A tiny server and device, mirroring engine.ts / executor.ts with local names in between.

class Server {
  readonly live = new Map<string, RemoteEntry>();
  seq = 0;
  /** What devices sent, in order: `upload PATH`, `mkdir PATH`, `delete PATH`. */
  readonly received: string[] = [];

  /** Another (Linux) device writes directly. `null` content: a directory. */
  put(path: string, content: string | null, device = "linux"): RemoteEntry {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (!this.live.has(dir)) this.put(dir, null, device);
    }
    const e: RemoteEntry = {
      path,
      kind: content === null ? "dir" : "file",
      deleted: false,
      version: ++this.seq,
      size: content?.length ?? 0,
      mtime: this.seq,
      exec: false,
      hash: content === null ? "" : hashOf(content),
      chunks: content === null ? [] : chunksOf(content),
      device,
    };
    this.live.set(path, e);
    return e;
  }

  remove(path: string): void {
    for (const p of [...this.live.keys()]) {
      if (p === path || p.startsWith(path + "/")) this.live.delete(p);
    }
  }

  /** A commit as `decideCommit` would take it: only against the current version. */
  commit(path: string, baseVersion: number, content: string | null | "delete"): number | null {
    const cur = this.live.get(path);
    if ((cur?.version ?? 0) !== baseVersion) return null;
    if (content === "delete") {
      this.received.push(`delete ${path}`);
      this.live.delete(path);
      return ++this.seq;
    }
    this.received.push(`${content === null ? "mkdir" : "upload"} ${path}`);
    return this.put(path, content, "win").version;
  }

  files(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of [...this.live.values()].sort((a, b) => (a.path < b.path ? -1 : 1))) {
      if (e.kind === "file") out[e.path] = e.hash.slice(2);
    }
    return out;
  }
}

interface PassLog {
  plan: LocalNames;
  actions: Action[];
  deferred: number;
}

class Device {
  readonly fs: CiFs;
  base = new Map<string, BaseEntry>();
  aliases = new Map<string, string>();
  readonly warned: string[] = [];

  constructor(readonly platform: PlatformTraits) {
    this.fs = new CiFs(platform.caseInsensitive);
  }

  /** One pass: plan names, case renames, reconcile in wire space, execute through toLocal. */
  pass(server: Server): PassLog {
    const fs = this.fs;
    const plan = planLocalNames({
      remote: server.live,
      base: this.base,
      local: fs.scan(),
      aliases: this.aliases,
      platform: this.platform,
    });
    // As the engine does: each warning is said once.
    for (const w of plan.warnings) if (!this.warned.includes(w)) this.warned.push(w);
    this.aliases = plan.aliases;
    let deferred = 0;
    for (const r of plan.caseRenames) {
      if (fs.realPath(r.from) === r.from) fs.rename(r.from, r.to);
      else deferred++;
    }
    const remote = withoutSkipped(server.live, plan.skipped);
    const base = plan.base;
    const actions = reconcile({ base, local: plan.local, remote, device: "win", now: new Date(0) });
    const L = plan.toLocal;
    const setBase = (p: string, e: BaseEntry | null) => {
      if (e) this.base.set(p, e);
      else this.base.delete(p);
    };
    const baseOf = (r: RemoteEntry, lp: string): BaseEntry => ({
      path: r.path,
      kind: r.kind,
      version: r.version,
      size: r.size,
      mtime: r.kind === "file" ? fs.get(lp)!.mtime : 0,
      exec: false,
      hash: r.hash,
      chunks: r.chunks,
    });
    for (const a of actions) {
      switch (a.op) {
        case "moveAside":
          if (fs.exists(L(a.to))) deferred++;
          else fs.rename(L(a.path), L(a.to));
          break;
        case "mkdirLocal":
          if (a.replace) fs.remove(L(a.path));
          else if (fs.get(L(a.path))?.kind === "file") {
            deferred++;
            break;
          }
          fs.mkdir(L(a.path));
          if (a.remote) setBase(a.path, baseOf(a.remote, L(a.path)));
          break;
        case "download": {
          const lp = L(a.path);
          if (!a.replace && fs.exists(lp)) {
            deferred++; // something is there (in any letter case): never overwrite
            break;
          }
          fs.writeFile(lp, a.remote.hash.slice(2), a.replace !== null, a.remote.mtime);
          if (a.path === a.remote.path || a.follows !== undefined) {
            setBase(a.follows ?? a.path, baseOf(a.remote, lp));
          }
          break;
        }
        case "deleteLocal":
          try {
            fs.remove(L(a.path));
          } catch {
            deferred++;
          }
          setBase(a.path, null);
          break;
        case "setBase":
          setBase(a.path, a.entry);
          break;
        case "setMeta": // the fake has no metadata to change: record the server's version
          setBase(a.path, baseOf(a.remote, L(a.path)));
          break;
        case "upload": {
          const content = fs.get(L(a.path))!.content;
          const v = server.commit(a.path, a.baseVersion, content);
          if (v === null) deferred++;
          else setBase(a.path, baseOf(server.live.get(a.path)!, L(a.path)));
          break;
        }
        case "mkdirRemote": {
          const v = server.commit(a.path, a.baseVersion, null);
          if (v === null) deferred++;
          else setBase(a.path, baseOf(server.live.get(a.path)!, L(a.path)));
          break;
        }
        case "deleteRemote": {
          const v = server.commit(a.path, a.baseVersion, "delete");
          if (v === null) deferred++;
          else setBase(a.path, null);
          break;
        }
      }
    }
    return { plan, actions, deferred };
  }

  /** Passes until one has nothing to do; returns them (fails after 8). */
  sync(server: Server): PassLog[] {
    const logs: PassLog[] = [];
    for (let i = 0; i < 8; i++) {
      const log = this.pass(server);
      logs.push(log);
      if (log.actions.length === 0 && log.plan.caseRenames.length === 0) return logs;
    }
    throw new Error("did not settle in 8 passes");
  }

  files(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const it of this.fs.list()) if (it.kind === "file") out[it.path] = it.content;
    return out;
  }
}

/** Asserts a settled state: a fresh plan maps every local item to a wire path and back exactly. */
function assertRoundTrip(dev: Device, server: Server): void {
  const scan = dev.fs.scan();
  const plan = planLocalNames({
    remote: server.live,
    base: dev.base,
    local: scan,
    aliases: dev.aliases,
    platform: dev.platform,
  });
  assert.deepEqual(plan.aliases, dev.aliases, "aliases are stable");
  assert.deepEqual(plan.caseRenames, []);
  for (const localPath of scan.keys()) {
    const wire = plan.toWire(localPath);
    assert.equal(plan.toLocal(wire), localPath, `${localPath} -> ${wire} -> back`);
    assert.ok(server.live.has(wire), `${localPath} maps to live wire ${wire}`);
  }
  const remote = withoutSkipped(server.live, plan.skipped);
  assert.deepEqual(
    new Set(plan.local.keys()),
    new Set(remote.keys()),
    "translated scan = server (minus skipped)",
  );
  const actions = reconcile({
    base: plan.base,
    local: plan.local,
    remote,
    device: "win",
    now: new Date(0),
  });
  assert.deepEqual(actions, [], "nothing left to do");
}

// ---------------------------------------------------------------------------------------------

Deno.test("foldName", async (t) => {
  for (
    const [name, a, b, same] of [
      ["ASCII letters fold", "Report.txt", "REPORT.TXT", true],
      ["digits and punctuation are kept", "a-1.txt", "a_1.txt", false],
      ["accented letters fold", "Café", "CAFÉ", true],
      ["Greek folds", "σοφία", "ΣΟΦΊΑ", true],
      ["long s folds to s (as NTFS)", "ſ", "s", true],
      ["dotless i folds to I", "ı", "I", true],
      ["sharp s does not become SS", "straße", "STRASSE", false],
      ["different names stay different", "a.txt", "b.txt", false],
    ] as const
  ) {
    await t.step(name, () => assert.equal(foldName(a) === foldName(b), same));
  }
});

Deno.test("windowsNameProblem", async (t) => {
  for (
    const [name, problem] of [
      ["report.txt", null],
      ["CON (case conflict).txt", null],
      ["console", null],
      ["COM10", null],
      ["a:b.txt", /":"/],
      ["x|y", /"\|"/],
      ["what?", /"\?"/],
      ["a*b", /"\*"/],
      ['say "hi"', /"\\""/],
      ["<tag>", /"<"/],
      ["back\\slash", /"\\\\"/],
      ["bell\x07", /control characters/],
      ["tab\tname", /control characters/],
      ["trailing.", /end with a dot/],
      ["trailing ", /end with a space/],
      ["CON", /reserved/],
      ["con.txt", /reserved/],
      ["Aux", /reserved/],
      ["nul.tar.gz", /reserved/],
      ["COM1", /reserved/],
      ["lpt9.log", /reserved/],
      ["PRN .txt", /reserved/],
    ] as const
  ) {
    await t.step(JSON.stringify(name), () => {
      const got = windowsNameProblem(name);
      if (problem === null) assert.equal(got, null);
      else assert.match(got ?? "", problem);
    });
  }
});

Deno.test("unsafe Windows names are skipped, one warning each", async (t) => {
  const unsafe = [
    "a:b.txt",
    "CON",
    "con.txt",
    "trailing.",
    "trailing ",
    "x|y",
    "ctl\x01char",
    "docs/q?.txt",
  ];
  for (const name of unsafe) {
    await t.step(`Windows: ${JSON.stringify(name)}`, () => {
      const server = new Server();
      server.put(name, "from linux");
      server.put("ok.txt", "fine");
      const dev = new Device(WINDOWS);
      dev.sync(server);
      assert.deepEqual(dev.files(), { "ok.txt": "fine" });
      assert.equal(dev.warned.length, 1, "one warning");
      assert.ok(dev.warned[0]!.includes(JSON.stringify(name)));
      assert.match(dev.warned[0]!, /stays on the server/);
      assert.equal(server.live.get(name)?.hash, hashOf("from linux"), "kept on the server");
      assert.deepEqual(server.received, [], "nothing sent: neither uploaded nor deleted");
      // Later passes keep skipping it (the engine says the warning once).
      const again = dev.pass(server);
      assert.ok(again.plan.skipped.has(name));
      assert.ok(!again.plan.local.has(name) && !again.plan.base.has(name));
      assert.deepEqual(again.actions, []);
      assertRoundTrip(dev, server);
    });
    await t.step(`macOS and Linux keep ${JSON.stringify(name)}`, () => {
      for (const platform of [MAC, LINUX]) {
        const server = new Server();
        server.put(name, "from linux");
        const dev = new Device(platform);
        dev.sync(server);
        assert.equal(dev.files()[name], "from linux");
        assert.deepEqual(dev.warned, []);
      }
    });
  }

  await t.step("a skipped path in the base is dropped from it, never deleted", () => {
    const base = new Map<string, BaseEntry>([["a:b.txt", {
      path: "a:b.txt",
      kind: "file",
      version: 1,
      size: 1,
      mtime: 1,
      exec: false,
      hash: hashOf("x"),
      chunks: chunksOf("x"),
    }]]);
    const plan = planLocalNames({
      remote: new Map(),
      base,
      local: new Map(),
      aliases: new Map(),
      platform: WINDOWS,
    });
    assert.ok(plan.skipped.has("a:b.txt"));
    assert.equal(plan.base.size, 0);
  });
});

Deno.test("an unsafe directory skips everything below it with one warning", () => {
  const server = new Server();
  for (const p of ["bad./x.txt", "bad./sub/y.txt", "bad./sub/z.txt", "good/w.txt"]) {
    server.put(p, p);
  }
  const dev = new Device(WINDOWS);
  const [first] = dev.sync(server);
  assert.deepEqual(dev.files(), { "good/w.txt": "good/w.txt" });
  assert.deepEqual([...first!.plan.skipped.keys()].sort(), [
    "bad.",
    "bad./sub",
    "bad./sub/y.txt",
    "bad./sub/z.txt",
    "bad./x.txt",
  ]);
  assert.match(first!.plan.skipped.get("bad./sub/y.txt")!, /inside "bad\."/);
  assert.deepEqual(dev.warned, [
    `Skipping "bad." here: Windows does not allow names that end with a dot. It stays on the server and on other devices.`,
  ]);
  assert.deepEqual(server.received, []);
  assertRoundTrip(dev, server);
});

Deno.test("names that differ only in case", async (t) => {
  await t.step("both kept on Windows, one as (case conflict); round trip exact", () => {
    const server = new Server();
    server.put("Report.txt", "upper");
    server.put("report.txt", "lower");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    assert.deepEqual(dev.files(), {
      "Report.txt": "upper",
      "report (case conflict).txt": "lower",
    });
    assert.deepEqual([...dev.aliases], [["report.txt", "report (case conflict).txt"]]);
    assert.deepEqual(server.received, [], "nothing uploaded as new, nothing deleted");
    assertRoundTrip(dev, server);
    // Edits flow both ways through the alias.
    server.put("report.txt", "lower v2");
    dev.sync(server);
    assert.equal(dev.files()["report (case conflict).txt"], "lower v2");
    dev.fs.writeFile("report (case conflict).txt", "lower v3", true);
    dev.sync(server);
    assert.deepEqual(server.files(), { "Report.txt": "upper", "report.txt": "lower v3" });
    assertRoundTrip(dev, server);
  });

  await t.step("the name that existed locally first keeps it", () => {
    const server = new Server();
    server.put("report.txt", "first");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    server.put("Report.txt", "second");
    dev.sync(server);
    assert.deepEqual(dev.files(), {
      "Report (case conflict).txt": "second",
      "report.txt": "first",
    });
    assert.deepEqual(server.received, []);
    assertRoundTrip(dev, server);
  });

  await t.step("three names, and a user file that only looks like a copy", () => {
    const server = new Server();
    for (const p of ["a.TXT", "A.txt", "a.txt"]) server.put(p, p);
    const dev = new Device(MAC);
    dev.fs.writeFile("a (case conflict).txt", "mine");
    dev.sync(server);
    assert.deepEqual(dev.files(), {
      "A.txt": "A.txt",
      "a (case conflict).txt": "mine",
      "a (case conflict 2).TXT": "a.TXT",
      "a (case conflict 3).txt": "a.txt",
    });
    assert.deepEqual(server.received, ["upload a (case conflict).txt"], "the user's own file");
    assertRoundTrip(dev, server);
  });

  await t.step("the choice does not depend on input order", () => {
    const paths = ["b/X", "b/x", "B/y", "b/z", "B/Z"];
    const plans = [paths, [...paths].reverse()].map((order) => {
      const remote = new Map<string, Pick<RemoteEntry, "kind" | "hash">>();
      for (const p of order) remote.set(p, { kind: "file", hash: "" });
      return planLocalNames({
        remote,
        base: new Map(),
        local: new Map(),
        aliases: new Map(),
        platform: WINDOWS,
      });
    });
    assert.deepEqual([...plans[0]!.aliases].sort(), [...plans[1]!.aliases].sort());
    assert.deepEqual(
      paths.map((p) => plans[0]!.toLocal(p)),
      [
        "b (case conflict)/X",
        "b (case conflict)/x (case conflict)",
        "B/y",
        "b (case conflict)/z",
        "B/Z",
      ],
    );
  });

  await t.step("Linux keeps both names as they are", () => {
    const server = new Server();
    server.put("Report.txt", "upper");
    server.put("report.txt", "lower");
    const dev = new Device(LINUX);
    dev.sync(server);
    assert.deepEqual(dev.files(), { "Report.txt": "upper", "report.txt": "lower" });
    assert.deepEqual([...dev.aliases], []);
  });

  await t.step("the alias stays when the collision ends, and goes with its wire path", () => {
    const server = new Server();
    server.put("Report.txt", "upper");
    server.put("report.txt", "lower");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    server.remove("Report.txt");
    dev.sync(server);
    assert.deepEqual(dev.files(), { "report (case conflict).txt": "lower" });
    assert.deepEqual([...dev.aliases], [["report.txt", "report (case conflict).txt"]]);
    assertRoundTrip(dev, server);
    server.remove("report.txt");
    dev.sync(server);
    assert.deepEqual(dev.files(), {});
    assert.deepEqual([...dev.aliases], []);
  });
});

Deno.test("directories that differ only in case", async (t) => {
  await t.step("the colliding directory gets the suffix; its children live under it", () => {
    const server = new Server();
    server.put("A/x.txt", "x");
    server.put("a/y.txt", "y");
    server.put("a/sub/z.txt", "z");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    assert.deepEqual(dev.files(), {
      "A/x.txt": "x",
      "a (case conflict)/sub/z.txt": "z",
      "a (case conflict)/y.txt": "y",
    });
    assert.deepEqual([...dev.aliases], [["a", "a (case conflict)"]]);
    assert.deepEqual(server.received, []);
    assertRoundTrip(dev, server);
    const plan = dev.pass(server).plan;
    assert.equal(
      win32.join("C:\\Sync", ...plan.toLocal("a/sub/z.txt").split("/")),
      "C:\\Sync\\a (case conflict)\\sub\\z.txt",
    );
    assert.equal(plan.toWire("A (CASE CONFLICT)/Y.TXT"), "a/y.txt", "any case finds it");
  });

  await t.step("a new local file inside the suffixed directory uploads under the wire name", () => {
    const server = new Server();
    server.put("A/x.txt", "x");
    server.put("a/y.txt", "y");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    dev.fs.writeFile("a (case conflict)/new.txt", "new");
    dev.sync(server);
    assert.deepEqual(server.received, ["upload a/new.txt"]);
    assertRoundTrip(dev, server);
  });

  await t.step("children colliding inside colliding directories", () => {
    const server = new Server();
    for (const p of ["D/f", "D/F", "d/f", "d/F"]) server.put(p, p);
    const dev = new Device(WINDOWS);
    dev.sync(server);
    assert.deepEqual(dev.files(), {
      "D/F": "D/F",
      "D/f (case conflict)": "D/f",
      "d (case conflict)/F": "d/F",
      "d (case conflict)/f (case conflict)": "d/f",
    });
    assert.deepEqual(server.received, []);
    assertRoundTrip(dev, server);
  });
});

Deno.test("case-only renames", async (t) => {
  await t.step("on the server: the local file follows, nothing deleted first", () => {
    const server = new Server();
    server.put("Report.txt", "content");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    server.remove("Report.txt");
    server.put("report.txt", "content");
    const logs = dev.sync(server);
    assert.deepEqual(logs[0]!.plan.caseRenames.map((r) => [r.from, r.to]), [[
      "Report.txt",
      "report.txt",
    ]]);
    const ops = logs.flatMap((l) => l.actions.map((a) => a.op));
    assert.ok(!ops.includes("deleteLocal") && !ops.includes("download"), ops.join());
    assert.deepEqual(dev.files(), { "report.txt": "content" });
    assert.deepEqual([...dev.base.keys()], ["report.txt"]);
    assert.deepEqual(server.received, []);
    assertRoundTrip(dev, server);
  });

  await t.step("on the server, with an edit: a plain download, no conflict copy", () => {
    const server = new Server();
    server.put("Report.txt", "old");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    server.remove("Report.txt");
    server.put("report.txt", "new");
    const logs = dev.sync(server);
    assert.deepEqual(dev.files(), { "report.txt": "new" });
    const ops = logs.flatMap((l) => l.actions.map((a) => a.op));
    assert.ok(!ops.includes("moveAside") && !ops.includes("deleteLocal"), ops.join());
    assert.deepEqual(server.received, []);
    assertRoundTrip(dev, server);
  });

  await t.step("on the server, a directory: the subtree follows", () => {
    const server = new Server();
    server.put("Docs/a.txt", "a");
    server.put("Docs/sub/b.txt", "b");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    server.remove("Docs");
    server.put("docs/a.txt", "a");
    server.put("docs/sub/b.txt", "b");
    const logs = dev.sync(server);
    const ops = logs.flatMap((l) => l.actions.map((a) => a.op));
    assert.ok(!ops.includes("deleteLocal") && !ops.includes("download"), ops.join());
    assert.deepEqual(dev.files(), { "docs/a.txt": "a", "docs/sub/b.txt": "b" });
    assert.deepEqual(server.received, []);
    assertRoundTrip(dev, server);
  });

  await t.step("on Windows: syncs as a rename (one upload of the new name, one delete)", () => {
    const server = new Server();
    server.put("Report.txt", "content");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    dev.fs.rename("Report.txt", "report.txt");
    dev.sync(server);
    assert.deepEqual(server.files(), { "report.txt": "content" });
    assert.deepEqual(server.received, ["upload report.txt", "delete Report.txt"]);
    assert.deepEqual(dev.files(), { "report.txt": "content" });
    assertRoundTrip(dev, server);
  });

  await t.step("on Windows while Linux edits the old name: the edit follows the rename", () => {
    const server = new Server();
    server.put("Report.txt", "v1");
    const dev = new Device(WINDOWS);
    dev.sync(server);
    dev.fs.rename("Report.txt", "report.txt");
    server.put("Report.txt", "v2 from linux");
    dev.sync(server);
    assert.deepEqual(server.files(), { "report.txt": "v2 from linux" });
    assert.deepEqual(dev.files(), { "report.txt": "v2 from linux" });
    assertRoundTrip(dev, server);
  });

  await t.step("a first sync adopts a local name that differs only in case", () => {
    const server = new Server();
    const r = server.put("Report.txt", "same");
    const dev = new Device(WINDOWS);
    dev.fs.writeFile("REPORT.TXT", "same", false, r.mtime); // same content and time
    dev.sync(server);
    assert.deepEqual(dev.files(), { "Report.txt": "same" });
    assert.deepEqual(server.received, []);
    assertRoundTrip(dev, server);
  });

  await t.step("a first sync with other content keeps both (conflict copy)", () => {
    const server = new Server();
    server.put("Report.txt", "theirs");
    const dev = new Device(WINDOWS);
    dev.fs.writeFile("report.txt", "mine");
    dev.sync(server);
    const files = dev.files();
    assert.equal(files["Report.txt"], "theirs");
    assert.deepEqual(Object.values(files).sort(), ["mine", "theirs"]);
    assert.deepEqual(Object.values(server.files()).sort(), ["mine", "theirs"]);
    assertRoundTrip(dev, server);
  });
});

Deno.test("helpers", async (t) => {
  await t.step("applyAliases uses the deepest aliased ancestor", () => {
    const aliases = new Map([["a", "a (case conflict)"], ["a/b", "a (case conflict)/b (x)"]]);
    for (
      const [wire, local] of [
        ["a", "a (case conflict)"],
        ["a/c", "a (case conflict)/c"],
        ["a/b/c", "a (case conflict)/b (x)/c"],
        ["ab", "ab"],
      ] as const
    ) assert.equal(applyAliases(wire, aliases), local);
  });

  await t.step("localBaseView keys the base by the previous local paths", () => {
    const b: BaseEntry = {
      path: "a/y",
      kind: "file",
      version: 1,
      size: 0,
      mtime: 0,
      exec: false,
      hash: "",
      chunks: [],
    };
    const view = localBaseView(new Map([["a/y", b]]), new Map([["a", "a (case conflict)"]]));
    assert.deepEqual([...view.keys()], ["a (case conflict)/y"]);
  });

  await t.step("an unhashed file gets its hash from the base it was looked up in", () => {
    const b: BaseEntry = {
      path: "a/y",
      kind: "file",
      version: 1,
      size: 1,
      mtime: 5,
      exec: false,
      hash: hashOf("y"),
      chunks: chunksOf("y"),
    };
    const aliases = new Map([["a", "a (case conflict)"]]);
    const local = new Map<string, LocalEntry>([
      ["A", { path: "A", kind: "dir", size: 0, mtime: 0, exec: false }],
      ["a (case conflict)", {
        path: "a (case conflict)",
        kind: "dir",
        size: 0,
        mtime: 0,
        exec: false,
      }],
      ["a (case conflict)/y", {
        path: "a (case conflict)/y",
        kind: "file",
        size: 1,
        mtime: 5,
        exec: false,
      }],
    ]);
    const remote = new Map<string, Pick<RemoteEntry, "kind" | "hash">>([
      ["A", { kind: "dir", hash: "" }],
      ["a", { kind: "dir", hash: "" }],
      ["a/y", { kind: "file", hash: hashOf("y") }],
    ]);
    const plan = planLocalNames({
      remote,
      base: new Map([["a/y", b]]),
      local,
      aliases,
      platform: WINDOWS,
    });
    assert.equal(plan.local.get("a/y")?.hash, hashOf("y"));
    assert.equal(plan.local.get("a/y")?.path, "a/y");
  });

  await t.step("localNameTaken: what a new path's local name would collide with here", () => {
    const dir = (path: string): LocalEntry => ({
      path,
      kind: "dir",
      size: 0,
      mtime: 0,
      exec: false,
    });
    const remote = new Map<string, Pick<RemoteEntry, "kind" | "hash">>([
      ["Report.txt", { kind: "file", hash: "h1" }],
      ["report.txt", { kind: "file", hash: "h2" }],
      ["D", { kind: "dir", hash: "" }],
      ["d", { kind: "dir", hash: "" }],
    ]);
    const plan = planLocalNames({
      remote,
      base: new Map(),
      local: new Map([["Mine", dir("Mine")]]),
      aliases: new Map(),
      platform: WINDOWS,
      blocked: new Map([["link.txt", "symlink"]]),
    });
    assert.equal(plan.toLocal("report.txt"), "report (case conflict).txt");
    for (
      const [wire, taken] of [
        ["report (case conflict).txt", true], // the alias image of another wire path
        ["REPORT (CASE CONFLICT).TXT", true], // ... in any letter case
        ["MINE", true], // an item on disk
        ["LINK.txt", true], // an item that does not sync
        ["d/x (conflict).txt", false], // under an aliased folder: its image is free
        ["other.txt", false],
      ] as const
    ) assert.equal(plan.localNameTaken(wire), taken, wire);
    // Where case counts, only exact local names are held.
    const linux = planLocalNames({
      remote,
      base: new Map(),
      local: new Map([["Mine", dir("Mine")]]),
      aliases: new Map(),
      platform: LINUX,
    });
    assert.equal(linux.localNameTaken("Mine"), true);
    assert.equal(linux.localNameTaken("MINE"), false);
  });

  await t.step("linear enough: 20 000 colliding paths plan quickly", () => {
    const remote = new Map<string, Pick<RemoteEntry, "kind" | "hash">>();
    for (let i = 0; i < 5000; i++) {
      for (const d of ["D", "d"]) remote.set(`${d}/f${i}.txt`, { kind: "file", hash: "" });
      remote.set(`D/F${i}.txt`, { kind: "file", hash: "" });
      remote.set(`x/${i}`, { kind: "file", hash: "" });
    }
    const t0 = performance.now();
    const plan = planLocalNames({
      remote,
      base: new Map(),
      local: new Map(),
      aliases: new Map(),
      platform: WINDOWS,
    });
    assert.ok(performance.now() - t0 < 5000);
    assert.equal(plan.aliases.size, 5001);
  });
});
