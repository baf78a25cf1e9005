import { DEFAULT_OUTPUT_BOUNDS, toJsonValue } from './to-json-value';

describe('toJsonValue', () => {
  it('returns what a JSON round trip gives', () => {
    const at = new Date(Date.UTC(2024, 0, 2));
    expect(toJsonValue({ at, gone: undefined, list: [1, 'a', null], nan: Number.NaN })).toEqual({
      ok: true,
      value: { at: '2024-01-02T00:00:00.000Z', list: [1, 'a', null], nan: null },
    });
  });

  it('turns a missing output into null', () => {
    expect(toJsonValue(undefined)).toEqual({ ok: true, value: null });
  });

  it('refuses a BigInt, a cycle, a function, a symbol and a throwing toJSON', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const throwing = {
      toJSON: () => {
        throw new Error('nope');
      },
    };
    for (const value of [{ amount: 10n }, cycle, () => 1, Symbol('s'), throwing]) {
      const result = toJsonValue(value);
      expect(result.ok).toBe(false);
      expect(result.ok ? '' : result.reason).not.toBe('');
    }
  });

  it('refuses an output nested too deep or too large to be stored and sent (issue 12)', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 4_100; i++) deep = { a: deep };
    expect(toJsonValue(deep)).toEqual({
      ok: false,
      reason: 'invalid output: output is nested more than 64 levels deep',
    });
    const large = toJsonValue({ blob: 'x'.repeat(DEFAULT_OUTPUT_BOUNDS.maxBytes) });
    expect(large.ok ? '' : large.reason).toMatch(/output is larger than the 524288-byte limit/);
    expect(toJsonValue({ ok: true }, { maxBytes: 5, maxDepth: 4 }).ok).toBe(false);
  });
});
