/**
 * Binary frame codec for the sync protocol.
 *
 * Every frame is laid out as follows (all integers big-endian):
 *
 * ```
 * u32 length     bytes after this field (9 .. maxFrame)
 * u8  type       1 = request, 2 = response, 3 = notice
 * u32 id         request id (responses echo it; notices use 0)
 * u32 headerLen  length of the JSON header (<= length - 9)
 * header         UTF-8 JSON object
 * body           raw bytes (the rest of the frame, may be empty)
 * ```
 *
 * {@linkcode FrameReader} parses frames from a byte stream with bounded memory: it reuses one read
 * buffer, checks the declared length before allocating anything, and reads large bodies straight
 * into their final buffer so each body byte is copied at most once.
 *
 * @example
 * ```ts
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 4000 });
 * await writeAll(conn, encodeFrame({ type: FrameType.Notice, id: 0, header: { t: "hi" }, body: new Uint8Array() }));
 * const reader = new FrameReader(conn);
 * const frame = await reader.next();
 * ```
 *
 * @module
 */

import zlib from "node:zlib";
import { headerShapeProblem } from "./header_shape.ts";

/** Largest accepted frame length (the `length` field): 8 MiB of body plus 64 KiB of header room. */
export const MAX_FRAME: number = 8 * 1024 * 1024 + 64 * 1024;

/** Bytes in the fixed part after the length field: type (1) + id (4) + headerLen (4). */
const FIXED_AFTER_LENGTH = 9;
/** Bytes of the whole fixed prefix, including the length field. */
const PREFIX = 4 + FIXED_AFTER_LENGTH;
/** Default size of the reusable read buffer while data streams. */
const DEFAULT_BUFFER_SIZE = 64 * 1024;
/**
 * Size of the read buffer while a connection is quiet: an idle connection holds this, not the
 * streaming size (a server with 5,000 idle connections held 260 MB more with 64 KiB each).
 */
const IDLE_BUFFER_SIZE = 2 * 1024;
/** A read of fewer bytes than this (one TLS record of plain text) ends a burst. */
const BURST_END = 16 * 1024;
const MAX_U32 = 0xffff_ffff;

/** Frame type codes. */
export const FrameType = {
  /** A call that expects exactly one response with the same id. */
  Request: 1,
  /** The answer to a request; echoes the request's id. */
  Response: 2,
  /** A one-way message; id is 0 and no reply is sent. */
  Notice: 3,
} as const;

/** One of the {@linkcode FrameType} codes. */
export type FrameTypeCode = typeof FrameType[keyof typeof FrameType];

/** A decoded frame. */
export interface Frame {
  /** 1 = request, 2 = response, 3 = notice. */
  type: FrameTypeCode;
  /** Request id (u32); responses echo it, notices use 0. */
  id: number;
  /** The JSON header; always a plain object. */
  header: Record<string, unknown>;
  /** The raw body; may be empty. */
  body: Uint8Array;
}

