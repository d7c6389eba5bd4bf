/**
 * Which paths do not sync: the ignore matcher. Pure (rules in, verdicts out); the client reads
 * the rule files (`client/ignore_files.ts`) and applies the verdicts to a pass
 * (`core/ignore_view.ts`).
 *
 * Three layers of gitignore rules, in this order, the last matching rule deciding (so a later
 * `!pattern` re-includes what an earlier layer ignores):
 *
 * 1. {@link DEFAULT_RULES}: operating-system, office-suite, editor and browser litter;
 * 2. `FOLDER/.cloudignore`, which syncs like any file, so every device follows it;
 * 3. `FOLDER/.cloudsync/ignore`, this device's own (selective sync; never synced).
 *
 * Matching is gitignore's, by the `ignore` package (negation with `!`, `*`, `?`, `[a-z]`, `**`,
 * a trailing `/` for folders only, a leading or inner `/` anchors at FOLDER's root, `#`
 * comments, `\` escapes), on wire paths, without regard to letter case (one `.cloudignore` must
 * mean the same on Linux, macOS and Windows). As in git, nothing below an ignored folder can be
 * re-included: the folder itself must be re-included first.
 *
 * The root's `.cloudignore` always syncs, whatever the rules say (`.*` or `*` would match it):
 * every device must follow the same shared rules.
 *
 * Git's lock files (`.git/index.lock`, `.git/HEAD.lock`, `.git/refs/heads/main.lock`, ...) never
 * sync, whatever the rules say: git holds one for a moment while it changes a repository, and a
 * copy arriving on another device makes every git command there refuse to run ("Unable to create
 * '.../index.lock': File exists") until it is deleted.
 *
 * @example
 * ```ts
 * const rules = new IgnoreRules([{ name: ".cloudignore", text: "build/\n!.DS_Store\n" }]);
 * rules.ignores("app/build", true);    // true: a folder named build
 * rules.ignores("app/build", false);   // false: a file named build
 * rules.ignores("photos/.DS_Store", false); // false: re-included
 * rules.ignores("Thumbs.db", false);   // true: a default
 * ```
 *
 * @module
 */

import ignore, { type Ignore } from "ignore";

/** One built-in rule and what it is for (the README lists them). */
export interface DefaultRule {
  pattern: string;
  what: string;
}

/** The built-in rules: litter no one means to sync. A `!pattern` in `.cloudignore` re-includes one. */
export const DEFAULT_RULES: readonly DefaultRule[] = [
  { pattern: ".DS_Store", what: "macOS folder view settings" },
  { pattern: "._*", what: "macOS resource forks on other file systems" },
  { pattern: ".Spotlight-V100/", what: "macOS search index" },
  { pattern: ".Trashes/", what: "macOS trash of a volume" },
  { pattern: ".fseventsd/", what: "macOS change log of a volume" },
  { pattern: ".TemporaryItems/", what: "macOS temporary files of a volume" },
  { pattern: "Thumbs.db", what: "Windows thumbnail cache" },
  { pattern: "ehthumbs.db", what: "Windows Media Center thumbnail cache" },
  { pattern: "desktop.ini", what: "Windows folder view settings" },
  { pattern: "$RECYCLE.BIN/", what: "Windows recycle bin of a volume" },
  { pattern: "System Volume Information/", what: "Windows restore points of a volume" },
  { pattern: ".Trash-*/", what: "Linux trash of a volume" },
  { pattern: ".fuse_hidden*", what: "files deleted while open on a FUSE file system" },
  { pattern: "~$*", what: "Microsoft Office lock files" },
  { pattern: "~*.tmp", what: "Microsoft Office temporary files" },
  { pattern: ".~lock.*#", what: "LibreOffice lock files" },
  { pattern: ".*.sw[a-p]", what: "vim swap files" },
  { pattern: ".*.swx", what: "vim's test file" },
  { pattern: "*.crdownload", what: "Chrome downloads in progress" },
  { pattern: "*.part", what: "Firefox downloads in progress" },
  { pattern: "*.partial", what: "Edge and Internet Explorer downloads in progress" },
];

/** Where a rule comes from: `defaults`, `.cloudignore` or `.cloudsync/ignore`. */
export type RuleOrigin = "defaults" | ".cloudignore" | ".cloudsync/ignore";

/** The text of one rule file. */
export interface RuleSource {
  name: Exclude<RuleOrigin, "defaults">;
  text: string;
}

/** The rule that decided a path, for messages. */
export interface RuleHit {
  origin: RuleOrigin;
  /** 1-based line in its file (0 for a default). */
  line: number;
  pattern: string;
}

/** Whether `path` (a wire path) is one of git's lock files, which never sync. */
export function isAlwaysIgnored(path: string): boolean {
  if (!path.endsWith(".lock")) return false;
  return path.startsWith(".git/") || path.includes("/.git/");
}

