/** The four step kinds (SPEC §2). */
export const StepKind = {
  Task: 'task',
  Parallel: 'parallel',
  Wait: 'wait',
  Sleep: 'sleep',
} as const;
/** One of {@link StepKind}'s values. */
export type StepKind = (typeof StepKind)[keyof typeof StepKind];

/** How a failed attempt is retried. Delays grow `initialDelayMs * backoffCoefficient^(n-1)`, capped. */
export interface RetryPolicy {
  readonly maxAttempts?: number;
  readonly initialDelayMs?: number;
  readonly backoffCoefficient?: number;
  readonly maxDelayMs?: number;
  /** Error codes that fail the step at once, whatever attempts are left. */
  readonly nonRetryableErrors?: readonly string[];
}

/**
 * A mapping from the workflow context to a worker's input: one CEL expression that yields a map,
 * or a map of field name to CEL expression. CEL sees `context`, `input` (the run's start input)
 * and `steps` (`steps.<name>.output`).
 */
export type InputMapping = string | Readonly<Record<string, string>>;

interface StepBase {
  readonly name: string;
  readonly description?: string;
  /** CEL condition; false skips the step (SKIPPED) and the workflow goes on. */
  readonly when?: string;
}

/** Send a command to `worker` and wait for its result. */
export interface TaskStep extends StepBase {
  readonly kind: 'task';
  readonly worker: string;
  /** Worker run to undo this step when the run fails later. */
  readonly compensation?: string;
  readonly input?: InputMapping;
  /** Context key for the result; without it the result (an object) is shallow-merged into the context. */
  readonly output?: string;
  readonly retry?: RetryPolicy;
  readonly timeoutMs?: number;
  readonly heartbeatTimeoutMs?: number;
  /**
   * How long a command may wait for a worker to take it: past it the attempt fails with
   * `NO_WORKER` (nobody hosts the worker, or every replica is busy or gone) and the run
   * compensates instead of hanging.
   */
  readonly scheduleToStartTimeoutMs?: number;
  readonly compensationRetry?: RetryPolicy;
  readonly compensationTimeoutMs?: number;
  /**
   * The step calls a model (an agent from @multiagents/agents): the tokens and cost its results
   * report count against the run's `budget`, which is checked before each of its dispatches.
   */
  readonly agent?: boolean;
}

/** Run branches at once; join when all finish. */
export interface ParallelStep extends StepBase {
  readonly kind: 'parallel';
  readonly branches: readonly (readonly StepDefinition[])[];
}

/** Durably wait for a named signal, optionally with a deadline. */
export interface WaitStep extends StepBase {
  readonly kind: 'wait';
  readonly signal: string;
  readonly timeoutMs?: number;
  /** Context key for the signal's payload; without it an object payload is merged into the context. */
  readonly output?: string;
}

/** A durable timer. */
export interface SleepStep extends StepBase {
  readonly kind: 'sleep';
  readonly durationMs: number;
}

/** Any step. */
export type StepDefinition = TaskStep | ParallelStep | WaitStep | SleepStep;

/** Defaults applied to every task step that does not set its own. */
export interface WorkflowDefaults {
  readonly retry?: RetryPolicy;
  readonly timeoutMs?: number;
  readonly heartbeatTimeoutMs?: number;
  readonly scheduleToStartTimeoutMs?: number;
  readonly compensationRetry?: RetryPolicy;
  readonly compensationTimeoutMs?: number;
}

/** A workflow definition: data, so it can be registered over gRPC, stored and pinned by runs. */
export interface WorkflowDefinition {
  readonly id: string;
  readonly version: number;
  readonly description?: string;
  readonly steps: readonly StepDefinition[];
  readonly defaults?: WorkflowDefaults;
  /**
   * A JSON Schema every start input must satisfy: a bad input is refused (INVALID_ARGUMENT, every
   * problem listed) before any step runs.
   */
  readonly inputSchema?: Readonly<Record<string, unknown>>;
  /**
   * What one run may spend on its agent steps (tokens, cost in USD). Before each agent step is
   * dispatched the run's usage so far, plus the agent attempts in flight, is checked: over the
   * budget the step fails with `BUDGET_EXCEEDED` (not retried), and the run compensates.
   */
  readonly budget?: { readonly maxTokens?: number; readonly maxCostUsd?: number };
}

/**
 * What worker names look like: dot-separated tokens of letters, digits, `_`, `:` and `-`. They
 * become part of topic, stream and subject names, where empty tokens (`a..b`, `.a`) are invalid.
 */
export const WORKER_NAME_PATTERN = /^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$/;

/** Longest worker name accepted. */
export const MAX_WORKER_NAME_LENGTH = 128;

/**
 * Names every JavaScript object already has (`__proto__`, `constructor`, `toString`…) plus
 * `prototype`. A step, signal, output key or input field with one of these names would read or
 * rewrite the prototype of the plain objects that hold runs and contexts, so they are refused.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  ...Object.getOwnPropertyNames(Object.prototype),
  'prototype',
]);

/** True when `name` is one of {@link RESERVED_NAMES}. */
export function isReservedName(name: string): boolean {
  return RESERVED_NAMES.has(name);
}

/**
 * What signal names look like (SPEC §2): a letter, digit or `_`, then up to 127 letters, digits,
 * `_`, `.`, `:` or `-`; never one of {@link RESERVED_NAMES}.
 */
export const SIGNAL_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;
