import { isSealedJson, openJson, sealJson, type KeyRing } from '@multiagents/contracts';
import type { TimelineEntry, TimelineReadOptions, TimelineStore } from '@multiagents/core';

/**
 * Encryption at rest for any TimelineStore: the lifecycle events of each entry (their errors
 * quote what a worker choked on) are sealed under the payload key ring, bound to the run and the
 * entry's version, before the inner store writes them, and opened when read. The version, state,
 * time and workflow stay readable: the store orders and expires by them. Entries written before
 * encryption was turned on are read as they are.
 *
 * @example
 * const timelines = new SealingTimelineStore(backend.timelines, payloadKeys);
 */
export class SealingTimelineStore implements TimelineStore {
  constructor(
    private readonly inner: TimelineStore,
    private readonly keys: KeyRing,
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
    return entries?.map((entry) =>
      isSealedJson(entry.events)
        ? {
            ...entry,
            events: openJson(this.keys, entry.events, placeOf(txId, entry)) as TimelineEntry['events'],
          }
        : entry,
    );
  }

  markOnce(key: string, ttlMs: number): Promise<boolean> {
    return this.inner.markOnce(key, ttlMs);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function placeOf(txId: string, entry: TimelineEntry): string {
  return `${txId}:timeline:${entry.version}`;
}
