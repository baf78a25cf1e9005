import { RunState, Topics } from '@multiagents/contracts';
import type { EventBus, Logger, RunStore, TopicStats, WorkerRegistry } from '@multiagents/core';
import { Counter, Gauge, type OpenMetricsContentType, type Registry } from 'prom-client';
import type { LabelBounds } from './label-bounds';
import { MetricName } from './metric-names';

/** Default of {@link BackendGaugesOptions.sourceTimeoutMs}. */
export const DEFAULT_SOURCE_TIMEOUT_MS = 5_000;

/** The scrape-time sources. */
export const GaugeSource = { Runs: 'runs', Workers: 'workers', Bus: 'bus' } as const;
/** One of {@link GaugeSource}'s values. */
export type GaugeSource = (typeof GaugeSource)[keyof typeof GaugeSource];

/** What {@link BackendGauges} reads at scrape time. */
export interface BackendGaugesOptions {
  readonly runs: Pick<RunStore, 'countByState'>;
  readonly registry: Pick<WorkerRegistry, 'list'>;
  readonly bus: Pick<EventBus, 'topicStats'>;
  readonly bounds: LabelBounds;
  readonly logger: Logger;
  /** A source slower than this is left out of the scrape (and counted as an error). */
  readonly sourceTimeoutMs?: number;
}

/**
 * The gauges read from the backend when Prometheus scrapes, not kept from events: runs per
 * state (exact, the store's own indexes: right after a restart too), consumer lag, pending and
 * dead letters per topic (the bus's `topicStats`: the events and results topics and the command
 * topic of each known worker), and the live worker-managers. A source that fails or is slow
 * leaves its series out of that scrape (absent, not stale) and counts an error.
 */
