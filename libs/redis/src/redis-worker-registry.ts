import type { WorkerManagerRecord, WorkerRegistry } from '@multiagents/core';
import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';

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
    for (const [managerId, json] of Object.entries(fields)) {
      let stored: Stored | undefined;
      try {
        stored = JSON.parse(json) as Stored;
      } catch {
        // Not ours: dropped like an expired one.
      }
      if (stored === undefined || !(stored.expiresAt > now)) expired.push(managerId);
      else live.push(stored.record);
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
