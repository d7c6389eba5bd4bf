/**
 * One client connection on the server: the handshake, registration, enrollment and
 * authentication, then the account-scoped requests (changes, have, put, get, commit, watch;
 * history, listAt and restore in `history_requests.ts`).
 * Every request is checked against the authenticated account; nothing here can reach another
 * account's data.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import type { Message, Peer } from "../protocol/peer.ts";
import { ProtocolError } from "../protocol/peer.ts";
import {
  bad,
  bool,
  CAPABILITIES,
  chunkList,
  chunkListProblem,
  deviceName,
  hash,
  hashList,
  int,
  kind,
  MAX_BATCH,
  MAX_BATCH_BYTES,
  MAX_CHANGES,
  MAX_COMMIT,
  MAX_HAVE,
  maxChunksFor,
  modeFields,
  obj,
  PROGRAM_VERSION,
  PROTOCOL_VERSION,
  readCapabilities,
  str,
} from "../protocol/messages.ts";
import { decompressChunk } from "../chunk/compress.ts";
import type { BlobStore, CommitItem, CommitResult, MetaStore } from "./stores.ts";
import { encodeFrame, FrameType } from "../protocol/frame.ts";
import type { Incoming } from "./incoming.ts";
import { type ChunkClaim, ChunkVerifier } from "./chunk_check.ts";
import type { BodyPool } from "../protocol/body_pool.ts";
import { escapeForLog } from "../util/log_text.ts";
import { historyRequest, listAtRequest, restoreRequest } from "./history_requests.ts";
import { newSerial, normalizeSerial, randomToken } from "../util/crockford.ts";
import { checkWirePath } from "../core/paths.ts";
import {
  type AccountBudgets,
  addressGroup,
  type ConnGuard,
  DEFAULT_LIMITS,
  describeWait,
  type LogLimiter,
  type QuotaTracker,
  type ServerLimits,
  throttledError,
} from "./limits.ts";
import type { RegistrationLimiter, SignInLimiter } from "./shared_limits.ts";
import type { Cluster } from "./cluster.ts";

/** SHA-256 hex of a secret; only these hashes are stored. */
export function secretHash(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

function sameSecret(aHex: string, bHex: string): boolean {
  const a = new TextEncoder().encode(aHex);
  const b = new TextEncoder().encode(bHex);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** True for "no space left" from the filesystem or SQLite. */
export function isDiskFull(e: unknown): boolean {
  const m = e instanceof Error ? `${e.message} ${(e as { code?: unknown }).code ?? ""}` : String(e);
  return /ENOSPC|os error 28|No space left|database or disk is full|SQLITE_FULL/i.test(m);
}

/** Most withdrawn hashes one connection relays to the other instances at a time. */
const RELAYED_WITHDRAWALS = 2000;

/** Longest a `get`/`getMany` with `wait: true` waits for one announced chunk. */
export const WAIT_FOR_CHUNK_MS = 60_000;
/**
 * While waiting for an announced chunk, the chunk index is read again this often: the chunk may
 * arrive through another instance whose notice of it was lost.
 */
export const RECHECK_ANNOUNCED_MS = 1_000;

/** A watcher with this many bytes queued for sending gets no more advisory notices. */
export const HINT_SKIP_BYTES = 1024 * 1024;

/**
 * Who watches which account on this instance, to push change notices at once, and the highest
 * sequence number each watched account's devices were told (what a poll for changes made on
 * other instances compares with, see `cluster.ts`).
 */
export class Hub {
  readonly #watchers = new Map<string, Set<Peer>>();
  readonly #seq = new Map<string, number>();
  /** Watchers with a `changed` notice queued and not yet written (one is enough). */
  readonly #changedQueued = new WeakSet<Peer>();

  /** `peer` watches `account`, whose journal it knows up to `seq`. */
  add(account: string, peer: Peer, seq = 0): void {
    let set = this.#watchers.get(account);
    if (!set) this.#watchers.set(account, set = new Set());
    set.add(peer);
    this.#seq.set(account, Math.max(this.#seq.get(account) ?? 0, seq));
  }

  remove(account: string, peer: Peer): void {
    const set = this.#watchers.get(account);
    set?.delete(peer);
    if (set?.size === 0) {
      this.#watchers.delete(account);
      this.#seq.delete(account);
    }
  }

  /** The accounts watched here and the last sequence number their devices were told (live). */
  watched(): ReadonlyMap<string, number> {
    return this.#seq;
  }

  /**
   * Sends an advisory notice (`incoming`: a hint to prefetch, never needed for correctness) to
   * every watcher of `account` but `except`: encoded once, the same bytes queued on every
   * connection, and skipped for a connection that has more than {@link HINT_SKIP_BYTES} queued
   * already (a slow reader loses hints, not its connection; one that does not read at all holds
   * at most that much and is dropped when its writes stall).
   */
  send(account: string, header: Record<string, unknown>, except: Peer | null): void {
    const set = this.#watchers.get(account);
    if (!set || set.size === 0 || (set.size === 1 && set.has(except!))) return;
    let frame: Uint8Array | null = null;
    for (const peer of set) {
      if (peer === except || peer.queuedBytes > HINT_SKIP_BYTES) continue;
      frame ??= encodeFrame({ type: FrameType.Notice, id: 0, header, body: EMPTY });
      peer.notifyEncoded(frame).catch(() => {});
    }
  }

  /**
   * Tells every watcher of `account` but `except` that the journal reached `seq`; a watcher
   * that has such a notice still queued gets no second one (it pulls everything anyway).
   */
  notify(account: string, seq: number, except: Peer | null): void {
    const set = this.#watchers.get(account);
    if (!set) return;
    if (seq > (this.#seq.get(account) ?? 0)) this.#seq.set(account, seq);
    let frame: Uint8Array | null = null;
    for (const peer of set) {
      if (peer === except || this.#changedQueued.has(peer)) continue;
      frame ??= encodeFrame({
        type: FrameType.Notice,
        id: 0,
        header: { t: "changed", seq },
        body: EMPTY,
      });
      this.#changedQueued.add(peer);
      peer.notifyEncoded(frame).catch(() => {}).finally(() => this.#changedQueued.delete(peer));
    }
  }
}

/** Shared parts every session uses. */
export interface ServerContext {
  meta: MetaStore;
  blobs: BlobStore;
  hub: Hub;
  /** Uploads in progress that other devices may stream (optional: absent, nothing waits). */
  incoming?: Incoming;
  log: (line: string) => void;
  /**
   * Failed `auth`/`enroll` attempts per address group and per (account, device): in memory
   * (`SignInThrottle`), or shared by the instances of a deployment (`shared_limits.ts`).
   */
  signIn: SignInLimiter;
  /** New accounts (`register`) per address group (in memory, or shared like `signIn`). */
  registrations: RegistrationLimiter;
  /** New accounts server-wide (key `*`; in memory, or shared). */
  registrationsGlobal?: RegistrationLimiter;
  /** Failed enrollments server-wide (key `*`; in memory, or shared). */
  failedEnrollGlobal?: RegistrationLimiter;
  /** The other instances of the deployment (push, announced uploads); null: there are none. */
  cluster?: Cluster | null;
  /** The limits in force (defaults when absent). */
  limits?: ServerLimits;
  /** What the connections of each account hold together. */
  budgets?: AccountBudgets;
  /** Bounded, fair checking of uploaded chunks. */
  verifier?: ChunkVerifier;
  /**
   * Reused buffers for big bodies (uploads received, `getMany` replies); the connections' peers
   * give them back (see {@link BodyPool}). Absent: fresh buffers.
   */
  bodies?: BodyPool;
  /** Per-account stored-bytes quota; null: none. */
  quota: QuotaTracker | null;
  /** Keeps lines about refused attempts from flooding the log. */
  logLimit: LogLimiter;
}

/** Requests allowed only before signing in. */
const SIGN_IN = new Set(["register", "enroll", "auth", "checkSerial"]);

const EMPTY = new Uint8Array(0);

/**
 * Removes every field of a request's header once its handler has read what it needs (the
 * synchronous part of every handler), so a request that then waits (for an announced chunk, for
 * the disk) holds its few parsed values, never the whole JSON it came with.
 */
function dropHeader(h: Record<string, unknown>): void {
  for (const k of Object.keys(h)) delete h[k];
}

/** Bytes a journal row costs (as counted by the quota): path, chunk list, the fixed columns. */
export function rowBytes(path: string, chunks: number): number {
  return path.length * 3 + chunks * 90 + 200;
}

/** Most bytes of entries in one `changes` reply (more follow with `more: true`). */
const MAX_CHANGES_BYTES = 2 * 1024 * 1024;

function reply(header: Record<string, unknown>, body: Uint8Array = EMPTY): Message {
  return { header, body };
}

/** The state and request handler of one connection. */
export class Session {
  #account: string | null = null;
  #device: { id: string; name: string } | null = null;
  #hello = false;
  /** Whether the client reads zstd-compressed chunks (its `hello` lists `zstd`). */
  #zstd = true;
  #revoked = false;
  #peer: Peer | null = null;
  readonly #ctx: ServerContext;
  readonly #remote: string;
  readonly #ip: string;
  readonly #guard: ConnGuard | null;
  readonly #onSignIn: ((account: string) => void) | null;
  readonly #limits: ServerLimits;
  /** Requests of this connection waiting for announced chunks. */
  #waiting = 0;

  /**
   * `addr`: where the connection comes from; `guard`: its byte budget (see limits.ts);
   * `onSignIn`: called once the connection signed in (the server raises its header limits).
   */
  constructor(
    ctx: ServerContext,
    addr: { hostname: string; port: number },
    guard: ConnGuard | null = null,
    onSignIn: ((account: string) => void) | null = null,
  ) {
    this.#ctx = ctx;
    this.#ip = addr.hostname;
    this.#remote = `${addr.hostname}:${addr.port}`;
    this.#guard = guard;
    this.#onSignIn = onSignIn;
    this.#limits = ctx.limits ?? DEFAULT_LIMITS;
  }

  /** True once `register`, `enroll` or `auth` succeeded. */
  get signedIn(): boolean {
    return this.#account !== null;
  }

  /** The signed-in device (id, name) and account, if any. */
  get device(): { id: string; name: string; account: string } | null {
    return this.#device && this.#account ? { ...this.#device, account: this.#account } : null;
  }

  /** The signed-in device's id, if any. */
  get deviceId(): string | null {
    return this.#device?.id ?? null;
  }

  /**
   * True if the signed-in device has been revoked (checked now, one indexed lookup); the server
   * then closes the connection.
   */
  async checkRevoked(): Promise<boolean> {
    if (!this.#revoked && this.#device && await this.#ctx.meta.deviceRevoked(this.#device.id)) {
      this.revoked();
    }
    return this.#revoked;
  }

  /** The device was found revoked (by the server's watchdog): say so once; requests now fail. */
  revoked(): void {
    if (this.#revoked || !this.#device) return;
    this.#revoked = true;
    this.#ctx.log(
      `Closing the connection of revoked device ${this.#device.id} (account ${this.#account}) from ${this.#remote}`,
    );
  }

  /** Binds the session to its peer (needed to register for push notices). */
  attach(peer: Peer): void {
    this.#peer = peer;
  }

  /** Forgets the session's watches once the connection ended. */
  detach(): void {
    if (this.#account && this.#peer) this.#ctx.hub.remove(this.#account, this.#peer);
    // Uploads this connection announced will not come now: nobody waits for them any longer.
    if (this.#account) this.#withdrawAll(this.#account);
  }

  /** Withdraws this connection's announcements here and on the other instances. */
  #withdrawAll(account: string): void {
    const gone = this.#ctx.incoming?.withdraw(account, this) ?? [];
    if (gone.length > 0 && this.#ctx.cluster) {
      // At most RELAYED_WITHDRAWALS hashes (20 notifications): an account announcing and
      // withdrawing huge chunk lists in a loop cannot flood the channel; waits for the rest end
      // at the announcement's expiry, as when the channel is down.
      this.#ctx.cluster.withdrawn(account, gone.slice(0, RELAYED_WITHDRAWALS)).catch(() => {
        // The channel is down: their waits end at the announcement's expiry instead.
      });
    }
  }

  #requireAccount(): string {
    if (!this.#account) {
      throw new ProtocolError("unauthenticated", "Cannot serve request: authenticate first");
    }
    return this.#account;
  }

  /**
   * Makes this connection signed in to `account`, or refuses when the account already has as
   * many connections as allowed.
   */
  #signInAs(account: string, device: { id: string; name: string }): void {
    const budget = this.#ctx.budgets?.of(account);
    if (budget && budget.connections >= this.#limits.maxConnectionsPerAccount) {
      this.#ctx.budgets!.release(account);
      throw new ProtocolError(
        "throttled",
        `Cannot sign in: ${this.#limits.maxConnectionsPerAccount} connections of this account are open; close some, then try again later`,
      );
    }
    this.#account = account;
    this.#device = device;
    this.#onSignIn?.(account);
  }

  async #enrollDevice(
    account: string,
    name: string,
  ): Promise<{ deviceId: string; token: string }> {
    const token = randomToken(32);
    const deviceId = await this.#ctx.meta.addDevice(account, name, secretHash(token));
    this.#signInAs(account, { id: deviceId, name });
    return { deviceId, token };
  }

  /** Handles one request; throws ProtocolError for anything the client got wrong. */
  handle = async (msg: Message): Promise<Message> => {
    const bytes = msg.body.length;
    this.#guard?.requestStarted(bytes);
    try {
      return await this.#handle(msg);
    } catch (e) {
      if (isDiskFull(e)) {
        this.#ctx.log(`Cannot store data for ${this.#remote}: the disk is full`);
        throw new ProtocolError(
          "disk-full",
          "Cannot store: the server's disk is full; free space on the server (sync resumes by itself)",
        );
      }
      throw e;
    } finally {
      this.#guard?.requestEnded(bytes);
    }
  };

  #handle = async (msg: Message): Promise<Message> => {
    const h = msg.header;
    const t = str(h, "t", 32);
    if (t === "hello") {
      const protocol = int(h, "protocol");
      if (protocol !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          "unsupported-protocol",
          `Cannot talk to this client: it speaks protocol ${protocol}, the server ${PROTOCOL_VERSION}; upgrade the older side`,
        );
      }
      this.#hello = true;
      this.#zstd = readCapabilities(h.caps).has("zstd");
      return reply({ protocol: PROTOCOL_VERSION, program: PROGRAM_VERSION, caps: CAPABILITIES });
    }
    if (!this.#hello) {
      throw new ProtocolError("bad-request", "Cannot serve request: send hello first");
    }
    if (this.#account !== null) {
      if (SIGN_IN.has(t)) {
        throw new ProtocolError("bad-request", "Cannot sign in: this connection is signed in");
      }
      if (await this.checkRevoked()) {
        throw new ProtocolError(
          "revoked",
          "Cannot sync: this device was revoked; join again with the account's serial code",
        );
      }
    }
    // Every handler reads the fields it needs before its first await: from then on the
    // header's parsed JSON is garbage, even while the request waits (for an announced chunk,
    // the disk, the database).
    const answer = this.#dispatch(t, h, msg.body);
    dropHeader(h);
    return await answer;
  };

  #dispatch(t: string, h: Record<string, unknown>, body: Uint8Array): Promise<Message> | Message {
    switch (t) {
      case "register":
        return this.#register(h);
      case "enroll":
        return this.#enroll(h);
      case "auth":
        return this.#auth(h);
      case "checkSerial":
        return this.#checkSerial(h);
      case "setDeviceName":
        return this.#setDeviceName(h);
      case "changes":
        return this.#changes(h);
      case "have":
        return this.#have(h);
      case "put":
        return this.#put(h, body);
      case "get":
        return this.#get(h);
      case "putMany":
        return this.#putMany(h, body);
      case "getMany":
        return this.#getMany(h);
      case "announce":
        return this.#announce(h);
      case "withdraw":
        return this.#withdraw();
      case "commit":
        return this.#commit(h);
      case "watch":
        return this.#watch();
      case "history":
        return historyRequest(this.#ctx.meta, this.#requireAccount(), h).then(reply);
      case "listAt":
        return listAtRequest(this.#ctx.meta, this.#requireAccount(), h).then(reply);
      case "restore":
        return this.#restore(h);
      default:
        throw new ProtocolError(
          "unsupported",
          `Cannot serve request: unknown type ${JSON.stringify(t)}`,
        );
    }
  }

  /**
   * Refuses the attempt if the address group is locked out after failures: unchecked for an
   * enrollment (`checked` false), as a failure not counted for a sign-in.
   */
  async #checkThrottle(what: string, checked = false): Promise<void> {
    const ms = await this.#ctx.signIn.lockedFor(this.#ip);
    if (ms <= 0) return;
    if (this.#ctx.logLimit.allow(`throttled ${addressGroup(this.#ip)}`)) {
      this.#ctx.log(
        `Refused ${what} from ${this.#remote}${
          checked ? "" : " without checking"
        }: too many failed attempts from ${addressGroup(this.#ip)} (locked for ${
          describeWait(ms)
        })`,
      );
    }
    throw throttledError(ms);
  }

  /**
   * Counts a failed attempt and logs it (and the lockout it starts, if any). `guess`: a wrong
   * serial or credential (counts for the address group); else only the device key counts.
   */
  async #failed(
    what: string,
    device: { account: string; id: string } | null,
    guess = true,
  ): Promise<number> {
    const r = await this.#ctx.signIn.failed(this.#ip, device, guess);
    const group = addressGroup(this.#ip);
    if (this.#ctx.logLimit.allow(`failed ${group}`) || r.ipLockout || r.deviceLockout) {
      this.#ctx.log(
        `Refused ${what} from ${this.#remote} (${r.ipFailures} recent failures from ${group}${
          device ? `, ${r.deviceFailures} for this device` : ""
        })`,
      );
    }
    if (r.ipLockout) {
      this.#ctx.log(`Throttling sign-in from ${group} for ${describeWait(r.ipLockout)}`);
    }
    if (r.deviceLockout && device) {
      this.#ctx.log(
        `Throttling sign-in of device ${escapeForLog(device.id)} of account ${
          escapeForLog(device.account)
        } for ${describeWait(r.deviceLockout)}`,
      );
    }
    return device ? await this.#ctx.signIn.deviceLockedFor(device.account, device.id) : 0;
  }

  /** Takes a token of the per-group and the server-wide registration budgets, or throws. */
  async #takeRegistration(): Promise<void> {
    const group = addressGroup(this.#ip);
    const wait = await this.#ctx.registrations.take(group);
    const global = wait > 0 ? 0 : await this.#ctx.registrationsGlobal?.take("*") ?? 0;
    if (wait > 0 || global > 0) {
      if (this.#ctx.logLimit.allow(`register ${wait > 0 ? group : "*"}`)) {
        this.#ctx.log(
          `Refused a new account from ${this.#remote}: too many new accounts ${
            wait > 0 ? `from ${group}` : "on this server"
          }`,
        );
      }
      throw throttledError(
        Math.max(wait, global),
        wait > 0
          ? "too many new accounts from this address"
          : "too many new accounts on this server",
      );
    }
  }

  /** Creates an account and its first device (this connection); returns the reply. */
  async #newAccount(name: string, how: string): Promise<Message> {
    const serial = newSerial();
    const account = await this.#ctx.meta.createAccount(secretHash(normalizeSerial(serial)!));
    const { deviceId, token } = await this.#enrollDevice(account, name);
    this.#ctx.log(
      `New account ${account} registered by device "${
        escapeForLog(name)
      }" from ${this.#remote}${how}`,
    );
    return reply({ account, deviceId, token, serial, seq: 0 });
  }

  async #register(h: Record<string, unknown>): Promise<Message> {
    const name = deviceName(h, "device");
    if (this.#limits.registration === "closed") {
      throw new ProtocolError(
        "registration-closed",
        "Cannot register: this server does not accept new accounts; ask its admin for an invite code (`cloud-server invite`) and give it in place of the serial code",
      );
    }
    await this.#takeRegistration();
    return await this.#newAccount(name, "");
  }

  /**
   * The account of the request's serial code; unknown ones count as failed attempts (of the
   * address group, and of the server-wide budget: once it is spent, nothing is checked until it
   * refills). With `invites`, an unused invite code (`cloud-server invite`) is used up instead
   * and null returned: the caller makes a new account.
   */
  async #serialAccount(
    h: Record<string, unknown>,
    what: string,
    invites = false,
  ): Promise<string | null> {
    const serial = normalizeSerial(str(h, "serial", 200));
    await this.#checkThrottle(what);
    const global = this.#ctx.failedEnrollGlobal;
    const globalWait = global ? await global.peek("*") : 0;
    if (globalWait > 0) {
      if (this.#ctx.logLimit.allow("enroll *")) {
        this.#ctx.log(
          `Refused ${what} from ${this.#remote} without checking: too many failed enrollments on this server`,
        );
      }
      throw throttledError(globalWait, "too many failed attempts on this server");
    }
    const hashed = serial ? secretHash(serial) : null;
    const account = hashed ? await this.#ctx.meta.accountBySerialHash(hashed) : null;
    if (!account) {
      if (invites && hashed && await this.#ctx.meta.useInvite(hashed)) return null;
      await global?.take("*");
      await this.#failed(`${what} (unknown serial code)`, null);
      throw new ProtocolError(
        "bad-serial",
        "Cannot join account: this serial code is not known to the server; check it, or print a new one on the server with `cloud-server reset-serial ACCOUNT`",
      );
    }
    return account;
  }

  async #enroll(h: Record<string, unknown>): Promise<Message> {
    const name = deviceName(h, "device");
    const account = await this.#serialAccount(h, "enrollment", true);
    // An invite code makes a new account, even on a closed server.
    if (account === null) return this.#newAccount(name, " with an invite code");
    const { deviceId, token } = await this.#enrollDevice(account, name);
    this.#ctx.log(
      `Device "${escapeForLog(name)}" joined account ${account} from ${this.#remote}`,
    );
    return reply({ account, deviceId, token, seq: await this.#ctx.meta.seq(account) });
  }

  /**
   * Whether a serial code is the given account's, before signing in (an enrolled device given a
   * serial code). Throttled and counted like `enroll`; tells the serial's holder nothing an
   * enrollment would not.
   */
  async #checkSerial(h: Record<string, unknown>): Promise<Message> {
    const claimed = str(h, "account", 64);
    const account = await this.#serialAccount(h, "serial check");
    return reply({ sameAccount: account !== null && account === claimed });
  }

  /** Renames the signed-in device (`cloud-client --name` on an enrolled folder). */
  async #setDeviceName(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const name = deviceName(h, "device");
    const device = this.#device!;
    if (name !== device.name) {
      await this.#ctx.meta.renameDevice(account, device.id, name);
      this.#ctx.log(
        `Device ${device.id} of account ${account} renamed from "${
          escapeForLog(device.name)
        }" to "${escapeForLog(name)}"`,
      );
      device.name = name;
    }
    return reply({});
  }

  async #auth(h: Record<string, unknown>): Promise<Message> {
    const account = str(h, "account", 64);
    const deviceId = str(h, "deviceId", 64);
    const token = str(h, "token", 200);
    const shown = `authentication of device ${JSON.stringify(escapeForLog(deviceId, 64))}`;
    const d = await this.#ctx.meta.device(deviceId);
    const mine = d !== null && d.account === account;
    const ok = mine && sameSecret(d.tokenHash, secretHash(token));
    if (ok && !d.revoked) {
      // A valid credential signs in even while its address group or its device key is locked:
      // somebody else's failures (a revoked laptop, a stranger behind the same NAT or in the same
      // /24) never shut a good device out. Checking costs one lookup and one hash, and nobody
      // guesses a 256-bit credential, locked or not.
      this.#signInAs(account, { id: d.id, name: d.name });
      await this.#ctx.meta.touchDevice(d.id);
      return reply({ seq: await this.#ctx.meta.seq(account), device: d.name });
    }
    // A failure while the address group is locked is answered so without counting it.
    await this.#checkThrottle(shown, true);
    // Unknown devices of one account share one key, so guessing ids does not spread the count.
    const key = { account: escapeForLog(account, 64), id: mine ? deviceId : "?" };
    const locked = await this.#failed(
      `${shown}${ok ? " (revoked)" : " (unknown device or wrong credential)"}`,
      await this.#ctx.meta.hasAccount(account) ? key : null,
      !ok, // a revoked device presenting its own credential is not guessing
    );
    if (locked > 0 && !ok) throw throttledError(locked);
    throw new ProtocolError(
      ok ? "revoked" : "bad-credentials",
      ok
        ? "Cannot sign in: this device was revoked; join again with the account's serial code"
        : "Cannot sign in: the server does not know this device; join again with the account's serial code",
    );
  }

  async #changes(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const since = int(h, "since");
    const limit = Math.min(Math.max(1, int(h, "limit")), MAX_CHANGES);
    // The journal position is read BEFORE the entries: a commit landing between the two reads
    // (another connection's, while this one awaits) must not move the position past entries
    // this page does not hold; they would never reach this device.
    const before = await this.#ctx.meta.seq(account);
    const entries = await this.#ctx.meta.changes(account, since, limit);
    // A page is also bounded by its size (long chunk lists), so that it always fits in a frame.
    let bytes = 0;
    let keep = 0;
    while (keep < entries.length) {
      const e = entries[keep]!;
      bytes += rowBytes(e.path, e.chunks.length);
      if (keep > 0 && bytes > MAX_CHANGES_BYTES) break;
      keep++;
    }
    const cut = keep < entries.length;
    if (cut) entries.length = keep;
    const more = cut || entries.length === limit;
    const last = entries[entries.length - 1]?.version ?? 0;
    return reply({ entries, seq: more ? last : Math.max(before, last, since), more });
  }

  async #have(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    return reply({
      missing: await this.#ctx.meta.missingChunks(account, hashList(h, "hashes", MAX_HAVE)),
    });
  }

  async #put(h: Record<string, unknown>, body: Uint8Array): Promise<Message> {
    const account = this.#requireAccount();
    const claim = { hash: hash(h, "hash"), size: int(h, "size"), z: bool(h, "z") };
    await this.#verify(account, [{ ...claim, offset: 0, len: body.length }], body);
    const item = { hash: claim.hash, size: claim.size, stored: body.length, compressed: claim.z };
    const quota = this.#ctx.quota;
    const fresh = quota && (await this.#ctx.meta.chunk(account, item.hash)) === null
      ? body.length
      : 0;
    await quota?.reserve(account, fresh);
    try {
      await this.#ctx.blobs.put(account, item.hash, body);
      await this.#ctx.meta.addChunks(account, [item]);
      this.#storedAnnounced(account, [item.hash]);
    } catch (e) {
      this.#ctx.quota?.release(account, fresh);
      throw e;
    }
    return reply({});
  }

  /**
   * Checks every chunk against its name, within the per-request bounds and fairly between
   * accounts (see {@link ChunkVerifier}).
   */
  async #verify(account: string, claims: ChunkClaim[], body: Uint8Array): Promise<void> {
    const v = this.#ctx.verifier ?? (this.#ctx.verifier = new ChunkVerifier());
    const problem = await v.check(account, claims, body, this.#limits.maxPlainBytesPerRequest);
    if (problem) throw new ProtocolError(problem.code, problem.message);
  }

  async #putMany(h: Record<string, unknown>, body: Uint8Array): Promise<Message> {
    const account = this.#requireAccount();
    const list = h.chunks;
    if (!Array.isArray(list) || list.length > MAX_BATCH) bad("chunks");
    const claims: ChunkClaim[] = [];
    let off = 0;
    for (const v of list) {
      const o = obj(v, "chunks[]");
      const len = int(o, "len");
      if (off + len > body.length) bad("chunks", "describes more bytes than the body holds");
      claims.push({
        hash: hash(o, "hash"),
        size: int(o, "size"),
        z: bool(o, "z"),
        offset: off,
        len,
      });
      off += len;
    }
    if (off !== body.length) bad("chunks", "describes fewer bytes than the body holds");
    await this.#verify(account, claims, body);
    const items = claims.map((c) => ({
      hash: c.hash,
      size: c.size,
      stored: c.len,
      compressed: c.z,
      data: body.subarray(c.offset, c.offset + c.len),
    }));
    // All or nothing: the quota is checked for the whole batch before anything is stored.
    const quota = this.#ctx.quota;
    let fresh = 0;
    if (quota) {
      const known = await this.#ctx.meta.chunks(account, items.map((i) => i.hash));
      const seen = new Set<string>();
      items.forEach((i, k) => {
        if (seen.has(i.hash)) return;
        seen.add(i.hash);
        if (known[k] === null) fresh += i.stored;
      });
    }
    await quota?.reserve(account, fresh);
    try {
      await this.#ctx.blobs.putMany(account, items);
      await this.#ctx.meta.addChunks(account, items);
      this.#storedAnnounced(account, items.map((i) => i.hash));
    } catch (e) {
      this.#ctx.quota?.release(account, fresh);
      throw e;
    }
    return reply({});
  }

  /**
   * Chunks were stored and indexed: wakes the requests waiting for them here, and tells the other
   * instances of those that were announced (their devices may be streaming the upload).
   */
  #storedAnnounced(account: string, hashes: string[]): void {
    const incoming = this.#ctx.incoming;
    if (!incoming) return;
    const cluster = this.#ctx.cluster;
    const announced = cluster ? hashes.filter((h) => incoming.isAnnounced(account, h)) : [];
    incoming.stored(account, hashes);
    if (cluster && announced.length > 0) {
      cluster.stored(account, announced).catch((e) =>
        this.#ctx.log(`Cannot tell the other instances of stored chunks: ${(e as Error).message}`)
      );
    }
  }

  /**
   * With `wait`, chunks announced by an upload in progress are awaited (bounded in time, and in
   * number: past {@link ServerLimits.maxWaitingPerConnection} waiting requests on this
   * connection or {@link ServerLimits.maxWaitingPerAccount} on the account, a request does not
   * wait and answers at once, as without `wait`). The index is read again every
   * {@link RECHECK_ANNOUNCED_MS}: a chunk stored through another instance counts even if that
   * instance's notice never came.
   */
  async #awaitAnnounced(account: string, hashes: readonly string[], wait: boolean): Promise<void> {
    const incoming = this.#ctx.incoming;
    if (!wait || !incoming) return;
    const announced = hashes.filter((want) => incoming.isAnnounced(account, want));
    if (announced.length === 0) return;
    const budget = this.#ctx.budgets?.of(account);
    if (
      this.#waiting >= this.#limits.maxWaitingPerConnection ||
      (budget && budget.waiting >= this.#limits.maxWaitingPerAccount)
    ) return;
    this.#waiting++;
    if (budget) budget.waiting++;
    try {
      const known = await this.#ctx.meta.chunks(account, announced);
      for (const [k, want] of announced.entries()) {
        if (known[k]) continue;
        const until = performance.now() + WAIT_FOR_CHUNK_MS;
        while (incoming.isAnnounced(account, want)) {
          const left = until - performance.now();
          if (left <= 0) break;
          if (await incoming.waitFor(account, want, Math.min(left, RECHECK_ANNOUNCED_MS))) break;
          if (await this.#ctx.meta.chunk(account, want)) break;
        }
      }
    } finally {
      this.#waiting--;
      if (budget) budget.waiting--;
    }
  }

  /** The device will not upload (now) what it announced and has not stored. */
  #withdraw(): Message {
    this.#withdrawAll(this.#requireAccount());
    return reply({});
  }

  /** A device starts uploading a file: tell the account's other devices so they can stream it. */
  #announce(h: Record<string, unknown>): Message {
    const account = this.#requireAccount();
    const path = str(h, "path");
    const problem = checkWirePath(path);
    if (problem) throw new ProtocolError("bad-path", problem);
    const size = int(h, "size");
    if (Array.isArray(h.chunks) && h.chunks.length > maxChunksFor(size)) {
      bad("chunks", `holds too many chunks for ${size} bytes`);
    }
    const chunks = chunkList(h.chunks, "chunks");
    const problem2 = chunkListProblem(size, chunks);
    if (problem2) bad("chunks", problem2);
    const entry = {
      path,
      kind: "file",
      deleted: false,
      version: 0,
      size,
      mtime: int(h, "mtime"),
      ...modeFields(h),
      hash: hash(h, "hash"),
      chunks,
      device: this.#device!.name,
    };
    this.#ctx.incoming?.announce(account, chunks.map((c) => c.hash), Date.now(), this);
    this.#ctx.hub.send(account, { t: "incoming", entry }, this.#peer);
    this.#ctx.cluster?.announce(account, entry).catch((e) =>
      this.#ctx.log(`Cannot tell the other instances of an upload: ${(e as Error).message}`)
    );
    return reply({});
  }

  async #getMany(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const hashes = hashList(h, "hashes", MAX_BATCH);
    await this.#awaitAnnounced(account, hashes, h.wait === true);
    const notFound = () =>
      new ProtocolError("not-found", "Cannot send chunk: not stored for this account");
    const infos = (await this.#ctx.meta.chunks(account, hashes)).map((info) => {
      if (!info) throw notFound();
      return info;
    });
    const chunks = hashes.map((want, i) => ({
      hash: want,
      size: infos[i]!.size,
      z: infos[i]!.compressed,
      len: infos[i]!.stored,
    }));
    const total = chunks.reduce((n, c) => n + c.len, 0);
    const plainTotal = this.#zstd ? 0 : chunks.reduce((n, c) => n + c.size, 0);
    if (total > MAX_BATCH_BYTES || plainTotal > MAX_BATCH_BYTES) {
      throw new ProtocolError("bad-request", "Cannot send chunks: more than 6 MiB asked at once");
    }
    await this.#guard?.reserveReply(total);
    // The stored lengths are known: every chunk is read straight into its place in the reply.
    // Every byte is overwritten below (a read that does not fill its place throws), so a reused
    // buffer shows nothing of what it held before.
    const body = this.#ctx.bodies?.take(total) ?? new Uint8Array(total);
    try {
      let at = 0;
      const reads = chunks.map((c) => ({ hash: c.hash, into: body.subarray(at, at += c.len) }));
      const found = await this.#ctx.blobs.getMany(account, reads);
      if (found.includes(false)) throw notFound();
    } catch (e) {
      this.#guard?.replyReady(total, 0);
      throw e;
    }
    this.#guard?.replyReady(total, body.length);
    if (!this.#zstd && chunks.some((c) => c.z)) return this.#plainChunks(chunks, body);
    return reply({ chunks }, body);
  }

  async #get(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const want = hash(h, "hash");
    await this.#awaitAnnounced(account, [want], h.wait === true);
    const info = await this.#ctx.meta.chunk(account, want);
    if (!info) {
      throw new ProtocolError("not-found", "Cannot send chunk: not stored for this account");
    }
    await this.#guard?.reserveReply(info.size);
    let data: Uint8Array | null;
    try {
      data = await this.#ctx.blobs.get(account, want);
    } catch (e) {
      this.#guard?.replyReady(info.size, 0);
      throw e;
    }
    this.#guard?.replyReady(info.size, data?.length ?? 0);
    if (!data) {
      throw new ProtocolError("not-found", "Cannot send chunk: not stored for this account");
    }
    if (info.compressed && !this.#zstd) {
      return reply({ size: info.size, z: false }, decompressChunk(data, info.size));
    }
    return reply({ size: info.size, z: info.compressed }, data);
  }

  /** A `getMany` reply for a client that does not read zstd: every chunk as its plain bytes. */
  #plainChunks(
    chunks: { hash: string; size: number; z: boolean; len: number }[],
    body: Uint8Array,
  ): Message {
    const parts: Uint8Array[] = [];
    let at = 0;
    for (const c of chunks) {
      const stored = body.subarray(at, at += c.len);
      parts.push(c.z ? decompressChunk(stored, c.size) : stored);
    }
    const plain = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let w = 0;
    for (const p of parts) plain.set(p, (w += p.length) - p.length);
    return reply({
      chunks: chunks.map((c) => ({ hash: c.hash, size: c.size, z: false, len: c.size })),
    }, plain);
  }

  async #commit(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const raw = h.items;
    if (!Array.isArray(raw) || raw.length > MAX_COMMIT) {
      throw new ProtocolError("bad-request", "Cannot commit: bad items");
    }
    // A bad path refuses that item only, never the whole batch (one odd name must not block sync).
    const parsed: (CommitItem | string)[] = raw.map((v) => {
      const o = obj(v, "items[]");
      const path = str(o, "path");
      const problem = checkWirePath(path);
      if (problem) return problem;
      const deleted = bool(o, "deleted");
      const size = int(o, "size");
      // The chunk list is checked against the file's size and the chunk index in the store
      // (its length is bounded by the header's, 16 MiB after sign-in).
      const isFile = !deleted && o.kind !== "dir";
      return {
        path,
        baseVersion: int(o, "baseVersion"),
        kind: kind(o, "kind"),
        deleted,
        size,
        mtime: int(o, "mtime"),
        ...(isFile ? modeFields(o) : { exec: false }),
        hash: isFile ? hash(o, "hash") : "",
        chunks: isFile ? chunkList(o.chunks, "chunks") : [],
      };
    });
    // The journal and the kept versions count toward the quota too: a new row, and the old one
    // it may keep. Deletions are never refused (they free space once retention forgets them).
    const quota = this.#ctx.quota;
    const cost = (p: CommitItem) => p.deleted ? 0 : 2 * rowBytes(p.path, p.chunks.length);
    let reserved = 0;
    let overQuota: string | null = null;
    if (quota) {
      const want = parsed.reduce((n, p) => n + (typeof p === "string" ? 0 : cost(p)), 0);
      try {
        await quota.reserve(account, want);
        reserved = want;
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        overQuota = e.message;
      }
    }
    const valid = parsed.filter((p): p is CommitItem =>
      typeof p !== "string" && (overQuota === null || p.deleted)
    );
    const done = await this.#ctx.meta.commit(account, this.#device!.name, valid);
    let next = 0;
    const results: CommitResult[] = parsed.map((p) => {
      if (typeof p === "string") return { ok: false, reason: "invalid", message: p };
      if (overQuota !== null && !p.deleted) {
        return { ok: false, reason: "quota", message: overQuota };
      }
      const r = done[next++]!;
      if (!r.ok && reserved > 0) {
        quota!.release(account, cost(p));
      }
      return r;
    });
    if (done.some((r) => r.ok)) {
      this.#ctx.hub.notify(account, await this.#ctx.meta.seq(account), this.#peer);
    }
    return reply({ results });
  }

  /** `restore` (history_requests.ts); the account's other devices hear of it like a commit. */
  async #restore(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const results = await restoreRequest(
      this.#ctx.meta,
      account,
      this.#device!.name,
      h,
      this.#ctx.quota,
    );
    if (results.some((r) => r.ok)) {
      this.#ctx.hub.notify(account, await this.#ctx.meta.seq(account), this.#peer);
    }
    return reply({ results });
  }

  async #watch(): Promise<Message> {
    const account = this.#requireAccount();
    const seq = await this.#ctx.meta.seq(account);
    if (this.#peer) this.#ctx.hub.add(account, this.#peer, seq);
    return reply({ seq });
  }
}
