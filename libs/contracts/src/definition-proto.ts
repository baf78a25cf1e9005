/**
 * Mappers between the WorkflowDefinition message (proto/multiagents/v1/definition.proto) and the
 * domain definition, shared by the gRPC server and the client so both speak the same mapping.
 *
 * Definitions are mapped without being judged: a step without a kind, a version of 0 go on as
 * they are, so the orchestrator's validator sees exactly what was sent and lists every problem.
 */
import * as pb from '@multiagents/proto';
import type {
  InputMapping,
  RetryPolicy,
  StepDefinition,
  WorkflowDefaults,
  WorkflowDefinition,
} from './definition';
import { parseBoundedJson } from './json-bounds';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function retryToProto(retry: RetryPolicy | undefined): pb.RetryPolicy | undefined {
  if (retry === undefined) return undefined;
  return {
    maxAttempts: retry.maxAttempts,
    initialDelayMs: retry.initialDelayMs,
    backoffCoefficient: retry.backoffCoefficient,
    maxDelayMs: retry.maxDelayMs,
    nonRetryableErrors: [...(retry.nonRetryableErrors ?? [])],
  };
}

function inputToProto(input: InputMapping | undefined): pb.InputMapping | undefined {
  if (input === undefined) return undefined;
  if (typeof input === 'string') return { mapping: { $case: 'expression', value: input } };
  return { mapping: { $case: 'fields', value: { fields: { ...input } } } };
}

function stepToProto(step: StepDefinition): pb.Step {
  const base = { name: step.name, description: step.description, when: step.when };
  switch (step.kind) {
    case 'task':
      return {
        ...base,
        kind: {
          $case: 'task',
          value: {
            worker: step.worker,
            compensation: step.compensation,
            input: inputToProto(step.input),
            output: step.output,
            retry: retryToProto(step.retry),
            timeoutMs: step.timeoutMs,
            heartbeatTimeoutMs: step.heartbeatTimeoutMs,
            scheduleToStartTimeoutMs: step.scheduleToStartTimeoutMs,
            agent: step.agent,
            compensationRetry: retryToProto(step.compensationRetry),
            compensationTimeoutMs: step.compensationTimeoutMs,
          },
        },
      };
    case 'parallel':
      return {
        ...base,
        kind: {
          $case: 'parallel',
          value: { branches: step.branches.map((steps) => ({ steps: steps.map(stepToProto) })) },
        },
      };
    case 'wait':
      return {
        ...base,
        kind: {
          $case: 'wait',
          value: { signal: step.signal, timeoutMs: step.timeoutMs, output: step.output },
        },
      };
    case 'sleep':
      return { ...base, kind: { $case: 'sleep', value: { durationMs: step.durationMs } } };
    default:
      // Not a known kind (untyped input): send no kind, and the server's validator names the step.
      return base;
  }
}

/** A domain definition → the WorkflowDefinition message. */
export function definitionToProto(definition: WorkflowDefinition): pb.WorkflowDefinition {
  const defaults: WorkflowDefaults | undefined = definition.defaults;
  return {
    id: definition.id,
    version: definition.version,
    description: definition.description,
    steps: (definition.steps ?? []).map(stepToProto),
    defaults:
      defaults === undefined
        ? undefined
        : {
            retry: retryToProto(defaults.retry),
            timeoutMs: defaults.timeoutMs,
            heartbeatTimeoutMs: defaults.heartbeatTimeoutMs,
            scheduleToStartTimeoutMs: defaults.scheduleToStartTimeoutMs,
            compensationRetry: retryToProto(defaults.compensationRetry),
            compensationTimeoutMs: defaults.compensationTimeoutMs,
          },
    inputSchema:
      definition.inputSchema === undefined
        ? Buffer.alloc(0)
        : Buffer.from(JSON.stringify(definition.inputSchema), 'utf8'),
    budget:
      definition.budget === undefined
        ? undefined
        : { maxTokens: definition.budget.maxTokens, maxCostUsd: definition.budget.maxCostUsd },
  };
}

/** Copies the fields that are set: the validator rejects unknown keys, not undefined ones, but
 *  leaving them out keeps stored definitions (and their equality checks) clean. */
