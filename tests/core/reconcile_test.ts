/**
 * Tests for the pure three-way reconciliation: one row per case, each named as a sentence, each
 * asserting the exact, ordered action list.
 *
 * Notation in the helpers: `b*` builds a base entry, `l*` a local scan entry, `r*` a remote entry.
 * Files have hashes `h0` (the base content), `h1` (a local edit) and `h2` (a remote edit).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Action, orderActions, reconcile } from "../../lib/core/reconcile.ts";
import type { BaseEntry, ChunkRef, LocalEntry, RemoteEntry } from "../../lib/core/types.ts";
import { foldName } from "../../lib/core/local_names.ts";

const DEVICE = "laptop";
const OTHER = "desktop";
const NOW = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
const STAMP = "2026-01-02 030405";

/** The conflict name of `path` made by `device` at NOW (`n` > 1 adds the counter). */
function aside(path: string, device: string, n = 1): string {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash + 1);
  const name = path.slice(slash + 1);
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const ext = dot > 0 ? name.slice(dot) : "";
  const counter = n === 1 ? "" : ` ${n}`;
  return `${dir}${stem} (conflict from ${device} ${STAMP}${counter})${ext}`;
}

const chunks = (hash: string): ChunkRef[] => [{ hash: `c-${hash}`, size: hash.length }];

// ---- base entries ----

/** A file in the base, agreed at `version`, size 2, mtime 100 (the content `hash` defaults h0). */
function bFile(path: string, version: number, hash = "h0", exec = false): BaseEntry {
  return { path, kind: "file", version, size: 2, mtime: 100, exec, hash, chunks: chunks(hash) };
}

function bDir(path: string, version: number): BaseEntry {
  return { path, kind: "dir", version, size: 0, mtime: 0, exec: false, hash: "", chunks: [] };
}

// ---- local entries ----

/** A local file whose size and mtime match `bFile` (not rehashed: unchanged). */
function lSame(path: string, exec = false): LocalEntry {
  return { path, kind: "file", size: 2, mtime: 100, exec };
}

/** A local file that was (re)hashed: new or modified. */
function lFile(path: string, hash: string, exec = false): LocalEntry {
  return { path, kind: "file", size: 2, mtime: 200, exec, hash, chunks: chunks(hash) };
}

/** `l` with another modification time (and, given, permission bits). */
function lAt(l: LocalEntry, mtime: number, mode?: number): LocalEntry {
  const out = { ...l, mtime };
  return mode === undefined ? out : { ...out, mode, exec: (mode & 0o100) !== 0 };
}

function lDir(path: string): LocalEntry {
  return { path, kind: "dir", size: 0, mtime: 0, exec: false };
}

// ---- remote entries ----

function rFile(
  path: string,
  version: number,
  hash = "h0",
  device = OTHER,
  exec = false,
): RemoteEntry {
  return {
    path,
    kind: "file",
    deleted: false,
    version,
    size: 2,
    mtime: 300,
    exec,
    hash,
    chunks: chunks(hash),
    device,
  };
}

function rDir(path: string, version: number, device = OTHER): RemoteEntry {
  return {
    path,
    kind: "dir",
    deleted: false,
    version,
    size: 0,
    mtime: 0,
    exec: false,
    hash: "",
    chunks: [],
    device,
  };
}

// ---- expected actions ----

