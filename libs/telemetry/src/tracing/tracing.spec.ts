/**
 * Span building: a real core Orchestrator over the in-memory bus, with a small worker loop that
 * consumes commands through the WorkerTracing observer (as a WorkerManager does), exporting to
 * an in-memory exporter. Checks the span tree of a compensated run, retries, waits and sleeps,
 * the caller's traceparent, and that an unsampled run leaves no trace anywhere.
 */
import {
  EventType,
  Groups,
  RunState,
  Topics,
  type Envelope,
  type StepCommandPayload,
} from '@multiagents/contracts';
import { Orchestrator, WorkflowBuilder, type AttemptResult } from '@multiagents/core';
import { createMemoryBackend, type MemoryBackend } from '@multiagents/memory';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { millisToHrTime as hrTime } from '@opentelemetry/core';
import {
  AlwaysOffSampler,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type Sampler,
} from '@opentelemetry/sdk-trace-base';
import { Attr } from './attributes';
import { isSampled, parseTraceHeaders } from './trace-context';
import { Tracing } from './tracing';

type Behaviour = (
  command: Envelope<StepCommandPayload>,
) => { ok: true; output: unknown } | { ok: false; code: string; retryable: boolean };

interface World {
  readonly backend: MemoryBackend;
  readonly orchestrator: Orchestrator;
  readonly exporter: InMemorySpanExporter;
  readonly logFields: Record<string, string>[];
  readonly tracing: Tracing;
  close(): Promise<void>;
}

const WORKERS = [
  'inventory.reserve',
  'inventory.release',
  'payment.charge',
  'payment.refund',
  'shipping.ship',
];

async function world(behaviour: Behaviour, sampler?: Sampler): Promise<World> {
  const backend = createMemoryBackend();
  const exporter = new InMemorySpanExporter();
  const tracing = new Tracing({
    serviceName: 'test',
    spanProcessor: new SimpleSpanProcessor(exporter),
    messagingSystem: 'memory',
    ...(sampler ? { sampler } : {}),
  });
  const orchestrator = new Orchestrator({
    bus: backend.bus,
    runs: backend.runs,
    definitions: backend.definitions,
    observer: tracing.orchestratorObserver(),
    timerPollIntervalMs: 5,
  });
  const workerObserver = tracing.workerObserver();
  const logFields: Record<string, string>[] = [];
  const subscriptions = await Promise.all(
    WORKERS.map((worker) =>
      backend.bus.subscribe(
        Topics.command(worker),
        { group: Groups.workers, consumer: 'w1' },
        async (delivery) => {
          const command = delivery.envelope as Envelope<StepCommandPayload>;
          const scope = workerObserver.attemptStarted(
            {
              txId: command.txId,
              workflowId: command.workflowId,
              step: command.step as string,
              attempt: command.attempt as number,
              headers: command.headers,
              payload: command.payload,
            },
            {
              deliveryCount: delivery.deliveryCount,
              managerId: 'w1',
              topic: delivery.topic,
              group: Groups.workers,
              messageId: delivery.id,
            },
          );
          if (scope?.logFields) logFields.push({ ...scope.logFields });
          const outcome = scope ? scope.run(() => behaviour(command)) : behaviour(command);
          const result: AttemptResult = outcome.ok
            ? { kind: 'completed' }
            : { kind: 'failed', code: outcome.code, retryable: outcome.retryable };
          scope?.end(result);
          await backend.bus.publish(Topics.results, [
            {
              id: `${command.payload.commandId}:result`,
              type: EventType.StepResult,
              txId: command.txId,
              workflowId: command.workflowId,
              step: command.step,
              attempt: command.attempt,
              time: Date.now(),
              headers: command.headers,
              payload: outcome.ok
                ? {
                    commandId: command.payload.commandId,
                    worker: command.payload.worker,
                    ok: true,
                    output: outcome.output,
                  }
                : {
                    commandId: command.payload.commandId,
                    worker: command.payload.worker,
                    ok: false,
                    error: { code: outcome.code, message: 'no', retryable: outcome.retryable },
                  },
            },
          ]);
        },
      ),
    ),
  );
  await orchestrator.start();
  return {
    backend,
    orchestrator,
    exporter,
    logFields,
    tracing,
    async close() {
      await Promise.all(subscriptions.map((s) => s.close()));
      await orchestrator.close();
      await backend.close();
      await tracing.shutdown();
    },
  };
}

