/**
 * Every metric the metrics-collector exports (prefix `multiagents_`, base units, `_total` on
 * counters). Labels are bounded: see `LabelBounds`.
 */
export const MetricName = {
  /** counter {workflow}: runs started (`workflow.started`). */
  RunsStarted: 'multiagents_runs_started_total',
  /** counter {workflow, outcome}: runs that reached a terminal state, by that state. */
  RunsFinished: 'multiagents_runs_finished_total',
  /** histogram {workflow, outcome}: from a run's creation to its terminal state. */
  RunDuration: 'multiagents_run_duration_seconds',
  /** gauge {state}: runs the store holds per state, read at scrape time (exact after restarts). */
  Runs: 'multiagents_runs',
  /** counter {workflow, step, outcome}: steps that ended completed, failed or skipped. */
  StepExecutions: 'multiagents_step_executions_total',
  /** histogram {workflow, step, outcome}: a step's time, first attempt to its end (retries included). */
  StepDuration: 'multiagents_step_duration_seconds',
  /** counter {workflow, step, kind}: failed attempts retried, of steps (`task`) and compensations. */
  StepRetries: 'multiagents_step_retries_total',
  /** counter {workflow, step, outcome}: compensations that ended completed, failed or skipped. */
  Compensations: 'multiagents_compensations_total',
  /** histogram {workflow, step, outcome}: a compensation's time, first attempt to its end. */
  CompensationDuration: 'multiagents_compensation_duration_seconds',
  /** counter {workflow, step, kind}: tokens agent attempts spent, `kind` prompt or completion (failed attempts included). */
  AgentTokens: 'multiagents_agent_tokens_total',
  /** counter {workflow, step}: what agent attempts cost in US dollars, where the model's price is known. */
  AgentCost: 'multiagents_agent_cost_usd_total',
  /** gauge {topic}: dead letters a topic holds (scrape time). */
  DeadLetters: 'multiagents_dead_letters',
  /** counter {topic}: dead letters ever added to a topic, as the broker counts them (scrape time). */
  DeadLettersAdded: 'multiagents_dead_letters_added_total',
  /** gauge {topic, group}: messages of a topic not yet delivered to a consumer group (scrape time). */
  BusConsumerLag: 'multiagents_bus_consumer_lag',
  /** gauge {topic, group}: messages delivered to a group and not acknowledged yet (scrape time). */
  BusConsumerPending: 'multiagents_bus_consumer_pending',
  /** gauge: live worker-manager replicas (scrape time, from the worker registry). */
  WorkerManagers: 'multiagents_worker_managers',
  /** gauge {worker}: live worker-manager replicas hosting a worker. */
  WorkerReplicas: 'multiagents_worker_replicas',
  /** gauge: attempts the live worker-managers may run at once, summed. */
  WorkerCapacity: 'multiagents_worker_capacity',
  /** gauge: attempts the live worker-managers were running when they last announced themselves. */
  WorkerInFlight: 'multiagents_worker_in_flight',
  /** gauge: handlers of the live worker-managers still running past their attempt, each holding a slot. */
  WorkerLingering: 'multiagents_worker_lingering',
  /** gauge {version, node_version, backend}: always 1. */
  BuildInfo: 'multiagents_build_info',
  /** counter {type}: events this collector handled, by envelope type. */
  CollectorEvents: 'multiagents_collector_events_total',
  /** counter {reason}: events it could not decode, dead-lettered. */
  CollectorEventsRejected: 'multiagents_collector_events_rejected_total',
  /** counter: events it had already handled (the same message id again), not counted twice. */
  CollectorEventsDuplicate: 'multiagents_collector_events_duplicate_total',
  /** counter {source}: scrape-time reads that failed (their series are left out of that scrape). */
  CollectorSourceErrors: 'multiagents_collector_source_errors_total',
} as const;
/** One of {@link MetricName}'s values. */
export type MetricName = (typeof MetricName)[keyof typeof MetricName];