const upload = (local: LocalEntry, baseVersion: number): Action => ({
  op: "upload",
  path: local.path,
  local,
  baseVersion,
});
const mkdirRemote = (local: LocalEntry, baseVersion: number, after?: string): Action => ({
  op: "mkdirRemote",
  path: local.path,
  local,
  baseVersion,
  ...(after === undefined ? {} : { after }),
});
const deleteRemote = (path: string, kind: "file" | "dir", baseVersion: number): Action => ({
  op: "deleteRemote",
  path,
  kind,
  baseVersion,
});
const download = (remote: RemoteEntry, replace: LocalEntry | null, path = remote.path): Action => ({
  op: "download",
  path,
  remote,
  replace,
});
const mkdirLocal = (
  path: string,
  remote: RemoteEntry | null,
  replace: LocalEntry | null = null,
): Action => ({ op: "mkdirLocal", path, remote, replace });
const deleteLocal = (expect: LocalEntry): Action => ({
  op: "deleteLocal",
  path: expect.path,
  expect,
});
const moveAside = (expect: LocalEntry, to: string): Action => ({
  op: "moveAside",
  path: expect.path,
  to,
  expect,
});
const forget = (path: string): Action => ({ op: "setBase", path, entry: null });
/** setBase recording that `l` and `r` agree (as `baseFrom` builds it). */
const agree = (r: RemoteEntry, l: LocalEntry): Action => ({
  op: "setBase",
  path: r.path,
  entry: {
    path: r.path,
    kind: r.kind,
    version: r.version,
    size: l.size,
    mtime: l.mtime,
    exec: r.exec,
    hash: r.hash,
    chunks: r.chunks,
  },
});

interface Row {
  name: string;
  base?: BaseEntry[];
  local?: LocalEntry[];
  remote?: RemoteEntry[];
  expected: Action[];
  /** Extra checks on the result. */
  check?: (actions: Action[]) => void;
  /** Set (with a `// BUG:` comment) for a row that documents a bug in lib/. */
  ignore?: boolean;
  /** The device's name rules (see `ReconcileInput`). */
  nameKey?: (path: string) => string;
  localNameTaken?: (path: string) => boolean;
}

function run(row: Row): Action[] {
  const byPath = <T extends { path: string }>(xs: T[] = []) => new Map(xs.map((x) => [x.path, x]));
  return reconcile({
    base: byPath(row.base),
    local: byPath(row.local),
    remote: byPath(row.remote),
    device: DEVICE,
    now: NOW,
    ...(row.nameKey ? { nameKey: row.nameKey } : {}),
    ...(row.localNameTaken ? { localNameTaken: row.localNameTaken } : {}),
  });
}

async function runRows(t: Deno.TestContext, rows: Row[]): Promise<void> {
  for (const row of rows) {
    await t.step({
      name: row.name,
      ignore: row.ignore ?? false,
      fn: () => {
        const actions = run(row);
        assert.deepEqual(actions, row.expected);
        row.check?.(actions);
        // Purity: the same input gives the same output.
        assert.deepEqual(run(row), actions);
      },
    });
  }
}

const F = "f.txt";
const D = "d";

Deno.test("reconcile: one path with no base", async (t) => {
  await runRows(t, [
    {
      name: "a path absent everywhere needs nothing",
      expected: [],
    },
    {
      name: "a file created here is uploaded as new",
      local: [lFile(F, "h1")],
      expected: [upload(lFile(F, "h1"), 0)],
    },
    {
      name: "a directory created here is created on the server",
      local: [lDir(D)],
      expected: [mkdirRemote(lDir(D), 0)],
    },
    {
      name: "a file created there is downloaded",
      remote: [rFile(F, 5, "h2")],
      expected: [download(rFile(F, 5, "h2"), null)],
    },
    {
      name: "a directory created there is created here",
      remote: [rDir(D, 5)],
      expected: [mkdirLocal(D, rDir(D, 5))],
    },
    {
      name: "the same file (and time) created on both sides is only recorded in the base",
      local: [lAt(lFile(F, "h1"), 300)],
      remote: [rFile(F, 5, "h1")],
      expected: [agree(rFile(F, 5, "h1"), lAt(lFile(F, "h1"), 300))],
    },
    {
      name: "different files created on both sides: the local one is set aside, the remote one " +
        "downloaded",
      local: [lFile(F, "h1")],
      remote: [rFile(F, 5, "h2")],
      expected: [
        moveAside(lFile(F, "h1"), aside(F, DEVICE)),
        download(rFile(F, 5, "h2"), null),
      ],
    },
    {
      name: "a file created here and a directory there: the file is set aside, the directory made",
      local: [lFile(D, "h1")],
      remote: [rDir(D, 5)],
      expected: [moveAside(lFile(D, "h1"), aside(D, DEVICE)), mkdirLocal(D, rDir(D, 5))],
    },
    {
      name: "a directory created here and a file there: the remote file is downloaded aside and " +
        "the directory replaces it on the server",
      local: [lDir(D)],
      remote: [rFile(D, 5, "h2")],
      expected: [
        download(rFile(D, 5, "h2"), null, aside(D, OTHER)),
        mkdirRemote(lDir(D), 5, aside(D, OTHER)),
      ],
    },
    {
      name: "a directory created on both sides is only recorded in the base",
      local: [lDir(D)],
      remote: [rDir(D, 5)],
      expected: [agree(rDir(D, 5), lDir(D))],
    },
  ]);
});

