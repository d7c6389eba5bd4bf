/**
 * Uploads in progress, so a big file can stream to other devices while it is still being
 * uploaded: a device announces a file (`announce`), the server tells the account's other devices
 * (`incoming` notice), and their `get`/`getMany` with `wait: true` are answered as soon as each
 * announced chunk is stored, instead of "not found". Memory is bounded (announcements expire, at
 * most {@link MAX_ANNOUNCED} chunks per account) and every wait has a deadline. An upload that
 * will not come (the announcing connection closed, or its device gave the file up: `withdraw`)
 * is withdrawn at once, and whoever waits for it is answered "not stored" then, not at the
 * deadline.
 *
 * @example
 * ```ts
 * const incoming = new Incoming();
 * incoming.announce("acct", ["ab…"]);
 * const stored = await incoming.waitFor("acct", "ab…", 30_000); // resolves when stored() is called
 * ```
 *
 * @module
 */

/** Most announced chunk hashes remembered per account. */
export const MAX_ANNOUNCED = 200_000;
/** How long an announcement stays valid. */
export const ANNOUNCE_TTL_MS = 10 * 60 * 1000;

/** Announced chunks and the requests waiting for them. */
export class Incoming {
  // account -> hash -> (expiry, who announced it)
  readonly #announced = new Map<string, Map<string, { until: number; owner: unknown }>>();
  readonly #waiters = new Map<string, Map<string, Set<(stored: boolean) => void>>>();

  /** Remembers that `hashes` are about to be uploaded to `account`. */
  announce(account: string, hashes: readonly string[], now = Date.now(), owner?: unknown): void {
    let m = this.#announced.get(account);
    if (!m) this.#announced.set(account, m = new Map());
    // Entries are kept in expiry order (re-announced ones move to the end), so the expired ones
    // are at the front: an announcement costs what it adds, not a walk over all of them.
    for (const [h, a] of m) {
      if (a.until >= now) break;
      m.delete(h);
    }
    for (const h of hashes) {
      m.delete(h);
      if (m.size >= MAX_ANNOUNCED) break;
      m.set(h, { until: now + ANNOUNCE_TTL_MS, owner });
    }
  }

  /**
   * Forgets what `owner` announced for `account` and has not stored (all of it, or only
   * `hashes`), and answers the requests waiting for those chunks with "not stored". Returns the
   * hashes forgotten (for the other instances: their relayed copies have no owner).
   */
  withdraw(account: string, owner: unknown, hashes?: readonly string[]): string[] {
    const m = this.#announced.get(account);
    if (!m) return [];
    const gone: string[] = [];
    for (const h of hashes ?? m.keys()) {
      if (m.get(h)?.owner === owner) gone.push(h);
    }
    for (const h of gone) m.delete(h);
    if (m.size === 0) this.#announced.delete(account);
    const byHash = this.#waiters.get(account);
    for (const h of gone) for (const done of [...(byHash?.get(h) ?? [])]) done(false);
    return gone;
  }

  /** True while `hash` is announced (and not expired) for `account`. */
  isAnnounced(account: string, hash: string, now = Date.now()): boolean {
    const a = this.#announced.get(account)?.get(hash);
    return a !== undefined && a.until >= now;
  }

  /** Resolves true once `hash` is stored for `account`, false after `timeoutMs`. */
  waitFor(account: string, hash: string, timeoutMs: number): Promise<boolean> {
    let byHash = this.#waiters.get(account);
    if (!byHash) this.#waiters.set(account, byHash = new Map());
    let set = byHash.get(hash);
    if (!set) byHash.set(hash, set = new Set());
    const waiters = set;
    return new Promise((resolve) => {
      const done = (stored: boolean) => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0) byHash!.delete(hash);
        resolve(stored);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      waiters.add(done);
    });
  }

  /** Wakes the requests waiting for `hashes` of `account` (they were just stored). */
  stored(account: string, hashes: readonly string[]): void {
    const byHash = this.#waiters.get(account);
    const announced = this.#announced.get(account);
    for (const h of hashes) {
      announced?.delete(h);
      for (const done of [...(byHash?.get(h) ?? [])]) done(true);
    }
    if (announced?.size === 0) this.#announced.delete(account);
  }

  /** Wakes every waiter with "not stored" (server shutting down). */
  close(): void {
    for (const byHash of this.#waiters.values()) {
      for (const set of byHash.values()) for (const done of [...set]) done(false);
    }
  }
}
