import {
  EventType,
  isEventType,
  Topics,
  type Envelope,
  decodeHeartbeat,
  decodeTransition,
  EventRejectReason,
  eventRejectReasonOf,
} from '@multiagents/contracts';
import {
  silentLogger,
  systemClock,
  type Clock,
  type DefinitionStore,
  type Delivery,
  type EventBus,
  type Logger,
  type RunStore,
  type SubscribeOptions,
  type Subscription,
  type WorkerRegistry,
} from '@multiagents/core';
import { collectDefaultMetrics, Counter, Gauge, Registry, type OpenMetricsContentType } from 'prom-client';
import { BackendGauges } from './backend-gauges';
import { DefinitionCatalog } from './definition-catalog';
import { EXPOSITION_CONTENT_TYPES, negotiateFormat, renderExposition } from './exposition';
import { LabelBounds, OTHER_LABEL, type LabelBoundsOptions } from './label-bounds';
import { LifecycleMetrics, type LifecycleMetricsOptions } from './lifecycle-metrics';
import { MetricName } from './metric-names';
import { RecentIds } from './recent-ids';

/** A prom-client registry of the OpenMetrics kind (the typings omit the constructor's argument). */
function openMetricsRegistry(): Registry<OpenMetricsContentType> {
  const registry = new Registry<OpenMetricsContentType>();
  registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  return registry;
}

/** prom-client process metrics that are gauges with a `_total` name. */
const NON_COUNTERS_NAMED_TOTAL = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** The metrics-collector's consumer group on `Topics.events`: replicas compete in it. */
export const METRICS_COLLECTOR_GROUP = 'metrics-collector';

/** Defaults of {@link MetricsCollectorOptions}. */
export const DEFAULT_METRICS_COLLECTOR_OPTIONS = {
  group: METRICS_COLLECTOR_GROUP,
  /** Events in hand at once; with batchDelayMs also the most one read takes. */
  concurrency: 256,
  /** Metrics can be 100 ms late: the events are read in fewer, bigger batches (see SubscribeOptions). */
  batchDelayMs: 100,
  definitionsRefreshMs: 60_000,
  unknownWorkflowRefreshMs: 1_000,
  recentIdsCapacity: 65_536,
  processMetrics: true,
} as const;

/** What the `multiagents_build_info` series says. */
export interface BuildInfo {
  readonly version: string;
  readonly backend: string;
}

/** Options of {@link MetricsCollector}. */
export interface MetricsCollectorOptions {
  readonly bus: EventBus;
  readonly runs: Pick<RunStore, 'countByState'>;
  readonly definitions: Pick<DefinitionStore, 'list' | 'get'>;
  readonly registry: Pick<WorkerRegistry, 'list'>;
  /** This replica's consumer name in the group (unique per process). */
  readonly consumer: string;
  readonly group?: string;
  /** Subscription settings (concurrency, visibility timeout, deliveries before a dead letter…). */
  readonly subscribe?: Partial<Omit<SubscribeOptions, 'group' | 'consumer'>>;
  readonly bounds?: LabelBoundsOptions;
  readonly lifecycle?: LifecycleMetricsOptions;
  readonly buildInfo: BuildInfo;
  /** How often the definitions are read again for label names. */
  readonly definitionsRefreshMs?: number;
  /** Least time between two reads caused by events of unknown workflows. */
  readonly unknownWorkflowRefreshMs?: number;
  /** Message ids remembered to recognise a message delivered twice. */
  readonly recentIdsCapacity?: number;
  /** A scrape-time source slower than this is left out of that scrape. */
  readonly sourceTimeoutMs?: number;
  /** Node.js process metrics (`process_*`, `nodejs_*`) too (default true; once per process). */
  readonly processMetrics?: boolean;
  readonly logger?: Logger;
  readonly clock?: Clock;
}

/** A rendered scrape. */
export interface Scrape {
  readonly contentType: string;
  readonly body: string;
}

/** Counters for the service's `/stats`. */
export interface MetricsCollectorStats {
  readonly eventsHandled: number;
  readonly eventsRejected: number;
  readonly eventsDuplicate: number;
}

/**
 * The metrics-collector's logic (the app only wires it): consumes `Topics.events` in its own
 * consumer group (never taking messages from anyone else's), turns each committed transition
 * into Prometheus samples ({@link LifecycleMetrics}), reads the backend's figures when scraped
 * ({@link BackendGauges}), and renders the classic text format or OpenMetrics as the scraper asks.
 *
 * Counters live in this process: they restart at 0 with it (Prometheus' `rate` and `increase`
 * read that as a counter reset), and several replicas share the events between them, so
 * Prometheus sums the replicas (`sum without (instance) (…)`). What must be exact after a restart
 * is read from the store at scrape time (`multiagents_runs`).
 *
 * An event it cannot decode is dead-lettered (a `PoisonMessageError` with the reason) and counted
 * in `multiagents_collector_events_rejected_total`; the events behind it go on.
 *
 * @example
 * const collector = new MetricsCollector({ ...backend, consumer: 'mc-1', buildInfo });
 * await collector.start();
 * const { contentType, body } = await collector.scrape(request.headers.accept);
 */
