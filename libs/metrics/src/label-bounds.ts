import { Groups, StepKind, type StepDefinition, type WorkflowDefinition } from '@multiagents/contracts';

/** The label value every name the bounds do not admit collapses to. */
export const OTHER_LABEL = 'other';

/** Consumer groups of the services, always named in labels (the collector's and monitor's too). */
export const KNOWN_GROUPS: readonly string[] = [
  Groups.orchestrators,
  Groups.workers,
  'metrics-collector',
  'event-monitor',
];

/** Defaults of {@link LabelBoundsOptions}. */
export const DEFAULT_LABEL_BOUNDS = {
  maxWorkflows: 100,
  maxStepsPerWorkflow: 100,
  maxWorkers: 200,
  maxOtherGroups: 16,
} as const;

/** Caps on the distinct values of each label (the rest is {@link OTHER_LABEL}). */
export interface LabelBoundsOptions {
  /** Workflow ids named in labels; those learned later are `other`. */
  readonly maxWorkflows?: number;
  /** Step names per workflow. */
  readonly maxStepsPerWorkflow?: number;
  /** Worker names (workers and compensations of the definitions). */
  readonly maxWorkers?: number;
  /** Consumer groups besides {@link KNOWN_GROUPS}, first come first named. */
  readonly maxOtherGroups?: number;
}

/**
 * Which names may become label values, so that nothing on the bus (a forged workflow id, a step
 * name from user data, a throw-away consumer group) can create an unbounded number of series:
 * workflow, step and worker names are admitted only when a registered definition declares them,
 * up to the caps, in the order they were learned; anything else is `other`. At most
 * `maxWorkflows × maxStepsPerWorkflow` step series per outcome, whatever arrives.
 *
 * @example
 * const bounds = new LabelBounds();
 * bounds.learn(orderWorkflow);
 * bounds.step('order_processing', 'ship_order'); // 'ship_order'
 * bounds.step('order_processing', 'x'); // 'other'
 */
export class LabelBounds {
  private readonly options: Required<LabelBoundsOptions>;
  private readonly steps = new Map<string, Set<string>>();
  private readonly workerNames = new Set<string>();
  private readonly otherGroups = new Set<string>();

  constructor(options: LabelBoundsOptions = {}) {
    this.options = { ...DEFAULT_LABEL_BOUNDS, ...options };
  }

  /** Admits the definition's id, step names and worker names (within the caps). */
  learn(definition: WorkflowDefinition): void {
    let steps = this.steps.get(definition.id);
    if (steps === undefined) {
      if (this.steps.size >= this.options.maxWorkflows) return;
      steps = new Set();
      this.steps.set(definition.id, steps);
    }
    this.learnSteps(steps, definition.steps);
  }

  /** True when `workflowId` is named in labels. */
  knowsWorkflow(workflowId: string): boolean {
    return this.steps.has(workflowId);
  }

  /** True when no further workflow can be named (asking the definitions again is pointless). */
  get workflowsFull(): boolean {
    return this.steps.size >= this.options.maxWorkflows;
  }

  /** The label of a workflow id. */
  workflow(workflowId: string): string {
    return this.steps.has(workflowId) ? workflowId : OTHER_LABEL;
  }

  /** The label of a step of a workflow (`other` for any step of an `other` workflow). */
  step(workflowId: string, step: string | undefined): string {
    return step !== undefined && this.steps.get(workflowId)?.has(step) === true ? step : OTHER_LABEL;
  }

  /** The label of a worker name. */
  worker(name: string): string {
    return this.workerNames.has(name) ? name : OTHER_LABEL;
  }

  /** The worker names admitted, in the order they were learned. */
  get workers(): readonly string[] {
    return [...this.workerNames];
  }

  /** The label of a consumer group: the services' own, then others first come up to the cap. */
  group(name: string): string {
    if (KNOWN_GROUPS.includes(name) || this.otherGroups.has(name)) return name;
    if (this.otherGroups.size < this.options.maxOtherGroups) {
      this.otherGroups.add(name);
      return name;
    }
    return OTHER_LABEL;
  }

  private learnSteps(known: Set<string>, steps: readonly StepDefinition[]): void {
    for (const step of steps) {
      if (!known.has(step.name) && known.size < this.options.maxStepsPerWorkflow) known.add(step.name);
      if (step.kind === StepKind.Task) {
        this.learnWorker(step.worker);
        if (step.compensation !== undefined) this.learnWorker(step.compensation);
      } else if (step.kind === StepKind.Parallel) {
        for (const branch of step.branches) this.learnSteps(known, branch);
      }
    }
  }

  private learnWorker(name: string): void {
    if (this.workerNames.size < this.options.maxWorkers) this.workerNames.add(name);
  }
}
