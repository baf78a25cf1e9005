import { mergedCopy, shallowCopy } from './shallow-copy';

describe('shallowCopy', () => {
  it('copies own enumerable keys in order, sharing nested values', () => {
    const nested = { a: 1 };
    const source = { status: 'running', attempt: 2, nested, list: [1, 2], missing: undefined };
    const copy = shallowCopy(source);
    expect(copy).not.toBe(source);
    expect(copy).toStrictEqual(source);
    expect(Object.keys(copy)).toEqual(Object.keys(source));
    expect(copy.nested).toBe(nested);
    expect(copy.list).toBe(source.list);
  });

  it('leaves the source alone when the copy changes', () => {
    const source = { state: 'running', steps: { a: 1 } };
    const copy = shallowCopy(source);
    copy.state = 'completed';
    expect(source.state).toBe('running');
  });

  it('keeps a __proto__ key an own property, as spread and JSON.parse do', () => {
    const source = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as Record<string, unknown>;
    const copy = shallowCopy(source);
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(Object.hasOwn(copy, '__proto__')).toBe(true);
    expect(copy).toStrictEqual({ ...source });
    expect((copy as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('copies no inherited or non-enumerable keys', () => {
    const source = Object.create({ inherited: 1 }) as Record<string, unknown>;
    source['own'] = 2;
    Object.defineProperty(source, 'hidden', { value: 3, enumerable: false });
    expect(shallowCopy(source)).toStrictEqual({ own: 2 });
  });

  it('copies a frozen object into a writable one', () => {
    const copy: { a: number } = shallowCopy(Object.freeze({ a: 1 }));
    expect(Object.isFrozen(copy)).toBe(false);
    copy.a = 2;
    expect(copy.a).toBe(2);
  });
});

describe('mergedCopy', () => {
  it('gives what { ...base, ...extra } gives: base keys, then extra keys, extra winning', () => {
    const base = { orderId: 'o-1', total: 42, note: 'old' };
    const extra = { reservationId: 'res-1', note: 'new' };
    const merged = mergedCopy(base, extra);
    expect(merged).toStrictEqual({ ...base, ...extra });
    expect(Object.keys(merged)).toEqual(Object.keys({ ...base, ...extra }));
    expect(merged).not.toBe(base);
    expect(base).toStrictEqual({ orderId: 'o-1', total: 42, note: 'old' });
  });

  it('keeps a __proto__ key of either side an own property, never the prototype', () => {
    const base = JSON.parse('{"__proto__": {"a": 1}}') as Record<string, unknown>;
    const extra = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as Record<string, unknown>;
    const merged = mergedCopy(base, extra);
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(merged).toStrictEqual({ ...base, ...extra });
    expect((merged as { polluted?: boolean }).polluted).toBeUndefined();
    const keyed = mergedCopy({ a: 1 }, { ['__proto__']: { polluted: true } });
    expect(Object.getPrototypeOf(keyed)).toBe(Object.prototype);
    expect(Object.hasOwn(keyed, '__proto__')).toBe(true);
  });
});
