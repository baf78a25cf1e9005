import { RunState, type AttemptRecord, type Run, type StepRecord } from '@multiagents/contracts';
import { describeChanges, describeRun, runListTable } from './run-view';
import { formatDuration, textTable } from './text-table';

const base: Run = {
  txId: 't-1',
  workflowId: 'order',
  workflowVersion: 1,
  state: RunState.Running,
  input: { orderId: 'o-1' },
  context: { orderId: 'o-1' },
  steps: {
    reserve: {
      name: 'reserve',
      status: 'running',
      attempt: 1,
      attempts: [{ attempt: 1, startedAt: 1_000 }],
      startedAt: 1_000,
    },
    ship: { name: 'ship', status: 'pending', attempt: 0, attempts: [] },
  },
  createdAt: 1_000,
  updatedAt: 1_000,
  signals: {},
  completedCount: 0,
  outputCount: 1,
};

describe('run views', () => {
  it('formats durations for people', () => {
    expect([5, 999.6, 1_250, 61_000, 7_260_000].map(formatDuration)).toEqual([
      '5 ms',
      '1000 ms',
      '1.3 s',
      '1m 01s',
      '2h 01m',
    ]);
  });

  it('aligns tables and trims trailing blanks', () => {
    expect(
      textTable(
        ['A', 'LONGER'],
        [
          ['value', ''],
          ['x', 'y'],
        ],
      ),
    ).toEqual(['A      LONGER', 'value', 'x      y']);
  });

  it('describes a run with its steps, error and context', () => {
    const failed: Run = {
      ...base,
      state: RunState.Compensated,
      endedAt: 1_018,
      idempotencyKey: 'k',
      error: { code: 'CARRIER_REFUSED', message: 'no', retryable: false },
      steps: {
        reserve: {
          ...base.steps['reserve']!,
          status: 'compensated',
          endedAt: 1_004,
          compensation: { status: 'completed', attempt: 1, attempts: [], startedAt: 1_010, endedAt: 1_012 },
        },
        ship: {
          name: 'ship',
          status: 'failed',
          attempt: 2,
          attempts: [],
          startedAt: 1_005,
          endedAt: 1_009,
          error: { code: 'CARRIER_REFUSED', message: 'no', retryable: false },
        },
      },
    };
    const text = describeRun(failed, 5_000).join('\n');
    expect(text).toMatch(/^state +compensated$/m);
    expect(text).toMatch(/^ended +1970-01-01T00:00:01\.018Z \(18 ms\)$/m);
    expect(text).toMatch(/^idempotency key +k$/m);
    expect(text).toMatch(/^error +CARRIER_REFUSED: no$/m);
    expect(text).toMatch(/^reserve +compensated +1 +4 ms +completed$/m);
    expect(text).toMatch(/^ship +failed +2 +4 ms +CARRIER_REFUSED: no$/m);
    expect(text).toMatch(/^context +\{"orderId":"o-1"\}$/m);
    expect(runListTable([failed], 5_000)[1]).toMatch(
      /^t-1 +order v1 +compensated +1970-01-01T00:00:01\.000Z +18 ms$/,
    );
  });

  it('prints one line per change for logs, each at its own time', () => {
    const first = describeChanges(undefined, base);
    expect(first).toEqual(['+    0 ms  run t-1 order v1 running', '+    0 ms  reserve running (attempt 1)']);
    const next: Run = {
      ...base,
      updatedAt: 1_007,
      steps: {
        ...base.steps,
        reserve: {
          ...base.steps['reserve']!,
          status: 'completed',
          endedAt: 1_005,
          completedSeq: 1,
          attempts: [{ attempt: 1, startedAt: 1_000, endedAt: 1_005, outcome: 'completed' }],
        },
        ship: {
          name: 'ship',
          status: 'running',
          attempt: 1,
          attempts: [{ attempt: 1, startedAt: 1_006 }],
          startedAt: 1_006,
        },
      },
    };
    expect(describeChanges(base, next)).toEqual([
      '+    5 ms  reserve completed (attempt 1, 5 ms)',
      '+    6 ms  ship running (attempt 1)',
    ]);
    expect(describeChanges(next, next)).toEqual([]);
    const compensating: Run = {
      ...next,
      state: RunState.Compensating,
      updatedAt: 1_009,
      error: { code: 'X', message: 'boom', retryable: false },
      compensationQueue: ['reserve'],
      steps: {
        ...next.steps,
        reserve: {
          ...next.steps['reserve']!,
          status: 'compensating',
          compensation: {
            status: 'running',
            attempt: 1,
            attempts: [{ attempt: 1, startedAt: 1_009 }],
            startedAt: 1_009,
          },
        },
        ship: {
          ...next.steps['ship']!,
          status: 'failed',
          endedAt: 1_009,
          error: { code: 'X', message: 'boom', retryable: false },
          attempts: [
            {
              attempt: 1,
              startedAt: 1_006,
              endedAt: 1_009,
              outcome: 'failed',
              error: { code: 'X', message: 'boom', retryable: false },
            },
          ],
        },
      },
    };
    // The failure, then the run's new state it caused, then the undo it started: all at +9 ms.
    expect(describeChanges(next, compensating)).toEqual([
      '+    9 ms  ship failed (attempt 1, 3 ms, X: boom)',
      '+    9 ms  run compensating — X: boom',
      '+    9 ms  undo reserve running (attempt 1)',
    ]);
  });
});

