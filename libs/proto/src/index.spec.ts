import {
  AttemptOutcome,
  CompensationStatus,
  Envelope,
  RunRecord,
  RunState,
  runStateFromJSON,
  runStateToJSON,
  StepStatus,
  WorkflowDefinition,
} from './index';

describe('@multiagents/proto', () => {
  it('round-trips a workflow definition with every step kind, nested branches and options', () => {
    const definition: WorkflowDefinition = WorkflowDefinition.fromPartial({
      id: 'order_processing',
      version: 2,
      description: 'orders',
      defaults: { retry: { maxAttempts: 3 }, timeoutMs: 30_000 },
      steps: [
        {
          name: 'reserve',
          when: 'context.total > 0',
          kind: {
            $case: 'task',
            value: {
              worker: 'inventory.reserve',
              compensation: 'inventory.release',
              input: { mapping: { $case: 'fields', value: { fields: { sku: 'context.sku' } } } },
              output: 'reservation',
              retry: {
                maxAttempts: 5,
                initialDelayMs: 100,
                backoffCoefficient: 1.5,
                maxDelayMs: 10_000,
                nonRetryableErrors: ['OUT_OF_STOCK'],
              },
              timeoutMs: 5_000,
              heartbeatTimeoutMs: 1_000,
              compensationRetry: { maxAttempts: 10 },
              compensationTimeoutMs: 2_000,
            },
          },
        },
        {
          name: 'fan_out',
          kind: {
            $case: 'parallel',
            value: {
              branches: [
                {
                  steps: [
                    {
                      name: 'email',
                      kind: {
                        $case: 'task',
                        value: {
                          worker: 'email.send',
                          input: { mapping: { $case: 'expression', value: 'context' } },
                        },
                      },
                    },
                  ],
                },
                {
                  steps: [
                    { name: 'pause', kind: { $case: 'sleep', value: { durationMs: 7 * 24 * 3600 * 1000 } } },
                  ],
                },
              ],
            },
          },
        },
        {
          name: 'approve',
          kind: { $case: 'wait', value: { signal: 'approved', timeoutMs: 60_000, output: 'approval' } },
        },
      ],
    });
    const decoded = WorkflowDefinition.decode(WorkflowDefinition.encode(definition).finish());
    expect(decoded).toEqual(definition);
    expect(WorkflowDefinition.fromJSON(WorkflowDefinition.toJSON(decoded))).toEqual(definition);
  });

  it('keeps unset optional scalars unset and set zeros set', () => {
    const decoded = WorkflowDefinition.decode(
      WorkflowDefinition.encode(
        WorkflowDefinition.fromPartial({
          id: 'w',
          version: 1,
          steps: [{ name: 's', kind: { $case: 'task', value: { worker: 'x', retry: { maxAttempts: 0 } } } }],
        }),
      ).finish(),
    );
    const step = decoded.steps[0];
    expect(step?.description).toBeUndefined();
    expect(step?.kind?.$case).toBe('task');
    if (step?.kind?.$case !== 'task') throw new Error('expected a task step');
    expect(step.kind.value.timeoutMs).toBeUndefined();
    expect(step.kind.value.retry?.maxAttempts).toBe(0);
    expect(step.kind.value.retry?.initialDelayMs).toBeUndefined();
    expect(decoded.defaults).toBeUndefined();
  });

  it('round-trips a run record with step records, enums and JSON bytes', () => {
    const run = RunRecord.fromPartial({
      txId: 'tx-1',
      workflowId: 'order_processing',
      workflowVersion: 2,
      state: RunState.COMPENSATION_FAILED,
      input: Buffer.from('{"total":5}'),
      context: Buffer.from('{"total":5,"paymentId":"p"}'),
      steps: {
        charge: {
          name: 'charge',
          status: StepStatus.COMPENSATION_FAILED,
          attempt: 2,
          attempts: [
            { attempt: 1, startedAtMs: 10, endedAtMs: 11, outcome: AttemptOutcome.TIMED_OUT },
            { attempt: 2, startedAtMs: 20, endedAtMs: 21, outcome: AttemptOutcome.COMPLETED },
          ],
          output: Buffer.from('{"paymentId":"p"}'),
          completedSeq: 1,
          compensation: {
            status: CompensationStatus.FAILED,
            attempt: 1,
            startedAtMs: 30,
            error: {
              code: 'WORKER_ERROR',
              message: 'refund failed',
              retryable: true,
              details: Buffer.from('{}'),
            },
          },
        },
      },
      createdAtMs: 1_717_171_717_171,
      updatedAtMs: 1_717_171_717_999,
      signals: { approved: { payloads: [Buffer.from('true')] } },
      completedCount: 1,
      outputCount: 9,
      compensationQueue: ['charge'],
      traceHeaders: { traceparent: '00-abc-def-01' },
    });
    const decoded = RunRecord.decode(RunRecord.encode(run).finish());
    expect(decoded).toEqual(run);
    expect(decoded.createdAtMs).toBe(1_717_171_717_171);
    expect(decoded.startedAtMs).toBeUndefined();
  });

  it('exposes enums as const objects with their proto JSON names', () => {
    expect(RunState.UNSPECIFIED).toBe(0);
    expect(runStateToJSON(RunState.COMPLETED)).toBe('RUN_STATE_COMPLETED');
    expect(runStateFromJSON('RUN_STATE_CANCELLED')).toBe(RunState.CANCELLED);
  });

  it('decodes an envelope with 64-bit time as a number', () => {
    const bytes = Envelope.encode(Envelope.fromPartial({ id: 'e', timeMs: 2 ** 40 + 1 })).finish();
    expect(Envelope.decode(bytes).timeMs).toBe(2 ** 40 + 1);
  });
});
