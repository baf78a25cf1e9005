import { RunState, type Run } from '@multiagents/contracts';
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
  eventCount: 1,
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

  it('prints one line per change for logs: the run, then each step that moved', () => {
    const first = describeChanges(undefined, base);
    expect(first).toEqual(['+    0 ms  run t-1 order v1 running', '+    0 ms  reserve running (attempt 1)']);
    const next: Run = {
      ...base,
      updatedAt: 1_007,
      steps: {
        ...base.steps,
        reserve: { ...base.steps['reserve']!, status: 'completed', endedAt: 1_005 },
        ship: { name: 'ship', status: 'running', attempt: 1, attempts: [], startedAt: 1_006 },
      },
    };
    expect(describeChanges(base, next)).toEqual([
      '+    7 ms  reserve completed (attempt 1, 5 ms)',
      '+    7 ms  ship running (attempt 1)',
    ]);
    expect(describeChanges(next, next)).toEqual([]);
    const compensating: Run = {
      ...next,
      state: RunState.Compensating,
      updatedAt: 1_009,
      error: { code: 'X', message: 'boom', retryable: false },
      steps: {
        ...next.steps,
        reserve: {
          ...next.steps['reserve']!,
          status: 'compensating',
          compensation: { status: 'running', attempt: 1, attempts: [], startedAt: 1_009 },
        },
      },
    };
    expect(describeChanges(next, compensating)).toEqual([
      '+    9 ms  run compensating — X: boom',
      '+    9 ms  reserve compensating (attempt 1, 5 ms)',
      '+    9 ms  undo reserve running (attempt 1)',
    ]);
  });
});
