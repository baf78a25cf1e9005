import fc from 'fast-check';
import type { RunState, StepDefinition, TaskStep, WorkflowDefinition } from '@multiagents/contracts';
import {
  LISTED_CODE,
  SagaWorld,
  type OperatorAction,
  type Scenario,
  type TaskPlan,
  type UndoPlan,
  type WorldAction,
} from '../test-support/test-saga-world';

// Record every transition the engine asks the table for, so the simulator can check that each
// state change went through it as one unbroken chain (and that nothing bypassed it).
const mockTransitionLog: [RunState, RunState, boolean?][] = [];
jest.mock('./run-transitions', () => {
  const actual = jest.requireActual<typeof import('./run-transitions')>('./run-transitions');
  return {
    ...actual,
    assertTransition: (from: RunState, to: RunState, txId?: string) => {
      mockTransitionLog.push([from, to]);
      actual.assertTransition(from, to, txId);
    },
    assertOperatorTransition: (from: RunState, to: RunState, txId?: string) => {
      mockTransitionLog.push([from, to, true]);
      actual.assertOperatorTransition(from, to, txId);
    },
  };
});

function takeTransitions(): [RunState, RunState, boolean?][] {
  return mockTransitionLog.splice(0, mockTransitionLog.length);
}

const NUM_RUNS = 1_000;

// ---- workflows ------------------------------------------------------------------------------

interface TaskShape {
  readonly kind: 'task';
  readonly compensation: boolean;
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly timeoutMs: number | undefined;
  readonly skip: boolean;
  readonly plan: TaskPlan;
  readonly undoPlan: UndoPlan;
  readonly undoMaxAttempts: number;
}
type LeafShape =
  | TaskShape
  | { readonly kind: 'wait'; readonly timeoutMs: number | undefined }
  | { readonly kind: 'sleep'; readonly durationMs: number };
type ItemShape =
  LeafShape | { readonly kind: 'parallel'; readonly branches: readonly (readonly LeafShape[])[] };

interface ShapeOptions {
  /** Only outcomes that retries can absorb: the run must complete. */
  readonly happy: boolean;
  /** Branches of parallel steps may hold waits and sleeps too, not only tasks. */
  readonly mixedBranches?: boolean;
}

function taskPlanArb(options: ShapeOptions): fc.Arbitrary<TaskPlan> {
  const absorbable = [
    fc.constant<TaskPlan>({ kind: 'ok' }),
    fc.integer({ min: 1, max: 2 }).map((failures): TaskPlan => ({ kind: 'flaky', failures })),
    fc.integer({ min: 1, max: 2 }).map((times): TaskPlan => ({ kind: 'hang', times })),
  ];
  if (options.happy) return fc.oneof(...absorbable);
  return fc.oneof(
    { arbitrary: absorbable[0]!, weight: 6 },
    { arbitrary: absorbable[1]!, weight: 2 },
    { arbitrary: absorbable[2]!, weight: 1 },
    { arbitrary: fc.boolean().map((partial): TaskPlan => ({ kind: 'fatal', partial })), weight: 1 },
    { arbitrary: fc.constant<TaskPlan>({ kind: 'listed' }), weight: 1 },
    {
      arbitrary: fc
        .constantFrom('ok' as const, 'fatal' as const, 'hang' as const)
        .map((then): TaskPlan => ({ kind: 'partial', then })),
      weight: 1,
    },
  );
}

const undoPlanArb: fc.Arbitrary<UndoPlan> = fc.oneof(
  { arbitrary: fc.constant<UndoPlan>({ kind: 'ok' }), weight: 5 },
  {
    arbitrary: fc.integer({ min: 1, max: 2 }).map((failures): UndoPlan => ({ kind: 'flaky', failures })),
    weight: 2,
  },
  { arbitrary: fc.constant<UndoPlan>({ kind: 'broken' }), weight: 1 },
);

function taskArb(options: ShapeOptions): fc.Arbitrary<TaskShape> {
  return fc
    .record({
      compensation: fc.constantFrom(true, true, true, false),
      maxAttempts: fc.integer({ min: 1, max: 3 }),
      initialDelayMs: fc.constantFrom(0, 10, 100),
      timeoutMs: fc.constantFrom(undefined, 50, 500),
      skip: options.happy ? fc.boolean() : fc.constantFrom(false, false, false, true),
      plan: taskPlanArb(options),
      undoPlan: undoPlanArb,
      undoMaxAttempts: fc.integer({ min: 1, max: 3 }),
    })
    .map((shape): TaskShape => {
      let { timeoutMs, maxAttempts } = shape;
      // A hang is only ever resolved by the attempt's timeout.
      if (shape.plan.kind === 'hang' || (shape.plan.kind === 'partial' && shape.plan.then === 'hang'))
        timeoutMs ??= 50;
      if (options.happy) {
        const needed =
          shape.plan.kind === 'flaky'
            ? shape.plan.failures
            : shape.plan.kind === 'hang'
              ? shape.plan.times
              : 0;
        maxAttempts = Math.max(maxAttempts, needed + 1);
      }
      return { kind: 'task', ...shape, timeoutMs, maxAttempts };
    });
}

