import { ErrorCode, ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import { CelCompiler } from './cel-expression';
import { compileWorkflow, taskSteps, validateDefinition } from './validate-definition';

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
      ['nonRetryableErrors', /step "h"\.retry: nonRetryableErrors must be a list of error codes/],
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