/** A finished order run: three steps, the last one's result completing the run in one update. */
function completedOrder(): Run {
  const step = (name: string, seq: number, startedAt: number, endedAt: number): StepRecord => ({
    name,
    status: 'completed',
    attempt: 1,
    attempts: [{ attempt: 1, startedAt, endedAt, outcome: 'completed' }],
    startedAt,
    endedAt,
    completedSeq: seq,
  });
  return {
    ...base,
    state: RunState.Completed,
    updatedAt: 1_007,
    startedAt: 1_000,
    endedAt: 1_007,
    completedCount: 3,
    steps: {
      reserve_inventory: step('reserve_inventory', 1, 1_000, 1_005),
      charge_payment: step('charge_payment', 2, 1_005, 1_006),
      // Ended in the same millisecond as the run: the run's line still comes after it.
      ship_order: step('ship_order', 3, 1_006, 1_007),
    },
  };
}

/** A run that retried a charge, failed at shipping, and whose undo of the charge failed and was skipped. */
function skippedUndoRun(): Run {
  const declined = { code: 'DECLINED', message: 'card declined', retryable: true };
  const refused = { code: 'CARRIER_REFUSED', message: 'no carrier', retryable: false };
  const refundDown = { code: 'REFUND_DOWN', message: 'refund service down', retryable: true };
  return {
    ...base,
    state: RunState.Compensated,
    updatedAt: 1_100,
    startedAt: 1_000,
    endedAt: 1_100,
    error: refused,
    compensationQueue: [],
    completedCount: 2,
    steps: {
      reserve_inventory: {
        name: 'reserve_inventory',
        status: 'compensated',
        attempt: 1,
        attempts: [{ attempt: 1, startedAt: 1_000, endedAt: 1_002, outcome: 'completed' }],
        startedAt: 1_000,
        endedAt: 1_002,
        completedSeq: 1,
        compensation: {
          status: 'completed',
          attempt: 1,
          attempts: [{ attempt: 1, startedAt: 1_090, endedAt: 1_100, outcome: 'completed' }],
          startedAt: 1_090,
          endedAt: 1_100,
        },
      },
      charge_payment: {
        name: 'charge_payment',
        status: 'compensation_failed',
        attempt: 2,
        attempts: [
          { attempt: 1, startedAt: 1_002, endedAt: 1_004, outcome: 'failed', error: declined },
          { attempt: 2, startedAt: 1_010, endedAt: 1_012, outcome: 'completed' },
        ],
        startedAt: 1_002,
        endedAt: 1_012,
        completedSeq: 2,
        compensation: {
          status: 'skipped',
          attempt: 1,
          attempts: [{ attempt: 1, startedAt: 1_020, endedAt: 1_030, outcome: 'failed', error: refundDown }],
          startedAt: 1_020,
          endedAt: 1_030,
          error: refundDown,
        },
      },
      ship_order: {
        name: 'ship_order',
        status: 'failed',
        attempt: 1,
        attempts: [{ attempt: 1, startedAt: 1_012, endedAt: 1_020, outcome: 'failed', error: refused }],
        startedAt: 1_012,
        endedAt: 1_020,
        error: refused,
      },
    },
  };
}