export class MetricsCollector {
  /**
   * The prom-client registry holding every metric of this collector (of the OpenMetrics kind,
   * which prom-client requires for exemplars; {@link scrape} renders either format from it).
   */
  readonly metrics = openMetricsRegistry();
  private readonly bounds: LabelBounds;
  private readonly catalog: DefinitionCatalog;
  private readonly lifecycle: LifecycleMetrics;
  private readonly gauges: BackendGauges;
  private readonly recent: RecentIds;
  private readonly events: Counter<'type'>;
  private readonly rejected: Counter<'reason'>;
  private readonly duplicates: Counter;
  private readonly logger: Logger;
  private readonly counts = { eventsHandled: 0, eventsRejected: 0, eventsDuplicate: 0 };
  private subscription: Subscription | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: MetricsCollectorOptions) {
    const defaults = DEFAULT_METRICS_COLLECTOR_OPTIONS;
    this.logger = (options.logger ?? silentLogger).child({ component: 'metrics-collector' });
    this.bounds = new LabelBounds(options.bounds);
    this.catalog = new DefinitionCatalog(
      options.definitions,
      this.bounds,
      options.clock ?? systemClock,
      this.logger,
      options.unknownWorkflowRefreshMs ?? defaults.unknownWorkflowRefreshMs,
    );
    this.recent = new RecentIds(options.recentIdsCapacity ?? defaults.recentIdsCapacity);
    const registers = [this.metrics];
    this.lifecycle = new LifecycleMetrics(this.metrics, this.bounds, options.lifecycle);
    this.gauges = new BackendGauges(this.metrics, {
      runs: options.runs,
      registry: options.registry,
      bus: options.bus,
      bounds: this.bounds,
      logger: this.logger,
      ...(options.sourceTimeoutMs === undefined ? {} : { sourceTimeoutMs: options.sourceTimeoutMs }),
    });
    this.events = new Counter({
      name: MetricName.CollectorEvents,
      help: 'Events this collector handled (deliveries, duplicates included), by envelope type.',
      labelNames: ['type'],
      registers,
    });
    this.rejected = new Counter({
      name: MetricName.CollectorEventsRejected,
      help: 'Events this collector could not decode and dead-lettered, by reason.',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of Object.values(EventRejectReason)) this.rejected.inc({ reason }, 0);
    this.duplicates = new Counter({
      name: MetricName.CollectorEventsDuplicate,
      help: 'Events this collector had handled already (the same message id again), not counted twice.',
      registers,
    });
    const buildInfo = new Gauge({
      name: MetricName.BuildInfo,
      help: 'Version of the metrics-collector, of Node.js, and the backend it reads; always 1.',
      labelNames: ['version', 'node_version', 'backend'],
      registers,
    });
    buildInfo.set(
      {
        version: options.buildInfo.version,
        node_version: process.version,
        backend: options.buildInfo.backend,
      },
      1,
    );
    if (options.processMetrics ?? defaults.processMetrics) {
      collectDefaultMetrics({ register: this.metrics });
      // Gauges named `*_total`: promtool's lint refuses them (and a reader takes them for counters).
      for (const name of NON_COUNTERS_NAMED_TOTAL) this.metrics.removeSingleMetric(name);
    }
  }

  /** Learns the definitions, then consumes the events (from where the group left off). */
  async start(): Promise<void> {
    await this.catalog.refresh();
    const defaults = DEFAULT_METRICS_COLLECTOR_OPTIONS;
    this.subscription = await this.options.bus.subscribe(
      Topics.events,
      {
        concurrency: defaults.concurrency,
        batchDelayMs: defaults.batchDelayMs,
        ...this.options.subscribe,
        group: this.options.group ?? defaults.group,
        consumer: this.options.consumer,
      },
      (delivery) => this.handle(delivery),
    );
    if (this.closed) {
      await this.subscription.close();
      return;
    }
    const every = this.options.definitionsRefreshMs ?? defaults.definitionsRefreshMs;
    if (every > 0) {
      this.refreshTimer = setInterval(() => void this.catalog.refresh(), every);
      this.refreshTimer.unref();
    }
  }

  /** Renders every metric for a scrape whose `Accept` header is `accept`, reading the backend first. */
  async scrape(accept?: string): Promise<Scrape> {
    await this.gauges.refresh();
    const format = negotiateFormat(accept);
    return {
      contentType: EXPOSITION_CONTENT_TYPES[format],
      body: await renderExposition(this.metrics, format),
    };
  }

  /** Counters for `/stats`. */
  get stats(): MetricsCollectorStats {
    return { ...this.counts };
  }

  /** Stops consuming; the events in flight are acknowledged first. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.refreshTimer !== undefined) clearInterval(this.refreshTimer);
    await this.subscription?.close();
  }

  private async handle(delivery: Delivery): Promise<void> {
    const envelope = delivery.envelope;
    this.counts.eventsHandled += 1;
    this.events.inc({ type: isEventType(envelope.type) ? envelope.type : OTHER_LABEL });
    if (this.recent.seen(envelope.id)) {
      this.counts.eventsDuplicate += 1;
      this.duplicates.inc();
      return;
    }
    try {
      await this.record(envelope);
    } catch (err) {
      // Not counted: a redelivery (or a replay of its dead letter) must be handled again.
      this.recent.forget(envelope.id);
      const reason = eventRejectReasonOf(err);
      if (reason !== undefined) {
        this.counts.eventsRejected += 1;
        this.rejected.inc({ reason });
        this.logger.warn(
          { reason, err: (err as Error).message, txId: envelope.txId },
          'event dead-lettered: it cannot be decoded',
        );
      }
      throw err;
    }
  }

  private async record(envelope: Envelope): Promise<void> {
    switch (envelope.type) {
      case EventType.WorkflowTransitioned: {
        const transition = decodeTransition(envelope);
        await this.catalog.ensure(envelope.workflowId, envelope.time);
        this.lifecycle.record(envelope, transition);
        return;
      }
      case EventType.WorkerHeartbeat:
        // The live replicas are read from the registry at scrape time; a heartbeat is only checked.
        decodeHeartbeat(envelope);
        return;
      default:
        // step.progress and anything newer: counted by type above, nothing else to record.
        return;
    }
  }
}