export class BackendGauges {
  private readonly runsByState: Gauge<'state'>;
  private readonly deadLetters: Gauge<'topic'>;
  private readonly deadLettersAdded: Counter<'topic'>;
  private readonly lag: Gauge<'topic' | 'group'>;
  private readonly pending: Gauge<'topic' | 'group'>;
  private readonly managers: Gauge;
  private readonly replicas: Gauge<'worker'>;
  private readonly capacity: Gauge;
  private readonly inFlight: Gauge;
  private readonly lingering: Gauge;
  private readonly sourceErrors: Counter<'source'>;
  private readonly timeoutMs: number;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly registry: Registry<OpenMetricsContentType>,
    private readonly options: BackendGaugesOptions,
  ) {
    const registers = [registry];
    this.timeoutMs = options.sourceTimeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS;
    this.runsByState = new Gauge({
      name: MetricName.Runs,
      help: 'Runs the store holds, by state (read at scrape time; terminal runs expire after their retention).',
      labelNames: ['state'],
      registers,
    });
    this.deadLetters = new Gauge({
      name: MetricName.DeadLetters,
      help: 'Dead letters a topic holds (read at scrape time).',
      labelNames: ['topic'],
      registers,
    });
    this.deadLettersAdded = new Counter({
      name: MetricName.DeadLettersAdded,
      help: 'Dead letters ever added to a topic, as the broker counts them (read at scrape time).',
      labelNames: ['topic'],
      registers,
    });
    this.lag = new Gauge({
      name: MetricName.BusConsumerLag,
      help: 'Messages of a topic not yet delivered to a consumer group (read at scrape time).',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.pending = new Gauge({
      name: MetricName.BusConsumerPending,
      help: 'Messages delivered to a consumer group and not acknowledged yet (read at scrape time).',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.managers = new Gauge({
      name: MetricName.WorkerManagers,
      help: 'Live worker-manager replicas (read at scrape time from the worker registry).',
      registers,
    });
    this.replicas = new Gauge({
      name: MetricName.WorkerReplicas,
      help: 'Live worker-manager replicas hosting a worker.',
      labelNames: ['worker'],
      registers,
    });
    this.capacity = new Gauge({
      name: MetricName.WorkerCapacity,
      help: 'Attempts the live worker-managers may run at once, summed.',
      registers,
    });
    this.inFlight = new Gauge({
      name: MetricName.WorkerInFlight,
      help: 'Attempts the live worker-managers were running when they last announced themselves, summed.',
      registers,
    });
    this.lingering = new Gauge({
      name: MetricName.WorkerLingering,
      help: 'Handlers still running past their attempt (timed out, cancelled, given up by a drain) in the live worker-managers when they last announced themselves, summed: each holds a slot.',
      registers,
    });
    this.sourceErrors = new Counter({
      name: MetricName.CollectorSourceErrors,
      help: 'Scrape-time reads that failed or timed out, by source (their series were left out).',
      labelNames: ['source'],
      registers,
    });
    for (const source of Object.values(GaugeSource)) this.sourceErrors.inc({ source }, 0);
  }

  /** Reads every source again (concurrent callers share one read). */
  refresh(): Promise<void> {
    this.refreshing ??= Promise.all([
      this.read(GaugeSource.Runs, () => this.readRuns(), [this.runsByState]),
      this.read(GaugeSource.Workers, () => this.readWorkers(), [
        this.managers,
        this.replicas,
        this.capacity,
        this.inFlight,
        this.lingering,
      ]),
      this.read(GaugeSource.Bus, () => this.readBus(), [
        this.deadLetters,
        this.deadLettersAdded,
        this.lag,
        this.pending,
      ]),
    ]).then(
      () => {
        this.refreshing = undefined;
      },
      () => {
        this.refreshing = undefined;
      },
    );
    return this.refreshing;
  }

  /**
   * Runs `read` (which sets the metrics) within the timeout; on failure takes `metrics` out of the
   * registry until a read succeeds again (a gauge without labels would otherwise show 0, which
   * reads as a fact: "no worker-manager is alive").
   */
  private async read(
    source: GaugeSource,
    read: () => Promise<() => void>,
    metrics: readonly (Gauge<string> | Counter<string>)[],
  ): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, rejectTimeout) => {
        timer = setTimeout(
          () => rejectTimeout(new Error(`${source} did not answer within ${this.timeoutMs} ms`)),
          this.timeoutMs,
        );
      });
      // Values are read first and set together, in one synchronous step: a scrape never sees half.
      const apply = await Promise.race([read(), timeout]);
      apply();
      for (const metric of metrics) this.registry.registerMetric(metric);
    } catch (err) {
      for (const metric of metrics) {
        metric.reset();
        this.registry.removeSingleMetric((metric as unknown as { name: string }).name);
      }
      this.sourceErrors.inc({ source });
      this.options.logger.warn(
        { component: 'metrics', source, err: err instanceof Error ? err.message : String(err) },
        'scrape-time source failed; its series are left out',
      );
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  private async readRuns(): Promise<() => void> {
    const counts = await this.options.runs.countByState();
    return () => {
      for (const state of Object.values(RunState)) this.runsByState.set({ state }, counts[state] ?? 0);
    };
  }

  private async readWorkers(): Promise<() => void> {
    const managers = await this.options.registry.list();
    const replicas = new Map<string, number>();
    for (const worker of this.options.bounds.workers) replicas.set(worker, 0);
    let capacity = 0;
    let inFlight = 0;
    let lingering = 0;
    for (const manager of managers) {
      capacity += manager.capacity;
      inFlight += manager.inFlight;
      // Absent from older replicas; a registry a stranger wrote to may hold anything.
      if (Number.isSafeInteger(manager.lingering) && (manager.lingering as number) > 0) {
        lingering += manager.lingering as number;
      }
      // A replica hosting several unknown workers counts once under `other`.
      const labels = new Set(manager.workers.map((w) => this.options.bounds.worker(w)));
      for (const label of labels) replicas.set(label, (replicas.get(label) ?? 0) + 1);
    }
    return () => {
      this.managers.set(managers.length);
      this.capacity.set(capacity);
      this.inFlight.set(inFlight);
      this.lingering.set(lingering);
      this.replicas.reset();
      for (const [worker, n] of replicas) this.replicas.set({ worker }, n);
    };
  }

  private async readBus(): Promise<() => void> {
    const topicStats = this.options.bus.topicStats?.bind(this.options.bus);
    if (topicStats === undefined) return () => undefined;
    const topics = [
      Topics.events,
      Topics.results,
      ...this.options.bounds.workers.map((w) => Topics.command(w)),
    ];
    const stats: TopicStats[] = await Promise.all(topics.map((topic) => topicStats(topic)));
    return () => {
      this.deadLetters.reset();
      this.deadLettersAdded.reset();
      this.lag.reset();
      this.pending.reset();
      for (const topic of stats) {
        this.deadLetters.set({ topic: topic.topic }, topic.deadLetters);
        if (topic.deadLettersAdded !== undefined) {
          this.deadLettersAdded.inc({ topic: topic.topic }, topic.deadLettersAdded);
        }
        // Groups beyond the cap are summed under `other`.
        const byLabel = new Map<string, { pending: number; lag: number | undefined }>();
        for (const g of topic.groups) {
          const label = this.options.bounds.group(g.group);
          const sum = byLabel.get(label);
          if (sum === undefined) byLabel.set(label, { pending: g.pending, lag: g.lag });
          else {
            sum.pending += g.pending;
            sum.lag = sum.lag === undefined || g.lag === undefined ? undefined : sum.lag + g.lag;
          }
        }
        for (const [group, { pending, lag }] of byLabel) {
          this.pending.set({ topic: topic.topic, group }, pending);
          if (lag !== undefined) this.lag.set({ topic: topic.topic, group }, lag);
        }
      }
    };
  }
}