describe('watch lines when the run moved before the watch saw it', () => {
  it('never prints the run completed before its last step', () => {
    const lines = describeChanges(undefined, completedOrder());
    expect(lines).toEqual([
      '+    0 ms  run t-1 order v1 running',
      '+    0 ms  reserve_inventory running (attempt 1)',
      '+    5 ms  reserve_inventory completed (attempt 1, 5 ms)',
      '+    5 ms  charge_payment running (attempt 1)',
      '+    6 ms  charge_payment completed (attempt 1, 1 ms)',
      '+    6 ms  ship_order running (attempt 1)',
      '+    7 ms  ship_order completed (attempt 1, 1 ms)',
      '+    7 ms  run completed',
    ]);
    // The same from the last live state, where the final update carries the step and the run.
    const live = completedOrder();
    const beforeEnd: Run = {
      ...live,
      state: RunState.Running,
      endedAt: undefined,
      steps: {
        ...live.steps,
        ship_order: {
          ...live.steps['ship_order']!,
          status: 'running',
          endedAt: undefined,
          attempts: [{ attempt: 1, startedAt: 1_006 }],
        },
      },
    };
    expect(describeChanges(beforeEnd, live)).toEqual([
      '+    7 ms  ship_order completed (attempt 1, 1 ms)',
      '+    7 ms  run completed',
    ]);
  });

  it('tells a retry, the failure, the undos in their order and a skipped undo', () => {
    expect(describeChanges(undefined, skippedUndoRun())).toEqual([
      '+    0 ms  run t-1 order v1 running',
      '+    0 ms  reserve_inventory running (attempt 1)',
      '+    2 ms  reserve_inventory completed (attempt 1, 2 ms)',
      '+    2 ms  charge_payment running (attempt 1)',
      '+    4 ms  charge_payment retrying (attempt 1 failed, 2 ms, DECLINED: card declined)',
      '+   10 ms  charge_payment running (attempt 2)',
      '+   12 ms  charge_payment completed (attempt 2, 2 ms)',
      '+   12 ms  ship_order running (attempt 1)',
      '+   20 ms  ship_order failed (attempt 1, 8 ms, CARRIER_REFUSED: no carrier)',
      '+   20 ms  undo charge_payment running (attempt 1)',
      '+   30 ms  undo charge_payment failed (attempt 1, 10 ms, REFUND_DOWN: refund service down)',
      // The skip has no time of its own: it came before the undo it let start.
      '+   90 ms  undo charge_payment skipped by an operator: charge_payment was not undone',
      '+   90 ms  undo reserve_inventory running (attempt 1)',
      '+  100 ms  undo reserve_inventory completed (attempt 1, 10 ms)',
      '+  100 ms  run compensated — CARRIER_REFUSED: no carrier (not undone: charge_payment)',
    ]);
  });
  it('keeps what one attempt did in order when it all happened in one millisecond', () => {
    const run = skippedUndoRun();
    // Everything from the charge's first attempt to the first undo in millisecond 1_002.
    const same = (attempt: AttemptRecord): AttemptRecord => ({
      ...attempt,
      startedAt: 1_002,
      endedAt: 1_002,
    });
    const charge = run.steps['charge_payment']!;
    const ship = run.steps['ship_order']!;
    const squeezed: Run = {
      ...run,
      steps: {
        ...run.steps,
        charge_payment: {
          ...charge,
          attempts: charge.attempts.map(same),
          compensation: {
            ...charge.compensation!,
            attempts: charge.compensation!.attempts.map(same),
          },
        },
        ship_order: { ...ship, attempts: ship.attempts.map(same) },
      },
    };
    expect(describeChanges(undefined, squeezed).slice(2, 12)).toEqual([
      '+    2 ms  reserve_inventory completed (attempt 1, 2 ms)',
      '+    2 ms  charge_payment running (attempt 1)',
      '+    2 ms  charge_payment retrying (attempt 1 failed, 0 ms, DECLINED: card declined)',
      '+    2 ms  charge_payment running (attempt 2)',
      '+    2 ms  charge_payment completed (attempt 2, 0 ms)',
      '+    2 ms  ship_order running (attempt 1)',
      '+    2 ms  ship_order failed (attempt 1, 0 ms, CARRIER_REFUSED: no carrier)',
      '+    2 ms  undo charge_payment running (attempt 1)',
      '+    2 ms  undo charge_payment failed (attempt 1, 0 ms, REFUND_DOWN: refund service down)',
      '+   90 ms  undo charge_payment skipped by an operator: charge_payment was not undone',
    ]);
  });
});

