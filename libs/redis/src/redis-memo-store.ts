import { decodeMemoRecord, encodeMemoRecord, type MemoStore } from '@multiagents/core';
import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';

/**
 * A {@link MemoStore} on Redis (`backend.memo`): one string key per record,
 * `<prefix>:{p<i>}:memo:<key>` (see RedisKeys.memo), written with `SET NX PX` and read back in the
 * same MULTI, so put-if-absent and "what is stored now" are one atomic round trip on one slot
 * (Redis Cluster safe; no `SET … GET`, which needs Redis 7). Records expire `memoTtlMs` after they
 * are written (default: the backend's terminal-run retention). Commands go through the backend's
 * connection: they reject with TIMEOUT while Redis is away and with FAILED_PRECONDITION once the
 * backend is closed; a stored value that is not JSON makes `get` reject with MemoRecordCorruptError.
 *
 * @example
 * const { memo } = createRedisBackend({ url: 'redis://127.0.0.1:6379', prefix: 'shop' });
 * const kept = await memo.put('tx-1:answer', { answer: 'Paris' }); // the first writer's record
 */
export class RedisMemoStore implements MemoStore {
  /** The connection this store shares with its backend. */
  readonly connection: RedisConnection;
  private readonly owned: boolean;

  /** Uses `connection` (not closed by this store) or opens its own from options. */
  constructor(connection: RedisConnection | RedisBackendOptions) {
    this.owned = !(connection instanceof RedisConnection);
    this.connection = connection instanceof RedisConnection ? connection : RedisConnection.open(connection);
  }

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const name = this.connection.keys.memo(key);
    const text = await this.connection.call('read memo record', () => this.connection.client.get(name));
    return text === null ? undefined : decodeMemoRecord<T>(text, key, `Redis memo ${name}`);
  }

  async put<T>(key: string, record: T): Promise<T> {
    const name = this.connection.keys.memo(key);
    const text = encodeMemoRecord(record, key);
    const ttlMs = this.connection.options.memoTtlMs;
    const stored = await this.connection.call('write memo record', async () => {
      const multi = this.connection.client.multi();
      if (ttlMs > 0) multi.set(name, text, 'PX', ttlMs, 'NX');
      else multi.set(name, text, 'NX');
      multi.get(name);
      const replies = await multi.exec();
      const failed = replies?.find(([err]) => err !== null);
      if (failed) throw failed[0] as Error;
      const value = replies?.[1]?.[1];
      if (typeof value !== 'string') throw new Error(`the record under ${name} vanished as it was written`);
      return value;
    });
    return decodeMemoRecord<T>(stored, key, `Redis memo ${name}`);
  }

  async close(): Promise<void> {
    if (this.owned) await this.connection.close();
  }
}
