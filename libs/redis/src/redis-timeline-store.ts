import type { TimelineEntry, TimelineStore } from '@multiagents/core';
import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';

/**
 * Run timelines and once-only marks on Redis, for the event-monitor. A timeline is a hash beside
 * its run (same partition hash tag): one field per version, written with HSETNX so a redelivered
 * event changes nothing and replicas appending at once never overwrite each other; the hash
 * expires `ttlMs` after its last append (both in one script call, `append-timeline.lua`). A mark
 * is `SET NX PX`. Not on the per-step path: only the monitor writes here.
 *
 * @example
 * const timelines = new RedisTimelineStore(backend.connection);
 * await timelines.append('tx-1', entries, 7 * 86_400_000);
 */
export class RedisTimelineStore implements TimelineStore {
  /** The connection this store shares with its backend. */
  readonly connection: RedisConnection;
  private readonly owned: boolean;

  /** Uses `connection` (not closed by this store) or opens its own from options. */
  constructor(connection: RedisConnection | RedisBackendOptions) {
    this.owned = !(connection instanceof RedisConnection);
    this.connection = connection instanceof RedisConnection ? connection : RedisConnection.open(connection);
  }

  async append(txId: string, entries: readonly TimelineEntry[], ttlMs: number): Promise<void> {
    const key = this.connection.keys.timeline(txId);
    const args: Array<string | number> = [Math.max(1, Math.ceil(ttlMs))];
    for (const entry of entries) args.push(entry.version, JSON.stringify(entry));
    await this.connection.call('append timeline', () => this.connection.scripts.appendTimeline(key, args));
  }

  async get(txId: string): Promise<TimelineEntry[] | undefined> {
    const key = this.connection.keys.timeline(txId);
    const fields = await this.connection.call('read timeline', () => this.connection.client.hgetall(key));
    const values = Object.values(fields);
    if (values.length === 0) return undefined;
    const entries: TimelineEntry[] = [];
    for (const json of values) {
      try {
        entries.push(JSON.parse(json) as TimelineEntry);
      } catch {
        // Not ours: left out.
      }
    }
    return entries.sort((a, b) => a.version - b.version);
  }

  async markOnce(key: string, ttlMs: number): Promise<boolean> {
    const name = this.connection.keys.monitorMark(key);
    const reply = await this.connection.call('mark once', () =>
      this.connection.client.set(name, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX'),
    );
    return reply === 'OK';
  }

  async close(): Promise<void> {
    if (this.owned) await this.connection.close();
  }
}
