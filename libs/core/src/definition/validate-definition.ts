import {
  MAX_WORKER_NAME_LENGTH,
  MultiAgentsError,
  StepKind,
  WORKER_NAME_PATTERN,
  ValidationError,
  checkJsonBounds,
  isReservedName,
  validateBudget,
  type StepDefinition,
  type TaskStep,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { CelCompiler, type CelProgram } from './cel-expression';
import { compileInputSchema, MAX_INPUT_SCHEMA_BYTES, type InputSchemaCheck } from './input-schema';

/** Options for {@link validateDefinition} and {@link compileWorkflow}. */
export interface ValidateDefinitionOptions {
  /** When given, every worker and compensation must name one of these. */
  readonly knownWorkers?: ReadonlySet<string>;
  readonly celCompiler?: CelCompiler;
  /** Upper bound on steps in one definition (all levels). */
  readonly maxSteps?: number;
}

/** Default bound on the number of steps in one definition. */
export const DEFAULT_MAX_STEPS = 500;

/**
 * Numeric bounds a definition must stay within: what the runtime can honour (a timer that
 * `setTimeout` can arm, an attempt count that fits the wire format), with room to spare.
 */
export const DEFINITION_LIMITS = Object.freeze({
  /** Definition versions (uint32 on the wire, kept below 2^31). */
  maxVersion: 2_147_483_647,
  /** Attempt timeouts, heartbeat timeouts and retry delays: the longest `setTimeout` (~24.8 days). */
  maxDelayMs: 2_147_483_647,
  /** Sleeps and wait deadlines, which are durable timers: one year. */
  maxTimerMs: 365 * 24 * 3_600_000,
  /** Attempts of one step (or one compensation). */
  maxAttempts: 1_000,
  /** Error codes listed in `nonRetryableErrors`, and the length of each. */
  maxNonRetryableErrors: 100,
  maxErrorCodeLength: 128,
  /** Length of a description. */
  maxDescriptionLength: 4_096,
  /** Nesting of the definition as JSON: about a dozen levels of parallel steps. */
  maxDepth: 40,
  /** The definition as JSON, in bytes. */
  maxBytes: 1024 * 1024,
});

/** A compiled input mapping: one expression, or one per field. */
export type CompiledInput = CelProgram | Readonly<Record<string, CelProgram>>;

/** What the engine needs about one step, precomputed once per definition. */
export interface CompiledStep {
  readonly definition: StepDefinition;
  readonly when?: CelProgram;
  readonly input?: CompiledInput;
  /** True when an expression of this step reads `steps.*` (the engine then builds that variable). */
  readonly readsSteps: boolean;
}

/** A validated definition with its expressions compiled, ready for the engine. */
export interface CompiledWorkflow {
  readonly definition: WorkflowDefinition;
  readonly steps: ReadonlyMap<string, CompiledStep>;
  /** Checks a start input against the definition's `inputSchema` (every problem); absent: any object. */
  readonly checkInput?: InputSchemaCheck;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;
// Step names go into ids joined with ':' (`<txId>:<step>:<attempt>`, `<txId>:<step>:undo`), so a
// ':' in a step name could make two steps share an idempotency key (step "a:undo" and the
// compensation of step "a").
const STEP_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const STEP_KEYS: Record<string, ReadonlySet<string>> = {
  task: new Set([
    'name',
    'kind',
    'description',
    'when',
    'worker',
    'compensation',
    'input',
    'output',
    'retry',
    'timeoutMs',
    'heartbeatTimeoutMs',
    'scheduleToStartTimeoutMs',
    'compensationRetry',
    'compensationTimeoutMs',
    'agent',
  ]),
  parallel: new Set(['name', 'kind', 'description', 'when', 'branches']),
  wait: new Set(['name', 'kind', 'description', 'when', 'signal', 'timeoutMs', 'output']),
  sleep: new Set(['name', 'kind', 'description', 'when', 'durationMs']),
};
const RETRY_KEYS = new Set([
  'maxAttempts',
  'initialDelayMs',
  'backoffCoefficient',
  'maxDelayMs',
  'nonRetryableErrors',
]);
const DEFAULTS_KEYS = new Set([
  'retry',
  'timeoutMs',
  'heartbeatTimeoutMs',
  'scheduleToStartTimeoutMs',
  'compensationRetry',
  'compensationTimeoutMs',
]);
const TOP_KEYS = new Set(['id', 'version', 'description', 'steps', 'defaults', 'inputSchema', 'budget']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Checker {
  readonly problems: string[] = [];
  readonly compiled = new Map<string, CompiledStep>();
  checkInput: InputSchemaCheck | undefined;
  private stepCount = 0;

  constructor(
    private readonly cel: CelCompiler,
    private readonly options: ValidateDefinitionOptions,
  ) {}

  problem(where: string, what: string): void {
    this.problems.push(`${where}: ${what}`);
  }

  unknownKeys(where: string, value: Record<string, unknown>, allowed: ReadonlySet<string>): void {
    for (const key of Object.keys(value))
      if (!allowed.has(key)) this.problem(where, `unknown field "${key}"`);
  }

  positiveInt(
    where: string,
    field: string,
    value: unknown,
    min = 1,
    max: number = DEFINITION_LIMITS.maxDelayMs,
  ): void {
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      this.problem(where, `${field} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
    } else if (value > max) {
      this.problem(where, `${field} must be at most ${max}, got ${value}`);
    }
  }

  /** A name that becomes a key of a plain object (a step, a signal, a context key, an input field). */
  safeName(where: string, field: string, value: string): boolean {
    if (!isReservedName(value)) return true;
    this.problem(
      where,
      `${field} ${JSON.stringify(value)} is reserved (a property of every JavaScript object)`,
    );
    return false;
  }

  contextKey(where: string, field: string, value: unknown): void {
    if (value === undefined) return;
    if (typeof value !== 'string' || !NAME.test(value)) {
      this.problem(
        where,
        `${field} must be a context key matching ${NAME.source}, got ${JSON.stringify(value)}`,
      );
      return;
    }
    this.safeName(where, field, value);
  }

  description(where: string, value: unknown): void {
    if (value === undefined) return;
    if (typeof value !== 'string') this.problem(where, 'description must be a string');
    else if (value.length > DEFINITION_LIMITS.maxDescriptionLength) {
      this.problem(where, `description is longer than ${DEFINITION_LIMITS.maxDescriptionLength} characters`);
    }
  }

  workerName(where: string, field: string, value: unknown, required: boolean): void {
    if (value === undefined) {
      if (required) this.problem(where, `${field} is required`);
      return;
    }
    if (
      typeof value !== 'string' ||
      !WORKER_NAME_PATTERN.test(value) ||
      value.length > MAX_WORKER_NAME_LENGTH
    ) {
      this.problem(
        where,
        `${field} must be a worker name matching ${WORKER_NAME_PATTERN.source}, got ${JSON.stringify(value)}`,
      );
      return;
    }
    const known = this.options.knownWorkers;
    if (known && !known.has(value)) this.problem(where, `${field} names unknown worker "${value}"`);
  }

  retry(where: string, field: string, value: unknown): void {
    if (value === undefined) return;
    if (!isRecord(value)) {
      this.problem(where, `${field} must be an object`);
      return;
    }
    const at = `${where}.${field}`;
    this.unknownKeys(at, value, RETRY_KEYS);
    this.positiveInt(at, 'maxAttempts', value['maxAttempts'], 1, DEFINITION_LIMITS.maxAttempts);
    this.positiveInt(at, 'initialDelayMs', value['initialDelayMs'], 0);
    this.positiveInt(at, 'maxDelayMs', value['maxDelayMs'], 0);
    const coefficient = value['backoffCoefficient'];
    if (
      coefficient !== undefined &&
      (typeof coefficient !== 'number' || !(coefficient >= 1) || coefficient > 100)
    ) {
      this.problem(
        at,
        `backoffCoefficient must be a number from 1 to 100, got ${JSON.stringify(coefficient)}`,
      );
    }
    const codes = value['nonRetryableErrors'];
    if (
      codes !== undefined &&
      (!Array.isArray(codes) ||
        codes.length > DEFINITION_LIMITS.maxNonRetryableErrors ||
        codes.some((c) => typeof c !== 'string' || c.length > DEFINITION_LIMITS.maxErrorCodeLength))
    ) {
      this.problem(
        at,
        `nonRetryableErrors must be a list of at most ${DEFINITION_LIMITS.maxNonRetryableErrors} error codes of at most ${DEFINITION_LIMITS.maxErrorCodeLength} characters`,
      );
    }
  }

  expression(
    where: string,
    field: string,
    source: unknown,
    before: ReadonlySet<string>,
  ): CelProgram | undefined {
    if (typeof source !== 'string' || source.trim() === '') {
      this.problem(where, `${field} must be a non-empty CEL expression`);
      return undefined;
    }
    let program: CelProgram;
    try {
      program = this.cel.compile(source);
    } catch (err) {
      this.problem(where, `${field} ${JSON.stringify(source)} does not compile: ${(err as Error).message}`);
      return undefined;
    }
    for (const ref of program.stepRefs) {
      if (!before.has(ref)) {
        this.problem(
          where,
          `${field} references steps.${ref}, which is not a step that finishes before this one (unknown, itself, later, or a cycle)`,
        );
      }
    }
    return program;
  }

  steps(where: string, value: unknown, before: Set<string>, names: Set<string>): void {
    if (!Array.isArray(value) || value.length === 0) {
      this.problem(where, 'steps must be a non-empty list');
      return;
    }
    value.forEach((raw: unknown, index) => this.step(`${where}[${index}]`, raw, before, names));
  }

  step(where: string, raw: unknown, before: Set<string>, names: Set<string>): void {
    this.stepCount++;
    if (!isRecord(raw)) {
      this.problem(where, 'a step must be an object');
      return;
    }
    const name = raw['name'];
    if (typeof name !== 'string' || !STEP_NAME.test(name)) {
      this.problem(where, `name must match ${STEP_NAME.source}, got ${JSON.stringify(name)}`);
    } else {
      where = `step "${name}"`;
      if (names.has(name)) this.problem(where, 'duplicate step name');
      names.add(name);
      this.safeName(where, 'name', name);
    }
    const kind = raw['kind'];
    if (typeof kind !== 'string' || !Object.hasOwn(STEP_KEYS, kind)) {
      this.problem(
        where,
        `unknown step kind ${JSON.stringify(kind)} (expected task, parallel, wait or sleep)`,
      );
      return;
    }
    this.unknownKeys(where, raw, STEP_KEYS[kind] ?? new Set());
    this.description(where, raw['description']);
    const when = raw['when'] === undefined ? undefined : this.expression(where, 'when', raw['when'], before);
    let readsSteps = (when?.stepRefs.length ?? 0) > 0;
    let input: CompiledInput | undefined;

    switch (kind) {
      case StepKind.Task: {
        this.workerName(where, 'worker', raw['worker'], true);
        this.workerName(where, 'compensation', raw['compensation'], false);
        this.retry(where, 'retry', raw['retry']);
        this.retry(where, 'compensationRetry', raw['compensationRetry']);
        this.positiveInt(where, 'timeoutMs', raw['timeoutMs']);
        this.positiveInt(where, 'heartbeatTimeoutMs', raw['heartbeatTimeoutMs']);
        this.positiveInt(where, 'scheduleToStartTimeoutMs', raw['scheduleToStartTimeoutMs']);
        this.positiveInt(where, 'compensationTimeoutMs', raw['compensationTimeoutMs']);
        if (raw['agent'] !== undefined && typeof raw['agent'] !== 'boolean') {
          this.problem(where, 'agent must be a boolean');
        }
        this.contextKey(where, 'output', raw['output']);
        const mapping = raw['input'];
        if (typeof mapping === 'string') {
          input = this.expression(where, 'input', mapping, before);
          readsSteps ||= (input?.stepRefs.length ?? 0) > 0;
        } else if (isRecord(mapping)) {
          const fields: Record<string, CelProgram> = {};
          for (const [field, source] of Object.entries(mapping)) {
            this.contextKey(where, 'input field', field);
            const program = this.expression(where, `input.${field}`, source, before);
            if (program) {
              fields[field] = program;
              readsSteps ||= program.stepRefs.length > 0;
            }
          }
          input = fields;
        } else if (mapping !== undefined) {
          this.problem(where, 'input must be a CEL expression or a map of field to CEL expression');
        }
        break;
      }
      case StepKind.Parallel: {
        const branches = raw['branches'];
        if (!Array.isArray(branches) || branches.length === 0) {
          this.problem(where, 'branches must be a non-empty list of step lists');
          break;
        }
        const after = new Set(before);
        branches.forEach((branch: unknown, index) => {
          // Each branch sees what ran before the parallel step, never a sibling branch.
          const inBranch = new Set(before);
          this.steps(`${where}.branches[${index}]`, branch, inBranch, names);
          for (const n of inBranch) after.add(n);
        });
        for (const n of after) before.add(n);
        break;
      }
      case StepKind.Wait: {
        const signal = raw['signal'];
        if (typeof signal !== 'string' || !NAME.test(signal)) {
          this.problem(where, `signal must be a name matching ${NAME.source}`);
        } else {
          this.safeName(where, 'signal', signal);
        }
        this.positiveInt(where, 'timeoutMs', raw['timeoutMs'], 1, DEFINITION_LIMITS.maxTimerMs);
        this.contextKey(where, 'output', raw['output']);
        break;
      }
      case StepKind.Sleep:
        if (raw['durationMs'] === undefined) this.problem(where, 'durationMs is required');
        this.positiveInt(where, 'durationMs', raw['durationMs'], 0, DEFINITION_LIMITS.maxTimerMs);
        break;
    }
    if (typeof name === 'string') {
      this.compiled.set(name, {
        definition: raw as unknown as StepDefinition,
        ...(when ? { when } : {}),
        ...(input ? { input } : {}),
        readsSteps,
      });
      before.add(name);
    }
  }

  /** A JSON Schema for start inputs: compiled now, so a bad one is refused at registration. */
  inputSchema(value: unknown): void {
    if (value === undefined) return;
    if (!isRecord(value)) {
      this.problem('inputSchema', 'must be a JSON Schema object');
      return;
    }
    try {
      checkJsonBounds(value, { maxBytes: MAX_INPUT_SCHEMA_BYTES, maxDepth: 32, what: 'inputSchema' });
      this.checkInput = compileInputSchema(value);
    } catch (err) {
      for (const problem of err instanceof ValidationError ? err.problems : [(err as Error).message]) {
        this.problem('inputSchema', problem);
      }
    }
  }

  finish(): void {
    const max = this.options.maxSteps ?? DEFAULT_MAX_STEPS;
    if (this.stepCount > max)
      this.problem('definition', `has ${this.stepCount} steps, over the limit of ${max}`);
  }
}

function check(definition: unknown, options: ValidateDefinitionOptions): Checker {
  const checker = new Checker(options.celCompiler ?? sharedCompiler(), options);
  if (!isRecord(definition)) {
    checker.problem('definition', 'must be an object');
    return checker;
  }
  // First, and alone when it fails: everything below recurses into the definition.
  try {
    checkJsonBounds(definition, {
      maxBytes: DEFINITION_LIMITS.maxBytes,
      maxDepth: DEFINITION_LIMITS.maxDepth,
      what: 'definition',
    });
  } catch (err) {
    if (!(err instanceof MultiAgentsError)) throw err;
    for (const problem of err instanceof ValidationError ? err.problems : [err.message]) {
      checker.problem('definition', problem);
    }
    return checker;
  }
  checker.unknownKeys('definition', definition, TOP_KEYS);
  const id = definition['id'];
  if (typeof id !== 'string' || !NAME.test(id)) {
    checker.problem('definition', `id must match ${NAME.source}, got ${JSON.stringify(id)}`);
  } else {
    checker.safeName('definition', 'id', id);
  }
  checker.positiveInt('definition', 'version', definition['version'], 1, DEFINITION_LIMITS.maxVersion);
  if (definition['version'] === undefined) checker.problem('definition', 'version is required');
  checker.description('definition', definition['description']);
  const defaults = definition['defaults'];
  if (defaults !== undefined) {
    if (!isRecord(defaults)) checker.problem('defaults', 'must be an object');
    else {
      checker.unknownKeys('defaults', defaults, DEFAULTS_KEYS);
      checker.retry('defaults', 'retry', defaults['retry']);
      checker.retry('defaults', 'compensationRetry', defaults['compensationRetry']);
      checker.positiveInt('defaults', 'timeoutMs', defaults['timeoutMs']);
      checker.positiveInt('defaults', 'heartbeatTimeoutMs', defaults['heartbeatTimeoutMs']);
      checker.positiveInt('defaults', 'scheduleToStartTimeoutMs', defaults['scheduleToStartTimeoutMs']);
      checker.positiveInt('defaults', 'compensationTimeoutMs', defaults['compensationTimeoutMs']);
    }
  }
  checker.steps('definition.steps', definition['steps'], new Set(), new Set());
  checker.inputSchema(definition['inputSchema']);
  if (definition['budget'] !== undefined) {
    for (const problem of validateBudget(definition['budget'])) checker.problem('definition', problem);
  }
  checker.finish();
  return checker;
}

let compiler: CelCompiler | undefined;
function sharedCompiler(): CelCompiler {
  compiler ??= new CelCompiler();
  return compiler;
}

/** Every problem with `definition` (empty when valid). Accepts untrusted data of any shape. */
export function validateDefinition(definition: unknown, options: ValidateDefinitionOptions = {}): string[] {
  return check(definition, options).problems;
}

/**
 * Validates `definition` and compiles its expressions. Throws a ValidationError listing every
 * problem; nothing partial is returned.
 */
export function compileWorkflow(
  definition: unknown,
  options: ValidateDefinitionOptions = {},
): CompiledWorkflow {
  const checker = check(definition, options);
  if (checker.problems.length > 0) {
    const id = isRecord(definition) && typeof definition['id'] === 'string' ? ` ${definition['id']}` : '';
    throw new ValidationError(`invalid workflow definition${id}`, checker.problems);
  }
  return {
    definition: definition as WorkflowDefinition,
    steps: checker.compiled,
    ...(checker.checkInput ? { checkInput: checker.checkInput } : {}),
  };
}

/** The task steps of a definition, at every level, in definition order. */
export function taskSteps(steps: readonly StepDefinition[]): TaskStep[] {
  const out: TaskStep[] = [];
  for (const step of steps) {
    if (step.kind === StepKind.Task) out.push(step);
    else if (step.kind === StepKind.Parallel)
      for (const branch of step.branches) out.push(...taskSteps(branch));
  }
  return out;
}