function defined<T extends object>(value: T): T {
  const out: Partial<Mutable<T>> = {};
  for (const [key, field] of Object.entries(value) as [keyof T, T[keyof T]][]) {
    if (field !== undefined) out[key] = field;
  }
  return out as T;
}

function retryFromProto(retry: pb.RetryPolicy | undefined): RetryPolicy | undefined {
  if (retry === undefined) return undefined;
  return defined<RetryPolicy>({
    maxAttempts: retry.maxAttempts,
    initialDelayMs: retry.initialDelayMs,
    backoffCoefficient: retry.backoffCoefficient,
    maxDelayMs: retry.maxDelayMs,
    nonRetryableErrors: retry.nonRetryableErrors.length > 0 ? [...retry.nonRetryableErrors] : undefined,
  });
}

function inputFromProto(input: pb.InputMapping | undefined): InputMapping | undefined {
  const mapping = input?.mapping;
  if (mapping === undefined) return undefined;
  return mapping.$case === 'expression' ? mapping.value : { ...mapping.value.fields };
}

function stepFromProto(step: pb.Step): StepDefinition {
  const base = { name: step.name, description: step.description, when: step.when };
  const kind = step.kind;
  // A step without a kind goes on as such: the validator names it ("unknown step kind").
  if (kind === undefined) return defined(base) as unknown as StepDefinition;
  switch (kind.$case) {
    case 'task': {
      const task = kind.value;
      return defined<StepDefinition>({
        ...base,
        kind: 'task',
        worker: task.worker,
        compensation: task.compensation,
        input: inputFromProto(task.input),
        output: task.output,
        retry: retryFromProto(task.retry),
        timeoutMs: task.timeoutMs,
        heartbeatTimeoutMs: task.heartbeatTimeoutMs,
        scheduleToStartTimeoutMs: task.scheduleToStartTimeoutMs,
        agent: task.agent,
        compensationRetry: retryFromProto(task.compensationRetry),
        compensationTimeoutMs: task.compensationTimeoutMs,
      });
    }
    case 'parallel':
      return defined<StepDefinition>({
        ...base,
        kind: 'parallel',
        branches: kind.value.branches.map((branch) => branch.steps.map(stepFromProto)),
      });
    case 'wait':
      return defined<StepDefinition>({
        ...base,
        kind: 'wait',
        signal: kind.value.signal,
        timeoutMs: kind.value.timeoutMs,
        output: kind.value.output,
      });
    case 'sleep':
      return defined<StepDefinition>({ ...base, kind: 'sleep', durationMs: kind.value.durationMs });
  }
}

/**
 * A WorkflowDefinition message → the domain shape, unvalidated: pass the result to
 * `Orchestrator.registerWorkflow`, which validates it and lists every problem.
 */
export function definitionFromProto(definition: pb.WorkflowDefinition): WorkflowDefinition {
  const defaults = definition.defaults;
  return defined<WorkflowDefinition>({
    id: definition.id,
    version: definition.version,
    description: definition.description,
    steps: definition.steps.map(stepFromProto),
    defaults:
      defaults === undefined
        ? undefined
        : defined<WorkflowDefaults>({
            retry: retryFromProto(defaults.retry),
            timeoutMs: defaults.timeoutMs,
            heartbeatTimeoutMs: defaults.heartbeatTimeoutMs,
            scheduleToStartTimeoutMs: defaults.scheduleToStartTimeoutMs,
            compensationRetry: retryFromProto(defaults.compensationRetry),
            compensationTimeoutMs: defaults.compensationTimeoutMs,
          }),
    inputSchema: inputSchemaFromProto(definition.inputSchema),
    budget:
      definition.budget === undefined
        ? undefined
        : defined({ maxTokens: definition.budget.maxTokens, maxCostUsd: definition.budget.maxCostUsd }),
  });
}

/**
 * The schema's JSON, parsed within bounds. Bytes that are not a JSON object are passed on as
 * they are (a string), so the validator reports them with everything else.
 */
function inputSchemaFromProto(bytes: Uint8Array): Record<string, unknown> | undefined {
  if (bytes.length === 0) return undefined;
  const text = new TextDecoder().decode(bytes);
  try {
    const value = parseBoundedJson(text, { maxBytes: 64 * 1024, maxDepth: 32, what: 'inputSchema' });
    return value as Record<string, unknown>;
  } catch {
    return text as unknown as Record<string, unknown>;
  }
}