Deno.test("reconcile: one path that was a file in the base", async (t) => {
  const base = [bFile(F, 1)];
  await runRows(t, [
    {
      name: "a file unchanged on both sides needs nothing",
      base,
      local: [lSame(F)],
      remote: [rFile(F, 1)],
      expected: [],
    },
    {
      name: "a file edited there is downloaded over the unchanged local copy",
      base,
      local: [lSame(F)],
      remote: [rFile(F, 2, "h2")],
      expected: [download(rFile(F, 2, "h2"), lSame(F))],
    },
    {
      name: "a file deleted there is deleted here",
      base,
      local: [lSame(F)],
      expected: [deleteLocal(lSame(F))],
    },
    {
      name: "a file replaced by a directory there is replaced here",
      base,
      local: [lSame(F)],
      remote: [rDir(F, 2)],
      expected: [mkdirLocal(F, rDir(F, 2), lSame(F))],
    },
    {
      name: "a file edited here is uploaded based on the base version",
      base,
      local: [lFile(F, "h1")],
      remote: [rFile(F, 1)],
      expected: [upload(lFile(F, "h1"), 1)],
    },
    {
      name: "a file made executable here (content unchanged) is uploaded",
      base,
      local: [lSame(F, true)],
      remote: [rFile(F, 1)],
      expected: [upload(lSame(F, true), 1)],
    },
    {
      name: "identical edits on both sides are only recorded in the base (no conflict)",
      base,
      local: [lAt(lFile(F, "h1"), 300)],
      remote: [rFile(F, 2, "h1")],
      expected: [agree(rFile(F, 2, "h1"), lAt(lFile(F, "h1"), 300))],
    },
    {
      name: "different edits on both sides: the local edit is set aside and the remote downloaded",
      base,
      local: [lFile(F, "h1")],
      remote: [rFile(F, 2, "h2")],
      expected: [
        moveAside(lFile(F, "h1"), aside(F, DEVICE)),
        download(rFile(F, 2, "h2"), null),
      ],
    },
    {
      name: "a file edited here and deleted there survives and is uploaded",
      base,
      local: [lFile(F, "h1")],
      expected: [upload(lFile(F, "h1"), 0)],
    },
    {
      name: "a file edited here and replaced by a directory there is set aside",
      base,
      local: [lFile(F, "h1")],
      remote: [rDir(F, 2)],
      expected: [moveAside(lFile(F, "h1"), aside(F, DEVICE)), mkdirLocal(F, rDir(F, 2))],
    },
    {
      name: "a file deleted here is deleted on the server",
      base,
      remote: [rFile(F, 1)],
      expected: [deleteRemote(F, "file", 1)],
    },
    {
      name: "a file deleted here and edited there survives and is downloaded",
      base,
      remote: [rFile(F, 2, "h2")],
      expected: [download(rFile(F, 2, "h2"), null)],
    },
    {
      name: "a file deleted on both sides is forgotten",
      base,
      expected: [forget(F)],
    },
    {
      name: "a file deleted here and replaced by a directory there gets the directory",
      base,
      remote: [rDir(F, 2)],
      expected: [mkdirLocal(F, rDir(F, 2))],
    },
    {
      name: "a file replaced by a directory here is replaced on the server",
      base,
      local: [lDir(F)],
      remote: [rFile(F, 1)],
      expected: [mkdirRemote(lDir(F), 1)],
    },
    {
      name: "a file replaced by a directory here and edited there: the directory wins, the " +
        "remote edit is downloaded aside",
      base,
      local: [lDir(F)],
      remote: [rFile(F, 2, "h2")],
      expected: [
        download(rFile(F, 2, "h2"), null, aside(F, OTHER)),
        mkdirRemote(lDir(F), 2, aside(F, OTHER)),
      ],
    },
    {
      name: "a file replaced by a directory here and deleted there: the directory is created",
      base,
      local: [lDir(F)],
      expected: [mkdirRemote(lDir(F), 0)],
    },
    {
      name: "a file replaced by a directory on both sides is only recorded in the base",
      base,
      local: [lDir(F)],
      remote: [rDir(F, 2)],
      expected: [agree(rDir(F, 2), lDir(F))],
    },
  ]);
});

