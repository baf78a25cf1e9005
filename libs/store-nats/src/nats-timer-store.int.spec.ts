import { ErrorCode } from '@multiagents/contracts';
import type { Timer } from '@multiagents/core';
import { timerStoreConformance, waitFor } from '@multiagents/testing';
import { KvClient } from './kv-client';
import { NatsTimerStore, type NatsTimerStoreOptions } from './nats-timer-store';
import { freshPrefix, startNatsTestServer, type NatsTestServer } from './test-nats';

let nats: NatsTestServer;
beforeAll(async () => {
  nats = await startNatsTestServer();
});
afterAll(async () => {
  await nats.stop();
});

timerStoreConformance('NatsTimerStore', async () => {
  const prefix = freshPrefix();
  const store = new NatsTimerStore({ servers: nats.url, prefix });
  await store.start();
  return { store, cleanup: () => nats.destroyPrefix(prefix) };
});

describe('NatsTimerStore specifics', () => {
  const stores: NatsTimerStore[] = [];
  const prefixes: string[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const prefix of prefixes.splice(0)) await nats.destroyPrefix(prefix);
  });

  async function open(
    prefix?: string,
    options: Partial<NatsTimerStoreOptions> = {},
  ): Promise<NatsTimerStore> {
    const p = prefix ?? freshPrefix();
    if (prefix === undefined) prefixes.push(p);
    const store = new NatsTimerStore({ servers: nats.url, prefix: p, ...options });
    stores.push(store);
    await store.start();
    return store;
  }
  const T0 = 1_800_000_000_000;
  const timer = (id: string, dueAt: number): Timer => ({
    id,
    txId: `tx-${id}`,
    dueAt,
    payload: { kind: 'sleep', step: 's', attempt: 1 },
  });

  it('never hands one timer to two of three claimers (own connections) within a lease', async () => {
    const first = await open();
    const prefix = prefixes[0] as string;
    const claimers = [first, await open(prefix), await open(prefix)];
    const timers = Array.from({ length: 90 }, (_, i) => timer(`t${i}`, T0 + i * 37));
    await first.schedule(timers);
    const claimedBy = await Promise.all(
      claimers.map(async (claimer) => {
        const mine: string[] = [];
        for (let round = 0; round < 40; round += 1) {
          const got = await claimer.claimDue(T0 + 10_000, 7, 600_000);
          mine.push(...got.map((t) => t.id));
          if (got.length === 0) break;
        }
        return mine;
      }),
    );
    const all = claimedBy.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort()).toEqual(timers.map((t) => t.id).sort());
    // More than one claimer took part, or the test proves nothing about concurrency.
    expect(claimedBy.filter((mine) => mine.length > 0).length).toBeGreaterThan(1);
  });

  it('leaves no due entry and no slot behind once every timer is claimed and completed', async () => {
    const store = await open(undefined, { slotMs: 1_000 });
    const prefix = prefixes[0] as string;
    const timers = Array.from({ length: 12 }, (_, i) => timer(`t${i}`, T0 + i * 700));
    await store.schedule(timers);
    expect(await nats.keys(`${prefix}-timer-slots`)).toHaveLength(8); // due T0 … T0+7 700
    const claimed = await store.claimDue(T0 + 9_000, 100, 1_000);
    expect(claimed).toHaveLength(12);
    await store.complete(claimed.map((t) => t.id));
    // The lease slot's entries went with complete(); the next claim past it empties the directory.
    expect(await store.claimDue(T0 + 20_000, 100, 1_000)).toEqual([]);
    expect(await nats.keys(`${prefix}-timer-due`)).toEqual([]);
    expect(await nats.keys(`${prefix}-timer-slots`)).toEqual([]);
    expect(await nats.keys(`${prefix}-timers`)).toEqual([]);
    expect(await store.nextDueAt()).toBeUndefined();
  });

  it('moves the due entry of a rescheduled or claimed timer instead of adding one', async () => {
    const store = await open(undefined, { slotMs: 1_000 });
    const due = (): Promise<string[]> => nats.keys(`${prefixes[0]}-timer-due`);
    await store.schedule([timer('a', T0 + 500)]);
    await store.schedule([timer('a', T0 + 7_500)]);
    expect(await due()).toEqual([expect.stringMatching(/^d\.0001800000007000\.0001800000007500\.a\./)]);
    await store.claimDue(T0 + 7_500, 10, 30_000);
    expect(await due()).toEqual([expect.stringMatching(/^d\.0001800000037000\.0001800000037500\.a\./)]);
  });

  it('sees a timer scheduled by another process within slotRefreshMs', async () => {
    const scheduler = await open();
    const claimer = await open(prefixes[0], { slotRefreshMs: 50 });
    expect(await claimer.claimDue(T0, 10, 1_000)).toEqual([]); // its directory is now read (empty)
    await scheduler.schedule([timer('late', T0 - 60_000)]);
    const claimed: Timer[] = [];
    await waitFor(async () => {
      claimed.push(...(await claimer.claimDue(T0, 10, 1_000)));
      return claimed.length > 0;
    });
    expect(claimed.map((t) => t.id)).toEqual(['late']);
  });

  it('does not re-read a slot that holds only future timers, until one is due or it writes there', async () => {
    const store = await open(undefined, { slotMs: 10_000, slotRefreshMs: 60_000 });
    await store.schedule([timer('a', T0 + 1_000), timer('b', T0 + 5_000)]);
    const listings = jest.spyOn(KvClient.prototype, 'keys');
    try {
      expect(await store.claimDue(T0 + 1_000, 10, 60_000)).toEqual([timer('a', T0 + 1_000)]);
      const afterFirst = listings.mock.calls.length;
      expect(await store.claimDue(T0 + 2_000, 10, 60_000)).toEqual([]);
      expect(listings.mock.calls.length).toBe(afterFirst); // quiet: b is due at T0+5 000 only
      await store.schedule([timer('c', T0 + 2_500)]);
      expect(await store.claimDue(T0 + 3_000, 10, 60_000)).toEqual([timer('c', T0 + 2_500)]);
      expect(await store.claimDue(T0 + 5_000, 10, 60_000)).toEqual([timer('b', T0 + 5_000)]);
      expect(listings.mock.calls.length).toBe(afterFirst + 2);
    } finally {
      listings.mockRestore();
    }
  });

  it('keeps timers with hostile ids and fractional due times', async () => {
    const store = await open();
    const odd = timer('tx.1:step *>:retry:2', T0 + 0.5);
    await store.schedule([odd]);
    expect(await store.nextDueAt()).toBe(T0 + 0.5);
    expect(await store.claimDue(T0, 10, 1_000)).toEqual([]);
    expect(await store.claimDue(T0 + 1, 10, 1_000)).toEqual([odd]);
  });

  it('reports bad input with every problem', async () => {
    const store = await open();
    await expect(
      store.schedule([{ ...timer('', T0), dueAt: Number.NaN }, { txId: 5 } as unknown as Timer]),
    ).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      problems: [
        'timers[0].id must be a non-empty string',
        'timers[0].dueAt must be a time in ms (got NaN)',
        'timers[1].id must be a non-empty string',
        'timers[1].txId must be a string',
        'timers[1].dueAt must be a time in ms (got undefined)',
      ],
    });
    await expect(store.claimDue(0, 0, 0)).rejects.toMatchObject({
      problems: ['limit must be an integer >= 1', 'leaseMs must be a number > 0'],
    });
  });
});
