import { randomNonce } from './random-nonce';

describe('randomNonce', () => {
  it('hands out bytes never handed out before, each nonce in a buffer of its own, across refills', () => {
    // 3,000 nonces of 12 bytes: the 4 KB pool is refilled nine times.
    const nonces = Array.from({ length: 3_000 }, () => randomNonce(12));
    expect(nonces.every((nonce) => nonce.length === 12)).toBe(true);
    expect(new Set(nonces.map((nonce) => nonce.toString('hex'))).size).toBe(nonces.length);
    // A copy: changing one nonce changes no other one, nor what comes next.
    const first = nonces[0] as Buffer;
    const kept = Buffer.from(nonces[1] as Buffer);
    first.fill(0);
    expect(nonces[1]).toEqual(kept);
    // Not a constant: bytes vary across the whole range.
    expect(new Set(Buffer.concat(nonces)).size).toBeGreaterThan(200);
  });

  it('refuses sizes it cannot serve', () => {
    for (const size of [0, -1, 1.5, 4097]) expect(() => randomNonce(size)).toThrow(RangeError);
  });
});
