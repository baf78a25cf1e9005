import { MultiAgentsError, RunState, type WorkflowDefinition } from '@multiagents/contracts';
import * as pb from '@multiagents/proto';
import {
  definitionFromProto,
  definitionSummaryFromProto,
  definitionToProto,
  monitoredWorkerManagerFromProto,
  runFromProto,
  runStateToProto,
  workerStatusFromProto,
} from './mappers';

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

const definition: WorkflowDefinition = {
  id: 'every_kind',
  version: 2,
  description: 'd',
  defaults: { retry: { maxAttempts: 3 }, timeoutMs: 100, scheduleToStartTimeoutMs: 60_000 },
  inputSchema: { type: 'object', required: ['total'], properties: { total: { type: 'number' } } },
  steps: [
    {
      name: 'reserve',
      kind: 'task',
      worker: 'inventory.reserve',
      compensation: 'inventory.release',
      scheduleToStartTimeoutMs: 5_000,
      when: 'context.total > 0',
      input: 'context',
      output: 'r',
      retry: {
        maxAttempts: 2,
        initialDelayMs: 5,
        backoffCoefficient: 2,
        maxDelayMs: 50,
        nonRetryableErrors: ['X'],
      },
      compensationRetry: { maxAttempts: 4 },
    },
    {
      name: 'both',
      kind: 'parallel',
      branches: [[{ name: 'mail', kind: 'task', worker: 'mail.send', input: { to: 'context.email' } }], []],
    },
    { name: 'approve', kind: 'wait', signal: 'approved' },
    { name: 'nap', kind: 'sleep', durationMs: 10 },
  ],
};

function record(overrides: Partial<pb.RunRecord> = {}): pb.RunRecord {
  return pb.RunRecord.fromPartial({
    txId: 't-1',
    workflowId: 'order',
    workflowVersion: 1,
    state: pb.RunState.RUNNING,
    input: json({ orderId: 'o-1' }),
    context: json({ orderId: 'o-1' }),
    createdAtMs: 1,
    updatedAtMs: 2,
    ...overrides,
  });
}

