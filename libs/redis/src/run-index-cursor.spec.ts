import { ErrorCode } from '@multiagents/contracts';
import { decodeRunCursor, encodeRunCursor, newerFirst } from './run-index-cursor';

describe('run index cursor', () => {
  it('round-trips and refuses anything it did not make with INVALID_ARGUMENT', () => {
    const key = { createdAt: 1_800_000_000_123, txId: 'tx-é' };
    expect(decodeRunCursor(encodeRunCursor(key))).toEqual(key);
    for (const bad of [
      '%%',
      Buffer.from('[1]').toString('base64url'),
      Buffer.from('{"a":1}').toString('base64url'),
    ]) {
      expect(() => decodeRunCursor(bad)).toThrow(
        expect.objectContaining({ code: ErrorCode.InvalidArgument }),
      );
    }
  });

  it('orders newest first, then by txId bytes descending as a zset does in reverse', () => {
    const keys = [
      { createdAt: 1, txId: 'b' },
      { createdAt: 2, txId: 'a' },
      { createdAt: 1, txId: 'é' },
      { createdAt: 1, txId: 'a' },
    ];
    expect([...keys].sort(newerFirst)).toEqual([
      { createdAt: 2, txId: 'a' },
      { createdAt: 1, txId: 'é' },
      { createdAt: 1, txId: 'b' },
      { createdAt: 1, txId: 'a' },
    ]);
  });
});
