import {
  ResourceExhaustedError,
  RunState,
  StepStatus,
  ValidationError,
  type Run,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { compileWorkflow, validateDefinition } from '@multiagents/core';
import * as pb from '@multiagents/proto';
import fc from 'fast-check';
import { MalformedRequest, tolerantService } from './call-handlers';
import {
  definitionFromProto,
  definitionToProto,
  jsonFromBytes,
  monitoredWorkerManagerToProto,
  runStateFromProto,
  runStateToProto,
  runToProto,
  workerInfoToProto,
} from './mappers';

const BOUNDS = { maxBytes: 256 * 1024, maxDepth: 64 };

/** Paths of keys whose value is undefined, at any depth. */
function undefinedKeys(value: unknown, path = '$'): string[] {
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, v]) =>
    v === undefined ? [`${path}.${key}`] : undefinedKeys(v, `${path}.${key}`),
  );
}

const everyKind: WorkflowDefinition = {
  id: 'every_kind',
  version: 3,
  description: 'all step kinds and options',
  defaults: {
    retry: { maxAttempts: 4, initialDelayMs: 10, backoffCoefficient: 1.5, maxDelayMs: 1_000 },
    timeoutMs: 5_000,
    heartbeatTimeoutMs: 500,
    compensationRetry: { maxAttempts: 9, nonRetryableErrors: ['GONE'] },
    compensationTimeoutMs: 2_000,
  },
  steps: [
    {
      name: 'reserve',
      kind: 'task',
      worker: 'inventory.reserve',
      compensation: 'inventory.release',
      when: 'context.total > 0',
      description: 'hold the stock',
      input: { sku: 'context.sku', qty: 'context.qty' },
      output: 'reservation',
      retry: { maxAttempts: 2, nonRetryableErrors: ['OUT_OF_STOCK'] },
      timeoutMs: 1_000,
      heartbeatTimeoutMs: 100,
      compensationRetry: { maxAttempts: 5 },
      compensationTimeoutMs: 300,
    },
    {
      name: 'fan_out',
      kind: 'parallel',
      branches: [
        [{ name: 'email', kind: 'task', worker: 'email.send', input: 'context' }],
        [{ name: 'pause', kind: 'sleep', durationMs: 7 * 24 * 3_600_000 }],
      ],
    },
    { name: 'approve', kind: 'wait', signal: 'approved', timeoutMs: 60_000, output: 'approval' },
  ],
};

