import { EventType, RunState, Topics, type Envelope } from '@multiagents/contracts';
import { Orchestrator, type Subscription } from '@multiagents/core';
import { createMemoryBackend, type MemoryBackend } from '@multiagents/memory';
import { findSamples, parseMetricsText, sumSamples, waitFor, type MetricSample } from '@multiagents/testing';
import { MetricName } from './metric-names';
import { METRICS_COLLECTOR_GROUP, MetricsCollector } from './metrics-collector';
import { answerOrderCommands, ORDER_WORKFLOW } from './testing/order-workflow';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const OPEN_METRICS = 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5';

describe('MetricsCollector (memory backend, a real engine)', () => {
  let backend: MemoryBackend;
  let orchestrator: Orchestrator;
  let collector: MetricsCollector;
  let workers: Subscription[];

  beforeEach(async () => {
    backend = createMemoryBackend();
    orchestrator = new Orchestrator({
      ...backend,
      timerPollIntervalMs: 5,
      // Every run in one sampled trace, as the tracing observer would give it.
      observer: { runStarting: () => ({ traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` }) },
    });
    await orchestrator.registerWorkflow(ORDER_WORKFLOW);
    await orchestrator.start();
    workers = await answerOrderCommands(backend.bus);
    collector = new MetricsCollector({
      ...backend,
      consumer: 'mc-test',
      buildInfo: { version: '1.2.3', backend: 'memory' },
      processMetrics: false,
    });
    await collector.start();
  });

  afterEach(async () => {
    await collector.close();
    await Promise.all(workers.map((w) => w.close()));
    await orchestrator.close();
    await backend.close();
  });

  const scrape = async (accept?: string): Promise<MetricSample[]> =>
    parseMetricsText((await collector.scrape(accept)).body);
  const runOrders = async (inputs: readonly Record<string, unknown>[]): Promise<void> => {
    const txIds = await Promise.all(
      inputs.map(async (input) => (await orchestrator.startWorkflow(ORDER_WORKFLOW.id, input)).txId),
    );
    await waitFor(
      async () => {
        const runs = await Promise.all(txIds.map((txId) => backend.runs.get(txId)));
        return runs.every(
          (r) => r?.run.state === RunState.Completed || r?.run.state === RunState.Compensated,
        );
      },
      { timeoutMs: 10_000, description: 'every order run terminal' },
    );
  };
  const eventsDrained = (): Promise<void> =>
    waitFor(
      async () => {
        const stats = await backend.bus.topicStats(Topics.events);
        const group = stats.groups.find((g) => g.group === METRICS_COLLECTOR_GROUP);
        return group?.lag === 0 && group.pending === 0;
      },
      { timeoutMs: 5_000, description: 'the collector read every event' },
    );

  it('counts runs, steps, retries and compensations as the engine reports them', async () => {
    // 6 complete (2 of them after one retried payment), 3 compensate (shipping refused).
    await runOrders([
      ...Array.from({ length: 4 }, () => ({})),
      ...Array.from({ length: 2 }, () => ({ flakyPayment: true })),
      ...Array.from({ length: 3 }, () => ({ failShipping: true })),
    ]);
    await eventsDrained();
    const samples = await scrape();
    const wf = { workflow: 'order_processing' };
    expect(sumSamples(samples, MetricName.RunsStarted, wf)).toBe(9);
    expect(sumSamples(samples, MetricName.RunsFinished, { ...wf, outcome: 'completed' })).toBe(6);
    expect(sumSamples(samples, MetricName.RunsFinished, { ...wf, outcome: 'compensated' })).toBe(3);
    const step = (name: string, outcome: string): number =>
      sumSamples(samples, MetricName.StepExecutions, { ...wf, step: name, outcome });
    expect(step('reserve_inventory', 'completed')).toBe(9);
    expect(step('charge_payment', 'completed')).toBe(9);
    expect(step('ship_order', 'completed')).toBe(6);
    expect(step('ship_order', 'failed')).toBe(3);
    expect(sumSamples(samples, MetricName.StepRetries, { ...wf, step: 'charge_payment', kind: 'task' })).toBe(
      2,
    );
    expect(sumSamples(samples, MetricName.Compensations, { ...wf, outcome: 'completed' })).toBe(6);
    // One duration per finished run and per ended step, under the same labels.
    expect(sumSamples(samples, `${MetricName.RunDuration}_count`, { ...wf, outcome: 'compensated' })).toBe(3);
    expect(
      sumSamples(samples, `${MetricName.StepDuration}_count`, {
        ...wf,
        step: 'ship_order',
        outcome: 'failed',
      }),
    ).toBe(3);
    expect(
      sumSamples(samples, `${MetricName.RunDuration}_bucket`, { ...wf, outcome: 'completed', le: '+Inf' }),
    ).toBe(6);
    // Exact from the store, whatever the counters say.
    expect(sumSamples(samples, MetricName.Runs, { state: 'completed' })).toBe(6);
    expect(sumSamples(samples, MetricName.Runs, { state: 'compensated' })).toBe(3);
    expect(sumSamples(samples, MetricName.Runs, { state: 'running' })).toBe(0);
    // The bus as the store sees it: nothing left for anyone.
    expect(
      sumSamples(samples, MetricName.BusConsumerLag, { topic: 'events', group: METRICS_COLLECTOR_GROUP }),
    ).toBe(0);
    expect(
      sumSamples(samples, MetricName.BusConsumerPending, { topic: 'results', group: 'orchestrators' }),
    ).toBe(0);
    expect(sumSamples(samples, MetricName.DeadLetters, { topic: 'commands.shipping.ship' })).toBe(0);
    expect(findSamples(samples, MetricName.BuildInfo, { version: '1.2.3', backend: 'memory' })).toHaveLength(
      1,
    );
    expect(collector.stats.eventsRejected).toBe(0);
  });

  it('carries the run trace id as the exemplar of durations and counters, in OpenMetrics only', async () => {
    await runOrders([{}]);
    await eventsDrained();
    const open = await collector.scrape(OPEN_METRICS);
    expect(open.contentType).toContain('application/openmetrics-text');
    const samples = parseMetricsText(open.body);
    const withExemplar = findSamples(samples, `${MetricName.RunDuration}_bucket`).filter((s) => s.exemplar);
    expect(withExemplar).toHaveLength(1);
    expect(withExemplar[0]?.exemplar?.labels).toEqual({ trace_id: TRACE_ID });
    expect(findSamples(samples, MetricName.RunsStarted)[0]?.exemplar?.labels).toEqual({ trace_id: TRACE_ID });
    const classic = await collector.scrape();
    expect(classic.contentType).toContain('text/plain');
    expect(parseMetricsText(classic.body).some((s) => s.exemplar)).toBe(false);
  });

  it('dead-letters an event it cannot decode, counts it, and goes on with the next', async () => {
    const bad: Envelope = {
      id: 'bad-1',
      type: EventType.WorkflowTransitioned,
      txId: 'tx-bad',
      workflowId: ORDER_WORKFLOW.id,
      time: Date.now(),
      headers: {},
      payload: { version: 1, state: 'running', events: [{ type: 'workflow.exploded', state: 'running' }] },
    };
    await backend.bus.publish(Topics.events, [bad]);
    await runOrders([{}]);
    await eventsDrained();
    const dead = await backend.bus.listDeadLetters(Topics.events);
    expect(dead.map((d) => [d.envelope?.id, d.group])).toEqual([['bad-1', METRICS_COLLECTOR_GROUP]]);
    expect(dead[0]?.error).toContain('events[0]: unknown type');
    const samples = await scrape();
    expect(sumSamples(samples, MetricName.CollectorEventsRejected, { reason: 'bad_lifecycle_event' })).toBe(
      1,
    );
    expect(sumSamples(samples, MetricName.RunsFinished, { outcome: 'completed' })).toBe(1);
    expect(sumSamples(samples, MetricName.DeadLettersAdded, { topic: 'events' })).toBe(1);
    // A replay of the dead letter is decoded again (not taken for a duplicate), and refused again.
    expect(await backend.bus.replayDeadLetter(Topics.events, dead[0]?.id ?? '')).toBe(true);
    await waitFor(async () => (await backend.bus.listDeadLetters(Topics.events)).length === 1, {
      timeoutMs: 5_000,
    });
    expect(collector.stats).toMatchObject({ eventsRejected: 2, eventsDuplicate: 0 });
  });

  it('counts an event delivered twice (same id) once', async () => {
    const started: Envelope = {
      id: 'tx-dup:v1',
      type: EventType.WorkflowTransitioned,
      txId: 'tx-dup',
      workflowId: ORDER_WORKFLOW.id,
      time: Date.now(),
      headers: {},
      payload: {
        version: 1,
        state: 'running',
        events: [{ type: EventType.WorkflowStarted, state: 'running' }],
      },
    };
    await backend.bus.publish(Topics.events, [started]);
    await backend.bus.publish(Topics.events, [started]);
    await eventsDrained();
    const samples = await scrape();
    expect(sumSamples(samples, MetricName.RunsStarted, { workflow: 'order_processing' })).toBe(1);
    expect(sumSamples(samples, MetricName.CollectorEventsDuplicate)).toBe(1);
    expect(sumSamples(samples, MetricName.CollectorEvents, { type: EventType.WorkflowTransitioned })).toBe(2);
  });

  it('labels a workflow registered after it started, even within its refresh interval', async () => {
    // The collector read the definitions at start; this one is registered afterwards, and its
    // first event comes long before the unknown-workflow refresh interval (an hour) is over.
    await collector.close();
    collector = new MetricsCollector({
      ...backend,
      consumer: 'mc-late',
      buildInfo: { version: '1.2.3', backend: 'memory' },
      processMetrics: false,
      unknownWorkflowRefreshMs: 3_600_000,
    });
    await collector.start();
    const late = { ...ORDER_WORKFLOW, id: 'late_orders' };
    await orchestrator.registerWorkflow(late);
    const { txId } = await orchestrator.startWorkflow(late.id, {});
    await waitFor(async () => (await backend.runs.get(txId))?.run.state === RunState.Completed, {
      timeoutMs: 10_000,
      description: 'the late workflow ran',
    });
    await eventsDrained();
    const samples = await scrape();
    expect(sumSamples(samples, MetricName.RunsStarted, { workflow: 'late_orders' })).toBe(1);
    expect(sumSamples(samples, MetricName.RunsStarted, { workflow: 'other' })).toBe(0);
  });

  it('labels workflows, steps and workers no definition declares as other, within fixed series', async () => {
    const forged = (i: number): Envelope => ({
      id: `forged-${i}`,
      type: EventType.WorkflowTransitioned,
      txId: `tx-forged-${i}`,
      workflowId: `wf-${i}`,
      time: Date.now(),
      headers: {},
      payload: {
        version: 1,
        state: 'running',
        events: [
          { type: EventType.WorkflowStarted, state: 'running' },
          { type: EventType.StepCompleted, state: 'running', step: `s-${i}`, attempt: 1, durationMs: 3 },
        ],
      },
    });
    const known: Envelope = {
      ...forged(0),
      id: 'known-wf-unknown-step',
      workflowId: ORDER_WORKFLOW.id,
    };
    await backend.bus.publish(Topics.events, [...Array.from({ length: 500 }, (_, i) => forged(i)), known]);
    await eventsDrained();
    const samples = await scrape();
    expect(findSamples(samples, MetricName.RunsStarted).map((s) => s.labels)).toEqual(
      expect.arrayContaining([{ workflow: 'other' }, { workflow: 'order_processing' }]),
    );
    expect(findSamples(samples, MetricName.RunsStarted)).toHaveLength(2);
    expect(sumSamples(samples, MetricName.RunsStarted, { workflow: 'other' })).toBe(500);
    expect(findSamples(samples, MetricName.StepExecutions).map((s) => s.labels)).toEqual([
      { workflow: 'other', step: 'other', outcome: 'completed' },
      { workflow: 'order_processing', step: 'other', outcome: 'completed' },
    ]);
  });
});

describe('MetricsCollector without decodable payloads', () => {
  it('refuses a worker.heartbeat of the wrong shape with a PoisonMessageError', async () => {
    const backend = createMemoryBackend();
    const collector = new MetricsCollector({
      ...backend,
      consumer: 'mc',
      buildInfo: { version: '0', backend: 'memory' },
      processMetrics: false,
    });
    await collector.start();
    await backend.bus.publish(Topics.events, [
      {
        id: 'hb-1',
        type: EventType.WorkerHeartbeat,
        txId: '',
        workflowId: '',
        time: 0,
        headers: {},
        payload: { managerId: 7 },
      },
    ]);
    await waitFor(async () => (await backend.bus.listDeadLetters(Topics.events)).length === 1, {
      timeoutMs: 5_000,
    });
    const [dead] = await backend.bus.listDeadLetters(Topics.events);
    expect(dead?.error).toContain('expected { managerId, workers[], inFlight }');
    expect(collector.stats).toEqual({ eventsHandled: 1, eventsRejected: 1, eventsDuplicate: 0 });
    await collector.close();
    await backend.close();
  });
});