/** Malformed frame input (on either encode or decode). */
export class FrameError extends Error {
  /** Creates a frame error with a "Cannot <action>: <state>" message. */
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/** A `Deno.Reader`-like byte source (`Deno.Conn` satisfies it). */
export interface ByteReader {
  /** Reads up to `p.length` bytes into `p`; resolves the count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
}

/** A `Deno.Writer`-like byte sink (`Deno.Conn` satisfies it). */
export interface ByteWriter {
  /** Writes some prefix of `p`; resolves how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
}

/** Options for {@linkcode FrameReader}. */
export interface FrameReaderOptions {
  /** Largest accepted `length` field; default {@linkcode MAX_FRAME}. */
  maxFrame?: number;
  /**
   * Size of the reusable read buffer for `ByteReader` sources while data streams; default 64
   * KiB. A quiet connection reads into a 2 KiB buffer; one read that fills it switches to this
   * size, one that brings less than 16 KiB (a TLS record) switches back.
   */
  bufferSize?: number;
  /**
   * Called after each read from a `ByteReader` source that left the current frame incomplete with
   * at most `nearEndBytes` of it still to come (the argument: how many). The sender's Nagle
   * algorithm may hold the last piece of a frame (less than one TCP segment) until this side
   * acknowledges everything before it; sending anything carries that acknowledgement.
   */
  onNearEnd?: (missing: number) => void;
  /** Threshold of {@link onNearEnd}; default 64 KiB (a loopback TCP segment). */
  nearEndBytes?: number;
  /** Bounds on headers (see {@link HeaderLimits}); default {@link DEFAULT_HEADER_LIMITS}. */
  headerLimits?: HeaderLimits;
  /**
   * Where bodies come from (a {@link BodyPool}'s `take`, so that big bodies reuse buffers);
   * default: a fresh `Uint8Array` each. Every byte of the given buffer is overwritten.
   */
  takeBody?: (len: number) => Uint8Array;
}

/**
 * What a header may cost before it is parsed: checked on the wire length, after decompression,
 * and on its structure (containers, depth, keys, object shapes: see `header_shape.ts`), so
 * that a small frame cannot make the parser allocate millions of objects (measured: 32 MiB of
 * `{}` took 31-36 s to parse with the run tasks' V8 flags).
 */
export interface HeaderLimits {
  /** Largest header, in bytes, on the wire and after decompression. */
  maxHeader: number;
  /** Whether a zstd-compressed header is accepted at all. */
  compressed: boolean;
  /** A compressed header may expand to at most this many times its wire size (plus 64 KiB). */
  maxRatio: number;
}

/**
 * The expansion every receiver accepts of a compressed header: a sender never compresses more
 * than this (a more repetitive header, such as the chunk list of a file of zeros, travels plain),
 * so that no receiver refuses what an honest peer sends.
 */
export const HEADER_RATIO = 1024;

/** The most bytes a compressed header of `wire` bytes may expand to at `ratio`. */
export function maxExpansion(wire: number, ratio: number): number {
  return wire * ratio + 64 * 1024;
}

/** Headers accepted by default: 32 MiB (a client reading its own server's replies). */
export const DEFAULT_HEADER_LIMITS: HeaderLimits = {
  maxHeader: 32 * 1024 * 1024,
  compressed: true,
  maxRatio: HEADER_RATIO,
};

/** Headers at least this big are parsed one per turn of the event loop (see {@link bigParse}). */
const BIG_HEADER = 1024 * 1024;

/** The end of the last big header parse queued (all readers of this process). */
let bigParseTail: Promise<void> = Promise.resolve();

/**
 * Runs `parse` (of a big header) after every big parse queued before it, each in its own turn
 * of the event loop: what other connections have ready is handled between two of them, so a
 * flood of big headers (up to about 0.1 s each per 8 MiB within the bounds) delays everybody
 * else's small requests by one parse at most, not by the whole queue.
 */
async function bigParse<T>(parse: () => T): Promise<T> {
  const before = bigParseTail;
  let done!: () => void;
  bigParseTail = new Promise((r) => done = r);
  try {
    await before;
    await new Promise((r) => setTimeout(r, 0));
    return parse();
  } finally {
    done();
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Type-byte flag: the header is zstd-compressed (set for headers over 4 KiB when it helps). */
export const HEADER_ZSTD = 0x80;
const COMPRESS_HEADER_OVER = 4096;
const ZSTD_LEVEL_1: zlib.ZstdOptions = { params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 } };

function isFrameType(t: number): t is FrameTypeCode {
  return t === FrameType.Request || t === FrameType.Response || t === FrameType.Notice;
}

/**
 * Encodes everything except the body: the fixed prefix followed by the JSON header. The full frame
 * is this followed by `frame.body`; writing the two parts separately avoids copying a large body.
 *
 * @throws {FrameError} if the type, id or header is invalid or the frame exceeds `maxFrame`.
 */
export function encodeFrameHead(frame: Frame, maxFrame: number = MAX_FRAME): Uint8Array {
  if (!isFrameType(frame.type)) {
    throw new FrameError(`Cannot encode frame: unknown type ${String(frame.type)}`);
  }
  if (!Number.isInteger(frame.id) || frame.id < 0 || frame.id > MAX_U32) {
    throw new FrameError(`Cannot encode frame: id ${String(frame.id)} is not a u32`);
  }
  if (!isPlainObject(frame.header)) {
    throw new FrameError("Cannot encode frame: header is not a plain object");
  }
  let json: string;
  try {
    json = JSON.stringify(frame.header);
  } catch (err) {
    throw new FrameError(
      `Cannot encode frame: header is not JSON-serializable (${(err as Error).message})`,
    );
  }
  let header: Uint8Array = encoder.encode(json);
  let typeByte: number = frame.type;
  // Big headers (chunk lists, page of changes: mostly hex) travel zstd-compressed, unless that
  // would expand more than every receiver accepts.
  if (header.length > COMPRESS_HEADER_OVER) {
    const z = zlib.zstdCompressSync(header, ZSTD_LEVEL_1);
    if (z.length < header.length && header.length <= maxExpansion(z.length, HEADER_RATIO)) {
      header = new Uint8Array(z.buffer, z.byteOffset, z.byteLength);
      typeByte |= HEADER_ZSTD;
    }
  }
  const length = FIXED_AFTER_LENGTH + header.length + frame.body.length;
  if (length > maxFrame || length > MAX_U32) {
    throw new FrameError(`Cannot encode frame: length ${length} exceeds limit ${maxFrame}`);
  }
  const out = new Uint8Array(PREFIX + header.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length);
  view.setUint8(4, typeByte);
  view.setUint32(5, frame.id);
  view.setUint32(9, header.length);
  out.set(header, PREFIX);
  return out;
}

/**
 * Encodes a whole frame into one buffer.
 *
 * @throws {FrameError} if the type, id or header is invalid or the frame exceeds `maxFrame`.
 */
export function encodeFrame(frame: Frame, maxFrame: number = MAX_FRAME): Uint8Array {
  const head = encodeFrameHead(frame, maxFrame);
  if (frame.body.length === 0) return head;
  const out = new Uint8Array(head.length + frame.body.length);
  out.set(head, 0);
  out.set(frame.body, head.length);
  return out;
}

/**
 * Writes all of `data`, looping on partial writes.
 *
 * @throws {Error} if the writer reports zero bytes written (it would otherwise spin forever).
 */
export async function writeAll(w: ByteWriter, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = await w.write(data.subarray(off));
    if (!(n > 0)) {
      throw new Error(`Cannot write data: writer accepted 0 bytes at offset ${off}`);
    }
    off += n;
  }
}

/**
 * Reads frames one at a time from a `ReadableStream<Uint8Array>` or a {@linkcode ByteReader}.
 * After a {@linkcode FrameError} the reader is unusable: every later `next()` rethrows it.
 */
export class FrameReader {
  readonly #maxFrame: number;
  readonly #bufferSize: number;
  readonly #source: ByteReader | null;
  readonly #stream: ReadableStreamDefaultReader<Uint8Array> | null;
  /** Owned, reused read buffer (ByteReader sources only): small while quiet, big while busy. */
  #own: Uint8Array;
  readonly #idleSize: number;
  /** Current buffered bytes are `#buf[#start..#end]`: the owned buffer or the last stream chunk. */
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #eof = false;
  #busy = false;
  #error: FrameError | null = null;
  readonly #prefix = new Uint8Array(PREFIX);
  readonly #prefixView = new DataView(this.#prefix.buffer);
  readonly #onNearEnd: ((missing: number) => void) | undefined;
  readonly #nearEnd: number;
  #headerLimits: HeaderLimits;
  readonly #takeBody: (len: number) => Uint8Array;

