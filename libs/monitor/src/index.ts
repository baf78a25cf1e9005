/**
 * The event-monitor's logic: run timelines kept in the backend with retention, the stuck-run
 * watchdog (`workflow.stuck` once across replicas), dead letters listed, replayed and discarded, live
 * and gone worker-managers, and a live event feed. The event-monitor app wires it and serves it over
 * gRPC (`EventMonitorService`).
 *
 * @example
 * const monitor = new EventMonitor({ ...backend, consumer: 'em-1', stuckThresholdMs: 60_000 });
 * await monitor.start();
 * const { entries } = await monitor.getTimeline(txId);
 */

/** The monitor, its consumer group and defaults. */
export { EventMonitor, EVENT_MONITOR_GROUP, DEFAULT_EVENT_MONITOR_OPTIONS } from './event-monitor';
/** How long the watchdog's lease on a stuck point lasts before its `workflow.stuck` is confirmed. */
export { STUCK_MARK_LEASE_SCANS, MIN_STUCK_MARK_LEASE_MS } from './event-monitor';
/** Its options, answers and counters. */
export type {
  EventMonitorOptions,
  EventMonitorStats,
  RunTimeline,
  StuckRunInfo,
  RetryingRunInfo,
  StuckEventPayload,
  MonitoredWorkerManager,
  EventFilter,
} from './event-monitor';
/** Where a run stands for the watchdog. */
export { assessRun, retryDueAt, WATCHED_STATES } from './stuck-assessment';
/** What assessRun answers, and the retrying steps retryDueAt dates. */
export type { Assessment, RetryingStep } from './stuck-assessment';