describe('gRPC mappers (server side)', () => {
  it('round-trips a definition with every step kind and option through protobuf bytes', () => {
    const bytes = pb.WorkflowDefinition.encode(definitionToProto(everyKind)).finish();
    const back = definitionFromProto(pb.WorkflowDefinition.decode(bytes));
    expect(back).toEqual(everyKind);
    // No undefined-valued keys: what gets stored is exactly what was meant.
    expect(undefinedKeys(back)).toEqual([]);
  });

  it('passes a step without a kind on, so the validator names it', () => {
    const proto = pb.WorkflowDefinition.fromPartial({ id: 'w', version: 1, steps: [{ name: 'nothing' }] });
    expect(() => compileWorkflow(definitionFromProto(proto))).toThrow(/step "nothing".*unknown step kind/);
  });

  it('maps every run state both ways and refuses numbers it does not know', () => {
    const protos = new Set<number>();
    for (const state of Object.values(RunState)) {
      const proto = runStateToProto(state);
      protos.add(proto);
      expect(runStateFromProto(proto)).toBe(state);
    }
    expect(protos.size).toBe(Object.values(RunState).length);
    expect(protos.has(pb.RunState.UNSPECIFIED)).toBe(false);
    expect(runStateFromProto(pb.RunState.UNSPECIFIED)).toBeUndefined();
    expect(() => runStateFromProto(99)).toThrow(ValidationError);
  });

  it('maps a run with every field to a RunRecord', () => {
    const run: Run = {
      txId: 't-1',
      workflowId: 'order',
      workflowVersion: 2,
      state: RunState.CompensationFailed,
      input: { orderId: 'o-1' },
      context: { orderId: 'o-1', paid: true },
      steps: {
        charge: {
          name: 'charge',
          status: StepStatus.CompensationFailed,
          attempt: 2,
          attempts: [
            { attempt: 1, startedAt: 10, endedAt: 11, outcome: 'timed_out' },
            { attempt: 2, startedAt: 12, endedAt: 13, outcome: 'completed' },
          ],
          startedAt: 10,
          endedAt: 13,
          output: { paymentId: 'p-1' },
          completedSeq: 1,
          heartbeatAt: 12,
          compensation: {
            status: 'failed',
            attempt: 1,
            attempts: [{ attempt: 1, startedAt: 20, endedAt: 21, outcome: 'failed' }],
            startedAt: 20,
            endedAt: 21,
            error: {
              code: 'BANK_DOWN',
              message: 'bank down — try later',
              retryable: false,
              details: { bank: 'ü' },
            },
          },
        },
      },
      createdAt: 9,
      updatedAt: 21,
      startedAt: 9,
      endedAt: 21,
      idempotencyKey: 'k-1',
      signals: { approved: [{ by: 'ops' }, null] },
      completedCount: 1,
      outputCount: 7,
      compensationQueue: ['charge'],
      error: { code: 'SHIP_FAILED', message: 'no carrier', retryable: false, partialEffects: true },
      cancelRequested: true,
      traceHeaders: { traceparent: '00-abc-def-01' },
    };
    const record = pb.RunRecord.decode(pb.RunRecord.encode(runToProto(run)).finish());
    expect(record).toMatchObject({
      txId: 't-1',
      workflowId: 'order',
      workflowVersion: 2,
      state: pb.RunState.COMPENSATION_FAILED,
      createdAtMs: 9,
      updatedAtMs: 21,
      endedAtMs: 21,
      idempotencyKey: 'k-1',
      completedCount: 1,
      outputCount: 7,
      compensationQueue: ['charge'],
      cancelRequested: true,
      traceHeaders: { traceparent: '00-abc-def-01' },
      error: { code: 'SHIP_FAILED', message: 'no carrier', retryable: false, partialEffects: true },
    });
    const json = (bytes: Uint8Array): unknown => jsonFromBytes(bytes, 'x', [], undefined, BOUNDS);
    expect(json(record.input)).toEqual(run.input);
    expect(json(record.context)).toEqual(run.context);
    expect(record.signals['approved']?.payloads.map(json)).toEqual([{ by: 'ops' }, null]);
    const step = record.steps['charge'];
    expect(step?.status).toBe(pb.StepStatus.COMPENSATION_FAILED);
    expect(step?.attempts.map((a) => a.outcome)).toEqual([
      pb.AttemptOutcome.TIMED_OUT,
      pb.AttemptOutcome.COMPLETED,
    ]);
    expect(json(step?.output ?? Buffer.alloc(0))).toEqual({ paymentId: 'p-1' });
    expect(step?.compensation?.status).toBe(pb.CompensationStatus.FAILED);
    expect(json(step?.compensation?.error?.details ?? Buffer.alloc(0))).toEqual({ bank: 'ü' });
  });

  it('reports JSON that does not parse as a problem of its field', () => {
    const problems: string[] = [];
    expect(jsonFromBytes(Buffer.from('{nope'), 'input', problems, {}, BOUNDS)).toBeUndefined();
    expect(problems).toEqual([expect.stringMatching(/^input is not valid UTF-8 JSON/)]);
    expect(jsonFromBytes(Buffer.alloc(0), 'input', problems, 'empty', BOUNDS)).toBe('empty');
  });

  it('refuses deep JSON as a problem of its field and large JSON as RESOURCE_EXHAUSTED', () => {
    const problems: string[] = [];
    const deep = Buffer.from('{"a":'.repeat(4_100) + '1' + '}'.repeat(4_100));
    expect(jsonFromBytes(deep, 'input', problems, {}, BOUNDS)).toBeUndefined();
    expect(problems).toEqual(['input is nested more than 64 levels deep']);
    expect(() => jsonFromBytes(Buffer.alloc(BOUNDS.maxBytes + 1, 0x20), 'input', [], {}, BOUNDS)).toThrow(
      ResourceExhaustedError,
    );
  });

  it('fuzz: request decoding and mapping never crash on any bytes (10,000 cases)', () => {
    const orchestrator = tolerantService(pb.OrchestratorServiceService);
    const manager = tolerantService(pb.WorkerManagerServiceService);
    const methods = [...Object.values(orchestrator), ...Object.values(manager)];
    const valid = Buffer.from(
      pb.RegisterWorkflowRequest.encode({
        definition: definitionToProto({
          id: 'wf',
          version: 1,
          steps: [
            { name: 'a', kind: 'task', worker: 'w.a', input: { x: 'context.x' }, retry: { maxAttempts: 2 } },
          ],
        }),
      }).finish(),
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc
            .array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.nat({ max: 255 })), { maxLength: 4 })
            .map((edits) => {
              const bytes = Buffer.from(valid);
              for (const [at, value] of edits) bytes[at] = value;
              return bytes;
            }),
        ),
        fc.nat({ max: methods.length - 1 }),
        (bytes, index) => {
          const request: unknown = methods[index]?.requestDeserialize(Buffer.from(bytes));
          const register: unknown = orchestrator.registerWorkflow.requestDeserialize(Buffer.from(bytes));
          if (register instanceof MalformedRequest) return;
          const definition = (register as pb.RegisterWorkflowRequest).definition;
          if (definition !== undefined) {
            const mapped = definitionFromProto(definition);
            expect(Array.isArray(validateDefinition(mapped))).toBe(true);
          }
          for (const field of ['input', 'payload', 'output'] as const) {
            const raw = (request as Record<string, unknown> | null)?.[field];
            if (raw instanceof Uint8Array) jsonFromBytes(raw, field, [], undefined, BOUNDS);
          }
        },
      ),
      { numRuns: 10_000 },
    );
  });

  it('maps every circuit state of a worker', () => {
    const circuits = (['closed', 'open', 'half-open', 'isolated', 'disabled'] as const).map(
      (circuit) => workerInfoToProto({ name: 'w', inFlight: 1, capacity: 4, circuit, lingering: 0 }).circuit,
    );
    expect(circuits).toEqual([
      pb.CircuitState.CLOSED,
      pb.CircuitState.OPEN,
      pb.CircuitState.HALF_OPEN,
      pb.CircuitState.ISOLATED,
      pb.CircuitState.DISABLED,
    ]);
  });

  it('maps a worker’s lingering handlers, and they survive the wire', () => {
    const message = workerInfoToProto({
      name: 'w',
      inFlight: 0,
      capacity: 1,
      circuit: 'closed',
      lingering: 1,
    });
    expect(message).toEqual({
      name: 'w',
      inFlight: 0,
      capacity: 1,
      circuit: pb.CircuitState.CLOSED,
      lingering: 1,
    });
    expect(pb.WorkerInfo.decode(pb.WorkerInfo.encode(message).finish())).toEqual(message);
  });

  describe('a monitored worker-manager', () => {
    const manager = {
      managerId: 'wm-1',
      workers: ['payment.charge'],
      capacity: 8,
      inFlight: 2,
      seenAt: 1_700_000_000_000,
      live: true,
    };

    it('carries its lingering handlers; unknown ones (no heartbeat seen yet) are sent as 0', () => {
      expect(monitoredWorkerManagerToProto({ ...manager, lingering: 3 })).toEqual({
        managerId: 'wm-1',
        workers: ['payment.charge'],
        capacity: 8,
        inFlight: 2,
        seenAtMs: 1_700_000_000_000,
        live: true,
        details: {},
        lingering: 3,
      });
      expect(monitoredWorkerManagerToProto(manager).lingering).toBe(0);
    });

    it('saturates forged counts beyond a uint32 rather than failing the whole answer', () => {
      // A heartbeat's counts are only checked to be safe integers: 1e12 gets this far.
      const message = monitoredWorkerManagerToProto({ ...manager, inFlight: 1e12, lingering: 1e12 });
      expect(message).toMatchObject({ inFlight: 0xffff_ffff, lingering: 0xffff_ffff });
      const encoded = pb.MonitoredWorkerManager.encode(message).finish();
      expect(pb.MonitoredWorkerManager.decode(encoded)).toMatchObject({
        inFlight: 0xffff_ffff,
        lingering: 0xffff_ffff,
      });
    });
  });
});