function waitArb(options: ShapeOptions): fc.Arbitrary<LeafShape> {
  return (options.happy ? fc.constant(undefined) : fc.constantFrom(undefined, 30, 3_000)).map(
    (timeoutMs): LeafShape => ({ kind: 'wait', timeoutMs }),
  );
}

const sleepArb: fc.Arbitrary<LeafShape> = fc
  .constantFrom(0, 20, 200)
  .map((durationMs): LeafShape => ({ kind: 'sleep', durationMs }));

function itemArb(options: ShapeOptions): fc.Arbitrary<ItemShape> {
  const leaf: fc.Arbitrary<LeafShape> = options.mixedBranches
    ? fc.oneof(
        { arbitrary: taskArb(options), weight: 4 },
        { arbitrary: waitArb(options), weight: 1 },
        { arbitrary: sleepArb, weight: 1 },
      )
    : taskArb(options);
  return fc.oneof(
    { arbitrary: taskArb(options), weight: 5 },
    {
      arbitrary: fc
        .array(fc.array(leaf, { minLength: 1, maxLength: 2 }), { minLength: 2, maxLength: 3 })
        .map((branches): ItemShape => ({ kind: 'parallel', branches })),
      weight: 2,
    },
    { arbitrary: waitArb(options), weight: 1 },
    { arbitrary: sleepArb, weight: 1 },
  );
}

/** Names the shapes s0, s1, … and turns them into a definition plus the workers' plans. */
function toScenario(items: readonly ItemShape[]): Scenario {
  let counter = 0;
  const plans: Record<string, TaskPlan> = {};
  const undoPlans: Record<string, UndoPlan> = {};
  const taskStep = (shape: TaskShape): TaskStep => {
    const name = `s${counter++}`;
    plans[name] = shape.plan;
    undoPlans[name] = shape.undoPlan;
    return {
      name,
      kind: 'task',
      worker: `w.${name}`,
      ...(shape.compensation
        ? {
            compensation: `undo.${name}`,
            compensationRetry: { maxAttempts: shape.undoMaxAttempts, initialDelayMs: 5 },
          }
        : {}),
      retry: {
        maxAttempts: shape.maxAttempts,
        initialDelayMs: shape.initialDelayMs,
        backoffCoefficient: 2,
        maxDelayMs: 150,
        nonRetryableErrors: [LISTED_CODE],
      },
      ...(shape.timeoutMs === undefined ? {} : { timeoutMs: shape.timeoutMs }),
      ...(shape.skip ? { when: 'context.orderId == "nobody"' } : {}),
    };
  };
  const toStep = (item: ItemShape): StepDefinition => {
    switch (item.kind) {
      case 'task':
        return taskStep(item);
      case 'parallel':
        return {
          name: `s${counter++}`,
          kind: 'parallel',
          branches: item.branches.map((branch) => branch.map(toStep)),
        };
      case 'wait':
        return {
          name: `s${counter++}`,
          kind: 'wait',
          signal: 'go',
          ...(item.timeoutMs === undefined ? {} : { timeoutMs: item.timeoutMs }),
        };
      case 'sleep':
        return { name: `s${counter++}`, kind: 'sleep', durationMs: item.durationMs };
    }
  };
  const steps = items.map(toStep);
  const definition: WorkflowDefinition = { id: 'sim', version: 1, steps };
  return { definition, plans, undoPlans };
}

function scenarioArb(options: ShapeOptions): fc.Arbitrary<Scenario> {
  return fc.array(itemArb(options), { minLength: 1, maxLength: 4 }).map(toScenario);
}

// ---- interleavings --------------------------------------------------------------------------

const operatorArb: fc.Arbitrary<OperatorAction> = fc.record({
  op: fc.constantFrom<OperatorAction['op']>('retry', 'retry', 'skip', 'resume', 'resumeSkip', 'bogus'),
  i: fc.nat({ max: 50 }),
  fix: fc.boolean(),
});