describe('client mappers', () => {
  it('round-trips a definition with every step kind through protobuf bytes', () => {
    const bytes = pb.WorkflowDefinition.encode(definitionToProto(definition)).finish();
    expect(definitionFromProto(pb.WorkflowDefinition.decode(bytes))).toEqual(definition);
  });

  it('reads a RunRecord into a run with only the fields that are set', () => {
    const run = runFromProto(
      record({
        state: pb.RunState.COMPENSATED,
        steps: {
          pay: pb.StepRecord.fromPartial({
            name: 'pay',
            status: pb.StepStatus.COMPENSATED,
            attempt: 1,
            attempts: [{ attempt: 1, startedAtMs: 3, endedAtMs: 4, outcome: pb.AttemptOutcome.COMPLETED }],
            startedAtMs: 3,
            endedAtMs: 4,
            output: json({ paymentId: 'p' }),
            completedSeq: 1,
            compensation: {
              status: pb.CompensationStatus.COMPLETED,
              attempt: 1,
              attempts: [{ attempt: 1, startedAtMs: 5 }],
              startedAtMs: 5,
            },
          }),
        },
        signals: { approved: { payloads: [json({ by: 'me' }), Buffer.alloc(0)] } },
        error: { code: 'E', message: 'm', retryable: false, details: json({ step: 'ship' }) },
      }),
    );
    expect(run).toEqual({
      txId: 't-1',
      workflowId: 'order',
      workflowVersion: 1,
      state: RunState.Compensated,
      input: { orderId: 'o-1' },
      context: { orderId: 'o-1' },
      steps: {
        pay: {
          name: 'pay',
          status: 'compensated',
          attempt: 1,
          attempts: [{ attempt: 1, startedAt: 3, endedAt: 4, outcome: 'completed' }],
          startedAt: 3,
          endedAt: 4,
          output: { paymentId: 'p' },
          completedSeq: 1,
          compensation: {
            status: 'completed',
            attempt: 1,
            attempts: [{ attempt: 1, startedAt: 5 }],
            startedAt: 5,
          },
        },
      },
      createdAt: 1,
      updatedAt: 2,
      signals: { approved: [{ by: 'me' }, null] },
      completedCount: 0,
      outputCount: 0,
      // Unwinding began (a compensation record exists) and is over: an empty queue, not none.
      compensationQueue: [],
      error: { code: 'E', message: 'm', retryable: false, details: { step: 'ship' } },
    });
  });

  it('leaves compensationQueue out while unwinding has not begun', () => {
    expect(runFromProto(record()).compensationQueue).toBeUndefined();
    expect(runFromProto(record({ compensationQueue: ['a', 'b'] })).compensationQueue).toEqual(['a', 'b']);
  });

  it('refuses states it does not know, instead of guessing', () => {
    expect(() => runFromProto(record({ state: 42 as pb.RunState }))).toThrow(MultiAgentsError);
    expect(() => runFromProto(record({ state: pb.RunState.UNSPECIFIED }))).toThrow(/run state 0/);
    expect(() => runFromProto(record({ context: Buffer.from('[1]') }))).toThrow(/not a JSON object/);
  });

  it('maps filter states, summaries and worker statuses', () => {
    expect(runStateToProto(RunState.CompensationFailed)).toBe(pb.RunState.COMPENSATION_FAILED);
    expect(definitionSummaryFromProto({ id: 'w', latestVersion: 2, versions: [1, 2] })).toEqual({
      id: 'w',
      latestVersion: 2,
      versions: [1, 2],
    });
    expect(
      workerStatusFromProto({
        name: 'w',
        inFlight: 1,
        capacity: 2,
        circuit: pb.CircuitState.HALF_OPEN,
        lingering: 1,
      }),
    ).toEqual({ name: 'w', inFlight: 1, capacity: 2, circuit: 'half-open', lingering: 1 });
    expect(
      workerStatusFromProto({
        name: 'w',
        inFlight: 0,
        capacity: 1,
        circuit: 77 as pb.CircuitState,
        lingering: 0,
      }).circuit,
    ).toBe('unknown');
  });

  describe('lingering handlers', () => {
    // proto3 leaves a zero field off the wire: a message encoded with lingering 0 is byte for byte
    // what a server older than the field sends.
    it('reads a worker’s, and 0 from a worker-manager that does not send them', () => {
      const info = { name: 'w', inFlight: 0, capacity: 1, circuit: pb.CircuitState.CLOSED, lingering: 1 };
      const bytes = pb.WorkerInfo.encode(info).finish();
      expect(workerStatusFromProto(pb.WorkerInfo.decode(bytes))).toMatchObject({ inFlight: 0, lingering: 1 });
      const old = pb.WorkerInfo.decode(pb.WorkerInfo.encode({ ...info, lingering: 0 }).finish());
      expect(workerStatusFromProto(old)).toEqual({
        name: 'w',
        inFlight: 0,
        capacity: 1,
        circuit: 'closed',
        lingering: 0,
      });
    });

    it('reads a monitored worker-manager’s, and 0 from a monitor that does not send them', () => {
      const message: pb.MonitoredWorkerManager = {
        managerId: 'wm-1',
        workers: ['payment.charge'],
        capacity: 8,
        inFlight: 2,
        seenAtMs: 1_700_000_000_000,
        live: true,
        details: { host: 'a' },
        lingering: 3,
      };
      const bytes = pb.MonitoredWorkerManager.encode(message).finish();
      const view = {
        managerId: 'wm-1',
        workers: ['payment.charge'],
        capacity: 8,
        inFlight: 2,
        seenAt: 1_700_000_000_000,
        live: true,
        details: { host: 'a' },
        lingering: 3,
      };
      expect(monitoredWorkerManagerFromProto(pb.MonitoredWorkerManager.decode(bytes))).toEqual(view);
      const old = pb.MonitoredWorkerManager.decode(
        pb.MonitoredWorkerManager.encode({ ...message, lingering: 0 }).finish(),
      );
      expect(monitoredWorkerManagerFromProto(old)).toEqual({ ...view, lingering: 0 });
    });
  });
});
