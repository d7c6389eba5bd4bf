/**
 * Reads a folder's ignore rules for each pass: `FOLDER/.cloudignore` (synced, shared by every
 * device) and `FOLDER/.cloudsync/ignore` (this device's own), through the folder's `LocalFs`. A
 * change to either takes effect at the next pass (the engine compares them with the rules its
 * last pass applied, kept in `state.db`).
 *
 * A rule file that cannot be read (no permission, larger than {@link MAX_RULES_BYTES}, a folder
 * or symlink in its place) is said once; the rules used before stay in force, and a pass with no
 * rules yet stops with the error: ignoring fewer paths than the user asked for could send files
 * that were meant to stay on this computer.
 *
 * @module
 */

import { IgnoreRules, rulesKey, type RuleSource } from "../core/ignore_rules.ts";
import type { LocalFs } from "./fs/local_fs.ts";
import { STATE_DIR } from "./config.ts";

/** The shared rule file, at FOLDER's root. */
export const CLOUDIGNORE = ".cloudignore";
/** This device's rule file (selective sync), inside `.cloudsync/`. */
export const DEVICE_RULES = `${STATE_DIR}/ignore`;
/** The largest rule file read. */
export const MAX_RULES_BYTES = 1 << 20;

const decoder = new TextDecoder();

/** Reads one rule file: its text ("" when absent). Throws "Cannot read ..." when unusable. */
export function readRuleFile(fs: LocalFs, path: string): string {
  const where = `${fs.where}/${path}`;
  const st = fs.lstat(path);
  if (!st) return "";
  if (st.kind !== "file") {
    throw new Error(`Cannot read ${where}: it is a ${st.kind}, not a file; replace it with a file`);
  }
  if (st.size > MAX_RULES_BYTES) {
    throw new Error(
      `Cannot read ${where}: it is larger than ${MAX_RULES_BYTES >> 20} MiB; shorten it`,
    );
  }
  let data: Uint8Array;
  try {
    data = fs.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    const why = (e as Error).message.replace(/ \(os error \d+\).*$/, "");
    throw new Error(`Cannot read ${where}: ${why}; make it readable`);
  }
  if (data.length > MAX_RULES_BYTES) {
    throw new Error(`Cannot read ${where}: it is larger than ${MAX_RULES_BYTES >> 20} MiB`);
  }
  return decoder.decode(data).replace(/^\uFEFF/, "");
}

/** The rules of one folder, read again at every pass (see the module doc). */
export class IgnoreFiles {
  #rules: IgnoreRules | null = null;
  #said = "";

  constructor(readonly fs: LocalFs, readonly warn: (line: string) => void = () => {}) {}

  /** The rules of the last pass (null before the first). */
  get current(): IgnoreRules | null {
    return this.#rules;
  }

  /** Reads the rule files (the same object is returned while their text is the same). */
  load(): IgnoreRules {
    const sources: RuleSource[] = [];
    try {
      sources.push({ name: CLOUDIGNORE, text: readRuleFile(this.fs, CLOUDIGNORE) });
      sources.push({ name: DEVICE_RULES, text: readRuleFile(this.fs, DEVICE_RULES) });
    } catch (e) {
      const msg = (e as Error).message;
      if (!this.#rules) throw e;
      if (msg !== this.#said) this.warn(`${msg}. The rules read before stay in force meanwhile.`);
      this.#said = msg;
      return this.#rules;
    }
    this.#said = "";
    if (this.#rules?.key !== rulesKey(sources)) this.#rules = new IgnoreRules(sources);
    return this.#rules;
  }
}