Deno.test("reconcile: one path that was a directory in the base", async (t) => {
  const base = [bDir(D, 1)];
  await runRows(t, [
    {
      name: "a directory unchanged on both sides needs nothing",
      base,
      local: [lDir(D)],
      remote: [rDir(D, 1)],
      expected: [],
    },
    {
      name: "a directory deleted there is deleted here",
      base,
      local: [lDir(D)],
      expected: [deleteLocal(lDir(D))],
    },
    {
      name: "a directory replaced by a file there is replaced here",
      base,
      local: [lDir(D)],
      remote: [rFile(D, 2, "h2")],
      expected: [download(rFile(D, 2, "h2"), lDir(D))],
    },
    {
      name: "a directory rewritten there (new version) is only recorded in the base",
      base,
      local: [lDir(D)],
      remote: [rDir(D, 2)],
      expected: [agree(rDir(D, 2), lDir(D))],
    },
    {
      name: "a directory deleted here is deleted on the server",
      base,
      remote: [rDir(D, 1)],
      expected: [deleteRemote(D, "dir", 1)],
    },
    {
      name: "a directory deleted on both sides is forgotten",
      base,
      expected: [forget(D)],
    },
    {
      name: "a directory deleted here and replaced by a file there gets the file",
      base,
      remote: [rFile(D, 2, "h2")],
      expected: [download(rFile(D, 2, "h2"), null)],
    },
    {
      name: "a directory deleted here and rewritten there is created again here",
      base,
      remote: [rDir(D, 2)],
      expected: [mkdirLocal(D, rDir(D, 2))],
    },
    {
      name: "a directory replaced by a file here is replaced on the server",
      base,
      local: [lFile(D, "h1")],
      remote: [rDir(D, 1)],
      expected: [upload(lFile(D, "h1"), 1)],
    },
    {
      name: "a directory replaced by a file here and deleted there: the file is uploaded as new",
      base,
      local: [lFile(D, "h1")],
      expected: [upload(lFile(D, "h1"), 0)],
    },
    {
      name: "a directory replaced by the same file on both sides is only recorded in the base",
      base,
      local: [lAt(lFile(D, "h1"), 300)],
      remote: [rFile(D, 2, "h1")],
      expected: [agree(rFile(D, 2, "h1"), lAt(lFile(D, "h1"), 300))],
    },
    {
      name: "a directory replaced by different files on both sides: the local one is set aside",
      base,
      local: [lFile(D, "h1")],
      remote: [rFile(D, 2, "h2")],
      expected: [moveAside(lFile(D, "h1"), aside(D, DEVICE)), download(rFile(D, 2, "h2"), null)],
    },
    {
      name: "a directory replaced by a file here and rewritten there: the directory wins and the " +
        "local file is set aside",
      base,
      local: [lFile(D, "h1")],
      remote: [rDir(D, 2)],
      expected: [moveAside(lFile(D, "h1"), aside(D, DEVICE)), mkdirLocal(D, rDir(D, 2))],
    },
  ]);
});

