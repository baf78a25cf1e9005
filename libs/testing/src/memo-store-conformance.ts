/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import { randomUUID } from 'node:crypto';
import type { MemoStore } from '@multiagents/core';

/** What an adapter's factory hands to {@link memoStoreConformance}: a fresh, empty store per test. */
export interface MemoStoreFixture {
  readonly store: MemoStore;
  /** A second handle on the same data (another process on the same prefix), when the adapter has one. */
  readonly replica?: MemoStore;
  /**
   * Writes `text` as is where the store keeps the record of `key` (behind the store's back: a
   * corrupted or forged record), when the adapter can.
   */
  readonly writeRaw?: (key: string, text: string) => Promise<void>;
  /** Makes the store unable to answer (closes it, or stops its server). */
  readonly breakStore: () => Promise<void>;
  readonly cleanup?: () => Promise<void>;
}

/** A record shaped like an agent's answer, with the JSON types a record may hold. */
function record(answer: string): Record<string, unknown> {
  return {
    agent: 'research.answer',
    answer: { answer, sources: ['atlas', 'almanac'], confidence: 0.75, final: true, note: null },
    toolCalls: [
      { name: 'search', arguments: { q: 'é ✓ "quoted"' }, ok: true, result: [1, 2], durationMs: 3 },
    ],
    usage: { promptTokens: 12, completionTokens: 5, totalTokens: 17, costUsd: null, modelCalls: 1 },
    model: 'fake-model',
    truncated: false,
  };
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/**
 * The MemoStore contract as Jest tests: put-if-absent (the first writer wins, also when writers
 * race, from one handle or two), data equal to what was put after the round trip (not the same
 * object), `undefined` for an unknown key, keys kept apart whatever characters they hold, a stored
 * value that is not JSON refused by `get` with an error naming the key, and both methods rejecting
 * when the store cannot answer.
 *
 * @example
 * memoStoreConformance('memory', async () => {
 *   const store = new MemoryMemoStore();
 *   return { store, breakStore: () => store.close() };
 * });
 */
export function memoStoreConformance(name: string, create: () => Promise<MemoStoreFixture>): void {
  describe(`${name} MemoStore conformance`, () => {
    let fixture: MemoStoreFixture;
    let store: MemoStore;

    beforeEach(async () => {
      fixture = await create();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup?.();
    });

    it('answers undefined for a key it holds nothing under', async () => {
      expect(await store.get(`tx-${randomUUID()}:answer`)).toBeUndefined();
    });

    it('returns data equal to what was put, from put and from get, never the same object', async () => {
      const key = `tx-${randomUUID()}:answer`;
      const original = record('Paris');
      const kept = await store.put(key, original);
      expect(kept).toEqual(original);
      expect(kept).not.toBe(original);
      const read = await store.get<Record<string, unknown>>(key);
      expect(read).toEqual(original);
      expect(read).not.toBe(original);
      // The stored record does not change with the caller's object.
      (original['answer'] as Record<string, unknown>)['answer'] = 'changed after put';
      expect(await store.get(key)).toEqual(record('Paris'));
    });

    it('keeps the first record: a later put returns it and changes nothing', async () => {
      const key = `tx-${randomUUID()}:answer`;
      await store.put(key, record('first'));
      expect(await store.put(key, record('second'))).toEqual(record('first'));
      expect(await store.get(key)).toEqual(record('first'));
    });

    it('lets exactly one of many racing writers win: every writer gets its record', async () => {
      const key = `tx-${randomUUID()}:answer`;
      const writers = [store, fixture.replica ?? store];
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => (writers[i % 2] as MemoStore).put(key, record(`writer ${i}`))),
      );
      const winner = results[0];
      expect(results.map((r) => JSON.stringify(r))).toEqual(results.map(() => JSON.stringify(winner)));
      expect(Array.from({ length: 8 }, (_, i) => record(`writer ${i}`))).toContainEqual(winner);
      expect(await store.get(key)).toEqual(winner);
      if (fixture.replica) expect(await fixture.replica.get(key)).toEqual(winner);
    });

    it('keeps keys apart whatever characters they hold', async () => {
      const base = `tx-${randomUUID()}`;
      const keys = [`${base}:a`, `${base}:a:undo`, `${base}.a`, `${base} a`, `${base}:ä/{x}*>`, `${base}:A`];
      for (const [i, key] of keys.entries()) await store.put(key, { i });
      for (const [i, key] of keys.entries()) expect(await store.get(key)).toEqual({ i });
    });

    it('refuses a stored value that is not JSON, naming the key, on get and on put', async () => {
      if (fixture.writeRaw === undefined) return;
      const key = `tx-${randomUUID()}:answer`;
      await fixture.writeRaw(key, '{"agent": "research.answer", "answer": {tru');
      const error = await rejection(store.get(key));
      expect(error).toMatchObject({ code: 'INTERNAL', name: 'MemoRecordCorruptError', key });
      expect(error.message).toContain(`"${key}" is not valid JSON`);
      // A put finds the corrupt record in place and refuses to call it kept.
      await expect(store.put(key, record('Paris'))).rejects.toMatchObject({ name: 'MemoRecordCorruptError' });
    });

    it('rejects get and put when the store cannot answer, never answering undefined', async () => {
      const key = `tx-${randomUUID()}:answer`;
      await store.put(key, record('Paris'));
      await fixture.breakStore();
      await expect(store.get(key)).rejects.toBeInstanceOf(Error);
      await expect(store.get(`tx-${randomUUID()}:unknown`)).rejects.toBeInstanceOf(Error);
      await expect(store.put(`tx-${randomUUID()}:answer`, record('Rome'))).rejects.toBeInstanceOf(Error);
    });
  });
}
