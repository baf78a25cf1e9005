import { ErrorCode, ResourceExhaustedError } from '@multiagents/contracts';
import fc from 'fast-check';
import { CelCompiler, celToJson, DEFAULT_CEL_LIMITS, type CelActivation } from './cel-expression';

const activation = (context: Record<string, unknown>, steps: CelActivation['steps'] = {}): CelActivation => ({
  context,
  input: { orderId: 'o-1' },
  steps,
});

describe('CelCompiler', () => {
  const cel = new CelCompiler();

  it('evaluates conditions and mappings against context, input and steps', () => {
    expect(cel.compile('context.total > 0').evaluate(activation({ total: 5 }))).toBe(true);
    expect(cel.compile('context.total > 0').evaluate(activation({ total: 0 }))).toBe(false);
    expect(cel.compile('input.orderId').evaluate(activation({}))).toBe('o-1');
    const mapping = cel.compile('{"id": input.orderId, "paid": steps.charge.output.amount}');
    expect(
      celToJson(
        mapping.evaluate(activation({}, { charge: { status: 'completed', output: { amount: 12 } } })),
      ),
    ).toEqual({ id: 'o-1', paid: 12 });
  });

  it('reports the step names an expression reads', () => {
    expect(cel.compile('steps.a.output.x == steps.b.status && context.steps == 1').stepRefs).toEqual([
      'a',
      'b',
    ]);
    expect(cel.compile('steps["c"].output').stepRefs).toEqual(['c']);
    expect(cel.compile('context.a').stepRefs).toEqual([]);
  });

  it('converts only the variables and steps an expression reads', () => {
    // Deeper than the evaluator takes: converting it fails, so a pass proves it was not converted.
    let deep: unknown = 'bottom';
    for (let i = 0; i < 300; i++) deep = { next: deep };
    const run: CelActivation = {
      context: { total: 5 },
      input: { deep },
      steps: { a: { status: 'completed' }, b: { status: 'completed', output: deep } },
    };
    expect(cel.compile('context.total > 0').evaluate(run)).toBe(true);
    expect(cel.compile('steps.a.status == "completed" && context.total > 0').evaluate(run)).toBe(true);
    // Read, they are converted (and refused): the check above is not vacuous.
    expect(() => cel.compile('steps.b.status == "completed"').evaluate(run)).toThrow(ResourceExhaustedError);
    expect(() => cel.compile('has(input.deep)').evaluate(run)).toThrow(ResourceExhaustedError);
  });

  it('refuses steps read in a way that cannot be checked statically', () => {
    expect(() => cel.compile('steps[context.name].output')).toThrow(/steps/);
    expect(() => cel.compile('size(steps) > 0')).toThrow(/steps/);
  });

  it('throws at evaluation time for a missing key (the engine turns that into a failed step)', () => {
    expect(() => cel.compile('context.missing > 0').evaluate(activation({}))).toThrow(/missing/);
  });

  it('refuses expressions over the cost limits', () => {
    expect(() => cel.compile('x'.repeat(DEFAULT_CEL_LIMITS.maxLength + 1))).toThrow(/over the limit/);
    expect(() => cel.compile(`1${' + 1'.repeat(300)}`)).toThrow(/maxAstNodes/);
    expect(() => cel.compile(`${'('.repeat(40)}1${')'.repeat(40)}`)).toThrow(/maxDepth/);
    expect(() => cel.compile('[1].map(x, [2].map(y, [3].map(z, z)))')).toThrow(/3 nested comprehensions/);
    expect(() => cel.compile('[1].map(x, [2].map(y, y))')).not.toThrow();
  });

  it('refuses what is not CEL, including JavaScript', () => {
    expect(() => cel.compile('context.total >')).toThrow();
    expect(() => cel.compile('(() => process.exit(1))()')).toThrow();
    expect(() => cel.compile('unknownVariable == 1')).toThrow();
  });
});

