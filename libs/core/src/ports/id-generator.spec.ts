import { createHash } from 'node:crypto';
import { randomUuid, txIdForIdempotencyKey, uuidGenerator } from './id-generator';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('randomUuid', () => {
  it('makes RFC 9562 version 4 UUIDs, all different, across many batches of random bytes', () => {
    const ids = Array.from({ length: 3_000 }, () => randomUuid());
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
    expect(uuidGenerator.next()).toMatch(UUID_V4);
  });
});

describe('txIdForIdempotencyKey', () => {
  it('is a version 8 UUID made of the key digest, the same for the same key', () => {
    // The layout every stored run was named with: digest hex with the version and variant set.
    const before = (key: string): string => {
      const hex = createHash('sha256').update(`multiagents:idempotency:${key}`).digest('hex');
      const variant = ((parseInt(hex.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
    };
    for (let i = 0; i < 200; i += 1) expect(txIdForIdempotencyKey(`order-${i}`)).toBe(before(`order-${i}`));
    const expected = before('order-42');
    expect(txIdForIdempotencyKey('order-42')).toBe(expected);
    expect(txIdForIdempotencyKey('order-43')).not.toBe(expected);
  });
});