Deno.test("reconcile: renames", async (t) => {
  await runRows(t, [
    {
      name: "a file renamed here uploads the new path with the old chunks and deletes the old one",
      base: [bFile("a.txt", 1)],
      local: [lFile("b.txt", "h0")],
      remote: [rFile("a.txt", 1)],
      expected: [upload(lFile("b.txt", "h0"), 0), deleteRemote("a.txt", "file", 1)],
      check: (actions) => {
        const up = actions.find((a) => a.op === "upload");
        assert.ok(up && up.op === "upload");
        // The chunks are already on the server: the upload references them, nothing is re-sent.
        assert.deepEqual(up.local.chunks, bFile("a.txt", 1).chunks);
        assert.equal(up.local.hash, "h0");
      },
    },
    {
      name: "a file renamed there is downloaded at the new path and deleted at the old one",
      base: [bFile("a.txt", 1)],
      local: [lSame("a.txt")],
      remote: [rFile("b.txt", 2, "h0")],
      expected: [download(rFile("b.txt", 2, "h0"), null), deleteLocal(lSame("a.txt"))],
    },
    {
      name: "a directory renamed here: new tree created parents first, old tree deleted deepest " +
        "first",
      base: [bDir("d", 1), bFile("d/x.txt", 2)],
      local: [lDir("e"), lFile("e/x.txt", "h0")],
      remote: [rDir("d", 1), rFile("d/x.txt", 2)],
      expected: [
        mkdirRemote(lDir("e"), 0),
        upload(lFile("e/x.txt", "h0"), 0),
        deleteRemote("d/x.txt", "file", 2),
        deleteRemote("d", "dir", 1),
      ],
    },
  ]);
});

Deno.test("reconcile: directories kept for what survives inside them", async (t) => {
  await runRows(t, [
    {
      name: "a directory deleted here while a new file was added in it there is kept: the file " +
        "is downloaded and the directory recreated here",
      base: [bDir(D, 1), bFile("d/x.txt", 2)],
      remote: [rDir(D, 1), rFile("d/x.txt", 2), rFile("d/new.txt", 3, "h2")],
      expected: [
        mkdirLocal(D, rDir(D, 1)),
        download(rFile("d/new.txt", 3, "h2"), null),
        deleteRemote("d/x.txt", "file", 2),
      ],
      check: (actions) => {
        assert.ok(!actions.some((a) => a.path === D && a.op.startsWith("delete")));
      },
    },
    {
      name: "a directory deleted here while a file in it was edited there is kept with the edit",
      base: [bDir(D, 1), bFile("d/x.txt", 2)],
      remote: [rDir(D, 1), rFile("d/x.txt", 3, "h2")],
      expected: [mkdirLocal(D, rDir(D, 1)), download(rFile("d/x.txt", 3, "h2"), null)],
    },
    {
      name: "a directory deleted there while a new file was added in it here is kept: the " +
        "directory is recreated on the server and the file uploaded",
      base: [bDir(D, 1), bFile("d/x.txt", 2)],
      local: [lDir(D), lSame("d/x.txt"), lFile("d/new.txt", "h1")],
      expected: [
        deleteLocal(lSame("d/x.txt")),
        mkdirRemote(lDir(D), 0),
        upload(lFile("d/new.txt", "h1"), 0),
      ],
      check: (actions) => {
        assert.ok(!actions.some((a) => a.path === D && a.op.startsWith("delete")));
      },
    },
    {
      name: "a directory deleted there while a file in it was edited here is kept with the edit",
      base: [bDir(D, 1), bFile("d/x.txt", 2)],
      local: [lDir(D), lFile("d/x.txt", "h1")],
      expected: [mkdirRemote(lDir(D), 0), upload(lFile("d/x.txt", "h1"), 0)],
    },
    {
      name: "a directory replaced by a file there while a file in it was edited here: the " +
        "directory is kept and the remote file downloaded aside",
      base: [bDir(D, 1), bFile("d/x.txt", 2)],
      local: [lDir(D), lFile("d/x.txt", "h1")],
      remote: [rFile(D, 3, "h2")],
      expected: [
        download(rFile(D, 3, "h2"), null, aside(D, OTHER)),
        mkdirRemote(lDir(D), 3, aside(D, OTHER)),
        upload(lFile("d/x.txt", "h1"), 0),
      ],
    },
    {
      name: "a directory replaced by a file here while a file was added in it there: the local " +
        "file is set aside and the directory kept",
      base: [bDir(D, 1), bFile("d/x.txt", 2)],
      local: [lFile(D, "h1")],
      remote: [rDir(D, 1), rFile("d/x.txt", 2), rFile("d/new.txt", 3, "h2")],
      expected: [
        moveAside(lFile(D, "h1"), aside(D, DEVICE)),
        mkdirLocal(D, rDir(D, 1)),
        download(rFile("d/new.txt", 3, "h2"), null),
        deleteRemote("d/x.txt", "file", 2),
      ],
    },
    {
      name: "a directory with content deleted on both sides is forgotten entirely",
      base: [bDir(D, 1), bDir("d/e", 2), bFile("d/e/x.txt", 3)],
      expected: [forget(D), forget("d/e"), forget("d/e/x.txt")],
    },
  ]);
});

