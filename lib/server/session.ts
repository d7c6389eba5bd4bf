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
  hash,
  hashList,
  int,
  kind,
  MAX_CHANGES,
  MAX_COMMIT,
  MAX_HAVE,
  modeFields,
  obj,
  PROGRAM_VERSION,
  PROTOCOL_VERSION,
  str,
} from "../protocol/messages.ts";
import type { CommitItem, CommitResult, MetaStore } from "./meta_store.ts";
import type { BlobStore } from "./blob_store.ts";
import type { Incoming } from "./incoming.ts";
import { checkClaims, type ChunkClaim } from "./chunk_check.ts";
import { historyRequest, listAtRequest, restoreRequest } from "./history_requests.ts";
import { newSerial, normalizeSerial, randomToken } from "../util/crockford.ts";
import { checkWirePath } from "../core/paths.ts";
import {
  type ConnGuard,
  describeWait,
  type LogLimiter,
  type QuotaTracker,
  type RateLimiter,
  type SignInThrottle,
  throttledError,
} from "./limits.ts";

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

/** Longest a `get`/`getMany` with `wait: true` waits for one announced chunk. */
export const WAIT_FOR_CHUNK_MS = 60_000;

/** Most chunks in one `putMany` / `getMany`. */
export const MAX_BATCH = 1024;
/** Most chunk bytes in one `getMany` reply. */
export const MAX_BATCH_BYTES = 6 * 1024 * 1024;

/** Verifies a received chunk against its name; returns what the index records. */
/** Who watches which account, to push change notices at once. */
export class Hub {
  readonly #watchers = new Map<string, Set<Peer>>();

  add(account: string, peer: Peer): void {
    let set = this.#watchers.get(account);
    if (!set) this.#watchers.set(account, set = new Set());
    set.add(peer);
  }

  remove(account: string, peer: Peer): void {
    const set = this.#watchers.get(account);
    set?.delete(peer);
    if (set?.size === 0) this.#watchers.delete(account);
  }

  /** Sends a notice to every watcher of `account` but `except`. */
  send(account: string, header: Record<string, unknown>, except: Peer | null): void {
    for (const peer of this.#watchers.get(account) ?? []) {
      if (peer !== except) peer.notify(header).catch(() => {});
    }
  }

  /** Tells every watcher of `account` but `except` that the journal reached `seq`. */
  notify(account: string, seq: number, except: Peer | null): void {
    this.send(account, { t: "changed", seq }, except);
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
  /** Failed `auth`/`enroll` attempts per address and per account. */
  signIn: SignInThrottle;
  /** New accounts (`register`) per address. */
  registrations: RateLimiter;
  /** Per-account stored-bytes quota; null: none. */
  quota: QuotaTracker | null;
  /** Keeps lines about refused attempts from flooding the log. */
  logLimit: LogLimiter;
}

/** Requests allowed only before signing in. */
const SIGN_IN = new Set(["register", "enroll", "auth", "checkSerial"]);

const EMPTY = new Uint8Array(0);

function reply(header: Record<string, unknown>, body: Uint8Array = EMPTY): Message {
  return { header, body };
}

/** The state and request handler of one connection. */
export class Session {
  #account: string | null = null;
  #device: { id: string; name: string } | null = null;
  #hello = false;
  #revoked = false;
  #peer: Peer | null = null;
  readonly #ctx: ServerContext;
  readonly #remote: string;
  readonly #ip: string;
  readonly #guard: ConnGuard | null;

  /** `addr`: where the connection comes from; `guard`: its byte budget (see limits.ts). */
  constructor(
    ctx: ServerContext,
    addr: { hostname: string; port: number },
    guard: ConnGuard | null = null,
  ) {
    this.#ctx = ctx;
    this.#ip = addr.hostname;
    this.#remote = `${addr.hostname}:${addr.port}`;
    this.#guard = guard;
  }

  /** True once `register`, `enroll` or `auth` succeeded. */
  get signedIn(): boolean {
    return this.#account !== null;
  }

  /** The signed-in device (id, name) and account, if any. */
  get device(): { id: string; name: string; account: string } | null {
    return this.#device && this.#account ? { ...this.#device, account: this.#account } : null;
  }

