import { TurnBatcher } from './turn-batcher';

function recorder(fail?: (slot: string) => Error | undefined) {
  const calls: Array<{ slot: string; items: number[] }> = [];
  const batcher = new TurnBatcher<number>({
    send: async (slot, items) => {
      calls.push({ slot, items: [...items] });
      const err = fail?.(slot);
      if (err) throw err;
    },
    failure: (slot, err) => new Error(`${slot}: ${(err as Error).message}`),
    weight: (item) => item,
    maxWeight: 10,
  });
  return { calls, batcher };
}

describe('TurnBatcher', () => {
  it('sends what one turn adds as one call per slot, in the order added', async () => {
    const { calls, batcher } = recorder();
    const done = [batcher.add('a', 1), batcher.add('b', 2), batcher.add('a', 3)];
    expect(calls).toEqual([]);
    await Promise.all(done);
    expect(calls).toEqual([
      { slot: 'a', items: [1, 3] },
      { slot: 'b', items: [2] },
    ]);
    await batcher.add('a', 4);
    expect(calls[2]).toEqual({ slot: 'a', items: [4] });
  });

  it('starts a new call for a slot when the next item would pass the most weight', async () => {
    const { calls, batcher } = recorder();
    await Promise.all([batcher.add('a', 6), batcher.add('a', 4), batcher.add('a', 1), batcher.add('a', 12)]);
    expect(calls.map((call) => call.items)).toEqual([[6, 4], [1], [12]]);
  });

  it('rejects every caller of a failed call with the mapped error, and only those', async () => {
    const { batcher } = recorder((slot) => (slot === 'bad' ? new Error('refused') : undefined));
    const results = await Promise.allSettled([
      batcher.add('bad', 1),
      batcher.add('good', 1),
      batcher.add('bad', 2),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toEqual(new Error('bad: refused'));
  });

  it('a send that throws at once fails its own callers only, and one whose error mapping throws gets the raw error', async () => {
    const calls: string[] = [];
    const batcher = new TurnBatcher<number>({
      send: (slot) => {
        calls.push(slot);
        if (slot === 'sync') throw new Error('thrown');
        return slot === 'async' ? Promise.reject(new Error('rejected')) : Promise.resolve();
      },
      failure: (slot, err) => {
        if (slot === 'async') throw new Error('mapping failed');
        return err;
      },
      weight: () => 1,
      maxWeight: 10,
    });
    const results = await Promise.allSettled([
      batcher.add('sync', 1),
      batcher.add('async', 1),
      batcher.add('ok', 1),
    ]);
    expect(calls).toEqual(['sync', 'async', 'ok']);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok'))).toEqual([
      'thrown',
      'rejected',
      'ok',
    ]);
  });

  it('drain sends what is queued at once and waits for every call in flight', async () => {
    const { calls, batcher } = recorder();
    let settled = false;
    void batcher.add('a', 1).then(() => (settled = true));
    await batcher.drain();
    expect(calls).toEqual([{ slot: 'a', items: [1] }]);
    expect(settled).toBe(true);
  });
});