Deno.test("reconcile: type changes with content", async (t) => {
  await runRows(t, [
    {
      name: "a file replaced here by a directory with content: the directory goes first",
      base: [bFile(F, 1)],
      local: [lDir(F), lFile("f.txt/x", "h1")],
      remote: [rFile(F, 1)],
      expected: [mkdirRemote(lDir(F), 1), upload(lFile("f.txt/x", "h1"), 0)],
    },
    {
      name: "a file replaced there by a directory with content: the directory is made first",
      base: [bFile(F, 1)],
      local: [lSame(F)],
      remote: [rDir(F, 2), rFile("f.txt/x", 3, "h2")],
      expected: [mkdirLocal(F, rDir(F, 2), lSame(F)), download(rFile("f.txt/x", 3, "h2"), null)],
    },
    {
      name: "a directory created here with content over a remote file: the file is set aside",
      local: [lDir(D), lFile("d/x", "h1")],
      remote: [rFile(D, 5, "h2")],
      expected: [
        download(rFile(D, 5, "h2"), null, aside(D, OTHER)),
        mkdirRemote(lDir(D), 5, aside(D, OTHER)),
        upload(lFile("d/x", "h1"), 0),
      ],
    },
  ]);
});

Deno.test("reconcile: conflict names", async (t) => {
  const taken1 = aside(F, DEVICE);
  const taken2 = aside(F, DEVICE, 2);
  await runRows(t, [
    {
      name: "a conflict name already used locally gets a counter",
      local: [lFile(F, "h1"), lFile(taken1, "h3")],
      remote: [rFile(F, 5, "h2")],
      expected: [
        moveAside(lFile(F, "h1"), aside(F, DEVICE, 2)),
        download(rFile(F, 5, "h2"), null),
        upload(lFile(taken1, "h3"), 0),
      ],
    },
    {
      name: "a conflict name used on the server and one in the base count as taken too",
      base: [bFile(taken2, 3)],
      local: [lFile(F, "h1"), lSame(taken2)],
      remote: [rFile(F, 5, "h2"), rFile(taken1, 4, "h3"), rFile(taken2, 3)],
      expected: [
        moveAside(lFile(F, "h1"), aside(F, DEVICE, 3)),
        download(rFile(taken1, 4, "h3"), null),
        download(rFile(F, 5, "h2"), null),
      ],
    },
    {
      name: "where case does not count, a name that differs only in case is taken",
      base: [bFile("D.TXT", 1), bFile(aside("d.txt", DEVICE), 2)],
      local: [lFile("D.TXT", "h1"), lSame(aside("d.txt", DEVICE))],
      remote: [rFile("D.TXT", 5, "h2"), rFile(aside("d.txt", DEVICE), 2)],
      nameKey: foldName,
      expected: [
        moveAside(lFile("D.TXT", "h1"), aside("D.TXT", DEVICE, 2)),
        download(rFile("D.TXT", 5, "h2"), null),
      ],
    },
    {
      name: "where case does not count, two copies made at once differ in more than case",
      base: [bFile("D.TXT", 1), bFile("d.txt", 2)],
      local: [lFile("D.TXT", "h1"), lFile("d.txt", "h3")],
      remote: [rFile("D.TXT", 5, "h2"), rFile("d.txt", 6, "h4")],
      nameKey: foldName,
      expected: [
        moveAside(lFile("D.TXT", "h1"), aside("D.TXT", DEVICE)),
        moveAside(lFile("d.txt", "h3"), aside("d.txt", DEVICE, 2)),
        download(rFile("D.TXT", 5, "h2"), null),
        download(rFile("d.txt", 6, "h4"), null),
      ],
    },
    {
      name: "a name held on disk by another item (an alias, a symlink) is taken",
      local: [lFile(F, "h1")],
      remote: [rFile(F, 5, "h2")],
      localNameTaken: (p) => p === aside(F, DEVICE),
      expected: [moveAside(lFile(F, "h1"), aside(F, DEVICE, 2)), download(rFile(F, 5, "h2"), null)],
    },
  ]);
});