const order = new WorkflowBuilder('order')
  .step('reserve', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('charge', 'payment.charge', {
    compensation: 'payment.refund',
    retry: { maxAttempts: 3, initialDelayMs: 1, backoffCoefficient: 1 },
  })
  .step('ship', 'shipping.ship')
  .build();

/** Every worker succeeds but shipping (non-retryable), and charging fails once (retryable). */
function orderBehaviour(): Behaviour {
  let charges = 0;
  return (command) => {
    if (command.payload.worker === 'shipping.ship')
      return { ok: false, code: 'OUT_OF_STOCK', retryable: false };
    if (command.payload.worker === 'payment.charge' && charges++ === 0)
      return { ok: false, code: 'GATEWAY_DOWN', retryable: true };
    return { ok: true, output: { [command.payload.worker.replace('.', '_')]: 1 } };
  };
}

function byName(spans: readonly ReadableSpan[], name: string): ReadableSpan[] {
  return spans.filter((s) => s.name === name);
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

let current: World | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

describe('tracing of a run', () => {
  it('builds one trace: root, dispatch and attempt spans, compensations newest first, and the run span', async () => {
    current = await world(orderBehaviour());
    const { orchestrator, exporter } = current;
    await orchestrator.registerWorkflow(order);
    const { txId } = await orchestrator.startWorkflow('order', { id: 1 });
    const run = await orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });
    expect(run.state).toBe(RunState.Compensated);
    const spans = exporter.getFinishedSpans();

    expect(new Set(spans.map((s) => s.spanContext().traceId)).size).toBe(1);
    const [root, ...others] = byName(spans, 'workflow.start order');
    expect(others).toHaveLength(0);
    expect(parentOf(root as ReadableSpan)).toBeUndefined();
    expect(root?.attributes[Attr.RunId]).toBe(txId);
    expect(parseTraceHeaders(run.traceHeaders)?.spanId).toBe(root?.spanContext().spanId);
    const rootId = root?.spanContext().spanId;

    // Dispatches: PRODUCER children of the root; charge twice (one per attempt).
    const charge = byName(spans, 'step charge');
    expect(charge.map((s) => s.attributes[Attr.Attempt])).toEqual([1, 2]);
    for (const name of [
      'step reserve',
      'step charge',
      'step ship',
      'compensate charge',
      'compensate reserve',
    ]) {
      for (const span of byName(spans, name)) {
        expect(span.kind).toBe(SpanKind.PRODUCER);
        expect(parentOf(span)).toBe(rootId);
        expect(span.attributes[Attr.MessagingSystem]).toBe('memory');
        expect(span.attributes[Attr.MessagingOperationType]).toBe('send');
      }
    }

    // Attempts: CONSUMER children of their own dispatch; retries are separate attempts.
    const attempts = byName(spans, 'process payment.charge');
    expect(attempts).toHaveLength(2);
    expect(attempts.map(parentOf).sort()).toEqual(charge.map((s) => s.spanContext().spanId).sort());
    const failed = attempts.find((s) => s.attributes[Attr.Attempt] === 1) as ReadableSpan;
    expect(failed.kind).toBe(SpanKind.CONSUMER);
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed.attributes[Attr.ErrorType]).toBe('GATEWAY_DOWN');
    expect(failed.attributes[Attr.MessagingConsumerGroupName]).toBe(Groups.workers);
    expect(failed.attributes[Attr.MessagingDestinationName]).toBe(Topics.command('payment.charge'));
    const ship = byName(spans, 'process shipping.ship')[0] as ReadableSpan;
    expect(ship.attributes[Attr.ErrorType]).toBe('OUT_OF_STOCK');
    expect(ship.attributes[Attr.Retryable]).toBe(false);

    // Compensations: refund, then release.
    const compensations = spans
      .filter((s) => s.name.startsWith('compensate '))
      .sort((a, b) => (a.startTime[0] - b.startTime[0]) * 1e9 + (a.startTime[1] - b.startTime[1]));
    expect(compensations.map((s) => s.name)).toEqual(['compensate charge', 'compensate reserve']);
    for (const worker of ['payment.refund', 'inventory.release']) {
      const [attempt] = byName(spans, `process ${worker}`);
      expect(attempt?.attributes[Attr.Compensation]).toBe(true);
    }

    // The run, from its start to its end, with its outcome.
    const [runSpan] = byName(spans, 'workflow.run order');
    expect(parentOf(runSpan as ReadableSpan)).toBe(rootId);
    expect(runSpan?.attributes[Attr.Outcome]).toBe('compensated');
    expect(runSpan?.attributes[Attr.ErrorType]).toBe('OUT_OF_STOCK');
    expect(runSpan?.status.code).toBe(SpanStatusCode.ERROR);
    expect(runSpan?.startTime[0]).toBe(Math.floor(run.createdAt / 1000));

    // Every attempt's log fields name its own span.
    const processIds = new Set(
      spans.filter((s) => s.name.startsWith('process ')).map((s) => s.spanContext().spanId),
    );
    expect(current.logFields).toHaveLength(processIds.size);
    for (const fields of current.logFields) {
      expect(fields['trace_id']).toBe(root?.spanContext().traceId);
      expect(processIds.has(fields['span_id'] as string)).toBe(true);
    }
  });

  it("makes the root a child of the caller's traceparent", async () => {
    current = await world(() => ({ ok: true, output: {} }));
    await current.orchestrator.registerWorkflow(
      new WorkflowBuilder('one').step('a', 'inventory.reserve').build(),
    );
    const caller = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const { txId } = await current.orchestrator.startWorkflow(
      'one',
      {},
      { traceHeaders: { traceparent: caller } },
    );
    await current.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });
    const spans = current.exporter.getFinishedSpans();
    const [root] = byName(spans, 'workflow.start one');
    expect(root?.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(parentOf(root as ReadableSpan)).toBe('b7ad6b7169203331');
    expect(spans.every((s) => s.spanContext().traceId === '0af7651916cd43dd8448eb211c80319c')).toBe(true);
    expect(byName(spans, 'workflow.run one')[0]?.attributes[Attr.Outcome]).toBe('completed');
  });

  it('shows sleeps and waits as spans with their timeouts', async () => {
    current = await world(() => ({ ok: true, output: {} }));
    await current.orchestrator.registerWorkflow(
      new WorkflowBuilder('pauses')
        .sleep('nap', 20)
        .wait('approval', 'approve', { timeoutMs: 60_000 })
        .build(),
    );
    const { txId } = await current.orchestrator.startWorkflow('pauses', {});
    const orchestrator = current.orchestrator;
    // Signals that arrive early are kept: sending it at once is enough.
    await orchestrator.signal(txId, 'approve', { ok: true });
    await orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });
    const spans = current.exporter.getFinishedSpans();
    const [nap] = byName(spans, 'sleep nap');
    expect(nap?.attributes[Attr.TimeoutMs]).toBe(20);
    expect(nap?.attributes[Attr.Outcome]).toBe('completed');
    const [approval] = byName(spans, 'wait approval');
    expect(approval?.attributes[Attr.SignalName]).toBe('approve');
    expect(byName(spans, 'workflow.run pauses')).toHaveLength(1);
  });

  it("gives a wait that began before a restart its span, from the step's start, in the same trace", async () => {
    current = await world(() => ({ ok: true, output: {} }));
    const { backend } = current;
    await current.orchestrator.registerWorkflow(
      new WorkflowBuilder('held').wait('approval', 'approve', { timeoutMs: 60_000 }).build(),
    );
    const { txId } = await current.orchestrator.startWorkflow('held', {});
    const waiting = await current.orchestrator.getRun(txId);
    expect(waiting.state).toBe(RunState.Waiting);
    const startedAt = waiting.steps['approval']?.startedAt as number;
    // A new orchestrator process: its tracing never saw the wait start.
    await current.orchestrator.close();
    const restarted = new Orchestrator({
      bus: backend.bus,
      runs: backend.runs,
      definitions: backend.definitions,
      observer: current.tracing.orchestratorObserver(),
      timerPollIntervalMs: 5,
    });
    await restarted.start();
    try {
      await restarted.signal(txId, 'approve', { ok: true });
      await restarted.waitForTerminal(txId, { timeoutMs: 10_000 });
    } finally {
      await restarted.close();
    }
    const spans = current.exporter.getFinishedSpans();
    const [approval] = byName(spans, 'wait approval');
    expect(approval?.attributes[Attr.SignalName]).toBe('approve');
    expect(approval?.attributes[Attr.Outcome]).toBe('completed');
    expect(approval?.startTime).toEqual(hrTime(startedAt));
    const [root] = byName(spans, 'workflow.start held');
    expect(approval?.spanContext().traceId).toBe(root?.spanContext().traceId);
  });

  it('leaves an unsampled run without a trace: no spans, no headers on the run or its commands', async () => {
    const seen: Envelope<StepCommandPayload>[] = [];
    current = await world((command) => {
      seen.push(command);
      return { ok: true, output: {} };
    }, new AlwaysOffSampler());
    await current.orchestrator.registerWorkflow(
      new WorkflowBuilder('one').step('a', 'inventory.reserve').build(),
    );
    const { txId } = await current.orchestrator.startWorkflow('one', {});
    const run = await current.orchestrator.waitForTerminal(txId, { timeoutMs: 10_000 });
    expect(run.traceHeaders).toBeUndefined();
    expect(seen).toHaveLength(1);
    expect(isSampled(seen[0]?.headers)).toBe(false);
    expect(current.exporter.getFinishedSpans()).toHaveLength(0);
    expect(current.logFields).toHaveLength(0);
  });
});
