import type {
  SleepStep,
  StepDefinition,
  TaskStep,
  WaitStep,
  WorkflowDefaults,
  WorkflowDefinition,
} from '@multiagents/contracts';
import { compileWorkflow, type ValidateDefinitionOptions } from './validate-definition';

/** Options of a task step (everything but its name and worker). */
export type TaskOptions = Omit<TaskStep, 'name' | 'kind' | 'worker'>;

/** Options of a wait step (everything but its name and signal). */
export type WaitOptions = Omit<WaitStep, 'name' | 'kind' | 'signal'>;

/** Options shared by parallel and sleep steps. */
export type StepOptions = Pick<SleepStep, 'description' | 'when'>;

/** Builds a list of steps; parallel branches are built with the same methods. */
export class StepListBuilder {
  protected readonly steps: StepDefinition[] = [];

  /** A task: send a command to `worker` and wait for its result. */
  step(name: string, worker: string, options: TaskOptions = {}): this {
    this.steps.push({ name, kind: 'task', worker, ...options });
    return this;
  }

  /** Branches that run at once and join when all finish. */
  parallel(
    name: string,
    branches: readonly ((branch: StepListBuilder) => StepListBuilder)[],
    options: StepOptions = {},
  ): this {
    this.steps.push({
      name,
      kind: 'parallel',
      ...options,
      branches: branches.map((build) => build(new StepListBuilder()).list()),
    });
    return this;
  }

  /** Durably wait for the named signal. */
  wait(name: string, signal: string, options: WaitOptions = {}): this {
    this.steps.push({ name, kind: 'wait', signal, ...options });
    return this;
  }

  /** A durable timer. */
  sleep(name: string, durationMs: number, options: StepOptions = {}): this {
    this.steps.push({ name, kind: 'sleep', durationMs, ...options });
    return this;
  }

  /** The steps added so far. */
  list(): StepDefinition[] {
    return [...this.steps];
  }
}

/**
 * Builds a workflow definition in TypeScript; `build()` yields the same data a YAML file would,
 * validated.
 *
 * @example
 * const order = new WorkflowBuilder('order_processing')
 *   .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
 *   .step('charge_payment', 'payment.charge', { compensation: 'payment.refund', retry: { maxAttempts: 3 } })
 *   .step('ship_order', 'shipping.ship', { when: 'context.total > 0', timeoutMs: 30_000 })
 *   .build();
 */
export class WorkflowBuilder extends StepListBuilder {
  private versionNumber = 1;
  private text: string | undefined;
  private defaultOptions: WorkflowDefaults | undefined;
  private schema: Readonly<Record<string, unknown>> | undefined;

  constructor(private readonly id: string) {
    super();
  }

  version(version: number): this {
    this.versionNumber = version;
    return this;
  }

  description(description: string): this {
    this.text = description;
    return this;
  }

  defaults(defaults: WorkflowDefaults): this {
    this.defaultOptions = defaults;
    return this;
  }

  /** A JSON Schema every start input must satisfy (checked before any step runs). */
  inputSchema(schema: Readonly<Record<string, unknown>>): this {
    this.schema = schema;
    return this;
  }

  /** The definition; throws a ValidationError listing every problem. */
  build(options: ValidateDefinitionOptions = {}): WorkflowDefinition {
    const definition: WorkflowDefinition = {
      id: this.id,
      version: this.versionNumber,
      ...(this.text === undefined ? {} : { description: this.text }),
      steps: this.list(),
      ...(this.defaultOptions === undefined ? {} : { defaults: this.defaultOptions }),
      ...(this.schema === undefined ? {} : { inputSchema: this.schema }),
    };
    compileWorkflow(definition, options);
    return definition;
  }
}
