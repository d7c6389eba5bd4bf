/**
 * A bidirectional RPC endpoint over one connection, built on the frame codec in `frame.ts`.
 *
 * Both sides of a connection are equal: either may send requests (answered by the other side's
 * `onRequest`) and one-way notices. Writes are serialized through one queue so frames never
 * interleave. A heartbeat notice keeps an otherwise quiet link alive and an idle timeout closes a
 * link whose peer has gone silent.
 *
 * @example
 * ```ts
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 4000 });
 * const peer = new Peer(conn, { onNotice: (m) => console.log(m.header) });
 * const res = await peer.request({ op: "stat", path: "a.txt" });
 * peer.close();
 * console.log(res.header, await peer.closed);
 * ```
 *
 * @module
 */

import type { BodyPool } from "./body_pool.ts";
import {
  type ByteReader,
  encodeFrameHead,
  type Frame,
  FrameReader,
  FrameType,
  type HeaderLimits,
  MAX_FRAME,
  writeAll,
} from "./frame.ts";

/** A request, response or notice as seen by application code. */
export interface Message {
  /** The JSON header. */
  header: Record<string, unknown>;
  /** The raw body; may be empty. */
  body: Uint8Array;
}

/** The other side answered a request with `header.error = { code, message }`. */
export class RemoteError extends Error {
  /** Machine-readable error code sent by the other side. */
  readonly code: string;
  /** Creates a remote error with the code and message the other side sent. */
  constructor(code: string, message: string) {
    super(message);
    this.name = "RemoteError";
    this.code = code;
  }
}