describe('get', () => {
  it("shows every failed attempt's error and every undo's error, oldest first", () => {
    const text = describeRun(skippedUndoRun(), 5_000);
    const failures = text.slice(text.findIndex((line) => line.startsWith('FAILED ATTEMPT')));
    expect(failures.slice(0, 4)).toEqual([
      expect.stringMatching(/^FAILED ATTEMPT +ATTEMPT +OUTCOME +ENDED +DURATION +ERROR$/),
      expect.stringMatching(/^charge_payment +1 +failed +\+4 ms +2 ms +DECLINED: card declined$/),
      expect.stringMatching(/^ship_order +1 +failed +\+20 ms +8 ms +CARRIER_REFUSED: no carrier$/),
      expect.stringMatching(
        /^undo charge_payment +1 +failed +\+30 ms +10 ms +REFUND_DOWN: refund service down$/,
      ),
    ]);
  });

  it('says when an operator skipped a failed undo', () => {
    const text = describeRun(skippedUndoRun(), 5_000).join('\n');
    expect(text).toMatch(
      /^state +compensated \(not undone: an operator skipped the failed undo of charge_payment\)$/m,
    );
    expect(text).toMatch(
      /^charge_payment +compensation_failed +2 +10 ms +skipped by an operator \(attempt 1 failed\)$/m,
    );
    // A run whose undos all ran says nothing of the kind.
    expect(describeRun(completedOrder(), 5_000).join('\n')).not.toMatch(/skipped|FAILED ATTEMPT/);
  });
});

describe('get, for runs with agent steps', () => {
  const agentRun: Run = {
    ...base,
    state: RunState.Waiting,
    usage: { promptTokens: 1_200, completionTokens: 300, totalTokens: 1_500, costUsd: 0.00036, attempts: 2 },
    steps: {
      write: {
        name: 'write',
        status: 'completed',
        attempt: 1,
        attempts: [{ attempt: 1, startedAt: 1_000, endedAt: 1_090, outcome: 'completed' }],
        startedAt: 1_000,
        endedAt: 1_090,
        output: {
          agent: 'research.write',
          answer: {
            title: 'Sagas',
            draft: 'A saga runs a long business process as a chain of local steps.'.repeat(3),
          },
          toolCalls: [],
          usage: {
            promptTokens: 400,
            completionTokens: 170,
            totalTokens: 570,
            costUsd: 0.000162,
            modelCalls: 1,
          },
          model: 'fake-model',
          truncated: false,
        },
      },
      approve: { name: 'approve', status: 'waiting', attempt: 0, attempts: [], startedAt: 1_090 },
    },
  };

  it('shows the run’s tokens and cost, where it waits, and each agent step’s usage and answer', () => {
    const text = describeRun(agentRun, 5_000).join('\n');
    expect(text).toMatch(/^tokens +1500 \(1200 prompt \+ 300 completion\) over 2 agent attempts$/m);
    expect(text).toMatch(/^cost +\$0\.000360$/m);
    expect(text).toMatch(/^waiting at +approve$/m);
    expect(text).toMatch(/^AGENT STEP +MODEL +TOKENS +CALLS +TOOLS +COST +ANSWER$/m);
    expect(text).toMatch(
      /^write +fake-model +400\+170 +1 +0 +\$0\.000162 +\{"title":"Sagas","draft":"A saga runs .{20,}…$/m,
    );
  });

  it("shows a worker's output that merely looks like an agent's, whatever its fields hold", () => {
    const run = completedOrder();
    const ship = run.steps['ship_order'] as StepRecord;
    const odd: Run = {
      ...run,
      steps: {
        ...run.steps,
        ship_order: {
          ...ship,
          output: { usage: { promptTokens: 1, completionTokens: 2, costUsd: '0.10', modelCalls: {} } },
        },
      },
    };
    const text = describeRun(odd, 5_000).join('\n');
    expect(text).toMatch(/^ship_order +1\+2 +0 +"0\.10"\s*$/m);
  });

  it('shows none of it for a run without agent steps', () => {
    const text = describeRun(base, 5_000).join('\n');
    expect(text).not.toMatch(/^(tokens|cost|waiting at) /m);
    expect(text).not.toMatch(/AGENT STEP/);
  });
});