Deno.test("reconcile: action order", async (t) => {
  await runRows(t, [
    {
      name: "conflict copies are set aside before any download",
      local: [lFile("z.txt", "h1")],
      remote: [rFile("a.txt", 5, "h3"), rFile("z.txt", 6, "h2")],
      expected: [
        moveAside(lFile("z.txt", "h1"), aside("z.txt", DEVICE)),
        download(rFile("a.txt", 5, "h3"), null),
        download(rFile("z.txt", 6, "h2"), null),
      ],
    },
    {
      name: "a new remote tree is created parents first",
      remote: [rDir("a", 1), rDir("a/b", 2), rFile("a/b/c.txt", 3, "h2"), rFile("a/x", 4, "h3")],
      expected: [
        mkdirLocal("a", rDir("a", 1)),
        mkdirLocal("a/b", rDir("a/b", 2)),
        download(rFile("a/x", 4, "h3"), null),
        download(rFile("a/b/c.txt", 3, "h2"), null),
      ],
    },
    {
      name: "a tree deleted there is deleted here deepest first",
      base: [bDir("a", 1), bDir("a/b", 2), bFile("a/b/c.txt", 3)],
      local: [lDir("a"), lDir("a/b"), lSame("a/b/c.txt")],
      expected: [
        deleteLocal(lSame("a/b/c.txt")),
        deleteLocal(lDir("a/b")),
        deleteLocal(lDir("a")),
      ],
    },
    {
      name: "a tree deleted here is deleted on the server deepest first",
      base: [bDir("a", 1), bDir("a/b", 2), bFile("a/b/c.txt", 3)],
      remote: [rDir("a", 1), rDir("a/b", 2), rFile("a/b/c.txt", 3)],
      expected: [
        deleteRemote("a/b/c.txt", "file", 3),
        deleteRemote("a/b", "dir", 2),
        deleteRemote("a", "dir", 1),
      ],
    },
    {
      name: "a new local tree is created on the server parents first",
      local: [lDir("a"), lDir("a/b"), lFile("a/b/c.txt", "h1")],
      expected: [
        mkdirRemote(lDir("a"), 0),
        mkdirRemote(lDir("a/b"), 0),
        upload(lFile("a/b/c.txt", "h1"), 0),
      ],
    },
  ]);

  await t.step("orderActions sorts by phase, then parents first, deletes deepest first", () => {
    const ordered: Action[] = [
      moveAside(lFile("m", "h1"), "m2"),
      mkdirLocal("a", null),
      mkdirLocal("a/b", null),
      download(rFile("a/b/c", 1), null),
      deleteLocal(lSame("x/y/z")),
      deleteLocal(lDir("x/y")),
      forget("q"),
      mkdirRemote(lDir("n"), 0),
      mkdirRemote(lDir("n/o"), 0),
      upload(lFile("n/o/p", "h1"), 0),
      deleteRemote("r/s", "file", 1),
      deleteRemote("r", "dir", 1),
    ];
    assert.deepEqual(orderActions([...ordered].reverse()), ordered);
    // Equal phase and depth keep their input order (stable).
    const same = [upload(lFile("b", "h1"), 0), upload(lFile("a", "h1"), 0)];
    assert.deepEqual(orderActions(same), same);
  });
});

