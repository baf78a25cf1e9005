import type { Timer } from '@multiagents/core';
import { startRedisServer, timerStoreConformance, type ServerProcess } from '@multiagents/testing';
import { Redis } from 'ioredis';
import { RedisKeys } from './redis-keys';
import { RedisTimerStore } from './redis-timer-store';

let server: ServerProcess;
let prefixes = 0;
const freshPrefix = (): string => `t${process.pid}-${++prefixes}`;

beforeAll(async () => {
  server = await startRedisServer();
});

afterAll(async () => {
  await server.stop();
});

timerStoreConformance('redis', async () => ({
  store: new RedisTimerStore({ url: server.url, prefix: freshPrefix() }),
}));

const T0 = 1_800_000_000_000;

function timer(id: string, dueAt: number): Timer {
  return { id, txId: `tx-${id}`, dueAt, payload: { kind: 'sleep', step: 'nap', attempt: 1 } };
}

describe('RedisTimerStore (adapter-specific)', () => {
  let prefix: string;
  let stores: RedisTimerStore[];

  beforeEach(() => {
    prefix = freshPrefix();
    stores = [
      new RedisTimerStore({ url: server.url, prefix }),
      new RedisTimerStore({ url: server.url, prefix }),
    ];
  });

  afterEach(async () => {
    await Promise.all(stores.map((store) => store.close()));
  });

  it('never gives one timer to two claimers on separate connections, over many rounds', async () => {
    const [a, b] = stores as [RedisTimerStore, RedisTimerStore];
    const timers = Array.from({ length: 300 }, (_, i) => timer(`t${i}`, T0 + i));
    await a.schedule(timers);
    const seen: string[] = [];
    for (let round = 0; round < 20; round += 1) {
      const now = T0 + 300;
      const [first, second] = await Promise.all([a.claimDue(now, 7, 60_000), b.claimDue(now, 9, 60_000)]);
      seen.push(...first.map((t) => t.id), ...second.map((t) => t.id));
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toHaveLength(300);
  });

  it('gives a claimed timer back when its claimer dies without completing it', async () => {
    const [a, b] = stores as [RedisTimerStore, RedisTimerStore];
    await a.schedule([timer('x', T0)]);
    expect((await a.claimDue(T0, 10, 1_000)).map((t) => t.id)).toEqual(['x']);
    await a.close(); // the claimer is gone
    expect(await b.claimDue(T0 + 999, 10, 1_000)).toEqual([]);
    expect((await b.claimDue(T0 + 1_000, 10, 1_000)).map((t) => t.id)).toEqual(['x']);
  });

  it('keeps its keys under the {timers} hash tag and removes contents with the timer', async () => {
    const admin = new Redis(server.url);
    try {
      const keys = new RedisKeys(prefix);
      const [a] = stores as [RedisTimerStore];
      await a.schedule([timer('y', T0), timer('z', T0)]);
      expect(await admin.hlen(keys.timersData())).toBe(2);
      await a.complete(['y']);
      await a.cancel(['z']);
      expect(await admin.exists(keys.timersData(), keys.timersDue())).toBe(0);
      expect(keys.timersDue()).toBe(`${prefix}:{timers}:due`);
    } finally {
      await admin.quit();
    }
  });
});