/** Thrown by an `onRequest` handler to answer with this code and message. */
export class ProtocolError extends Error {
  /** Machine-readable error code to send. */
  readonly code: string;
  /** Creates a protocol error to be sent as `{ error: { code, message } }`. */
  constructor(code: string, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

/** The connection ended before the operation could complete. */
export class ConnectionClosedError extends Error {
  /** Creates a connection-closed error, optionally with the reason the connection ended. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionClosedError";
  }
}

/** What a {@linkcode Peer} needs from its connection (`Deno.Conn` satisfies it). */
export interface PeerConn extends ByteReader {
  /** Writes some prefix of `p`; resolves how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the connection; must make pending reads settle. */
  close(): void;
}

/** Options for {@linkcode Peer}. */
export interface PeerOptions {
  /** Handles incoming requests; absent => every request is answered with code "unsupported". */
  onRequest?: (msg: Message) => Promise<Message> | Message;
  /**
   * Big bodies of received frames come from this pool; with it, a request's body is given back
   * once its `onRequest` handler has settled (handlers must not keep it beyond that), and a
   * response's body (if the pool made it) once it has been written completely.
   */
  bodyPool?: BodyPool;
  /** Receives incoming notices, except the internal heartbeat. */
  onNotice?: (msg: Message) => void;
  /** Largest frame accepted and sent; default {@linkcode MAX_FRAME}. */
  maxFrame?: number;
  /** At most this many `onRequest` calls run at once (default 64); reading pauses meanwhile. */
  maxIncomingInFlight?: number;
  /** Send a `{t:"ping"}` notice after this long without sending anything (default 15000; 0 = off). */
  heartbeatMs?: number;
  /** Close the connection after this long without receiving anything (default 45000; 0 = off). */
  idleTimeoutMs?: number;
  /**
   * After each frame received while nothing is being written, send a tiny `ping` notice (which
   * every peer ignores) so that the TCP acknowledgement leaves at once instead of being delayed.
   * For the side whose peer cannot disable Nagle's algorithm: Deno's TLS server connections
   * have no `setNoDelay`, so a server reply written while its previous one is unacknowledged
   * waits for the client's delayed ACK, about 40 ms on Linux (measured: 3 pipelined replies
   * 3 ms apart took 48 ms instead of 12). Default false.
   */
  ackEagerly?: boolean;
  /** Bounds on the headers of frames received (see `HeaderLimits`); can change later. */
  headerLimits?: HeaderLimits;
  /**
   * Close the connection when frames queued for sending but not yet written (replies, notices,
   * requests) would exceed this many bytes: the peer does not read. Default: no bound.
   */
  maxQueuedBytes?: number;
  /** Called each time a queued frame has been written (see {@link Peer.queuedBytes}). */
  onWritten?: () => void;
}

interface Pending {
  resolve: (msg: Message) => void;
  reject: (err: Error) => void;
}

const EMPTY = new Uint8Array(0);
const MAX_ID = 0xffff_ffff;
/** Bodies at least this large are written separately from the head instead of being copied. */
const SEPARATE_BODY_BYTES = 64 * 1024;
const PING = "ping";

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A bidirectional RPC endpoint over one connection. */
export class Peer {
  /**
   * Resolves (never rejects) once the connection has ended and the reader has stopped: null for a
   * clean close by either side, otherwise the error that ended it.
   */
  readonly closed: Promise<Error | null>;
  /** What the other side said it supports at `hello` (see `CAPABILITIES`); empty until then. */
  caps: ReadonlySet<string> = new Set();

  readonly #conn: PeerConn;
  readonly #onRequest: PeerOptions["onRequest"];
  readonly #pool: BodyPool | undefined;
  readonly #onNotice: PeerOptions["onNotice"];
  readonly #maxFrame: number;
  readonly #maxInFlight: number;
  readonly #heartbeatMs: number;
  readonly #idleTimeoutMs: number;
  readonly #reader: FrameReader;
  readonly #pending = new Map<number, Pending>();
  #resolveClosed!: (reason: Error | null) => void;
  #nextId = 1;
  #closing = false;
  #reason: Error | null = null;
  #writeChain: Promise<void> = Promise.resolve();
  /** Frames queued or being written. */
  #writing = 0;
  /** Bytes of the frames queued or being written (heads and bodies). */
  #queued = 0;
  /** When the write in progress started (0: none in progress). */
  #writeSince = 0;
  readonly #maxQueued: number;
  readonly #onWritten: (() => void) | undefined;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #ackEagerly: boolean;
  #inFlight = 0;
  #slotWaiter: (() => void) | null = null;
  #paused = false;
  #lastSent: number;
  #lastReceived: number;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Starts reading from `conn` immediately; the peer owns `conn` and closes it. */
  constructor(conn: PeerConn, opts: PeerOptions = {}) {
    this.#conn = conn;
    this.#onRequest = opts.onRequest;
    this.#pool = opts.bodyPool;
    this.#onNotice = opts.onNotice;
    this.#ackEagerly = opts.ackEagerly ?? false;
    this.#maxFrame = opts.maxFrame ?? MAX_FRAME;
    this.#maxInFlight = Math.max(1, opts.maxIncomingInFlight ?? 64);
    this.#heartbeatMs = opts.heartbeatMs ?? 15_000;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? 45_000;
    this.#maxQueued = opts.maxQueuedBytes ?? Infinity;
    this.#onWritten = opts.onWritten;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#lastSent = this.#lastReceived = performance.now();
    // Every raw read counts as activity, so a slow multi-megabyte frame does not look idle.
    const counting: ByteReader = {
      read: async (p) => {
        const n = await conn.read(p);
        if (n !== null && n > 0) this.#lastReceived = performance.now();
        return n;
      },
    };
    this.#reader = new FrameReader(counting, {
      maxFrame: this.#maxFrame,
      // The tail of a big frame can be held by the same Nagle wait (measured: 4.2 MB replies took
      // 50 ms instead of 5); pings sent while only the last 64 KiB are missing carry the ACK (at
      // most one per event loop turn, a few per big frame).
      ...(this.#ackEagerly ? { onNearEnd: () => this.#scheduleAck() } : {}),
      ...(opts.headerLimits ? { headerLimits: opts.headerLimits } : {}),
      ...(opts.bodyPool ? { takeBody: (len: number) => opts.bodyPool!.take(len) } : {}),
    });
    this.#armTimer();
    void this.#readLoop();
  }

  /**
   * Sends a request and resolves with the response.
   *
   * @throws {RemoteError} if the response carries `header.error`.
   * @throws {ConnectionClosedError} if the connection ends before the response arrives.
   * @throws {FrameError} if the request cannot be encoded (e.g. too large).
   */
  request(header: Record<string, unknown>, body: Uint8Array = EMPTY): Promise<Message> {
    if (this.#closing) return Promise.reject(this.#closedError("send request"));
    const id = this.#allocateId();
    let head: Uint8Array;
    try {
      head = encodeFrameHead({ type: FrameType.Request, id, header, body }, this.#maxFrame);
    } catch (err) {
      return Promise.reject(err);
    }
    const result = new Promise<Message>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
    });
    // A write failure closes the connection, which rejects the pending entry.
    this.#enqueue(head, body).catch(() => {});
    return result;
  }

  /**
   * Sends a one-way notice; resolves once it has been written.
   *
   * @throws {ConnectionClosedError} if the connection is closed or fails while writing.
   * @throws {FrameError} if the notice cannot be encoded (e.g. too large).
   */
  async notify(header: Record<string, unknown>, body: Uint8Array = EMPTY): Promise<void> {
    if (this.#closing) throw this.#closedError("send notice");
    const head = encodeFrameHead({ type: FrameType.Notice, id: 0, header, body }, this.#maxFrame);
    await this.#enqueue(head, body);
  }

  /**
   * Sends a notice already encoded as a whole frame (see `encodeFrame`): a notice for many
   * connections is encoded once and the same bytes are queued on each.
   *
   * @throws {ConnectionClosedError} if the connection is closed or fails while writing.
   */
  async notifyEncoded(frame: Uint8Array): Promise<void> {
    if (this.#closing) throw this.#closedError("send notice");
    await this.#enqueue(frame, EMPTY);
  }

  /** Bytes queued for sending and not yet written. */
  get queuedBytes(): number {
    return this.#queued;
  }

  /** Frames queued for sending and not yet written. */
  get queuedFrames(): number {
    return this.#writing;
  }

  /**
   * Milliseconds the write in progress has been waiting at `now` (`performance.now()`), 0 when
   * nothing is being written: a peer that does not read makes it grow without end.
   */
  writeStalledFor(now: number): number {
    return this.#writeSince === 0 ? 0 : Math.max(0, now - this.#writeSince);
  }

  /** Changes the bounds on the headers of the frames received from now on. */
  setHeaderLimits(limits: HeaderLimits): void {
    this.#reader.setHeaderLimits(limits);
  }

  /** Closes the connection (idempotent): rejects pending requests and clears all timers. */
  close(): void {
    this.#shutdown(null);
  }

  #closedError(action: string): ConnectionClosedError {
    const why = this.#reason ? ` (${this.#reason.message})` : "";
    return new ConnectionClosedError(
      `Cannot ${action}: connection closed${why}`,
      this.#reason ? { cause: this.#reason } : undefined,
    );
  }

  #allocateId(): number {
    for (;;) {
      const id = this.#nextId;
      this.#nextId = id >= MAX_ID ? 1 : id + 1;
      if (!this.#pending.has(id)) return id;
    }
  }

  /** Queues one frame (head + body) behind every earlier write so frames never interleave. */
  #enqueue(head: Uint8Array, body: Uint8Array): Promise<void> {
    const bytes = head.length + body.length;
    if (this.#queued + bytes > this.#maxQueued && this.#writing > 0) {
      const err = new Error(
        `Cannot send: the peer does not read (${
          this.#queued + bytes
        } bytes queued, at most ${this.#maxQueued})`,
      );
      this.#shutdown(err);
      return Promise.reject(this.#closedError("write frame"));
    }
    this.#writing++;
    this.#queued += bytes;
    const run = this.#writeChain.then(async () => {
      if (this.#closing) throw this.#closedError("write frame");
      const writer = {
        write: async (p: Uint8Array) => {
          this.#writeSince = performance.now();
          const n = await this.#conn.write(p);
          this.#writeSince = 0;
          this.#lastSent = performance.now();
          return n;
        },
      };
      if (body.length >= SEPARATE_BODY_BYTES) {
        await writeAll(writer, head);
        await writeAll(writer, body);
      } else if (body.length > 0) {
        const whole = new Uint8Array(head.length + body.length);
        whole.set(head, 0);
        whole.set(body, head.length);
        await writeAll(writer, whole);
      } else {
        await writeAll(writer, head);
      }
    });
    this.#writeChain = run.then(() => {}, () => {}).finally(() => {
      this.#writing--;
      this.#queued -= bytes;
      this.#onWritten?.();
    });
    return run.catch((err) => {
      if (err instanceof ConnectionClosedError) throw err;
      const wasOpen = !this.#closing;
      this.#shutdown(toError(err));
      if (!wasOpen) throw this.#closedError("write frame");
      throw new ConnectionClosedError(`Cannot write frame: ${toError(err).message}`, {
        cause: err,
      });
    });
  }

  async #readLoop(): Promise<void> {
    let reason: Error | null = null;
    try {
      while (!this.#closing) {
        if (this.#inFlight >= this.#maxInFlight) {
          // Backpressure: stop reading until a handler finishes. Not the peer's fault, so the
          // idle clock does not run meanwhile.
          this.#paused = true;
          await new Promise<void>((resolve) => this.#slotWaiter = resolve);
          this.#paused = false;
          this.#lastReceived = performance.now();
          continue;
        }
        const frame = await this.#reader.next();
        if (frame === null) break;
        this.#dispatch(frame);
        if (this.#ackEagerly && !(frame.type === FrameType.Notice && frame.header.t === PING)) {
          this.#scheduleAck();
        }
      }
    } catch (err) {
      reason = toError(err);
    }
    this.#shutdown(reason); // no-op if already closing: the first reason wins
    await this.#writeChain;
    this.#resolveClosed(this.#reason);
  }

  #dispatch(frame: Frame): void {
    const msg: Message = { header: frame.header, body: frame.body };
    switch (frame.type) {
      case FrameType.Response: {
        const pending = this.#pending.get(frame.id);
        if (!pending) return; // unknown id: nothing waits for it
        this.#pending.delete(frame.id);
        const error = frame.header.error;
        if (error !== undefined && error !== null) {
          const e = typeof error === "object" ? error as Record<string, unknown> : {};
          const code = typeof e.code === "string" ? e.code : "unknown";
          const message = typeof e.message === "string" ? e.message : String(error);
          pending.reject(new RemoteError(code, message));
        } else {
          pending.resolve(msg);
        }
        return;
      }
      case FrameType.Request:
        this.#inFlight++;
        void this.#handle(frame.id, msg);
        return;
      case FrameType.Notice:
        if (frame.header.t === PING) return;
        try {
          this.#onNotice?.(msg);
        } catch {
          // A faulty notice handler must not take the connection down.
        }
        return;
    }
  }

