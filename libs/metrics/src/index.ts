/**
 * Prometheus metrics of MultiAgents (prom-client): runs, steps and compensations from the
 * `workflow.transitioned` events, runs per state, bus lag and dead letters and live workers from
 * the backend at scrape time; every label bounded. The metrics-collector app wires it.
 *
 * @example
 * const collector = new MetricsCollector({ ...backend, consumer: 'mc-1', buildInfo: { version, backend: 'redis' } });
 * await collector.start();
 * http.createServer(async (req, res) => {
 *   const { contentType, body } = await collector.scrape(req.headers.accept);
 *   res.writeHead(200, { 'content-type': contentType }).end(body);
 * });
 */

/** The collector: consume events, serve scrapes; its group, options and defaults. */
export {
  MetricsCollector,
  METRICS_COLLECTOR_GROUP,
  DEFAULT_METRICS_COLLECTOR_OPTIONS,
} from './metrics-collector';
/** Options, build info, a rendered scrape, and the collector's counters. */
export type { MetricsCollectorOptions, BuildInfo, Scrape, MetricsCollectorStats } from './metrics-collector';
/** Every exported metric name. */
export { MetricName } from './metric-names';
/** Label bounding: the `other` value, the services' groups, the caps. */
export { LabelBounds, OTHER_LABEL, KNOWN_GROUPS, DEFAULT_LABEL_BOUNDS } from './label-bounds';
/** Caps on label values. */
export type { LabelBoundsOptions } from './label-bounds';
/** Event-fed metrics and their histogram buckets. */
export {
  LifecycleMetrics,
  DEFAULT_RUN_DURATION_BUCKETS,
  DEFAULT_STEP_DURATION_BUCKETS,
} from './lifecycle-metrics';
/** Bucket options of the event-fed metrics. */
export type { LifecycleMetricsOptions } from './lifecycle-metrics';
/** Scrape-time gauges read from the backend. */
export { BackendGauges, GaugeSource, DEFAULT_SOURCE_TIMEOUT_MS } from './backend-gauges';
/** What the scrape-time gauges read. */
export type { BackendGaugesOptions } from './backend-gauges';
/** The two exposition formats and content negotiation. */
export { ExpositionFormat, EXPOSITION_CONTENT_TYPES, negotiateFormat, renderExposition } from './exposition';
/** The trace id of a sampled `traceparent` (exemplars). */
export { sampledTraceId } from './trace-id';
