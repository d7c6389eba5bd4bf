/**
 * What a JSON header costs to parse, judged before parsing it: one pass over the bytes counts
 * the containers (objects and arrays), the nesting depth, the keys of each object and the
 * distinct object shapes (key sequences). V8's `JSON.parse` is fast on what our peers send (few
 * shapes, repeated: 16 MiB of chunk references in 34 ms) and slow on what an attacker can shape
 * within any size bound. Measured with the run tasks' `--max-semi-space-size=2`: 6 MiB of `{}`
 * took 1.3 s (32 MiB: 31-36 s), 16 MiB of objects with two distinct keys each 1.8 s, of 16 keys
 * in random orders 2.7 s, of one object with 1.4 million keys 0.9 s. Within the bounds below
 * (containers per byte, 64 keys an object, depth 32, 256 shapes) the worst we found takes about
 * 0.2 s for 16 MiB (arrays of small numbers) and 0.03 s for the first 256 KiB.
 *
 * The scan follows JSON's own rules (strings, escapes, a string right after `{` or `,` in an
 * object is a key); it does not validate: `JSON.parse` does that afterwards. Shapes are hashed
 * with a per-process random seed, so nobody can precompute collisions.
 *
 * @example
 * ```ts
 * headerShapeProblem(new TextEncoder().encode('{"t":"have","hashes":[]}')); // null
 * ```
 *
 * @module
 */

/** Bounds a header's structure must keep (see the module doc for why these). */
export interface ShapeLimits {
  /** Containers allowed per byte in the first {@link denseBytes}: one per this many bytes. */
  bytesPerContainer: number;
  /** How much of a header may be dense (small replies are: `{"ok":true,"version":7}`). */
  denseBytes: number;
  /** Beyond {@link denseBytes}: one container per this many bytes. */
  bytesPerContainerBeyond: number;
  /** Deepest nesting of containers. */
  maxDepth: number;
  /** Most keys in one object. */
  maxKeys: number;
  /** Most distinct key sequences of objects. */
  maxShapes: number;
}

/**
 * The defaults. Dense headers are small: 1,000 commit results `{"ok":true,"version":7}` (25
 * bytes each) or a commit of 1,000 directories with one-letter names (two containers in about
 * 105 bytes) fit in 256 KiB at one container per 16 bytes. Big headers are chunk lists: a
 * chunk reference `{"hash":…,"size":…}` takes about 85 bytes (one container per 64 allowed).
 * The protocol's messages nest 4 deep, have at most a dozen keys and a dozen shapes.
 */
export const DEFAULT_SHAPE_LIMITS: ShapeLimits = {
  bytesPerContainer: 16,
  denseBytes: 256 * 1024,
  bytesPerContainerBeyond: 64,
  maxDepth: 32,
  maxKeys: 64,
  maxShapes: 256,
};

/** Most containers a header of `bytes` may hold under `limits`. */
export function maxContainers(bytes: number, limits: ShapeLimits = DEFAULT_SHAPE_LIMITS): number {
  const dense = Math.min(bytes, limits.denseBytes);
  return 64 + Math.floor(dense / limits.bytesPerContainer) +
    Math.floor((bytes - dense) / limits.bytesPerContainerBeyond);
}

const SEED = crypto.getRandomValues(new Uint32Array(1))[0]!;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** The index of the quote that closes the string opened at `open` (or the end of `text`). */
function closingQuote(text: Uint8Array, open: number): number {
  let j = open + 1;
  for (;;) {
    j = text.indexOf(QUOTE, j);
    if (j < 0) return text.length;
    let backslashes = 0;
    for (let k = j - 1; k > open && text[k] === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return j;
    j++;
  }
}

/** Why `text` (a JSON header) would cost too much to parse, or null. */
export function headerShapeProblem(
  text: Uint8Array,
  limits: ShapeLimits = DEFAULT_SHAPE_LIMITS,
): string | null {
  const most = maxContainers(text.length, limits);
  let containers = 0;
  // Per open container: -1 for an array, else the object's key count; its shape hash; whether
  // the next string in it is a key.
  const keys = new Int32Array(limits.maxDepth + 1);
  const shape = new Uint32Array(limits.maxDepth + 1);
  const expectKey = new Uint8Array(limits.maxDepth + 1);
  let depth = 0;
  const shapes = new Set<number>();
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === QUOTE) {
      if (!(depth > 0 && keys[depth]! >= 0 && expectKey[depth] === 1)) {
        i = closingQuote(text, i);
        continue;
      }
      // A key: hashed into its object's shape.
      let h = SEED ^ 0x811c9dc5;
      for (i++; i < text.length; i++) {
        let b = text[i]!;
        if (b === QUOTE) break;
        if (b === BACKSLASH && i + 1 < text.length) {
          h = Math.imul(h ^ b, 0x01000193);
          b = text[++i]!;
        }
        h = Math.imul(h ^ b, 0x01000193);
      }
      expectKey[depth] = 0;
      if (++keys[depth]! > limits.maxKeys) {
        return `an object of the header has more than ${limits.maxKeys} keys`;
      }
      shape[depth] = Math.imul(shape[depth]! ^ h, 0x01000193) >>> 0;
    } else if (c === 0x7b || c === 0x5b) { // { [
      if (++containers > most) {
        return "the header holds too many JSON objects and arrays for its size";
      }
      if (++depth > limits.maxDepth) {
        return `the header nests deeper than ${limits.maxDepth} levels`;
      }
      keys[depth] = c === 0x7b ? 0 : -1;
      shape[depth] = SEED;
      expectKey[depth] = c === 0x7b ? 1 : 0;
    } else if (c === 0x7d || c === 0x5d) { // } ]
      if (depth === 0) continue; // invalid JSON: the parser refuses it
      if (keys[depth]! >= 0) {
        shapes.add(shape[depth]! ^ keys[depth]!);
        if (shapes.size > limits.maxShapes) {
          return `the header has more than ${limits.maxShapes} kinds of objects`;
        }
      }
      depth--;
    } else if (c === 0x2c && depth > 0 && keys[depth]! >= 0) { // , in an object
      expectKey[depth] = 1;
    }
  }
  return null;
}
