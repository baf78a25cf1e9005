import { memoStoreConformance } from '@multiagents/testing';
import { createMemoryBackend } from './memory-backend';
import { MemoryMemoStore } from './memory-memo-store';

memoStoreConformance('memory', async () => {
  const store = new MemoryMemoStore();
  return { store, breakStore: () => store.close() };
});

memoStoreConformance('memory backend', async () => {
  const backend = createMemoryBackend();
  return { store: backend.memo, breakStore: () => backend.close() };
});

describe('MemoryMemoStore', () => {
  it('forgets the oldest record past maxEntries', async () => {
    const store = new MemoryMemoStore({ maxEntries: 2 });
    await store.put('a', 1);
    await store.put('b', 2);
    await store.put('c', 3);
    expect(store.size).toBe(2);
    expect(await store.get('a')).toBeUndefined();
    expect(await store.get('c')).toBe(3);
  });

  it('refuses a bad maxEntries and a record JSON cannot carry', async () => {
    expect(() => new MemoryMemoStore({ maxEntries: 0 })).toThrow(/maxEntries must be a positive integer/);
    await expect(new MemoryMemoStore().put('k', undefined)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});