  /**
   * Gives back the body of a response this peer received (from its {@link BodyPool}) once the
   * caller provably holds no view of it any more; anything else is ignored. Never call it for a
   * body still in use: its bytes would be overwritten by the next frame.
   */
  release(body: Uint8Array): void {
    this.#pool?.give(body);
  }

  async #handle(id: number, msg: Message): Promise<void> {
    let response: Message;
    try {
      if (!this.#onRequest) {
        throw new ProtocolError("unsupported", "Cannot handle request: no request handler");
      }
      response = await this.#onRequest(msg);
    } catch (err) {
      response = errorResponse(err);
    }
    // The handler has settled: nothing uses the request's body any more.
    this.#pool?.give(msg.body);
    try {
      if (this.#closing) return;
      let head: Uint8Array;
      try {
        head = encodeFrameHead(
          { type: FrameType.Response, id, header: response.header, body: response.body },
          this.#maxFrame,
        );
      } catch (err) {
        response = errorResponse(err);
        head = encodeFrameHead(
          { type: FrameType.Response, id, header: response.header, body: EMPTY },
          this.#maxFrame,
        );
      }
      const written = await this.#enqueue(head, response.body).then(() => true, () => false);
      // Only a body written completely is reused: a write cut short may still hold it.
      if (written) this.#pool?.give(response.body);
    } finally {
      this.#inFlight--;
      const waiter = this.#slotWaiter;
      this.#slotWaiter = null;
      waiter?.();
    }
  }