  /**
   * True if the signed-in device has been revoked (checked now, one indexed lookup); the server
   * then closes the connection.
   */
  async checkRevoked(): Promise<boolean> {
    if (!this.#revoked && this.#device && await this.#ctx.meta.deviceRevoked(this.#device.id)) {
      this.#revoked = true;
      this.#ctx.log(
        `Closing the connection of revoked device ${this.#device.id} (account ${this.#account}) from ${this.#remote}`,
      );
    }
    return this.#revoked;
  }

  /** Binds the session to its peer (needed to register for push notices). */
  attach(peer: Peer): void {
    this.#peer = peer;
  }

  /** Forgets the session's watches once the connection ended. */
  detach(): void {
    if (this.#account && this.#peer) this.#ctx.hub.remove(this.#account, this.#peer);
  }

  #requireAccount(): string {
    if (!this.#account) {
      throw new ProtocolError("unauthenticated", "Cannot serve request: authenticate first");
    }
    return this.#account;
  }

  async #enrollDevice(
    account: string,
    name: string,
  ): Promise<{ deviceId: string; token: string }> {
    const token = randomToken(32);
    const deviceId = await this.#ctx.meta.addDevice(account, name, secretHash(token));
    this.#account = account;
    this.#device = { id: deviceId, name };
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
        return await this.#put(h, msg.body);
      case "get":
        return await this.#get(h);
      case "putMany":
        return await this.#putMany(h, msg.body);
      case "getMany":
        return await this.#getMany(h);
      case "announce":
        return this.#announce(h);
      case "commit":
        return this.#commit(h);
      case "watch":
        return this.#watch();
      case "history":
        return reply(await historyRequest(this.#ctx.meta, this.#requireAccount(), h));
      case "listAt":
        return reply(await listAtRequest(this.#ctx.meta, this.#requireAccount(), h));
      case "restore":
        return this.#restore(h);
      default:
        throw new ProtocolError(
          "unsupported",
          `Cannot serve request: unknown type ${JSON.stringify(t)}`,
        );
    }
  };

  /** Refuses the attempt if `ip` or `account` is locked out after failures. */
  #checkThrottle(what: string, account: string | null): void {
    const ms = this.#ctx.signIn.lockedFor(this.#ip, account);
    if (ms <= 0) return;
    if (this.#ctx.logLimit.allow(`throttled ${this.#ip}`)) {
      this.#ctx.log(
        `Refused ${what} from ${this.#remote} without checking: too many failed attempts (locked for ${
          describeWait(ms)
        }${account ? `, account ${account}` : ""})`,
      );
    }
    throw throttledError(ms);
  }

  /** Counts a failed attempt and logs it (and the lockout it starts, if any). */
  #failed(what: string, account: string | null): void {
    const r = this.#ctx.signIn.failed(this.#ip, account);
    if (this.#ctx.logLimit.allow(`failed ${this.#ip}`) || r.ipLockout || r.accountLockout) {
      this.#ctx.log(
        `Refused ${what} from ${this.#remote} (${r.ipFailures} recent failures from this address${
          account ? `, ${r.accountFailures} for account ${account}` : ""
        })`,
      );
    }
    if (r.ipLockout) {
      this.#ctx.log(`Throttling sign-in from ${this.#ip} for ${describeWait(r.ipLockout)}`);
    }
    if (r.accountLockout) {
      this.#ctx.log(
        `Throttling sign-in to account ${account} for ${describeWait(r.accountLockout)}`,
      );
    }
  }

  async #register(h: Record<string, unknown>): Promise<Message> {
    const name = str(h, "device", 100);
    const wait = this.#ctx.registrations.take(this.#ip);
    if (wait > 0) {
      if (this.#ctx.logLimit.allow(`register ${this.#ip}`)) {
        this.#ctx.log(`Refused a new account from ${this.#remote}: too many new accounts`);
      }
      throw throttledError(wait, "too many new accounts from this address");
    }
    const serial = newSerial();
    const account = await this.#ctx.meta.createAccount(secretHash(normalizeSerial(serial)!));
    const { deviceId, token } = await this.#enrollDevice(account, name);
    this.#ctx.log(`New account ${account} registered by device "${name}" from ${this.#remote}`);
    return reply({ account, deviceId, token, serial, seq: 0 });
  }

  /** The account of the request's serial code; unknown ones count as failed attempts. */
  async #serialAccount(h: Record<string, unknown>, what: string): Promise<string> {
    const serial = normalizeSerial(str(h, "serial", 200));
    this.#checkThrottle(what, null);
    const account = serial ? await this.#ctx.meta.accountBySerialHash(secretHash(serial)) : null;
    if (!account) {
      this.#failed(`${what} (unknown serial code)`, null);
      throw new ProtocolError(
        "bad-serial",
        "Cannot join account: this serial code is not known to the server; check it, or print a new one on the server with `cloud-server reset-serial ACCOUNT`",
      );
    }
    return account;
  }

  async #enroll(h: Record<string, unknown>): Promise<Message> {
    const name = str(h, "device", 100);
    const account = await this.#serialAccount(h, "enrollment");
    const { deviceId, token } = await this.#enrollDevice(account, name);
    this.#ctx.log(`Device "${name}" joined account ${account} from ${this.#remote}`);
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
    return reply({ sameAccount: account === claimed });
  }

  /** Renames the signed-in device (`cloud-client --name` on an enrolled folder). */
  async #setDeviceName(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const name = str(h, "device", 100);
    const device = this.#device!;
    if (name !== device.name) {
      await this.#ctx.meta.renameDevice(account, device.id, name);
      this.#ctx.log(
        `Device ${device.id} of account ${account} renamed from ${JSON.stringify(device.name)} to ${
          JSON.stringify(name)
        }`,
      );
      device.name = name;
    }
    return reply({});
  }

  async #auth(h: Record<string, unknown>): Promise<Message> {
    const account = str(h, "account", 64);
    const deviceId = str(h, "deviceId", 64);
    const token = str(h, "token", 200);
    const known = await this.#ctx.meta.hasAccount(account) ? account : null;
    this.#checkThrottle(`authentication of device ${JSON.stringify(deviceId)}`, known);
    const d = await this.#ctx.meta.device(deviceId);
    const ok = d !== null && d.account === account && sameSecret(d.tokenHash, secretHash(token));
    if (!ok || d.revoked) {
      this.#failed(
        `authentication of device ${JSON.stringify(deviceId)}${
          ok ? " (revoked)" : " (unknown device or wrong credential)"
        }`,
        known,
      );
      throw new ProtocolError(
        d?.revoked ? "revoked" : "bad-credentials",
        d?.revoked
          ? "Cannot sign in: this device was revoked; join again with the account's serial code"
          : "Cannot sign in: the server does not know this device; join again with the account's serial code",
      );
    }
    this.#account = account;
    this.#device = { id: d.id, name: d.name };
    await this.#ctx.meta.touchDevice(d.id);
    return reply({ seq: await this.#ctx.meta.seq(account), device: d.name });
  }

  async #changes(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const since = int(h, "since");
    const limit = Math.min(Math.max(1, int(h, "limit")), MAX_CHANGES);
    const entries = await this.#ctx.meta.changes(account, since, limit);
    const seq = await this.#ctx.meta.seq(account);
    const more = entries.length === limit;
    return reply({ entries, seq: more ? entries[entries.length - 1]!.version : seq, more });
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
    this.#verify([{ ...claim, offset: 0, len: body.length }], body);
    const item = { hash: claim.hash, size: claim.size, stored: body.length, compressed: claim.z };
    const quota = this.#ctx.quota;
    const fresh = quota && (await this.#ctx.meta.chunk(account, item.hash)) === null
      ? body.length
      : 0;
    await quota?.reserve(account, fresh);
    try {
      await this.#ctx.blobs.put(account, item.hash, body);
      await this.#ctx.meta.addChunks(account, [item]);
      this.#ctx.incoming?.stored(account, [item.hash]);
    } catch (e) {
      this.#ctx.quota?.release(account, fresh);
      throw e;
    }
    return reply({});
  }

  /** Checks every chunk against its name (see {@link checkClaims}). */
  #verify(claims: ChunkClaim[], body: Uint8Array): void {
    const problem = checkClaims(claims, body);
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
    this.#verify(claims, body);
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
      this.#ctx.incoming?.stored(account, items.map((i) => i.hash));
    } catch (e) {
      this.#ctx.quota?.release(account, fresh);
      throw e;
    }
    return reply({});
  }

  /** With `wait: true`, chunks announced by an upload in progress are awaited (bounded). */
  async #awaitAnnounced(
    account: string,
    hashes: readonly string[],
    h: Record<string, unknown>,
  ): Promise<void> {
    if (h.wait !== true || !this.#ctx.incoming) return;
    const known = await this.#ctx.meta.chunks(account, hashes);
    for (const [k, want] of hashes.entries()) {
      if (known[k]) continue;
      if (!this.#ctx.incoming.isAnnounced(account, want)) continue;
      await this.#ctx.incoming.waitFor(account, want, WAIT_FOR_CHUNK_MS);
    }
  }

  /** A device starts uploading a file: tell the account's other devices so they can stream it. */
  #announce(h: Record<string, unknown>): Message {
    const account = this.#requireAccount();
    const path = str(h, "path");
    const problem = checkWirePath(path);
    if (problem) throw new ProtocolError("bad-path", problem);
    const chunks = chunkList(h.chunks, "chunks");
    const entry = {
      path,
      kind: "file",
      deleted: false,
      version: 0,
      size: int(h, "size"),
      mtime: int(h, "mtime"),
      ...modeFields(h),
      hash: hash(h, "hash"),
      chunks,
      device: this.#device!.name,
    };
    this.#ctx.incoming?.announce(account, chunks.map((c) => c.hash));
    this.#ctx.hub.send(account, { t: "incoming", entry }, this.#peer);
    return reply({});
  }

  async #getMany(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const hashes = hashList(h, "hashes", MAX_BATCH);
    await this.#awaitAnnounced(account, hashes, h);
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
    if (total > MAX_BATCH_BYTES) {
      throw new ProtocolError("bad-request", "Cannot send chunks: more than 6 MiB asked at once");
    }
    await this.#guard?.reserveReply(total);
    // The stored lengths are known: every chunk is read straight into its place in the reply.
    const body = new Uint8Array(total);
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
    return reply({ chunks }, body);
  }

  async #get(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const want = hash(h, "hash");
    await this.#awaitAnnounced(account, [want], h);
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
    return reply({ size: info.size, z: info.compressed }, data);
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
      return {
        path,
        baseVersion: int(o, "baseVersion"),
        kind: kind(o, "kind"),
        deleted,
        size: int(o, "size"),
        mtime: int(o, "mtime"),
        ...(deleted || o.kind === "dir" ? { exec: false } : modeFields(o)),
        hash: deleted || o.kind === "dir" ? "" : hash(o, "hash"),
        chunks: deleted || o.kind === "dir" ? [] : chunkList(o.chunks, "chunks"),
      };
    });
    const valid = parsed.filter((p): p is CommitItem => typeof p !== "string");
    const done = await this.#ctx.meta.commit(account, this.#device!.name, valid);
    let next = 0;
    const results: CommitResult[] = parsed.map((p) =>
      typeof p === "string" ? { ok: false, reason: "invalid", message: p } : done[next++]!
    );
    if (done.some((r) => r.ok)) {
      this.#ctx.hub.notify(account, await this.#ctx.meta.seq(account), this.#peer);
    }
    return reply({ results });
  }

  /** `restore` (history_requests.ts); the account's other devices hear of it like a commit. */
  async #restore(h: Record<string, unknown>): Promise<Message> {
    const account = this.#requireAccount();
    const results = await restoreRequest(this.#ctx.meta, account, this.#device!.name, h);
    if (results.some((r) => r.ok)) {
      this.#ctx.hub.notify(account, await this.#ctx.meta.seq(account), this.#peer);
    }
    return reply({ results });
  }

  async #watch(): Promise<Message> {
    const account = this.#requireAccount();
    if (this.#peer) this.#ctx.hub.add(account, this.#peer);
    return reply({ seq: await this.#ctx.meta.seq(account) });
  }
}
