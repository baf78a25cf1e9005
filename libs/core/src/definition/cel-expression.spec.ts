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
});