describe('CelCompiler against hostile data (runtime cost budget)', () => {
  const cel = new CelCompiler();
  const big = Array.from({ length: 20_000 }, (_, i) => i);

  function costError(fn: () => unknown): ResourceExhaustedError {
    let thrown: unknown;
    try {
      fn();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ResourceExhaustedError);
    expect((thrown as ResourceExhaustedError).code).toBe(ErrorCode.ResourceExhausted);
    return thrown as ResourceExhaustedError;
  }

  it('aborts nested exists over a large list quickly instead of blocking the event loop', () => {
    const nested = cel.compile('context.items.exists(a, context.items.exists(b, a < b && b < a))');
    // Run to the end, this is 20,000² comparisons and returns false: the budget error proves the
    // evaluation was cut off after at most a million units of work (no wall-clock assertion).
    expect(costError(() => nested.evaluate(activation({ items: big }))).message).toMatch(
      /exceeded its cost budget of 1000000 units/,
    );
  });

  it('still evaluates a single pass over the same list', () => {
    expect(cel.compile('context.items.exists(a, a == 19999)').evaluate(activation({ items: big }))).toBe(
      true,
    );
    expect(
      cel.compile('size(context.items.filter(a, a >= 10000))').evaluate(activation({ items: big })),
    ).toBe(10_000n);
  });

  it('stops values that double in size (cel.bind)', () => {
    let source = 'size(x11) > 0';
    for (let i = 11; i > 0; i--) source = `cel.bind(x${i}, x${i - 1} + x${i - 1}, ${source})`;
    source = `cel.bind(x0, context.s + context.s, ${source})`;
    const doubling = cel.compile(source);
    costError(() => doubling.evaluate(activation({ s: 'a'.repeat(100_000) })));
  });

  it('charges errors, so an expression failing on every item stops too', () => {
    const failing = cel.compile('context.items.exists(a, context.items.exists(b, a == b + 1))');
    // Run to the end, this returns true after ~20,000 inner passes: the budget error shows it stopped.
    costError(() => failing.evaluate(activation({ items: big })));
  });

  it('honours a smaller budget', () => {
    const tight = new CelCompiler({ ...DEFAULT_CEL_LIMITS, maxCost: 50 });
    expect(tight.compile('context.total > 0').evaluate(activation({ total: 1 }))).toBe(true);
    costError(() =>
      tight.compile('context.items.all(a, a >= 0)').evaluate(activation({ items: big.slice(0, 100) })),
    );
  });

  it('a context key named constructor, __proto__ or toString does not break evaluation', () => {
    const context = JSON.parse(
      '{"total": 5, "constructor": "x", "__proto__": {"a": 1}, "toString": 3}',
    ) as Record<string, unknown>;
    expect(cel.compile('context.total > 0').evaluate(activation(context))).toBe(true);
    expect(cel.compile('context.constructor == "x"').evaluate(activation(context))).toBe(true);
    expect(cel.compile('context["__proto__"].a == 1').evaluate(activation(context))).toBe(true);
    const nested = { order: { constructor: 1, total: 2 } };
    expect(cel.compile('context.order.total == 2').evaluate(activation(nested))).toBe(true);
    const copied = celToJson(cel.compile('context').evaluate(activation(context))) as Record<string, unknown>;
    expect(Object.getPrototypeOf(copied)).toBe(Object.prototype);
    expect(Object.hasOwn(copied, '__proto__')).toBe(true);
    expect(Object.create(null) as object).not.toHaveProperty('a');
  });

  it('evaluates matches() in linear time (RE2) and refuses backtracking-only syntax at compile time', () => {
    const evil = cel.compile('context.s.matches("^(a+)+$")');
    const started = Date.now();
    expect(evil.evaluate(activation({ s: `${'a'.repeat(5_000)}b` }))).toBe(false);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(
      cel
        .compile('context.s.matches(r"^[a-z]+@example\\.com$")')
        .evaluate(activation({ s: 'bob@example.com' })),
    ).toBe(true);
    expect(() => cel.compile('context.s.matches(r"(a)\\1")')).toThrow(/unsupported regular expression/);
    expect(() => cel.compile('context.s.matches("(?=a)")')).toThrow(/unsupported regular expression/);
    // A pattern from the data is compiled by RE2 too, at evaluation time.
    expect(() =>
      cel.compile('context.s.matches(context.p)').evaluate(activation({ s: 'aa', p: '(a)\\1' })),
    ).toThrow(/unsupported regular expression/);
    expect(cel.compile('context.s.matches(context.p)').evaluate(activation({ s: 'aa', p: '^a+$' }))).toBe(
      true,
    );
  });

  it('charges a regex match by input and pattern size', () => {
    const tight = new CelCompiler({ ...DEFAULT_CEL_LIMITS, maxCost: 1_000 });
    costError(() =>
      tight.compile('context.s.matches("a+b")').evaluate(activation({ s: 'a'.repeat(100_000) })),
    );
  });

  it('fuzz: hostile data never crashes or hangs an expression (10,000 cases)', () => {
    const expressions = [
      'context.total > 0',
      'context.items.exists(a, context.items.exists(b, a == b))',
      'context.items.map(a, [a, a, a]).exists(x, size(x) > 2)',
      'has(context.order) && context.order.total > 0',
      'context.s.matches("^(a|aa)+$")',
      'size(context) > 0 && "constructor" in context',
      '{"k": context.items, "s": context.s + context.s}',
      'context.items.filter(a, a == "__proto__").size() == 0',
    ].map((source) => cel.compile(source));
    const leaf = fc.oneof(
      fc.integer(),
      fc.double(),
      fc.string({ maxLength: 40 }),
      fc.constantFrom('__proto__', 'constructor', 'toString', 'a'.repeat(500)),
      fc.boolean(),
      fc.constant(null),
    );
    const data = fc.dictionary(
      fc.oneof(
        fc.constantFrom('total', 'items', 'order', 's', 'constructor', '__proto__', 'valueOf'),
        fc.string(),
      ),
      fc.oneof(leaf, fc.array(leaf, { maxLength: 300 }), fc.dictionary(fc.string(), leaf)),
    );
    const started = Date.now();
    fc.assert(
      fc.property(data, fc.nat({ max: expressions.length - 1 }), (context, index) => {
        const program = expressions[index];
        try {
          celToJson(
            program?.evaluate(activation(JSON.parse(JSON.stringify(context)) as Record<string, unknown>)),
          );
        } catch (err) {
          // A failed evaluation fails the step; anything but an Error would be a crash.
          expect(err).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 10_000 },
    );
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe('celToJson', () => {
  it('turns CEL values into plain JSON values', () => {
    expect(celToJson(3n)).toBe(3);
    expect(
      celToJson(
        new Map<unknown, unknown>([
          ['a', 1n],
          ['b', [2n, new Map([['c', 'd']])]],
        ]),
      ),
    ).toEqual({
      a: 1,
      b: [2, { c: 'd' }],
    });
    expect(celToJson({ x: 1n })).toEqual({ x: 1 });
    expect(celToJson('s')).toBe('s');
    expect(celToJson(null)).toBeNull();
  });

  it('turns uints and timestamps into JSON, and refuses what JSON cannot hold', () => {
    const cel = new CelCompiler(DEFAULT_CEL_LIMITS);
    const result = (source: string): unknown => celToJson(cel.compile(source).evaluate(activation({})));
    expect(result('{"n": 1u, "at": timestamp("2024-01-01T00:00:00Z")}')).toEqual({
      n: 1,
      at: '2024-01-01T00:00:00.000Z',
    });
    expect(() => result('b"ab"')).toThrow('the result is a Uint8Array, not JSON data');
    expect(() => result('{"d": duration("1s")}')).toThrow('not JSON data');
    expect(() => result('1.0 / 0.0')).toThrow('the result Infinity is not a JSON number');
    expect(() => result('9007199254740993')).toThrow('beyond what a JSON number holds exactly');
  });
});