  /** Wraps `source`; a stream is locked (via `getReader()`) for the life of this reader. */
  constructor(source: ReadableStream<Uint8Array> | ByteReader, opts: FrameReaderOptions = {}) {
    this.#maxFrame = opts.maxFrame ?? MAX_FRAME;
    this.#bufferSize = Math.max(PREFIX, opts.bufferSize ?? DEFAULT_BUFFER_SIZE);
    this.#idleSize = Math.min(IDLE_BUFFER_SIZE, this.#bufferSize);
    this.#onNearEnd = opts.onNearEnd;
    this.#nearEnd = opts.nearEndBytes ?? 64 * 1024;
    this.#headerLimits = opts.headerLimits ?? DEFAULT_HEADER_LIMITS;
    this.#takeBody = opts.takeBody ?? ((len) => new Uint8Array(len));
    if (source instanceof ReadableStream) {
      this.#stream = source.getReader();
      this.#source = null;
      this.#own = new Uint8Array(0);
    } else {
      this.#stream = null;
      this.#source = source;
      this.#own = new Uint8Array(this.#idleSize);
    }
    this.#buf = this.#own;
  }

  /**
   * Reads the next frame. Resolves null on a clean end of stream at a frame boundary.
   *
   * @throws {FrameError} on end of stream mid-frame, a bad type, a bad header length, a header
   * that is not a UTF-8 JSON object, or a length outside `9 .. maxFrame` (checked before any
   * allocation).
   */
  async next(): Promise<Frame | null> {
    if (this.#error) throw this.#error;
    if (this.#busy) throw new Error("Cannot read frame: another next() call is still pending");
    this.#busy = true;
    try {
      return await this.#readFrame();
    } catch (err) {
      if (err instanceof FrameError) this.#error = err;
      throw err;
    } finally {
      this.#busy = false;
    }
  }

  /** Changes the header bounds for the frames read from now on (e.g. once a peer signed in). */
  setHeaderLimits(limits: HeaderLimits): void {
    this.#headerLimits = limits;
  }

  /** Cancels the underlying stream (no-op for `ByteReader` sources, which the caller owns). */
  async cancel(reason?: unknown): Promise<void> {
    this.#eof = true;
    if (this.#stream) await this.#stream.cancel(reason);
  }

  async #readFrame(): Promise<Frame | null> {
    const lenBytes = this.#prefix.subarray(0, 4);
    const got = await this.#readFull(lenBytes);
    if (got === 0) return null;
    if (got < 4) {
      throw new FrameError(`Cannot read frame: stream ended after ${got} of 4 length bytes`);
    }
    const length = this.#prefixView.getUint32(0);
    if (length > this.#maxFrame) {
      throw new FrameError(`Cannot read frame: length ${length} exceeds limit ${this.#maxFrame}`);
    }
    if (length < FIXED_AFTER_LENGTH) {
      throw new FrameError(
        `Cannot read frame: length ${length} is below the minimum ${FIXED_AFTER_LENGTH}`,
      );
    }
    await this.#readExact(this.#prefix.subarray(4, PREFIX), 4, length);
    const typeByte = this.#prefixView.getUint8(4);
    const type = typeByte & ~HEADER_ZSTD;
    const id = this.#prefixView.getUint32(5);
    const headerLen = this.#prefixView.getUint32(9);
    if (!isFrameType(type)) throw new FrameError(`Cannot read frame: unknown type ${typeByte}`);
    const payload = length - FIXED_AFTER_LENGTH;
    if (headerLen > payload) {
      throw new FrameError(
        `Cannot read frame: header length ${headerLen} exceeds frame payload ${payload}`,
      );
    }
    const limits = this.#headerLimits;
    const compressed = (typeByte & HEADER_ZSTD) !== 0;
    if (compressed && !limits.compressed) {
      throw new FrameError("Cannot read frame: a compressed header is not accepted here");
    }
    if (headerLen > limits.maxHeader) {
      throw new FrameError(
        `Cannot read frame: header of ${headerLen} bytes exceeds the limit of ${limits.maxHeader}`,
      );
    }
    const headerBytes = new Uint8Array(headerLen);
    await this.#readExact(headerBytes, PREFIX, length);
    let text: Uint8Array = headerBytes;
    if (compressed) {
      const most = Math.min(limits.maxHeader, maxExpansion(headerLen, limits.maxRatio));
      try {
        const z = zlib.zstdDecompressSync(headerBytes, { maxOutputLength: Math.max(1, most) });
        text = new Uint8Array(z.buffer, z.byteOffset, z.byteLength);
      } catch {
        throw new FrameError(
          `Cannot read frame: the compressed header is not valid zstd or expands beyond ${most} bytes`,
        );
      }
    }
    const parse = (): unknown => {
      const problem = headerShapeProblem(text);
      if (problem) throw new FrameError(`Cannot read frame: ${problem}`);
      try {
        return JSON.parse(decoder.decode(text));
      } catch {
        throw new FrameError("Cannot read frame: header is not valid UTF-8 JSON");
      }
    };
    const parsed = text.length >= BIG_HEADER ? await bigParse(parse) : parse();
    if (!isPlainObject(parsed)) {
      throw new FrameError("Cannot read frame: header is not a JSON object");
    }
    const body = this.#takeBody(payload - headerLen);
    await this.#readExact(body, PREFIX + headerLen, length);
    return { type, id, header: parsed, body };
  }

  /** Fills `dst` completely or throws a mid-frame FrameError; `at` is the frame offset of dst. */
  async #readExact(dst: Uint8Array, at: number, length: number): Promise<void> {
    const got = await this.#readFull(dst, 4 + length - at - dst.length);
    if (got < dst.length) {
      throw new FrameError(
        `Cannot read frame: stream ended mid-frame after ${at + got} of ${4 + length} bytes`,
      );
    }
  }

  /**
   * Fills `dst` from buffered bytes and the source; returns fewer than requested only at EOF.
   * `after`: bytes of the current frame that follow `dst` (-1 between frames).
   */
  async #readFull(dst: Uint8Array, after = -1): Promise<number> {
    let filled = 0;
    while (filled < dst.length) {
      const avail = this.#end - this.#start;
      if (avail > 0) {
        const n = Math.min(avail, dst.length - filled);
        dst.set(this.#buf.subarray(this.#start, this.#start + n), filled);
        this.#start += n;
        filled += n;
        continue;
      }
      if (this.#eof) break;
      if (this.#source) {
        const want = dst.length - filled;
        if (want >= this.#bufferSize) {
          // Large remainder (a body): read straight into its final buffer, skipping our buffer.
          const n = await this.#source.read(dst.subarray(filled));
          if (n === null) this.#eof = true;
          else filled += n;
          this.#nearEndCheck(dst.length - filled + after, after);
          continue;
        }
        this.#buf = this.#own;
        this.#start = this.#end = 0;
        const n = await this.#source.read(this.#own);
        if (n === null) this.#eof = true;
        else {
          this.#end = n;
          // The next read (once these bytes are used) gets a buffer sized for the traffic.
          // Less than a TLS record's worth ends a burst: the read after it, which may wait
          // for minutes on a quiet connection, gets the small buffer again.
          if (n === this.#own.length && n < this.#bufferSize) {
            this.#own = new Uint8Array(this.#bufferSize);
          } else if (n < BURST_END && this.#own.length > this.#idleSize) {
            this.#own = new Uint8Array(this.#idleSize);
          }
        }
        this.#nearEndCheck(dst.length - filled - this.#end + after, after);
      } else {
        const { value, done } = await this.#stream!.read();
        if (done) {
          this.#eof = true;
        } else {
          this.#buf = value;
          this.#start = 0;
          this.#end = value.length;
        }
      }
    }
    return filled;
  }

  #nearEndCheck(missing: number, after: number): void {
    if (after >= 0 && missing > 0 && missing <= this.#nearEnd) this.#onNearEnd?.(missing);
  }
}
