import { FailedPreconditionError } from '@multiagents/contracts';
import { decodeMemoRecord, encodeMemoRecord, LruMap, type MemoStore } from '@multiagents/core';

/** Default of {@link MemoryMemoStoreOptions.maxEntries}. */
export const DEFAULT_MEMORY_MEMO_MAX_ENTRIES = 10_000;

/** Options of {@link MemoryMemoStore}. */
export interface MemoryMemoStoreOptions {
  /** Records kept; the oldest is forgotten past it. Default {@link DEFAULT_MEMORY_MEMO_MAX_ENTRIES}. */
  readonly maxEntries?: number;
}

/**
 * A {@link MemoStore} in this process's memory (the embedded backend's `memo`): records are kept
 * as JSON text, so callers never share or mutate what is stored. It survives redeliveries within
 * the process, not a restart, and is bounded: past `maxEntries` the oldest record is forgotten.
 * After `close()` both methods reject, as a store that cannot answer must.
 *
 * @example
 * const memo = new MemoryMemoStore();
 * await memo.put('tx-1:answer', { answer: 42 }); // { answer: 42 }
 */
export class MemoryMemoStore implements MemoStore {
  private readonly records: LruMap<string, string>;
  private closed = false;

  constructor(options: MemoryMemoStoreOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_MEMORY_MEMO_MAX_ENTRIES;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`MemoryMemoStore: maxEntries must be a positive integer (got ${maxEntries})`);
    }
    this.records = new LruMap(maxEntries);
  }

  /** Records held. */
  get size(): number {
    return this.records.size;
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    this.assertOpen();
    const text = this.records.get(key);
    return text === undefined ? undefined : decodeMemoRecord<T>(text, key, 'memory memo');
  }

  async put<T>(key: string, record: T): Promise<T> {
    this.assertOpen();
    const existing = this.records.get(key);
    if (existing !== undefined) return decodeMemoRecord<T>(existing, key, 'memory memo');
    const text = encodeMemoRecord(record, key);
    this.records.set(key, text);
    return decodeMemoRecord<T>(text, key, 'memory memo');
  }

  /** Forgets every record; later calls reject. */
  async close(): Promise<void> {
    this.closed = true;
    this.records.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new FailedPreconditionError('the memory memo store is closed');
  }
}
