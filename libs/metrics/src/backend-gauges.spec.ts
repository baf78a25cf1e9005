import { silentLogger, type TopicStats } from '@multiagents/core';
import { parseMetricsText, sumSamples, findSamples, type MetricSample } from '@multiagents/testing';
import { Registry, type OpenMetricsContentType } from 'prom-client';
import { BackendGauges } from './backend-gauges';
import { ExpositionFormat, renderExposition } from './exposition';
import { LabelBounds } from './label-bounds';
import { MetricName } from './metric-names';
import { ORDER_WORKFLOW } from './testing/order-workflow';

describe('BackendGauges', () => {
  const setup = (overrides: Partial<ConstructorParameters<typeof BackendGauges>[1]> = {}) => {
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const bounds = new LabelBounds({ maxOtherGroups: 1 });
    bounds.learn(ORDER_WORKFLOW);
    const gauges = new BackendGauges(registry, {
      runs: { countByState: async () => ({ completed: 7, running: 2 }) },
      registry: {
        list: async () => [
          {
            managerId: 'm1',
            workers: ['payment.charge', 'secret.x', 'secret.y'],
            capacity: 8,
            inFlight: 3,
            lingering: 2,
            seenAt: 0,
          },
          { managerId: 'm2', workers: ['payment.charge'], capacity: 4, inFlight: 1, seenAt: 0 },
          // A record someone else wrote: a lingering count that is not one counts as none.
          {
            managerId: 'm3',
            workers: ['payment.charge'],
            capacity: 1,
            inFlight: 0,
            lingering: 'many' as unknown as number,
            seenAt: 0,
          },
        ],
      },
      bus: {
        topicStats: async (topic: string): Promise<TopicStats> => ({
          topic,
          groups: [
            { group: 'metrics-collector', pending: 1, lag: 2 },
            { group: 'bench-1', pending: 1, lag: 1 },
            { group: 'bench-2', pending: 2, lag: 5 },
            { group: 'bench-3', pending: 3 },
          ],
          deadLetters: topic === 'events' ? 4 : 0,
          deadLettersAdded: topic === 'events' ? 9 : 0,
        }),
      },
      bounds,
      logger: silentLogger,
      ...overrides,
    });
    const scrape = async (): Promise<MetricSample[]> => {
      await gauges.refresh();
      return parseMetricsText(await renderExposition(registry, ExpositionFormat.Prometheus));
    };
    return { scrape };
  };

  it('reads runs per state, workers, lag, pending and dead letters at scrape time, labels bounded', async () => {
    const got = await setup().scrape();
    expect(sumSamples(got, MetricName.Runs, { state: 'completed' })).toBe(7);
    expect(sumSamples(got, MetricName.Runs, { state: 'cancelled' })).toBe(0);
    expect(findSamples(got, MetricName.Runs)).toHaveLength(10);
    expect(sumSamples(got, MetricName.WorkerManagers)).toBe(3);
    expect(sumSamples(got, MetricName.WorkerCapacity)).toBe(13);
    expect(sumSamples(got, MetricName.WorkerInFlight)).toBe(4);
    expect(sumSamples(got, MetricName.WorkerLingering)).toBe(2);
    expect(sumSamples(got, MetricName.WorkerReplicas, { worker: 'payment.charge' })).toBe(3);
    expect(sumSamples(got, MetricName.WorkerReplicas, { worker: 'shipping.ship' })).toBe(0);
    // Two unknown workers on one replica: that replica counts once under other.
    expect(sumSamples(got, MetricName.WorkerReplicas, { worker: 'other' })).toBe(1);
    // The events, results and the command topic of every known worker.
    expect(findSamples(got, MetricName.DeadLetters).map((s) => s.labels['topic'])).toEqual([
      'events',
      'results',
      'commands.inventory.reserve',
      'commands.inventory.release',
      'commands.payment.charge',
      'commands.payment.refund',
      'commands.shipping.ship',
    ]);
    expect(sumSamples(got, MetricName.DeadLetters, { topic: 'events' })).toBe(4);
    expect(sumSamples(got, MetricName.DeadLettersAdded, { topic: 'events' })).toBe(9);
    const events = { topic: 'events' };
    expect(
      findSamples(got, MetricName.BusConsumerPending, events).map((s) => [s.labels['group'], s.value]),
    ).toEqual([
      ['metrics-collector', 1],
      ['bench-1', 1],
      ['other', 5],
    ]);
    // A lag the broker could not tell for one group leaves the summed lag out.
    expect(findSamples(got, MetricName.BusConsumerLag, events).map((s) => s.labels['group'])).toEqual([
      'metrics-collector',
      'bench-1',
    ]);
  });

  it('leaves out the series of a source that fails or does not answer in time, and counts it', async () => {
    const { scrape } = setup({
      runs: { countByState: () => Promise.reject(new Error('store down')) },
      registry: { list: () => new Promise(() => undefined) },
      sourceTimeoutMs: 50,
    });
    const got = await scrape();
    expect(findSamples(got, MetricName.Runs)).toEqual([]);
    expect(findSamples(got, MetricName.WorkerManagers)).toEqual([]);
    expect(sumSamples(got, MetricName.CollectorSourceErrors, { source: 'runs' })).toBe(1);
    expect(sumSamples(got, MetricName.CollectorSourceErrors, { source: 'workers' })).toBe(1);
    expect(sumSamples(got, MetricName.CollectorSourceErrors, { source: 'bus' })).toBe(0);
    expect(sumSamples(got, MetricName.DeadLetters, { topic: 'events' })).toBe(4);
  });
});