/** Whether `path` (a wire path) is the shared rule file, which always syncs (any letter case). */
export function isNeverIgnored(path: string): boolean {
  return path.length === 12 && path.toLowerCase() === ".cloudignore";
}

/** What identifies a set of rule files: equal keys, equal rules. */
export function rulesKey(sources: readonly RuleSource[]): string {
  return JSON.stringify(sources.map((s) => [s.name, s.text]));
}

/** Verdicts cached per matcher (each a few dozen bytes); beyond this many the cache restarts. */
const CACHE_MAX = 2_000_000;
/** The package's own per-path cache is dropped after this many misses of ours. */
const INNER_MAX = 100_000;

/** A set of rules (see the module doc). Verdicts are cached: ask as often as needed. */
export class IgnoreRules {
  /** The rule files' text, to tell whether they changed. */
  readonly key: string;
  readonly #lines: { origin: RuleOrigin; line: number; pattern: string }[] = [];
  readonly #byPattern = new Map<string, RuleHit>();
  #ig: Ignore;
  #misses = 0;
  readonly #files = new Map<string, boolean>();
  readonly #dirs = new Map<string, boolean>();

  /** The defaults, then each source in order. */
  constructor(sources: readonly RuleSource[] = []) {
    this.key = rulesKey(sources);
    DEFAULT_RULES.forEach((r) => this.#add("defaults", 0, r.pattern));
    for (const s of sources) {
      s.text.split(/\r?\n/).forEach((raw, i) => {
        // Blank lines and comments count for nothing (`\#` escapes a leading #).
        if (raw.trim() === "" || raw.startsWith("#")) return;
        this.#add(s.name, i + 1, raw);
      });
    }
    this.#ig = this.#build();
  }

  /** The rules whose {@link key} is `key` (null if it is not one). */
  static fromKey(key: string): IgnoreRules | null {
    try {
      const pairs = JSON.parse(key) as unknown;
      if (!Array.isArray(pairs)) return null;
      const sources: RuleSource[] = [];
      for (const p of pairs) {
        if (!Array.isArray(p) || typeof p[1] !== "string") return null;
        if (p[0] !== ".cloudignore" && p[0] !== ".cloudsync/ignore") return null;
        sources.push({ name: p[0], text: p[1] });
      }
      return new IgnoreRules(sources);
    } catch {
      return null;
    }
  }

  #add(origin: RuleOrigin, line: number, pattern: string): void {
    this.#lines.push({ origin, line, pattern });
    this.#byPattern.set(pattern, { origin, line, pattern }); // the last one with it decides
  }

  #build(): Ignore {
    return ignore({ ignorecase: true }).add(this.#lines.map((l) => l.pattern));
  }

  /** Whether `path` (a wire path: relative, `/`-separated) is ignored; `dir`: it is a folder. */
  ignores(path: string, dir: boolean): boolean {
    const cache = dir ? this.#dirs : this.#files;
    const known = cache.get(path);
    if (known !== undefined) return known;
    let v = isAlwaysIgnored(path);
    if (!v && path !== "" && !isNeverIgnored(path)) {
      if (++this.#misses > INNER_MAX) {
        this.#misses = 0;
        this.#ig = this.#build();
      }
      try {
        v = this.#ig.ignores(dir ? path + "/" : path);
      } catch {
        v = false; // not a path the package takes (never a wire path)
      }
    }
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(path, v);
    return v;
  }

  /**
   * The rule that ignores `path`, or null when it is not ignored. For a path inside an ignored
   * folder, the folder's rule.
   */
  why(path: string, dir: boolean): RuleHit | null {
    if (!this.ignores(path, dir)) return null;
    if (isAlwaysIgnored(path)) {
      return { origin: "defaults", line: 0, pattern: "git's lock files (.git/**/*.lock)" };
    }
    try {
      const hit = this.#ig.checkIgnore(dir ? path + "/" : path);
      if (hit.rule) return this.#byPattern.get(hit.rule.pattern) ?? null;
    } catch { /* as in ignores */ }
    return null;
  }
}

/** How a {@link RuleHit} is said: `the rule "*.iso" (.cloudignore, line 3)`. */
export function describeRule(hit: RuleHit): string {
  const where = hit.origin === "defaults" ? "built in" : `${hit.origin}, line ${hit.line}`;
  return `the rule ${JSON.stringify(hit.pattern)} (${where})`;
}

/**
 * The pattern that matches exactly one path from FOLDER's root, file or folder: `/` + the path
 * (so a leading `!` or `#` is not read as a negation or a comment), with every other character
 * gitignore reads specially escaped (`*`, `?`, `[`, `]`, `\`, trailing spaces).
 */
export function exactPattern(path: string): string {
  let p = path.replace(/[\\*?[\]]/g, (c) => "\\" + c);
  p = p.replace(/ +$/, (s) => s.replace(/ /g, "\\ "));
  return "/" + p;
}
