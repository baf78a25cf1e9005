import {
  EventType,
  isTerminalRunState,
  type Envelope,
  type LifecycleEvent,
  type TransitionEventPayload,
} from '@multiagents/contracts';
import { Counter, Histogram, type OpenMetricsContentType, type Registry } from 'prom-client';
import type { LabelBounds } from './label-bounds';
import { MetricName } from './metric-names';
import { sampledTraceId } from './trace-id';

/** Buckets (seconds) of the run duration histogram: 50 ms to an hour. */
export const DEFAULT_RUN_DURATION_BUCKETS: readonly number[] = [
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
];
/** Buckets (seconds) of the step and compensation duration histograms: 5 ms to 5 minutes. */
export const DEFAULT_STEP_DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];

/** Options of {@link LifecycleMetrics}. */
export interface LifecycleMetricsOptions {
  readonly runDurationBuckets?: readonly number[];
  readonly stepDurationBuckets?: readonly number[];
}

type Labels = Record<string, string>;

/**
 * The metrics fed by `workflow.transitioned` events: runs started and finished, run, step and
 * compensation durations, step outcomes and retries. Labels go through {@link LabelBounds}; the
 * run's sampled trace id (its `traceparent`) is the exemplar of every sample it adds.
 *
 * Which event counts where: `workflow.started` starts a run; the first event of a transition
 * whose state is terminal ends it (outcome: that state; `workflow.stuck` in
 * `compensation_failed` included); `step.completed`, `step.failed`, `step.skipped` end a step;
 * `step.retrying` is a retry (`kind` compensation when it retries one); `compensation.completed`,
 * `compensation.failed` and an operator's skip of a compensation end a compensation.
 */
export class LifecycleMetrics {
  private readonly runsStarted: Counter<'workflow'>;
  private readonly runsFinished: Counter<'workflow' | 'outcome'>;
  private readonly runDuration: Histogram<'workflow' | 'outcome'>;
  private readonly stepExecutions: Counter<'workflow' | 'step' | 'outcome'>;
  private readonly stepDuration: Histogram<'workflow' | 'step' | 'outcome'>;
  private readonly stepRetries: Counter<'workflow' | 'step' | 'kind'>;
  private readonly compensations: Counter<'workflow' | 'step' | 'outcome'>;
  private readonly compensationDuration: Histogram<'workflow' | 'step' | 'outcome'>;
  private readonly agentTokens: Counter<'workflow' | 'step' | 'kind'>;
  private readonly agentCost: Counter<'workflow' | 'step'>;

  constructor(
    registry: Registry<OpenMetricsContentType>,
    private readonly bounds: LabelBounds,
    options: LifecycleMetricsOptions = {},
  ) {
    const registers = [registry];
    const runBuckets = [...(options.runDurationBuckets ?? DEFAULT_RUN_DURATION_BUCKETS)];
    const stepBuckets = [...(options.stepDurationBuckets ?? DEFAULT_STEP_DURATION_BUCKETS)];
    this.runsStarted = new Counter({
      name: MetricName.RunsStarted,
      help: 'Runs started, by workflow.',
      labelNames: ['workflow'],
      registers,
      enableExemplars: true,
    });
    this.runsFinished = new Counter({
      name: MetricName.RunsFinished,
      help: 'Runs that reached a terminal state, by workflow and outcome (the terminal state).',
      labelNames: ['workflow', 'outcome'],
      registers,
      enableExemplars: true,
    });
    this.runDuration = new Histogram({
      name: MetricName.RunDuration,
      help: "Time from a run's creation to its terminal state, by workflow and outcome.",
      labelNames: ['workflow', 'outcome'],
      buckets: runBuckets,
      registers,
      enableExemplars: true,
    });
    this.stepExecutions = new Counter({
      name: MetricName.StepExecutions,
      help: 'Steps that ended, by workflow, step and outcome (completed, failed, skipped).',
      labelNames: ['workflow', 'step', 'outcome'],
      registers,
      enableExemplars: true,
    });
    this.stepDuration = new Histogram({
      name: MetricName.StepDuration,
      help: "A step's time from its first attempt to its end, by workflow, step and outcome.",
      labelNames: ['workflow', 'step', 'outcome'],
      buckets: stepBuckets,
      registers,
      enableExemplars: true,
    });
    this.stepRetries = new Counter({
      name: MetricName.StepRetries,
      help: 'Failed attempts retried, by workflow, step and kind (task or compensation).',
      labelNames: ['workflow', 'step', 'kind'],
      registers,
      enableExemplars: true,
    });
    this.compensations = new Counter({
      name: MetricName.Compensations,
      help: 'Compensations that ended, by workflow, step and outcome (completed, failed, skipped).',
      labelNames: ['workflow', 'step', 'outcome'],
      registers,
      enableExemplars: true,
    });
    this.compensationDuration = new Histogram({
      name: MetricName.CompensationDuration,
      help: "A compensation's time from its first attempt to its end, by workflow, step and outcome.",
      labelNames: ['workflow', 'step', 'outcome'],
      buckets: stepBuckets,
      registers,
      enableExemplars: true,
    });
    this.agentTokens = new Counter({
      name: MetricName.AgentTokens,
      help: 'Tokens agent attempts spent, by workflow, step and kind (prompt, completion); failed attempts included.',
      labelNames: ['workflow', 'step', 'kind'],
      registers,
      enableExemplars: true,
    });
    this.agentCost = new Counter({
      name: MetricName.AgentCost,
      help: 'What agent attempts cost in US dollars, by workflow and step (models without a price count 0).',
      labelNames: ['workflow', 'step'],
      registers,
      enableExemplars: true,
    });
  }

