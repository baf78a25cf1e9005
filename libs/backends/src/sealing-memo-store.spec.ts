import { createKeyRing, ErrorCode } from '@multiagents/contracts';
import type { MemoStore } from '@multiagents/core';
import { SealingMemoStore } from './sealing-memo-store';

/** Keeps the first record put under a key, as the backends' memos do; the test reads it "raw". */
class RawMemo implements MemoStore {
  readonly records = new Map<string, unknown>();
  get<T>(key: string): Promise<T | undefined> {
    return Promise.resolve(this.records.get(key) as T | undefined);
  }
  put<T>(key: string, record: T): Promise<T> {
    if (!this.records.has(key)) this.records.set(key, record);
    return Promise.resolve(this.records.get(key) as T);
  }
}

const keys = createKeyRing([['k1', Buffer.alloc(32, 1)]]);
const answer = { answer: 'the card 4111111111111111 is valid', usage: { totalTokens: 12 } };

describe('SealingMemoStore', () => {
  it('keeps records sealed at rest, reads them back, and answers a second put with the first record', async () => {
    const raw = new RawMemo();
    const memo = new SealingMemoStore(raw, keys);
    expect(await memo.put('tx-1:ask', answer)).toEqual(answer);
    expect(JSON.stringify(raw.records.get('tx-1:ask'))).not.toMatch(/4111111111111111|answer|usage/);
    expect(await memo.get('tx-1:ask')).toEqual(answer);
    expect(await memo.put('tx-1:ask', { answer: 'another' })).toEqual(answer);
    expect(await memo.get('tx-2:ask')).toBeUndefined();
  });

  it('refuses a record in plaintext (read while migrating); a record moved under another key does not open', async () => {
    const raw = new RawMemo();
    await raw.put('old', answer);
    const memo = new SealingMemoStore(raw, keys);
    await expect(memo.get('old')).rejects.toMatchObject({ code: ErrorCode.PayloadRejected });
    expect(await new SealingMemoStore(raw, keys, { acceptPlaintext: true }).get('old')).toEqual(answer);
    await memo.put('tx-1:ask', answer);
    raw.records.set('tx-2:ask', raw.records.get('tx-1:ask'));
    await expect(memo.get('tx-2:ask')).rejects.toMatchObject({ code: ErrorCode.PayloadRejected });
  });
});
