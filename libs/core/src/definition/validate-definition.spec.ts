import { ErrorCode, ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import fc from 'fast-check';
import { CelCompiler } from './cel-expression';
import { parseDefinition } from './parse-definition';
import { compileWorkflow, DEFINITION_LIMITS, taskSteps, validateDefinition } from './validate-definition';

/** Runs `fn`, expecting a ValidationError, and returns it. */
function validationErrorOf(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

const THREE_NESTED_COMPREHENSIONS =
  'context.items.all(a, context.items.all(b, context.items.all(c, a == b && b == c)))';
// Short enough for the length limit, but far more AST nodes than the default 400.
const TOO_MANY_NODES = `1${' + 1'.repeat(300)} > 0`;

describe('validateDefinition', () => {
  it('accepts the order saga', () => {
    const definition: WorkflowDefinition = {
      id: 'order_processing',
      version: 1,
      steps: [
        {
          name: 'reserve_inventory',
          kind: 'task',
          worker: 'inventory.reserve',
          compensation: 'inventory.release',
        },
        { name: 'charge_payment', kind: 'task', worker: 'payment.charge', compensation: 'payment.refund' },
        { name: 'ship_order', kind: 'task', worker: 'shipping.ship', when: 'context.total > 0' },
      ],
    };
    expect(validateDefinition(definition)).toEqual([]);
    const compiled = compileWorkflow(definition);
    expect(compiled.definition).toBe(definition);
    expect([...compiled.steps.keys()]).toEqual(['reserve_inventory', 'charge_payment', 'ship_order']);
    expect(compiled.steps.get('ship_order')?.when?.source).toBe('context.total > 0');
  });

  it('lists every problem of a definition in one ValidationError', () => {
    const definition = {
      id: 'broken',
      version: 1,
      steps: [
        { name: 'a', kind: 'task', worker: 'w.a' },
        { name: 'a', kind: 'task', worker: 'w.a2' },
        { name: 'b', kind: 'teleport', worker: 'w.b' },
        { name: 'c', kind: 'task', worker: 'w.c', when: 'context.total >' },
        { name: 'd', kind: 'task', worker: 'w.d', when: THREE_NESTED_COMPREHENSIONS },
        { name: 'e', kind: 'task', worker: 'w.e', input: TOO_MANY_NODES },
        { name: 'f', kind: 'task', worker: 'w.f', input: { x: 'steps.g.output' } },
        { name: 'g', kind: 'task', worker: 'w.g', when: 'steps.g.status == "completed"' },
        {
          name: 'h',
          kind: 'task',
          worker: 'w.h',
          retry: {
            maxAttempts: 0,
            initialDelayMs: -1,
            backoffCoefficient: 0.5,
            maxDelayMs: 1.5,
            nonRetryableErrors: [7],
          },
        },
      ],
    };
    const error = validationErrorOf(() => compileWorkflow(definition));
    expect(error.code).toBe(ErrorCode.InvalidArgument);
    expect(error.retryable).toBe(false);
    expect(error.details).toEqual({ problems: [...error.problems] });
    const expected: [string, RegExp][] = [
      ['duplicate name', /step "a": duplicate step name/],
      ['unknown kind', /step "b": unknown step kind "teleport"/],
      ['does not compile', /step "c": when "context\.total >" does not compile/],
      [
        'nested comprehensions',
        /step "d": when .* does not compile: expression cost too high: 3 nested comprehensions/,
      ],
      ['too many AST nodes', /step "e": input .* does not compile: .*maxAstNodes/],
      [
        'later step',
        /step "f": input\.x references steps\.g, which is not a step that finishes before this one/,
      ],
      ['itself', /step "g": when references steps\.g, which is not a step that finishes before this one/],
      ['maxAttempts', /step "h"\.retry: maxAttempts must be an integer >= 1, got 0/],
      ['initialDelayMs', /step "h"\.retry: initialDelayMs must be an integer >= 0, got -1/],
      ['maxDelayMs', /step "h"\.retry: maxDelayMs must be an integer >= 0, got 1\.5/],
      ['backoffCoefficient', /step "h"\.retry: backoffCoefficient must be a number from 1 to 100, got 0\.5/],
      ['nonRetryableErrors', /step "h"\.retry: nonRetryableErrors must be a list of .*error codes/],
    ];
    for (const [what, pattern] of expected) {
      expect({ what, found: error.problems.some((p) => pattern.test(p)) }).toEqual({ what, found: true });
    }
    expect(error.problems).toHaveLength(expected.length);
    // The message names every problem too, for logs and CLI output.
    for (const problem of error.problems) expect(error.message).toContain(problem);
  });

  it('returns the same problems from validateDefinition without throwing', () => {
    const definition = {
      id: 'x',
      version: 1,
      steps: [{ name: 'a', kind: 'task', worker: 'w', when: '1 +' }],
    };
    const problems = validateDefinition(definition);
    expect(problems).toHaveLength(1);
    expect(validationErrorOf(() => compileWorkflow(definition)).problems).toEqual(problems);
  });

  it('lists a step kind named like a property every object has, instead of throwing', () => {
    for (const kind of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      const problems = validateDefinition({ id: 'x', version: 1, steps: [{ name: 'a', kind }] });
      expect(problems).toEqual([
        `step "a": unknown step kind "${kind}" (expected task, parallel, wait or sleep)`,
      ]);
    }
  });

  it('reports bad top-level fields, unknown fields at every level and bad defaults', () => {
    const problems = validateDefinition({
      id: 'has spaces',
      version: 0,
      colour: 'blue',
      defaults: { retry: { maxAttempts: 'three', jitter: true }, timeoutMs: 0, speed: 1 },
      steps: [
        { name: 'a', kind: 'task', worker: 'w', retries: 3 },
        { name: 'b', kind: 'sleep' },
        { name: 'c', kind: 'wait' },
        { name: 'd', kind: 'parallel', branches: [] },
        { name: 'e', kind: 'task' },
      ],
    });
    const expected = [
      /definition: unknown field "colour"/,
      /definition: id must match/,
      /definition: version must be an integer >= 1, got 0/,
      /defaults: unknown field "speed"/,
      /defaults\.retry: unknown field "jitter"/,
      /defaults\.retry: maxAttempts must be an integer >= 1, got "three"/,
      /defaults: timeoutMs must be an integer >= 1, got 0/,
      /step "a": unknown field "retries"/,
      /step "b": durationMs is required/,
      /step "c": signal must be a name/,
      /step "d": branches must be a non-empty list/,
      /step "e": worker is required/,
    ];
    for (const pattern of expected) expect(problems.filter((p) => pattern.test(p))).toHaveLength(1);
    expect(problems).toHaveLength(expected.length);
  });

  it('rejects shapes that are not definitions at all', () => {
    expect(validateDefinition(null)).toEqual(['definition: must be an object']);
    expect(validateDefinition([1, 2])).toEqual(['definition: must be an object']);
    expect(validateDefinition({ id: 'x', version: 1, steps: [] })).toEqual([
      'definition.steps: steps must be a non-empty list',
    ]);
    expect(validateDefinition({ id: 'x', version: 1, steps: ['not a step'] })).toEqual([
      'definition.steps[0]: a step must be an object',
    ]);
  });

  it('accepts references to steps that finish earlier, including inside a parallel step', () => {
    const definition = {
      id: 'refs',
      version: 1,
      steps: [
        { name: 'first', kind: 'task', worker: 'w' },
        {
          name: 'fan',
          kind: 'parallel',
          branches: [
            [
              { name: 'left1', kind: 'task', worker: 'w', input: { a: 'steps.first.output' } },
              { name: 'left2', kind: 'task', worker: 'w', when: 'steps.left1.status == "completed"' },
            ],
            [{ name: 'right', kind: 'task', worker: 'w', input: 'steps.first.output' }],
          ],
        },
        {
          name: 'after',
          kind: 'task',
          worker: 'w',
          input: '{"l": steps.left2.output, "r": steps.right.output}',
        },
      ],
    };
    expect(validateDefinition(definition)).toEqual([]);
    const compiled = compileWorkflow(definition);
    expect(compiled.steps.get('left1')?.readsSteps).toBe(true);
    expect(compiled.steps.get('first')?.readsSteps).toBe(false);
  });

  it('rejects a reference from one parallel branch to a sibling branch', () => {
    const problems = validateDefinition({
      id: 'siblings',
      version: 1,
      steps: [
        {
          name: 'fan',
          kind: 'parallel',
          branches: [
            [{ name: 'left', kind: 'task', worker: 'w', when: 'steps.right.status == "completed"' }],
            [{ name: 'right', kind: 'task', worker: 'w', input: { l: 'steps.left.output' } }],
          ],
        },
      ],
    });
    expect(problems).toEqual([
      expect.stringMatching(
        /^step "left": when references steps\.right, which is not a step that finishes before/,
      ),
      expect.stringMatching(
        /^step "right": input\.l references steps\.left, which is not a step that finishes before/,
      ),
    ]);
  });

  it('rejects a parallel step that references its own branches, and duplicate names across branches', () => {
    const problems = validateDefinition({
      id: 'self',
      version: 1,
      steps: [
        {
          name: 'fan',
          kind: 'parallel',
          when: 'steps.inner.status == "completed"',
          branches: [
            [{ name: 'inner', kind: 'task', worker: 'w' }],
            [{ name: 'inner', kind: 'task', worker: 'w' }],
          ],
        },
      ],
    });
    expect(problems).toEqual([
      expect.stringMatching(/^step "fan": when references steps\.inner/),
      'step "inner": duplicate step name',
    ]);
  });

  it('rejects a reference to a later step hidden behind index syntax or a dynamic index', () => {
    const problems = validateDefinition({
      id: 'hidden',
      version: 1,
      steps: [
        { name: 'a', kind: 'task', worker: 'w', when: 'steps["b"].status == "pending"' },
        { name: 'b', kind: 'task', worker: 'w', input: { x: 'steps[context.which]' } },
        { name: 'c', kind: 'task', worker: 'w', when: 'steps["a"].status == "completed"' },
      ],
    });
    expect(problems).toEqual([
      expect.stringMatching(/^step "a": when references steps\.b, which is not a step that finishes before/),
      expect.stringMatching(/^step "b": input\.x .*does not compile: .*steps/),
    ]);
    // The index form of an earlier step is fine, and makes the engine provide `steps`.
    const ok = compileWorkflow({
      id: 'indexed',
      version: 1,
      steps: [
        { name: 'a', kind: 'task', worker: 'w' },
        { name: 'c', kind: 'task', worker: 'w', when: 'steps["a"].status == "completed"' },
      ],
    });
    expect(ok.steps.get('c')?.readsSteps).toBe(true);
  });

  it('rejects step names with ":", which would let two steps share an idempotency key', () => {
    const problems = validateDefinition({
      id: 'x',
      version: 1,
      steps: [
        { name: 'a', kind: 'task', worker: 'w', compensation: 'w.undo' },
        { name: 'a:undo', kind: 'task', worker: 'w' },
        { name: 'ok.name-1', kind: 'task', worker: 'w:colon-is-fine-for-workers' },
      ],
    });
    expect(problems).toEqual([
      expect.stringMatching(/^definition\.steps\[1\]: name must match .*, got "a:undo"$/),
    ]);
  });

  describe('knownWorkers', () => {
    const knownWorkers = new Set(['inventory.reserve', 'inventory.release']);

    it('accepts workers and compensations it knows', () => {
      expect(
        validateDefinition(
          {
            id: 'x',
            version: 1,
            steps: [
              { name: 'a', kind: 'task', worker: 'inventory.reserve', compensation: 'inventory.release' },
            ],
          },
          { knownWorkers },
        ),
      ).toEqual([]);
    });

    it('rejects an unknown worker and an unknown compensation worker, at every level', () => {
      const problems = validateDefinition(
        {
          id: 'x',
          version: 1,
          steps: [
            { name: 'a', kind: 'task', worker: 'inventory.reserv', compensation: 'inventory.release' },
            { name: 'b', kind: 'task', worker: 'inventory.reserve', compensation: 'inventory.unreserve' },
            { name: 'p', kind: 'parallel', branches: [[{ name: 'c', kind: 'task', worker: 'mystery' }]] },
          ],
        },
        { knownWorkers },
      );
      expect(problems).toEqual([
        'step "a": worker names unknown worker "inventory.reserv"',
        'step "b": compensation names unknown worker "inventory.unreserve"',
        'step "c": worker names unknown worker "mystery"',
      ]);
    });
  });

  it('enforces maxSteps over every level', () => {
    const steps = [
      { name: 'a', kind: 'task', worker: 'w' },
      { name: 'p', kind: 'parallel', branches: [[{ name: 'b', kind: 'task', worker: 'w' }]] },
    ];
    expect(validateDefinition({ id: 'x', version: 1, steps }, { maxSteps: 3 })).toEqual([]);
    expect(validateDefinition({ id: 'x', version: 1, steps }, { maxSteps: 2 })).toEqual([
      'definition: has 3 steps, over the limit of 2',
    ]);
  });

  it('uses the cost limits of the compiler it is given', () => {
    const strict = new CelCompiler({
      maxLength: 2_000,
      maxAstNodes: 400,
      maxDepth: 32,
      maxComprehensionNesting: 0,
    });
    const definition = {
      id: 'x',
      version: 1,
      steps: [{ name: 'a', kind: 'task', worker: 'w', when: '[1].all(x, x > 0)' }],
    };
    expect(validateDefinition(definition)).toEqual([]);
    expect(validateDefinition(definition, { celCompiler: strict })).toEqual([
      expect.stringMatching(/cost too high: 1 nested comprehensions \(limit 0\)/),
    ]);
  });

  it('lists task steps at every level in definition order', () => {
    const compiled = compileWorkflow({
      id: 'x',
      version: 1,
      steps: [
        { name: 'a', kind: 'task', worker: 'w' },
        { name: 'z', kind: 'sleep', durationMs: 5 },
        {
          name: 'p',
          kind: 'parallel',
          branches: [
            [{ name: 'b', kind: 'task', worker: 'w' }],
            [
              { name: 'c', kind: 'wait', signal: 's' },
              { name: 'd', kind: 'task', worker: 'w' },
            ],
          ],
        },
      ],
    });
    expect(taskSteps(compiled.definition.steps).map((s) => s.name)).toEqual(['a', 'b', 'd']);
  });
});

describe('input schemas (issue 11)', () => {
  const base = { id: 'wf', version: 1, steps: [{ name: 'a', kind: 'task', worker: 'w.a' }] };

  it('compiles an inputSchema and checks inputs against it, listing every problem', () => {
    const compiled = compileWorkflow({
      ...base,
      inputSchema: {
        type: 'object',
        required: ['orderId', 'total'],
        properties: {
          orderId: { type: 'string', pattern: '^o-[0-9]+$' },
          total: { type: 'number', minimum: 0 },
        },
        additionalProperties: false,
      },
    });
    expect(compiled.checkInput?.({ orderId: 'o-1', total: 3 })).toEqual([]);
    expect(compiled.checkInput?.({ orderId: 'x', extra: 1 })).toEqual([
      "input must have required property 'total'",
      'input must NOT have additional properties (extra)',
      'input.orderId must match pattern "^o-[0-9]+$"',
    ]);
    expect(compileWorkflow(base).checkInput).toBeUndefined();
  });

  it('refuses a schema that does not compile, or is not an object, with the other problems', () => {
    expect(validateDefinition({ ...base, version: 0, inputSchema: { type: 'objekt' } })).toEqual([
      'definition: version must be an integer >= 1, got 0',
      expect.stringMatching(/^inputSchema: inputSchema is not a valid JSON Schema: .*type/),
    ]);
    expect(validateDefinition({ ...base, inputSchema: { tpye: 'object' } })).toEqual([
      expect.stringMatching(/^inputSchema: .*unknown keyword: "tpye"/),
    ]);
    expect(validateDefinition({ ...base, inputSchema: 'string' })).toEqual([
      'inputSchema: must be a JSON Schema object',
    ]);
  });

  it('runs patterns in linear time (RE2): a backtracking pattern cannot stall validation', () => {
    const compiled = compileWorkflow({
      ...base,
      inputSchema: { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } },
    });
    // With a backtracking engine this input would take longer than the test's timeout.
    expect(compiled.checkInput?.({ s: `${'a'.repeat(50_000)}!` })).toEqual([
      'input.s must match pattern "^(a+)+$"',
    ]);
  });

  it('accepts scheduleToStartTimeoutMs on task steps and in defaults, bounded', () => {
    expect(
      validateDefinition({
        ...base,
        defaults: { scheduleToStartTimeoutMs: 1_000 },
        steps: [{ name: 'a', kind: 'task', worker: 'w.a', scheduleToStartTimeoutMs: 0 }],
      }),
    ).toEqual(['step "a": scheduleToStartTimeoutMs must be an integer >= 1, got 0']);
  });
});

describe('validateDefinition against hostile definitions (issue 12)', () => {
  const task = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    name,
    kind: 'task',
    worker: 'w.x',
    ...extra,
  });
  const definitionOf = (...steps: unknown[]): Record<string, unknown> => ({ id: 'wf', version: 1, steps });

  it('refuses a step named __proto__ or constructor', () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype']) {
      expect(validateDefinition(definitionOf(task(name)))).toEqual([
        `step "${name}": name ${JSON.stringify(name)} is reserved (a property of every JavaScript object)`,
      ]);
    }
  });

  it('refuses reserved signal names, output keys, input fields and ids', () => {
    expect(validateDefinition(definitionOf({ name: 'w', kind: 'wait', signal: 'constructor' }))).toEqual([
      'step "w": signal "constructor" is reserved (a property of every JavaScript object)',
    ]);
    expect(validateDefinition(definitionOf(task('a', { output: '__proto__' })))).toEqual([
      'step "a": output "__proto__" is reserved (a property of every JavaScript object)',
    ]);
    const mapping = JSON.parse('{"__proto__": "context.x", "ok": "context.y"}') as Record<string, string>;
    expect(validateDefinition(definitionOf(task('a', { input: mapping })))).toEqual([
      'definition: definition holds the key "__proto__", which is not allowed',
    ]);
    expect(validateDefinition(definitionOf(task('a', { input: { constructor: 'context.x' } })))).toEqual([
      'step "a": input field "constructor" is reserved (a property of every JavaScript object)',
    ]);
    expect(validateDefinition({ ...definitionOf(task('a')), id: 'valueOf' })).toEqual([
      'definition: id "valueOf" is reserved (a property of every JavaScript object)',
    ]);
    expect(validateDefinition(definitionOf(task('a', { output: 'a b' })))[0]).toMatch(
      /output must be a context key/,
    );
  });

  it('bounds every number to what the runtime can honour', () => {
    const problems = validateDefinition({
      id: 'wf',
      version: 2 ** 40,
      steps: [
        task('a', {
          timeoutMs: 1e300,
          heartbeatTimeoutMs: 2 ** 31,
          retry: {
            maxAttempts: 1e9,
            maxDelayMs: Number.MAX_SAFE_INTEGER,
            nonRetryableErrors: ['x'.repeat(200)],
          },
        }),
        { name: 's', kind: 'sleep', durationMs: DEFINITION_LIMITS.maxTimerMs + 1 },
        { name: 'w', kind: 'wait', signal: 'go', timeoutMs: DEFINITION_LIMITS.maxTimerMs + 1 },
      ],
      description: 'd'.repeat(5_000),
    });
    expect(problems).toEqual([
      `definition: version must be at most ${DEFINITION_LIMITS.maxVersion}, got ${2 ** 40}`,
      `definition: description is longer than ${DEFINITION_LIMITS.maxDescriptionLength} characters`,
      `step "a".retry: maxAttempts must be at most ${DEFINITION_LIMITS.maxAttempts}, got 1000000000`,
      `step "a".retry: maxDelayMs must be at most ${DEFINITION_LIMITS.maxDelayMs}, got ${Number.MAX_SAFE_INTEGER}`,
      expect.stringMatching(/step "a"\.retry: nonRetryableErrors must be a list of at most 100/),
      `step "a": timeoutMs must be at most ${DEFINITION_LIMITS.maxDelayMs}, got 1e+300`,
      `step "a": heartbeatTimeoutMs must be at most ${DEFINITION_LIMITS.maxDelayMs}, got ${2 ** 31}`,
      `step "s": durationMs must be at most ${DEFINITION_LIMITS.maxTimerMs}, got ${DEFINITION_LIMITS.maxTimerMs + 1}`,
      `step "w": timeoutMs must be at most ${DEFINITION_LIMITS.maxTimerMs}, got ${DEFINITION_LIMITS.maxTimerMs + 1}`,
    ]);
  });

  it('refuses deeply nested definitions without recursing into them', () => {
    let steps: unknown = [task('leaf')];
    for (let i = 0; i < 5_000; i++) steps = [{ name: `p${i}`, kind: 'parallel', branches: [steps] }];
    expect(validateDefinition(definitionOf(...(steps as unknown[])))).toEqual([
      `definition: definition is nested more than ${DEFINITION_LIMITS.maxDepth} levels deep`,
    ]);
    const yaml = `id: wf\nversion: 1\nsteps: ${'['.repeat(4_100)}${']'.repeat(4_100)}\n`;
    expect(() => parseDefinition(yaml)).toThrow(ValidationError);
  });

  it('fuzz: the loader never throws anything but ValidationError (10,000 cases)', () => {
    const name = fc.oneof(
      fc.constantFrom('a', 'b', '__proto__', 'constructor', 'toString', '', 'x'.repeat(200), 'a:b'),
      fc.string({ maxLength: 12 }),
    );
    const expression = fc.oneof(
      fc.constantFrom(
        'context.total > 0',
        'steps.a.output.x',
        'context.s.matches("(a+)+$")',
        '1 +',
        '[1].map(x, x)',
      ),
      fc.string({ maxLength: 30 }),
    );
    const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, 2 ** 53, 1e300, Number.NaN));
    const step: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
      step: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.record(
          {
            name,
            kind: fc.constantFrom('task', 'wait', 'sleep', 'parallel', 'teleport'),
            worker: name,
            compensation: name,
            when: expression,
            input: fc.oneof(expression, fc.dictionary(name, expression, { maxKeys: 3 })),
            output: name,
            signal: name,
            timeoutMs: number,
            durationMs: number,
            retry: fc.record({
              maxAttempts: number,
              initialDelayMs: number,
              nonRetryableErrors: fc.anything(),
            }),
            branches: fc.array(fc.array(tie('step'), { maxLength: 2 }), { maxLength: 2 }),
          },
          { requiredKeys: ['name', 'kind'] },
        ),
        fc.anything({ maxDepth: 1 }),
      ),
    })).step;
    const definition = fc.record(
      {
        id: name,
        version: number,
        description: fc.anything(),
        steps: fc.array(step, { maxLength: 4 }),
        extra: fc.anything(),
      },
      { requiredKeys: ['steps'] },
    );
    fc.assert(
      fc.property(definition, (raw) => {
        expect(Array.isArray(validateDefinition(raw))).toBe(true);
        try {
          parseDefinition(JSON.stringify(raw) ?? 'null');
        } catch (err) {
          expect(err).toBeInstanceOf(ValidationError);
        }
      }),
      { numRuns: 10_000 },
    );
  });
});