  /** Adds what one committed transition (a decoded `workflow.transitioned`) says. */
  record(envelope: Envelope, transition: TransitionEventPayload): void {
    const workflowId = envelope.workflowId;
    const workflow = this.bounds.workflow(workflowId);
    const traceId = sampledTraceId(envelope.headers);
    // prom-client types exemplar labels as the metric's own label names; any name is valid.
    const exemplarLabels = (traceId === undefined ? undefined : { trace_id: traceId }) as Labels | undefined;
    // Metrics with exemplars take one object (`inc(labels)` would read the labels as that object).
    const count = (counter: Counter<string>, labels: Labels): void =>
      counter.inc(exemplarLabels === undefined ? { labels, value: 1 } : { labels, value: 1, exemplarLabels });
    const observe = (histogram: Histogram<string>, labels: Labels, durationMs: unknown): void => {
      if (typeof durationMs !== 'number') return;
      const value = durationMs / 1000;
      histogram.observe(exemplarLabels === undefined ? { labels, value } : { labels, value, exemplarLabels });
    };
    const add = (counter: Counter<string>, labels: Labels, value: number): void => {
      if (!(value > 0) || !Number.isFinite(value)) return;
      counter.inc(exemplarLabels === undefined ? { labels, value } : { labels, value, exemplarLabels });
    };
    let ended = false;
    for (const event of transition.events) {
      const step = (): string => this.bounds.step(workflowId, event.step);
      // What an agent attempt spent rides on the event that ends it (completed, retrying, failed).
      const usage = event['usage'] as
        { promptTokens?: unknown; completionTokens?: unknown; costUsd?: unknown } | undefined;
      if (typeof usage === 'object' && usage !== null) {
        const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
        add(this.agentTokens, { workflow, step: step(), kind: 'prompt' }, num(usage.promptTokens));
        add(this.agentTokens, { workflow, step: step(), kind: 'completion' }, num(usage.completionTokens));
        add(this.agentCost, { workflow, step: step() }, num(usage.costUsd));
      }
      switch (event.type) {
        case EventType.WorkflowStarted:
          count(this.runsStarted, { workflow });
          break;
        case EventType.StepCompleted:
        case EventType.StepFailed: {
          const labels = { workflow, step: step(), outcome: outcomeOf(event) };
          count(this.stepExecutions, labels);
          observe(this.stepDuration, labels, event['durationMs']);
          break;
        }
        case EventType.StepSkipped: {
          const labels = { workflow, step: step(), outcome: 'skipped' };
          count(event['compensation'] === true ? this.compensations : this.stepExecutions, labels);
          break;
        }
        case EventType.StepRetrying:
          count(this.stepRetries, {
            workflow,
            step: step(),
            kind: event['compensation'] === true ? 'compensation' : 'task',
          });
          break;
        case EventType.CompensationCompleted:
        case EventType.CompensationFailed: {
          const labels = { workflow, step: step(), outcome: outcomeOf(event) };
          count(this.compensations, labels);
          observe(this.compensationDuration, labels, event['durationMs']);
          break;
        }
        default:
          break;
      }
      if (!ended && mayEndRun(event) && isTerminalRunState(event.state)) {
        ended = true;
        const labels = { workflow, outcome: event.state };
        count(this.runsFinished, labels);
        observe(this.runDuration, labels, event['durationMs']);
      }
    }
  }
}

function outcomeOf(event: LifecycleEvent): 'completed' | 'failed' {
  return event.type === EventType.StepCompleted || event.type === EventType.CompensationCompleted
    ? 'completed'
    : 'failed';
}

/** True for the lifecycle events that may end a run (their `state` tells the outcome). */
function mayEndRun(event: LifecycleEvent): boolean {
  switch (event.type) {
    case EventType.WorkflowCompleted:
    case EventType.WorkflowFailed:
    case EventType.WorkflowCompensated:
    case EventType.WorkflowCancelled:
    case EventType.WorkflowStuck:
      return true;
    default:
      return false;
  }
}
