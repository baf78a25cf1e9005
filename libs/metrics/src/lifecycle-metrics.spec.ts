import {
  EventType,
  type Envelope,
  type LifecycleEvent,
  decodeTransition,
  EventRejectReason,
  eventRejectReasonOf,
} from '@multiagents/contracts';
import { findSamples, parseMetricsText, sumSamples, type MetricSample } from '@multiagents/testing';
import { Registry, type OpenMetricsContentType } from 'prom-client';
import { ExpositionFormat, renderExposition } from './exposition';
import { LabelBounds } from './label-bounds';
import { LifecycleMetrics } from './lifecycle-metrics';
import { MetricName } from './metric-names';
import { ORDER_WORKFLOW } from './testing/order-workflow';

const SAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const NOT_SAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';

let version = 0;
function transition(
  events: LifecycleEvent[],
  traceparent?: string,
  workflowId = ORDER_WORKFLOW.id,
): Envelope {
  version += 1;
  return {
    id: `tx:v${version}`,
    type: EventType.WorkflowTransitioned,
    txId: 'tx',
    workflowId,
    time: 0,
    headers: traceparent === undefined ? {} : { traceparent },
    payload: { version, state: events.at(-1)?.state ?? 'running', events },
  };
}

describe('LifecycleMetrics', () => {
  let metrics: LifecycleMetrics;
  let registry: Registry<OpenMetricsContentType>;

  beforeEach(() => {
    registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const bounds = new LabelBounds();
    bounds.learn(ORDER_WORKFLOW);
    metrics = new LifecycleMetrics(registry, bounds, { stepDurationBuckets: [0.01, 0.1, 1] });
  });

  const record = (envelope: Envelope): void => metrics.record(envelope, decodeTransition(envelope));
  const samples = async (): Promise<MetricSample[]> =>
    parseMetricsText(await renderExposition(registry, ExpositionFormat.OpenMetrics));

  it('puts step durations (ms on the bus) in second buckets, with the sampled trace as exemplar', async () => {
    record(
      transition(
        [
          {
            type: EventType.StepCompleted,
            state: 'running',
            step: 'reserve_inventory',
            attempt: 1,
            durationMs: 50,
          },
          {
            type: EventType.StepCompleted,
            state: 'running',
            step: 'charge_payment',
            attempt: 1,
            durationMs: 5,
          },
        ],
        SAMPLED,
      ),
    );
    const got = await samples();
    const bucket = (step: string, le: string): MetricSample | undefined =>
      findSamples(got, `${MetricName.StepDuration}_bucket`, { step, le, outcome: 'completed' })[0];
    expect(['0.01', '0.1', '1', '+Inf'].map((le) => bucket('reserve_inventory', le)?.value)).toEqual([
      0, 1, 1, 1,
    ]);
    expect(bucket('reserve_inventory', '0.1')?.exemplar).toEqual({
      labels: { trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' },
      value: 0.05,
    });
    expect(bucket('charge_payment', '0.01')?.value).toBe(1);
    expect(sumSamples(got, `${MetricName.StepDuration}_sum`, { step: 'reserve_inventory' })).toBeCloseTo(
      0.05,
    );
  });

  it('leaves exemplars out for a trace that is not sampled, or no trace', async () => {
    record(transition([{ type: EventType.WorkflowStarted, state: 'running' }], NOT_SAMPLED));
    record(transition([{ type: EventType.WorkflowStarted, state: 'running' }]));
    const [started] = findSamples(await samples(), MetricName.RunsStarted);
    expect(started?.value).toBe(2);
    expect(started?.exemplar).toBeUndefined();
  });

  it('ends a run once per transition, with its terminal state as the outcome', async () => {
    record(
      transition([
        {
          type: EventType.CompensationFailed,
          state: 'compensating',
          step: 'charge_payment',
          attempt: 5,
          durationMs: 9,
        },
        { type: EventType.WorkflowStuck, state: 'compensation_failed', durationMs: 2_000 },
      ]),
    );
    // The watchdog's workflow.stuck leaves the run running: not an end.
    record(transition([{ type: EventType.WorkflowStuck, state: 'running' }]));
    record(
      transition([
        { type: EventType.WorkflowCancelled, state: 'cancelled', durationMs: 10 },
        { type: EventType.WorkflowCancelled, state: 'cancelled', durationMs: 10 },
      ]),
    );
    const got = await samples();
    expect(findSamples(got, MetricName.RunsFinished).map((s) => [s.labels['outcome'], s.value])).toEqual([
      ['compensation_failed', 1],
      ['cancelled', 1],
    ]);
    expect(sumSamples(got, `${MetricName.RunDuration}_sum`, { outcome: 'compensation_failed' })).toBe(2);
    expect(sumSamples(got, MetricName.Compensations, { step: 'charge_payment', outcome: 'failed' })).toBe(1);
  });

  it('tells skipped steps from skipped compensations, and task retries from compensation retries', async () => {
    record(
      transition([
        { type: EventType.StepSkipped, state: 'running', step: 'ship_order' },
        { type: EventType.StepSkipped, state: 'compensating', step: 'charge_payment', compensation: true },
        { type: EventType.StepRetrying, state: 'running', step: 'charge_payment', attempt: 1, delayMs: 1 },
        {
          type: EventType.StepRetrying,
          state: 'compensating',
          step: 'reserve_inventory',
          compensation: true,
        },
      ]),
    );
    const got = await samples();
    expect(sumSamples(got, MetricName.StepExecutions, { step: 'ship_order', outcome: 'skipped' })).toBe(1);
    expect(sumSamples(got, MetricName.Compensations, { step: 'charge_payment', outcome: 'skipped' })).toBe(1);
    expect(findSamples(got, MetricName.StepRetries).map((s) => [s.labels['step'], s.labels['kind']])).toEqual(
      [
        ['charge_payment', 'task'],
        ['reserve_inventory', 'compensation'],
      ],
    );
  });

  it('counts the tokens and cost agent attempts report, failed and retried ones included', async () => {
    const usage = (promptTokens: number, completionTokens: number, costUsd: number) => ({
      usage: { promptTokens, completionTokens, costUsd },
    });
    record(
      transition([
        {
          type: EventType.StepRetrying,
          state: 'running',
          step: 'charge_payment',
          attempt: 1,
          delayMs: 10,
          ...usage(100, 0, 0.0001),
        },
        {
          type: EventType.StepCompleted,
          state: 'running',
          step: 'charge_payment',
          attempt: 2,
          durationMs: 5,
          ...usage(120, 30, 0.0002),
        },
        { type: EventType.StepCompleted, state: 'running', step: 'ship_order', attempt: 1, durationMs: 5 },
      ]),
    );
    const got = await samples();
    const tokens = (kind: string) =>
      sumSamples(got, MetricName.AgentTokens, { step: 'charge_payment', kind });
    expect([tokens('prompt'), tokens('completion')]).toEqual([220, 30]);
    expect(sumSamples(got, MetricName.AgentCost, { step: 'charge_payment' })).toBeCloseTo(0.0003, 10);
    // A step that reports no usage adds no series.
    expect(findSamples(got, MetricName.AgentTokens, { step: 'ship_order' })).toEqual([]);
  });
});

describe('decodeTransition', () => {
  it.each([
    ['not an object', 'x', EventRejectReason.BadTransition],
    ['no version', { state: 'running', events: [] }, EventRejectReason.BadTransition],
    ['unknown state', { version: 1, state: 'exploded', events: [] }, EventRejectReason.BadTransition],
    ['events not a list', { version: 1, state: 'running', events: {} }, EventRejectReason.BadTransition],
    [
      'event of unknown type',
      { version: 1, state: 'running', events: [{ type: 'x', state: 'running' }] },
      EventRejectReason.BadLifecycleEvent,
    ],
    [
      'negative duration',
      {
        version: 1,
        state: 'running',
        events: [{ type: 'step.completed', state: 'running', durationMs: -1 }],
      },
      EventRejectReason.BadLifecycleEvent,
    ],
  ])('refuses a payload with %s, naming the reason', (_, payload, reason) => {
    const envelope = { ...transition([]), payload };
    let thrown: unknown;
    try {
      decodeTransition(envelope);
    } catch (err) {
      thrown = err;
    }
    expect((thrown as { code?: string }).code).toBe('POISON_MESSAGE');
    expect(eventRejectReasonOf(thrown)).toBe(reason);
  });
});
