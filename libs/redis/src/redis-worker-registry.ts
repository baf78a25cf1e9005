import type { WorkerManagerRecord, WorkerRegistry } from '@multiagents/core';
import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';
import { isObject, parseStoredObject } from './stored-json';

/** A record as stored: the announcement and when it stops counting. */
interface Stored {
  readonly record: WorkerManagerRecord;
  readonly expiresAt: number;
}

/**
 * The live worker-manager replicas on Redis: one hash (`{workers}` hash tag), a field per replica
 * holding its last announcement and when it expires. Not on the per-step path: each replica
 * writes once per heartbeat interval; a read drops the fields whose time ran out.
 *
 * @example
 * const registry = new RedisWorkerRegistry(backend.connection);
 * const live = await registry.list();
 */
export class RedisWorkerRegistry implements WorkerRegistry {
  /** The connection this registry shares with its backend. */
  readonly connection: RedisConnection;
  private readonly owned: boolean;

  /** Uses `connection` (not closed by this registry) or opens its own from options. */
  constructor(connection: RedisConnection | RedisBackendOptions) {
    this.owned = !(connection instanceof RedisConnection);
    this.connection = connection instanceof RedisConnection ? connection : RedisConnection.open(connection);
  }

  async announce(record: WorkerManagerRecord, ttlMs: number): Promise<void> {
    const stored: Stored = { record, expiresAt: record.seenAt + ttlMs };
    await this.connection.call('announce', () =>
      this.connection.client.hset(
        this.connection.keys.workerRegistry(),
        record.managerId,
        JSON.stringify(stored),
      ),
    );
  }

  async withdraw(managerId: string): Promise<void> {
    await this.connection.call('withdraw', () =>
      this.connection.client.hdel(this.connection.keys.workerRegistry(), managerId),
    );
  }

  async list(): Promise<WorkerManagerRecord[]> {
    const key = this.connection.keys.workerRegistry();
    const fields = await this.connection.call('list workers', () => this.connection.client.hgetall(key));
    const now = Date.now();
    const live: WorkerManagerRecord[] = [];
    const expired: string[] = [];
    const refused: string[] = [];
    for (const [managerId, json] of Object.entries(fields)) {
      const stored = decodeStored(managerId, json);
      // Not ours (forged or damaged): dropped like an expired one, so one bad field cannot break
      // every list() (the one that cleans the hash) and is reported once.
      if (stored === undefined) refused.push(managerId);
      if (stored === undefined || !(stored.expiresAt > now)) expired.push(managerId);
      else live.push(stored.record);
    }
    if (refused.length > 0) {
      this.connection.counters.refusedRecords += refused.length;
      this.connection.logger.warn(
        { key, fields: refused },
        'worker registry: dropping records it did not write',
      );
    }
    if (expired.length > 0) {
      await this.connection.call('drop expired workers', () => this.connection.client.hdel(key, ...expired));
    }
    return live.sort((a, b) => (a.managerId < b.managerId ? -1 : 1));
  }

  async close(): Promise<void> {
    if (this.owned) await this.connection.close();
  }
}

/**
 * The record stored under `managerId`, or undefined when `json` is not one {@link RedisWorkerRegistry.announce} writes
 * (not JSON, another shape, or a record of another replica): anyone who can write to Redis can
 * write here, and nothing of it may reach a caller unchecked.
 */
function decodeStored(managerId: string, json: string): Stored | undefined {
  const value = parseStoredObject(json);
  if (value === undefined || typeof value['expiresAt'] !== 'number') return undefined;
  const record = value['record'];
  if (!isObject(record) || record['managerId'] !== managerId) return undefined;
  const { workers, capacity, inFlight, lingering, seenAt, details } = record;
  const valid =
    Array.isArray(workers) &&
    workers.every((worker) => typeof worker === 'string') &&
    typeof capacity === 'number' &&
    typeof inFlight === 'number' &&
    (lingering === undefined || (Number.isSafeInteger(lingering) && (lingering as number) >= 0)) &&
    typeof seenAt === 'number' &&
    (details === undefined ||
      (isObject(details) && Object.values(details).every((detail) => typeof detail === 'string')));
  return valid ? (value as unknown as Stored) : undefined;
}
