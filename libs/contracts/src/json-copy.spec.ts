import fc from 'fast-check';
import { copyJsonData } from './json-copy';

/** What the copy must equal whenever it gives one. */
function roundTrip(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** Every object and array reachable from `value`. */
function containers(value: unknown, into = new Set<object>()): Set<object> {
  if (typeof value === 'object' && value !== null) {
    into.add(value);
    for (const item of Object.values(value)) containers(item, into);
  }
  return into;
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

/** Values JSON data is made of, and the ones a round trip changes or refuses. */
const anything: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.jsonValue({ maxDepth: 2 }),
    fc.constantFrom<unknown>(
      undefined,
      -0,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      new Date(0),
      new Point(1, 2),
      new Map([[1, 2]]),
      { toJSON: () => 'custom' },
      Object.create(null) as unknown,
      Object.assign(Object.create(null) as object, { a: 1 }),
      () => 1,
      Symbol('s'),
    ),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom('a', 'b', 'toJSON', '__proto__', '0', '10', 'é'), tie('value'), {
      maxKeys: 4,
    }),
  ),
})).value;

describe('copyJsonData', () => {
  it('copies plain JSON data exactly, sharing no object with it', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const copy = copyJsonData(value);
        expect(copy).toStrictEqual(roundTrip(value));
        expect(Object.is(copy, -0)).toBe(false);
        const originals = containers(value);
        for (const made of containers(copy)) expect(originals.has(made)).toBe(false);
      }),
    );
  });

  it('gives what the JSON round trip gives, or nothing when the round trip would change or refuse it', () => {
    fc.assert(
      fc.property(anything, (value) => {
        const copy = copyJsonData(value);
        if (copy === undefined) return;
        // It never copies what the round trip cannot encode.
        expect(JSON.stringify(value)).not.toBeUndefined();
        expect(copy).toStrictEqual(roundTrip(value));
        expect(JSON.stringify(copy)).toBe(JSON.stringify(value));
      }),
      { numRuns: 2_000 },
    );
  });

  it.each<[string, unknown]>([
    ['a Date', { at: new Date(0) }],
    ['a class instance', [new Point(1, 2)]],
    ['a toJSON method', { a: { toJSON: () => 1 } }],
    ['a hidden toJSON method', Object.defineProperty({ a: 1 }, 'toJSON', { value: () => 'x' })],
    ['a list with a toJSON method', Object.assign([1], { toJSON: () => 'x' })],
    ['NaN', { n: Number.NaN }],
    ['a bigint', { n: 1n }],
    ['a function', { f: () => 1 }],
    ['undefined in a list', [1, undefined]],
    ['a hole', Object.assign(new Array<unknown>(3), { 0: 1, 2: 3 })],
    [
      'a getter that throws',
      Object.defineProperty({}, 'bad', {
        enumerable: true,
        get: () => {
          throw new Error('no');
        },
      }),
    ],
  ])('leaves %s to the round trip', (_, value) => {
    expect(copyJsonData(value)).toBeUndefined();
  });

  it('keeps a __proto__ key an own property, as JSON.parse does', () => {
    const copy = copyJsonData(JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}')) as Record<
      string,
      unknown
    >;
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(Object.hasOwn(copy, '__proto__')).toBe(true);
    expect(JSON.stringify(copy)).toBe('{"__proto__":{"polluted":true},"ok":1}');
    expect((copy as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('drops undefined members and writes -0 as 0, as JSON does', () => {
    expect(copyJsonData({ a: undefined, b: -0, c: [-0] })).toStrictEqual({ b: 0, c: [0] });
  });

  it('stops at maxDepth, so a cycle ends', () => {
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    expect(copyJsonData(cycle)).toBeUndefined();
    expect(copyJsonData({ a: { b: 1 } }, 2)).toStrictEqual({ a: { b: 1 } });
    expect(copyJsonData({ a: { b: 1 } }, 1)).toBeUndefined();
    expect(copyJsonData('scalar', 0)).toBe('scalar');
  });
});
