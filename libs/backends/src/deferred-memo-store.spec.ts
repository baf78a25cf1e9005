import { MemoryMemoStore } from '@multiagents/memory';
import { DeferredMemoStore } from './deferred-memo-store';

describe('DeferredMemoStore', () => {
  it('rejects as unavailable until bound, then is the bound store', async () => {
    const memo = new DeferredMemoStore('waiting for the broker');
    await expect(memo.get('k')).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      retryable: true,
      message: 'waiting for the broker',
    });
    await expect(memo.put('k', { a: 1 })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const store = new MemoryMemoStore();
    memo.bind(store);
    expect(await memo.put('k', { a: 1 })).toEqual({ a: 1 });
    expect(await memo.put('k', { a: 2 })).toEqual({ a: 1 });
    expect(await store.get('k')).toEqual({ a: 1 });
    expect(await memo.get('missing')).toBeUndefined();
  });
});