  #armTimer(): void {
    if (this.#closing) return;
    const now = performance.now();
    let due = Infinity;
    if (this.#heartbeatMs > 0) due = Math.min(due, this.#lastSent + this.#heartbeatMs);
    if (this.#idleTimeoutMs > 0) {
      const base = this.#paused ? now : this.#lastReceived;
      due = Math.min(due, base + this.#idleTimeoutMs);
    }
    if (due === Infinity) return;
    this.#timer = setTimeout(() => this.#onTimer(), Math.max(0, due - now));
  }

  /**
   * Once the code woken by the frames just received has had its turn (it usually sends the next
   * request, which carries the acknowledgement), sends a ping if nothing is being written.
   */
  #scheduleAck(): void {
    if (this.#ackTimer !== undefined) return;
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = undefined;
      if (this.#closing || this.#writing > 0) return;
      this.notify({ t: PING }).catch(() => {});
    }, 0);
  }

  #onTimer(): void {
    this.#timer = undefined;
    if (this.#closing) return;
    const now = performance.now();
    if (
      this.#idleTimeoutMs > 0 && !this.#paused && now - this.#lastReceived >= this.#idleTimeoutMs
    ) {
      this.#shutdown(
        new Error(
          `Cannot keep connection: no data from peer for ${this.#idleTimeoutMs / 1000} s`,
        ),
      );
      return;
    }
    if (this.#heartbeatMs > 0 && now - this.#lastSent >= this.#heartbeatMs) {
      this.#lastSent = now; // one ping per period even if the write queue is busy
      this.notify({ t: PING }).catch(() => {});
    }
    this.#armTimer();
  }

  #shutdown(reason: Error | null): void {
    if (this.#closing) return;
    this.#closing = true;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#reason = reason;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const err = this.#closedError("complete request");
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    const waiter = this.#slotWaiter;
    this.#slotWaiter = null;
    waiter?.();
    try {
      this.#conn.close();
    } catch {
      // Already closed (BadResource): nothing to do.
    }
  }
}

function errorResponse(err: unknown): Message {
  const code = err instanceof ProtocolError ? err.code : "internal";
  const message = toError(err).message;
  return { header: { error: { code, message } }, body: EMPTY };
}
