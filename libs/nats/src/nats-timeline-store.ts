import type { TimelineEntry, TimelineStore } from '@multiagents/core';
import type { KV } from '@nats-io/kv';
import { isKeyExists, isWrongRevision, natsError, untilAnswered, type NatsContext } from './nats-context';

/** A timeline or a mark as stored: its content and when it stops counting. */
interface Stored<T> {
  readonly value: T;
  readonly expiresAt: number;
}

/** Compare-and-set attempts of one append before giving up (replicas appending to one run at once). */
const MAX_APPEND_ATTEMPTS = 64;
/** Default age after which the bucket itself drops a key not written since: 7 days. */
export const DEFAULT_TIMELINE_BUCKET_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Run timelines and once-only marks on NATS KV (bucket `<prefix>-timelines`, created on first use
 * so only the event-monitor pays for it). A timeline is one key `t.<txId>` holding its entries,
 * extended by revision-checked writes (replicas appending to one run at once retry, none
 * overwrites another); a mark is `m.<key>`, set by `kv.create` (one caller wins) or, once expired,
 * by an update on the expired revision. NATS 2.9 has no per-key time to live: each value carries
 * its expiry (an expired one reads as absent) and the bucket's max age drops keys not written
 * for `maxAgeMs`, which bounds what retention keeps.
 *
 * @example
 * const { timelines } = await createNatsBackend({ servers: 'nats://127.0.0.1:4222' });
 * await timelines.append('tx-1', entries, 86_400_000);
 */
export class NatsTimelineStore implements TimelineStore {
  private readonly bucket: () => Promise<KV>;

  constructor(
    private readonly ctx: NatsContext,
    maxAgeMs: number = DEFAULT_TIMELINE_BUCKET_MAX_AGE_MS,
  ) {
    this.bucket = ctx.lazyBucket(ctx.names.timelinesBucket, maxAgeMs);
  }

  async append(txId: string, entries: readonly TimelineEntry[], ttlMs: number): Promise<void> {
    const kv = await this.bucket();
    const key = this.ctx.names.timeline(txId);
    for (let attempt = 1; ; attempt += 1) {
      const now = this.ctx.clock.now();
      let current: Stored<TimelineEntry[]> | undefined;
      let revision = 0;
      try {
        const entry = await untilAnswered(() => kv.get(key));
        if (entry !== null && entry.operation === 'PUT') {
          revision = entry.revision;
          current = parse<TimelineEntry[]>(entry.value);
        }
      } catch (err) {
        throw natsError(`reading the timeline of ${txId}`, err, { key });
      }
      const kept = current !== undefined && current.expiresAt > now ? current.value : [];
      const byVersion = new Map(kept.map((e) => [e.version, e]));
      for (const entry of entries) if (!byVersion.has(entry.version)) byVersion.set(entry.version, entry);
      const next: Stored<TimelineEntry[]> = {
        value: [...byVersion.values()].sort((a, b) => a.version - b.version),
        expiresAt: now + ttlMs,
      };
      try {
        const data = encoder.encode(JSON.stringify(next));
        await untilAnswered(() => (revision === 0 ? kv.create(key, data) : kv.update(key, data, revision)));
        return;
      } catch (err) {
        if (!(isWrongRevision(err) || isKeyExists(err)) || attempt >= MAX_APPEND_ATTEMPTS) {
          throw natsError(`appending to the timeline of ${txId}`, err, { key });
        }
      }
    }
  }

  async get(txId: string): Promise<TimelineEntry[] | undefined> {
    const kv = await this.bucket();
    const key = this.ctx.names.timeline(txId);
    try {
      const entry = await untilAnswered(() => kv.get(key));
      if (entry === null || entry.operation !== 'PUT') return undefined;
      const stored = parse<TimelineEntry[]>(entry.value);
      if (stored === undefined || !(stored.expiresAt > this.ctx.clock.now())) return undefined;
      return stored.value;
    } catch (err) {
      throw natsError(`reading the timeline of ${txId}`, err, { key });
    }
  }

  async markOnce(key: string, ttlMs: number): Promise<boolean> {
    const kv = await this.bucket();
    const name = this.ctx.names.monitorMark(key);
    const data = (): Uint8Array =>
      encoder.encode(JSON.stringify({ value: true, expiresAt: this.ctx.clock.now() + ttlMs }));
    try {
      await untilAnswered(() => kv.create(name, data()));
      return true;
    } catch (err) {
      if (!(isWrongRevision(err) || isKeyExists(err))) throw natsError(`marking ${key}`, err, { key: name });
    }
    try {
      const entry = await untilAnswered(() => kv.get(name));
      if (entry === null) return false;
      const stored = entry.operation === 'PUT' ? parse<boolean>(entry.value) : undefined;
      if (stored !== undefined && stored.expiresAt > this.ctx.clock.now()) return false;
      await untilAnswered(() => kv.update(name, data(), entry.revision));
      return true;
    } catch (err) {
      if (isWrongRevision(err)) return false;
      throw natsError(`marking ${key}`, err, { key: name });
    }
  }

  /** The backend owns the connection. */
  async close(): Promise<void> {}
}

function parse<T>(data: Uint8Array): Stored<T> | undefined {
  try {
    const stored = JSON.parse(decoder.decode(data)) as Stored<T>;
    return typeof stored === 'object' && stored !== null && typeof stored.expiresAt === 'number'
      ? stored
      : undefined;
  } catch {
    return undefined;
  }
}
