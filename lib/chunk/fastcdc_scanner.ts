/**
 * FastCDC's cut-point search in WebAssembly (lib/chunk/fastcdc_gear.wat, embedded by
 * lib/chunk/fastcdc_wasm.ts): the same boundaries as the TypeScript `findCut`, which stays the
 * reference and the fallback where WebAssembly cannot be instantiated.
 *
 * A {@link WasmScanner} owns one instance whose linear memory holds the gear table and one data
 * window. `chunkStream` reads the file straight into that window, so the bytes are never copied
 * for the scan; the window grows (keeping its contents) up to twice the largest chunk and never
 * shrinks, and a few released scanners are kept for the next stream (each thread, workers too,
 * has its own).
 *
 * @module
 */

import type { ResolvedChunkerOptions } from "./fastcdc.ts";
import { GEAR } from "./gear.ts";
import { GEAR_WASM } from "./fastcdc_wasm.ts";

/** Where the data window starts in linear memory (the gear table takes bytes 0..1023). */
const DATA = 1024;
const PAGE = 65536;
/** The largest window a scanner takes; larger chunk sizes use the TypeScript loop. */
export const MAX_WINDOW = 256 * 1024 * 1024;
/** Released scanners kept per thread, and the largest memory kept (2 MiB windows, the default). */
const POOL_SIZE = 2;
const POOL_MAX_BYTES = 4 * 1024 * 1024;

type FindCutExport = (
  start: number,
  end: number,
  min: number,
  avg: number,
  max: number,
  maskS: number,
  maskL: number,
  final: number,
) => number;

let compiled: WebAssembly.Module | null | undefined;
const pool: WasmScanner[] = [];

/** The compiled module, or null where WebAssembly is unavailable (compiled once per thread). */
function wasmModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(GEAR_WASM as Uint8Array<ArrayBuffer>);
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** Whether this thread chunks with WebAssembly (false: the TypeScript loop is used). */
export function wasmAvailable(): boolean {
  return wasmModule() !== null;
}

/** One WebAssembly instance with a data window of up to {@link MAX_WINDOW} bytes. */
export class WasmScanner {
  readonly #memory: WebAssembly.Memory;
  readonly #findCut: FindCutExport;

  private constructor(instance: WebAssembly.Instance) {
    this.#memory = instance.exports.memory as WebAssembly.Memory;
    this.#findCut = instance.exports.find_cut as FindCutExport;
    new Uint32Array(this.#memory.buffer, 0, 256).set(GEAR);
  }

  /** A new scanner, or null where WebAssembly is unavailable. */
  static create(): WasmScanner | null {
    const mod = wasmModule();
    if (!mod) return null;
    try {
      return new WasmScanner(new WebAssembly.Instance(mod));
    } catch {
      return null;
    }
  }

  /** Bytes of linear memory this scanner holds. */
  get memoryBytes(): number {
    return this.#memory.buffer.byteLength;
  }

  /**
   * A view of the first `size` bytes of the data window, growing the memory if needed. Growing
   * keeps the contents but invalidates the views returned before.
   */
  window(size: number): Uint8Array {
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_WINDOW) {
      throw new RangeError(`Cannot size the chunk window: ${size} is outside 0..${MAX_WINDOW}`);
    }
    const need = DATA + size - this.#memory.buffer.byteLength;
    if (need > 0) this.#memory.grow(Math.ceil(need / PAGE));
    return new Uint8Array(this.#memory.buffer, DATA, size);
  }

  /**
   * `findCut(window, start, end, o, final)`: the length of the chunk at window offset `start`,
   * looking only at `[start, end)` of the window (which the caller keeps within its size).
   */
  findCut(start: number, end: number, o: ResolvedChunkerOptions, final: boolean): number {
    return this.#findCut(DATA + start, DATA + end, o.min, o.avg, o.max, o.maskS, o.maskL, +final);
  }
}

/**
 * A scanner whose window can grow to `size` bytes (from the pool, or new), or null when WebAssembly
 * is unavailable or `size` exceeds {@link MAX_WINDOW}. Give it back with {@link releaseScanner}.
 */
export function acquireScanner(size: number): WasmScanner | null {
  if (size > MAX_WINDOW) return null;
  return pool.pop() ?? WasmScanner.create();
}

/** Returns a scanner to the pool (dropped if the pool is full or its memory is large). */
export function releaseScanner(scanner: WasmScanner): void {
  if (pool.length < POOL_SIZE && scanner.memoryBytes <= POOL_MAX_BYTES) pool.push(scanner);
}

/**
 * `findCut` through WebAssembly for any buffer (tests and the benchmark): copies the bytes the
 * search can look at, `buf[start .. start + min(end - start, max))`, into a scanner's window.
 * Returns null where WebAssembly is unavailable.
 */
export function findCutWasm(
  buf: Uint8Array,
  start: number,
  end: number,
  o: ResolvedChunkerOptions,
  final: boolean,
): number | null {
  if (start < 0 || end > buf.length || start > end) {
    throw new RangeError(`Cannot find cut: range ${start}..${end} is outside 0..${buf.length}`);
  }
  const len = Math.min(end - start, o.max);
  const scanner = o.max <= MAX_WINDOW ? acquireScanner(len) : null;
  if (!scanner) return null;
  try {
    scanner.window(len).set(buf.subarray(start, start + len));
    // Past `max` the search reads nothing more, so `max + 1` stands for any longer range.
    return scanner.findCut(0, Math.min(end - start, o.max + 1), o, final);
  } finally {
    releaseScanner(scanner);
  }
}
