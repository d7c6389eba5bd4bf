/**
 * Retries as a decorator: {@link RetryingObjects} wraps an {@link ObjectStore} and retries every
 * call that fails transiently (the caller says which failures are, e.g. a dropped connection or
 * a 503 from S3), with exponential back-off and jitter (`lib/util/retry.ts`). Writes of whole
 * objects and reads of ranges are idempotent, so a retry is always safe. A call that still fails
 * is thrown with its cause.
 *
 * @example
 * ```ts
 * const objects = new RetryingObjects(s3, { transient: isTransientS3Error });
 * ```
 *
 * @module
 */

import type { ObjectStore } from "./object_store.ts";
import { retry, type RetryOptions } from "../util/retry.ts";

/** An {@link ObjectStore} that retries transient failures of another. */
export class RetryingObjects implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #opts: RetryOptions;
  /** Retries so far (for tests and logs). */
  retries = 0;

  constructor(inner: ObjectStore, opts: RetryOptions) {
    this.#inner = inner;
    this.#opts = {
      ...opts,
      onRetry: (e, attempt, wait) => {
        this.retries++;
        opts.onRetry?.(e, attempt, wait);
      },
    };
  }

  put(key: string, parts: readonly Uint8Array[]): Promise<void> {
    return retry(() => this.#inner.put(key, parts), this.#opts);
  }

  read(key: string, offset: number, into: readonly Uint8Array[]): Promise<boolean> {
    return retry(() => this.#inner.read(key, offset, into), this.#opts);
  }

  remove(key: string): Promise<void> {
    return retry(() => this.#inner.remove(key), this.#opts);
  }

  removeAll(prefix: string): Promise<void> {
    return retry(() => this.#inner.removeAll(prefix), this.#opts);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
