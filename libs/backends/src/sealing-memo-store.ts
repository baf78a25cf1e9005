import { isSealedJson, openJson, sealJson, type KeyRing } from '@multiagents/contracts';
import type { MemoStore } from '@multiagents/core';
import { plaintextRefused, type SealingOptions } from './sealing-options';

/**
 * Encryption at rest for any MemoStore: each record (an agent's answer, paid for once and kept
 * for redeliveries) is sealed under the payload key ring, bound to its key, before the inner
 * store writes it, and opened when read, so the broker holds ciphertext. A record found in
 * plaintext is refused (PAYLOAD_REJECTED), or read as written before encryption was turned on
 * with `acceptPlaintext`; a sealed record moved under another key does not open (PAYLOAD_REJECTED).
 *
 * @example
 * const memo = new SealingMemoStore(backend.memo, payloadKeys);
 */
export class SealingMemoStore implements MemoStore {
  constructor(
    private readonly inner: MemoStore,
    private readonly keys: KeyRing,
    private readonly options: SealingOptions = {},
  ) {}

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const stored = await this.inner.get(key);
    return stored === undefined ? undefined : (this.open(key, stored) as T);
  }

  async put<T>(key: string, record: T): Promise<T> {
    // The store keeps the first record put under a key and answers with it: open what it kept.
    const kept = await this.inner.put(key, sealJson(this.keys, record, memoPlace(key)));
    return this.open(key, kept) as T;
  }

  private open(key: string, stored: unknown): unknown {
    if (isSealedJson(stored)) return openJson(this.keys, stored, memoPlace(key));
    if (this.options.acceptPlaintext !== true) throw plaintextRefused(memoPlace(key));
    return stored;
  }
}

function memoPlace(key: string): string {
  return `memo:${key}`;
}
