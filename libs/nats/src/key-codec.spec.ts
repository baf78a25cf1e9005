import fc from 'fast-check';
import { MAX_TOKEN_LENGTH, decodeTime, decodeToken, encodeTime, encodeToken } from './key-codec';

/** What NATS accepts in one token of a KV key (the KV client's own check, minus the dot). */
const VALID_TOKEN = /^[-/_=a-zA-Z0-9]+$/;
/** Any JS string: ASCII-heavy (dots, wildcards, escapes), any code point, lone surrogates too. */
const anyString = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)), maxLength: 40 }),
);

describe('encodeToken', () => {
  it('leaves UUIDs and the usual ids unchanged', () => {
    for (const id of ['3f0c9a1e-7b2d-4c55-9e0f-0123456789ab', 'tx-123-abc', 'order_processing', 'A-Z_0-9']) {
      expect(encodeToken(id)).toBe(id);
    }
  });

  it('escapes dots, wildcards, spaces, the escape character and non-ASCII text', () => {
    expect(encodeToken('a.b')).toBe('a=2Eb');
    expect(encodeToken('*')).toBe('=2A');
    expect(encodeToken('>')).toBe('=3E');
    expect(encodeToken('order 42')).toBe('order=2042');
    expect(encodeToken('=')).toBe('=3D');
    expect(encodeToken('é')).toBe('=E9');
    expect(encodeToken('日')).toBe('=u65E5');
    // A lone surrogate and U+FFFD stay distinct (a UTF-8 round trip would merge them).
    expect(encodeToken('\uD800')).not.toBe(encodeToken('\uFFFD'));
    expect(encodeToken('')).toBe('=');
  });

  it('always yields one valid key token, is injective and decodes back, for any string', () => {
    fc.assert(
      fc.property(anyString, anyString, (a, b) => {
        const [ea, eb] = [encodeToken(a), encodeToken(b)];
        expect(ea).toMatch(VALID_TOKEN);
        expect(ea).not.toContain('.');
        if (a !== b) expect(ea).not.toBe(eb);
        expect(decodeToken(ea)).toBe(a);
      }),
      { numRuns: 2_000 },
    );
  });

  it('hashes encodings longer than the limit into a short, valid, distinct token', () => {
    const long = 'x'.repeat(MAX_TOKEN_LENGTH + 1);
    const token = encodeToken(long);
    expect(token).toMatch(/^=h[A-Za-z0-9_-]{43}$/);
    expect(encodeToken(`${long}y`)).not.toBe(token);
    expect(encodeToken('x'.repeat(MAX_TOKEN_LENGTH))).toBe('x'.repeat(MAX_TOKEN_LENGTH));
    // Escaping can push a short string over the limit too.
    expect(encodeToken('.'.repeat(100))).toMatch(/^=h/);
    expect(decodeToken(token)).toBeUndefined();
  });

  it('refuses to decode text no encoding produces', () => {
    for (const bad of ['a.b', '=2', '=zz', '=2e', 'a*', '=41', '=u00E9', '=u12'])
      expect(decodeToken(bad)).toBeUndefined();
  });
});

describe('encodeTime', () => {
  it('gives fixed-width tokens that sort like the numbers', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), fc.maxSafeNat(), (a, b) => {
        const [ta, tb] = [encodeTime(a), encodeTime(b)];
        expect(ta).toHaveLength(16);
        expect(Math.sign(ta.localeCompare(tb, 'en'))).toBe(Math.sign(a - b));
        expect(ta < tb).toBe(a < b);
        expect(decodeTime(ta)).toBe(a);
      }),
    );
  });

  it('refuses negative, fractional and unsafe times', () => {
    for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN]) {
      expect(() => encodeTime(bad)).toThrow(RangeError);
    }
    expect(decodeTime('123')).toBeUndefined();
    expect(decodeTime('abcdefghijklmnop')).toBeUndefined();
  });
});
