import { ValidationError } from '@multiagents/contracts';
import type { Timer, TimerStore } from '@multiagents/core';
import { redisCodec } from './redis-codec';
import { RedisConnection } from './redis-connection';
import { resolveRedisStoreOptions, type RedisStoreOptions } from './redis-store-options';

/** Options of {@link RedisTimerStore}: the shared connection options. */
export type RedisTimerStoreOptions = RedisStoreOptions;

/**
 * A {@link TimerStore} on Redis: a sorted set of timer ids by the time a claim may take them and
 * a hash of their contents, both under the `{timers}` hash tag (one Redis Cluster slot; claiming
 * "the earliest due across all timers" needs one order, and a timer is small, so one slot holds
 * millions). `claimDue` is one Lua script that takes the due timers and moves their score to the
 * end of the lease, so a timer fires once across orchestrators within a lease, and a crashed
 * claimer's timers come back when it ends. Ties on time come out by id (the memory store: FIFO).
 *
 * @example
 * const timers = new RedisTimerStore({ url: 'redis://127.0.0.1:6379' });
 * await timers.schedule([{ id: 'tx1:charge:retry:2', txId: 'tx1', dueAt, payload }]);
 * const due = await timers.claimDue(Date.now(), 100, 30_000);
 * await timers.complete(due.map((t) => t.id));
 */
export class RedisTimerStore implements TimerStore {
  private readonly connection: RedisConnection;

  constructor(options: RedisTimerStoreOptions = {}) {
    this.connection = new RedisConnection(
      resolveRedisStoreOptions('RedisTimerStore', options),
      'RedisTimerStore',
    );
  }

  async schedule(timers: readonly Timer[]): Promise<void> {
    if (timers.length === 0) return;
    const { keys, scripts } = this.connection;
    const args: Array<string | number> = [];
    for (const timer of timers) args.push(timer.id, timer.dueAt, redisCodec.encodeTimer(timer));
    await this.connection.call('schedule', () =>
      scripts.scheduleTimers([keys.timersDue(), keys.timersData()], args),
    );
  }

  async cancel(timerIds: readonly string[]): Promise<void> {
    await this.remove('cancel', timerIds);
  }

  async claimDue(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    const problems: string[] = [];
    if (!Number.isInteger(limit) || limit < 1) problems.push('limit must be an integer >= 1');
    if (!Number.isFinite(leaseMs) || leaseMs <= 0) problems.push('leaseMs must be a number > 0');
    if (problems.length > 0) throw new ValidationError('claimDue', problems);
    const { keys, scripts } = this.connection;
    return this.connection.call('claimDue', async () => {
      const claimed = (await scripts.claimTimers(
        [keys.timersDue(), keys.timersData()],
        [now, limit, now + leaseMs],
      )) as string[];
      return claimed.map((json) => redisCodec.decodeTimer(json));
    });
  }

  async complete(timerIds: readonly string[]): Promise<void> {
    await this.remove('complete', timerIds);
  }

  async nextDueAt(): Promise<number | undefined> {
    const { keys, client } = this.connection;
    return this.connection.call('nextDueAt', async () => {
      const [, score] = await client.zrange(keys.timersDue(), 0, '0', 'WITHSCORES');
      return score === undefined ? undefined : Number(score);
    });
  }

  /** Closes the connection (if this store opened it); further calls are refused. */
  async close(): Promise<void> {
    await this.connection.close();
  }

  private async remove(operation: string, timerIds: readonly string[]): Promise<void> {
    if (timerIds.length === 0) return;
    const { keys, scripts } = this.connection;
    await this.connection.call(operation, () =>
      scripts.removeTimers([keys.timersDue(), keys.timersData()], timerIds),
    );
  }
}