function actionsArb(options: { cancel: boolean; operator?: boolean }): fc.Arbitrary<WorldAction[]> {
  const index = fc.nat({ max: 50 });
  const operator = options.operator
    ? [{ arbitrary: operatorArb.map((action): WorldAction => ({ t: 'operator', action })), weight: 1 }]
    : [];
  const action = fc.oneof(
    ...operator,
    { arbitrary: index.map((i): WorldAction => ({ t: 'command', i })), weight: 6 },
    { arbitrary: index.map((i): WorldAction => ({ t: 'result', i })), weight: 6 },
    { arbitrary: index.map((i): WorldAction => ({ t: 'duplicate', i })), weight: 2 },
    { arbitrary: index.map((i): WorldAction => ({ t: 'redeliver', i })), weight: 2 },
    { arbitrary: index.map((i): WorldAction => ({ t: 'timer', i })), weight: 3 },
    { arbitrary: index.map((i): WorldAction => ({ t: 'stale', i })), weight: 2 },
    {
      arbitrary: fc.constantFrom('go', 'noise').map((name): WorldAction => ({ t: 'signal', name })),
      weight: 1,
    },
  );
  const actions = fc.array(action, { maxLength: 80, size: 'large' });
  if (!options.cancel) return actions;
  // About half of the runs get one cancel, at any point (possibly after they finished).
  return fc
    .tuple(actions, fc.option(fc.nat({ max: 80 }), { freq: 2 }))
    .map(([list, at]): WorldAction[] =>
      at === null ? list : [...list.slice(0, at), { t: 'cancel' }, ...list.slice(at)],
    );
}

/** After the first drain: an operator acts on the run, more happens, and it drains again. */
interface OperatorRound {
  readonly action: OperatorAction;
  readonly then: readonly WorldAction[];
}

function simulate(
  scenario: Scenario,
  actions: readonly WorldAction[],
  earlyTimeouts = true,
  rounds: readonly OperatorRound[] = [],
): SagaWorld {
  const world = new SagaWorld(scenario, takeTransitions, earlyTimeouts);
  world.start();
  for (const action of actions) world.act(action);
  world.drain();
  for (const round of rounds) {
    world.operate(round.action);
    for (const action of round.then) world.act(action);
    world.drain();
  }
  world.checkFinal();
  world.checkStaysTerminal();
  world.checkReplay();
  return world;
}

describe('saga engine under any interleaving (SPEC §9 invariants 1-2)', () => {
  it('reaches one terminal state and stays there; effects at most once per key; exactly the completed compensable steps undone, newest first', () => {
    const seen = new Map<string, number>();
    const totals: Record<string, number> = {};
    fc.assert(
      fc.property(scenarioArb({ happy: false }), actionsArb({ cancel: true }), (scenario, actions) => {
        const world = simulate(scenario, actions);
        seen.set(world.run.state, (seen.get(world.run.state) ?? 0) + 1);
        for (const [key, value] of Object.entries(world.stats)) totals[key] = (totals[key] ?? 0) + value;
      }),
      { numRuns: NUM_RUNS },
    );
    // A property that only ever saw one outcome, or never met a duplicate, would prove little:
    // every terminal state and every kind of disorder must really have occurred.
    expect([...seen.keys()].sort()).toEqual([
      'cancelled',
      'compensated',
      'compensation_failed',
      'completed',
      'failed',
    ]);
    for (const key of Object.keys(totals)) expect({ [key]: (totals[key] ?? 0) > 0 }).toEqual({ [key]: true });
  });

  it('completes every run whose failures the retries absorb, whatever the interleaving, with each step applied once', () => {
    fc.assert(
      fc.property(scenarioArb({ happy: true }), actionsArb({ cancel: false }), (scenario, actions) => {
        const world = simulate(scenario, actions, false);
        expect(world.run.state).toBe('completed');
        expect(world.applications.filter((a) => a.undo)).toEqual([]);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe('saga engine with operator actions (SPEC §3 retry or skip; §9 invariants 1-2 still hold)', () => {
  it('after retries and skips of failed steps and compensations, in any interleaving: one terminal state per reopening, effects at most once per key, what completed undone newest first unless skipped', () => {
    const seen = new Map<string, number>();
    const totals: Record<string, number> = {};
    const rounds = fc.array(
      fc.record({ action: operatorArb, then: actionsArb({ cancel: false, operator: true }) }),
      { maxLength: 4 },
    );
    fc.assert(
      fc.property(
        scenarioArb({ happy: false, mixedBranches: true }),
        actionsArb({ cancel: true, operator: true }),
        rounds,
        (scenario, actions, operatorRounds) => {
          const world = simulate(scenario, actions, true, operatorRounds);
          seen.set(world.run.state, (seen.get(world.run.state) ?? 0) + 1);
          for (const [key, value] of Object.entries(world.operatorStats)) {
            totals[key] = (totals[key] ?? 0) + value;
          }
        },
      ),
      { numRuns: NUM_RUNS },
    );
    // Every kind of operator action was taken (and refused), and reopened runs reached both a
    // completion and the end of an unwinding.
    for (const key of Object.keys(totals)) expect({ [key]: (totals[key] ?? 0) > 0 }).toEqual({ [key]: true });
    expect([...seen.keys()].sort()).toEqual([
      'cancelled',
      'compensated',
      'compensation_failed',
      'completed',
      'failed',
    ]);
  });
});
