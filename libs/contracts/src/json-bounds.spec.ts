import fc from 'fast-check';
import { ErrorCode, ResourceExhaustedError, ValidationError } from './errors';
import { checkJsonBounds, parseBoundedJson } from './json-bounds';

function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? { a: value } : [value];
  return value;
}

describe('checkJsonBounds', () => {
  const bounds = { maxBytes: 1024, maxDepth: 8, what: 'input' };

  it('returns the exact size of the JSON encoding', () => {
    fc.assert(
      // __proto__ keys are refused (tested below), so they are left out here.
      fc.property(
        fc.jsonValue({ maxDepth: 6 }).filter((value) => !JSON.stringify(value).includes('"__proto__"')),
        (value) => {
          const json = JSON.stringify(value);
          expect(checkJsonBounds(value, { maxBytes: 1e9, maxDepth: 100 })).toBe(
            Buffer.byteLength(json, 'utf8'),
          );
        },
      ),
      { numRuns: 2_000 },
    );
    expect(checkJsonBounds({ s: 'é\u0001"\ud800😀', u: undefined }, bounds)).toBe(
      Buffer.byteLength(JSON.stringify({ s: 'é\u0001"\ud800😀' }), 'utf8'),
    );
  });

  it('refuses a value nested deeper than maxDepth with INVALID_ARGUMENT', () => {
    expect(() => checkJsonBounds(nested(8), bounds)).not.toThrow();
    const deep = () => checkJsonBounds(nested(9), bounds);
    expect(deep).toThrow(ValidationError);
    expect(deep).toThrow('input is nested more than 8 levels deep');
  });

  it('refuses the 4,100-level input quickly and without overflowing the stack', () => {
    const text = '{"a":'.repeat(4_100) + '1' + '}'.repeat(4_100);
    const started = Date.now();
    expect(() => parseBoundedJson(text, { maxBytes: 256 * 1024, maxDepth: 64, what: 'input' })).toThrow(
      'input is nested more than 64 levels deep',
    );
    expect(() => checkJsonBounds(nested(1_000_000), { maxBytes: 1e9, maxDepth: 64 })).toThrow(
      ValidationError,
    );
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('refuses a value larger than maxBytes with RESOURCE_EXHAUSTED, before walking all of it', () => {
    const large = { items: Array.from({ length: 1_000_000 }, (_, i) => i) };
    let error: unknown;
    try {
      checkJsonBounds(large, bounds);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ResourceExhaustedError);
    expect((error as ResourceExhaustedError).code).toBe(ErrorCode.ResourceExhausted);
  });

  it('refuses what JSON cannot carry, cycles and __proto__ keys', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    const proto = JSON.parse('{"a":{"__proto__":{"polluted":true}}}') as unknown;
    for (const bad of [
      NaN,
      Infinity,
      [undefined],
      { f: () => 1 },
      10n,
      new Date(),
      new Map(),
      cyclic,
      proto,
    ]) {
      expect(() => checkJsonBounds(bad, bounds)).toThrow(ValidationError);
    }
    expect(() => checkJsonBounds(Object.create(null) as unknown, bounds)).not.toThrow();
  });
});

describe('parseBoundedJson', () => {
  it('refuses text over the limit before parsing it', () => {
    expect(() => parseBoundedJson(' '.repeat(2_000) + '1', { maxBytes: 1_000, maxDepth: 4 })).toThrow(
      ResourceExhaustedError,
    );
  });

  it('refuses a value whose encoding outgrows the limit (1e5 is stored as 100000)', () => {
    const text = `[${Array.from({ length: 100 }, () => '1e5').join(',')}]`;
    expect(() => parseBoundedJson(text, { maxBytes: text.length, maxDepth: 4 })).toThrow(
      ResourceExhaustedError,
    );
  });

  it('refuses bad JSON and bad UTF-8 with INVALID_ARGUMENT', () => {
    expect(() => parseBoundedJson('{', { maxBytes: 100, maxDepth: 4 })).toThrow(ValidationError);
    expect(() =>
      parseBoundedJson(Uint8Array.from([0x22, 0xff, 0x22]), { maxBytes: 100, maxDepth: 4 }),
    ).toThrow(ValidationError);
  });

  it('never throws anything but ValidationError or ResourceExhaustedError (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.json({ maxDepth: 10 }), fc.uint8Array({ maxLength: 200 })),
        (text) => {
          try {
            parseBoundedJson(text, { maxBytes: 150, maxDepth: 5 });
          } catch (err) {
            expect(err instanceof ValidationError || err instanceof ResourceExhaustedError).toBe(true);
          }
        },
      ),
      { numRuns: 10_000 },
    );
  });
});