Deno.test("reconcile: modification time and permissions follow the three-way rule", async (t) => {
  const base = [bFile(F, 2)];
  const setMeta = (r: RemoteEntry, expect: LocalEntry): Action => ({
    op: "setMeta",
    path: r.path,
    remote: r,
    expect,
  });
  const touched = lAt(lFile(F, "h0"), 500); // rehashed: same content, new time
  const private_ = lAt(lFile(F, "h0"), 100, 0o600); // rehashed: same content and time, new mode
  const rTouched = { ...rFile(F, 3, "h0"), mtime: 700 };
  await runRows(t, [
    {
      name: "a time-only change here is sent (metadata only)",
      base,
      local: [touched],
      remote: [rFile(F, 2)],
      expected: [upload(touched, 2)],
    },
    {
      name: "a permissions-only change here is sent",
      base,
      local: [private_],
      remote: [rFile(F, 2)],
      expected: [upload(private_, 2)],
    },
    {
      name: "a metadata-only change there is applied here, without moving content",
      base,
      local: [lSame(F)],
      remote: [rTouched],
      expected: [setMeta(rTouched, lSame(F))],
    },
    {
      name: "both changed the time, same content: the newer time wins (there)",
      base,
      local: [touched],
      remote: [rTouched],
      expected: [setMeta(rTouched, touched)],
    },
    {
      name: "both changed the time, same content: the newer time wins (here)",
      base,
      local: [lAt(touched, 900)],
      remote: [rTouched],
      expected: [upload(lAt(touched, 900), 3)],
    },
    {
      name: "a content change there still downloads (not only metadata)",
      base,
      local: [lSame(F)],
      remote: [rFile(F, 3, "h2")],
      expected: [download(rFile(F, 3, "h2"), lSame(F))],
    },
  ]);
});

Deno.test("reconcile: an edit follows a move made on the other side", async (t) => {
  const Q = "moved/f.txt";
  const base = [bFile(F, 2)];
  const rMoved = rFile(Q, 4); // the base content, now at Q on the server
  const mine = lFile(F, "h1"); // edited here, still at F
  await runRows(t, [
    {
      name: "moved there, edited here: the local file moves to the new path and is sent",
      base,
      local: [mine],
      remote: [rMoved],
      expected: [
        { op: "moveLocal", path: F, to: Q, expect: mine },
        upload({ ...mine, path: Q }, 4),
      ],
    },
    {
      name: "moved there, not edited here: an ordinary move (download + delete)",
      base,
      local: [lSame(F)],
      remote: [rMoved],
      expected: [download(rMoved, null), deleteLocal(lSame(F))],
    },
    {
      name: "moved here, edited there: the edit is written at the new path, the old base follows",
      base,
      local: [{ ...lFile(Q, "h0"), mtime: 100 }],
      remote: [rFile(F, 3, "h2")],
      expected: [
        {
          op: "download",
          path: Q,
          remote: rFile(F, 3, "h2"),
          replace: { ...lFile(Q, "h0"), mtime: 100 },
          follows: F,
        },
      ],
    },
    {
      name: "moved and edited here, edited there: the other edit lands beside it as a copy",
      base: [{ ...bFile(F, 2), ino: 77 }],
      local: [{ ...lFile(Q, "h1"), ino: 77 }],
      remote: [rFile(F, 3, "h2")],
      expected: [
        {
          op: "download",
          path: aside(Q, OTHER),
          remote: rFile(F, 3, "h2"),
          replace: null,
          follows: F,
        },
        upload({ ...lFile(Q, "h1"), ino: 77 }, 0),
      ],
    },
  ]);
});
