import { randomUUID } from 'node:crypto';
import { ValidationError } from '@multiagents/contracts';
import type { TimelineEntry, TimelineStore } from '@multiagents/core';
import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';
import type { ScriptArg } from './scripts';
import { isObject, parseStoredObject } from './stored-json';
import { TurnBatcher } from './turn-batcher';

/** Entries per script call: keeps ARGV well below Lua's limits. */
const MAX_ENTRIES_PER_CALL = 500;

/** One append: a run's timeline key, its time to live and its entries. */
interface Append {
  readonly key: string;
  readonly ttlMs: number;
  readonly entries: readonly TimelineEntry[];
}

/**
 * Run timelines and once-only marks on Redis, for the event-monitor. A timeline is a hash beside
 * its run (same partition hash tag): one field per version, written with HSETNX so a redelivered
 * event changes nothing and replicas appending at once never overwrite each other; the hash
 * expires `ttlMs` after its last append (both in one script call, `append-timeline.lua`). The
 * appends of one event-loop turn go in one call per partition (a {@link TurnBatcher}): the
 * monitor appends once per event, and one call per event cost as much as the rest of its work.
 * Appends to one run in one turn share its key and its PEXPIRE.
 * A mark is `SET NX PX` of a fresh token (the hold's name), extended by `extend-mark` only while
 * it still holds that token. Not on the per-step path: only the monitor writes here.
 *
 * @example
 * const timelines = new RedisTimelineStore(backend.connection);
 * await timelines.append('tx-1', entries, 7 * 86_400_000);
 */
export class RedisTimelineStore implements TimelineStore {
  /** The connection this store shares with its backend. */
  readonly connection: RedisConnection;
  private readonly owned: boolean;
  private readonly batcher: TurnBatcher<Append>;

  /** Uses `connection` (not closed by this store) or opens its own from options. */
  constructor(connection: RedisConnection | RedisBackendOptions) {
    this.owned = !(connection instanceof RedisConnection);
    this.connection = connection instanceof RedisConnection ? connection : RedisConnection.open(connection);
    this.batcher = new TurnBatcher<Append>({
      send: (_slot, appends) => this.send(appends),
      failure: (_slot, err) => this.connection.redisError('append timeline', err),
      weight: (append) => append.entries.length,
      maxWeight: MAX_ENTRIES_PER_CALL,
    });
  }

  async append(txId: string, entries: readonly TimelineEntry[], ttlMs: number): Promise<void> {
    this.connection.assertOpen();
    if (!(Number.isFinite(ttlMs) && ttlMs > 0)) {
      throw new ValidationError('timeline append', [`ttlMs must be a positive number of ms, got ${ttlMs}`]);
    }
    const { keys } = this.connection;
    const key = keys.timeline(txId);
    await this.batcher.add(String(keys.partitionOf(txId)), { key, ttlMs: Math.ceil(ttlMs), entries });
  }

  private async send(appends: readonly Append[]): Promise<void> {
    // Sent a turn after the appends were made: the connection may have closed since.
    this.connection.assertOpen();
    // Appends to one timeline in one turn (a run's transitions read in one batch) share one key
    // and one PEXPIRE: the longest time to live asked for, from now.
    const byKey = new Map<string, { ttlMs: number; entries: readonly TimelineEntry[] }>();
    for (const { key, ttlMs, entries } of appends) {
      const merged = byKey.get(key);
      if (merged === undefined) byKey.set(key, { ttlMs, entries });
      else {
        merged.ttlMs = Math.max(merged.ttlMs, ttlMs);
        merged.entries = [...merged.entries, ...entries];
      }
    }
    const args: ScriptArg[] = [];
    for (const { ttlMs, entries } of byKey.values()) {
      args.push(ttlMs, entries.length);
      for (const entry of entries) args.push(entry.version, JSON.stringify(entry));
    }
    await this.connection.scripts.appendTimeline([...byKey.keys()], args);
  }

  async get(txId: string): Promise<TimelineEntry[] | undefined> {
    const key = this.connection.keys.timeline(txId);
    const fields = await this.connection.call('read timeline', () => this.connection.client.hgetall(key));
    const stored = Object.entries(fields);
    if (stored.length === 0) return undefined;
    const entries: TimelineEntry[] = [];
    let refused = 0;
    for (const [version, json] of stored) {
      const entry = decodeEntry(version, json);
      // Not ours (forged or damaged): left out, so one bad field cannot break every read.
      if (entry === undefined) refused += 1;
      else entries.push(entry);
    }
    if (refused > 0) {
      this.connection.counters.refusedRecords += refused;
      this.connection.logger.debug({ txId, refused }, 'timeline: left out entries it did not write');
    }
    return entries.sort((a, b) => a.version - b.version);
  }

  async markOnce(key: string, leaseMs: number): Promise<string | undefined> {
    const name = this.connection.keys.monitorMark(key);
    const token = randomUUID();
    const reply = await this.connection.call('mark once', () =>
      this.connection.client.set(name, token, 'PX', wholeMs(leaseMs), 'NX'),
    );
    return reply === 'OK' ? token : undefined;
  }

  async extendMark(key: string, token: string, ttlMs: number): Promise<boolean> {
    const name = this.connection.keys.monitorMark(key);
    const reply = await this.connection.call('extend mark', () =>
      this.connection.scripts.extendMark(name, token, wholeMs(ttlMs)),
    );
    return reply === 1;
  }

  async close(): Promise<void> {
    await this.batcher.drain();
    if (this.owned) await this.connection.close();
  }
}

/** A time to live as PX and PEXPIRE take it: whole milliseconds, at least one. */
function wholeMs(ms: number): number {
  return Math.max(1, Math.ceil(ms));
}

/**
 * The entry stored in field `version`, or undefined when `json` is not one `append` writes (not
 * JSON, another shape, or filed under another version): anyone who can write to Redis can write
 * here. Its events are checked only for being there: a sealing store above this one keeps them
 * sealed (one value, not a list), and checks them itself when it opens them.
 */
function decodeEntry(version: string, json: string): TimelineEntry | undefined {
  const entry = parseStoredObject(json);
  if (entry === undefined) return undefined;
  const valid =
    typeof entry['version'] === 'number' &&
    String(entry['version']) === version &&
    typeof entry['state'] === 'string' &&
    (Array.isArray(entry['events']) ? entry['events'].every(isLifecycleEvent) : isPresent(entry['events'])) &&
    typeof entry['time'] === 'number';
  return valid ? (entry as unknown as TimelineEntry) : undefined;
}

function isLifecycleEvent(value: unknown): boolean {
  return isObject(value) && typeof value['type'] === 'string' && typeof value['state'] === 'string';
}

function isPresent(value: unknown): boolean {
  return value !== undefined && value !== null;
}
