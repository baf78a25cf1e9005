import { isSealedJson, openJson, sealJson, type KeyRing } from '@multiagents/contracts';
import type { TimelineEntry, TimelineReadOptions, TimelineStore } from '@multiagents/core';
import { plaintextRefused, type SealingOptions } from './sealing-options';

/**
 * Encryption at rest for any TimelineStore: the lifecycle events of each entry (their errors
 * quote what a worker choked on) are sealed under the payload key ring, bound to the run and the
 * entry's version, before the inner store writes them, and opened when read. The version, state,
 * time and workflow stay readable: the store orders and expires by them. An entry whose events are
 * in plaintext is refused (PAYLOAD_REJECTED), or read as written before encryption was turned on
 * with `acceptPlaintext`.
 *
 * @example
 * const timelines = new SealingTimelineStore(backend.timelines, payloadKeys);
 */
export class SealingTimelineStore implements TimelineStore {
  constructor(
    private readonly inner: TimelineStore,
    private readonly keys: KeyRing,
    private readonly options: SealingOptions = {},
  ) {}

  append(txId: string, entries: readonly TimelineEntry[], ttlMs: number): Promise<void> {
    const sealed = entries.map((entry) => ({
      ...entry,
      events: sealJson(this.keys, entry.events, placeOf(txId, entry)) as unknown as TimelineEntry['events'],
    }));
    return this.inner.append(txId, sealed, ttlMs);
  }

  async get(txId: string, options?: TimelineReadOptions): Promise<TimelineEntry[] | undefined> {
    const entries = await this.inner.get(txId, options);
    return entries?.map((entry) => {
      if (isSealedJson(entry.events)) {
        return {
          ...entry,
          events: openJson(this.keys, entry.events, placeOf(txId, entry)) as TimelineEntry['events'],
        };
      }
      if (this.options.acceptPlaintext !== true) throw plaintextRefused(placeOf(txId, entry));
      return entry;
    });
  }

  /** Marks hold no payload: the inner store keeps them as they are. */
  markOnce(key: string, leaseMs: number): Promise<string | undefined> {
    return this.inner.markOnce(key, leaseMs);
  }

  extendMark(key: string, token: string, ttlMs: number): Promise<boolean> {
    return this.inner.extendMark(key, token, ttlMs);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function placeOf(txId: string, entry: TimelineEntry): string {
  return `${txId}:timeline:${entry.version}`;
}
