import { ai, type AxAIOpenAIModel, type AxAIService } from '@ax-llm/ax';
import { trace, type Tracer } from '@opentelemetry/api';
import {
  MAX_TIMER_MS,
  ValidationError,
  validateBudget,
  validatePriceTable,
  type Budget,
  type PriceTable,
} from '@multiagents/contracts';
import { systemClock, type Clock } from '@multiagents/core';
import {
  defineWorker,
  type WorkerContext,
  type WorkerDefinition,
  type WorkerOptions,
} from '@multiagents/worker-sdk';
import type { AgentMemo } from './agent-memo';
import type { AgentResult } from './agent-result';
import { AgentReasoning } from './agent-reasoning';
import { AgentRuntime, MAX_AGENT_RESULT_BYTES } from './agent-runtime';
import { REASONING_FIELD, parseSignature, type AgentSignature } from './agent-signature';
import { validateTools, type AgentTool } from './agent-tool';
import type { LlmConfig } from './llm-config';

/** How `defineAgent` builds an agent; see {@link DEFAULT_AGENT_OPTIONS} for the defaults. */
export interface AgentOptions {
  /** Ax signature: `'question:string -> answer:string, sources:string[]'`. */
  readonly signature: string;
  /** The task, for the model (the system prompt's instruction). */
  readonly description?: string;
  /** Default `predict`. `react` needs tools; the other modes take none. */
  readonly reasoning?: AgentReasoning;
  /** Functions a `react` agent may call in its loop. */
  readonly tools?: readonly AgentTool<never, unknown>[];
  /** The OpenAI-compatible server and model (an app fills it with `llmConfigFromEnv`). */
  readonly model: LlmConfig;
  /** Where answers are recorded so a redelivered command is never paid twice. */
  readonly memo: AgentMemo;
  /** USD per million input/output tokens by model name; without a price, `costUsd` is null. */
  readonly prices?: PriceTable;
  /**
   * This agent's own limit per attempt: no further model call once it is used up, and the attempt
   * fails with `BUDGET_EXCEEDED` (non-retryable). The run's budget is the orchestrator's.
   */
  readonly budget?: Budget;
  /** Largest answer kept (UTF-8 bytes of its JSON); longer ones are cut and marked `truncated`. */
  readonly maxAnswerBytes?: number;
  /** Largest tool result kept in a tool call record (the model sees all of it). */
  readonly maxToolResultBytes?: number;
  /** Model calls a `react` loop may make before the attempt fails with `AGENT_STEP_LIMIT`. */
  readonly maxSteps?: number;
  /**
   * Times Ax re-asks the model, in the same attempt, to fix a malformed answer. Ax uses the same
   * count to retry HTTP 5xx answers (after about a second), so above 0 an attempt may also make
   * hidden retries; by default a malformed answer fails the attempt and the step's retry policy
   * decides.
   */
  readonly maxCorrections?: number;
  /** HTTP retries of one model call on 429/5xx inside the attempt (the step's retry policy comes after). */
  readonly providerRetries?: number;
  /**
   * Ceiling of one model call, from the request to the last byte of its (streamed) answer; the
   * step's timeout (`ctx.signal`) applies as well.
   */
  readonly requestTimeoutMs?: number;
  /** Stream tokens (and report them through `ctx.progress`); default true. */
  readonly stream?: boolean;
  readonly temperature?: number;
  /** Most completion tokens per model call. */
  readonly maxTokens?: number;
  /** How the agent runs in a WorkerManager (concurrency, its own timeout, circuit breaker). */
  readonly worker?: WorkerOptions;
  /** Time source of tool call durations (tests inject one). */
  readonly clock?: Clock;
  /**
   * OpenTelemetry tracer: each model call becomes a span with the `gen_ai.*` attributes (Ax's),
   * each tool call an `execute_tool <name>` span, children of the attempt's span
   * (`ctx.traceHeaders`). Default: the process's global tracer (`trace.getTracer`), which the
   * services set to theirs when `OTEL_*` tracing is on, and which makes no spans otherwise.
   */
  readonly tracer?: Tracer;
}

/** The name of the global tracer agents use when no `tracer` is given. */
export const AGENT_TRACER_NAME = '@multiagents/agents';

/** Defaults applied by `defineAgent`. */
export const DEFAULT_AGENT_OPTIONS = Object.freeze({
  reasoning: AgentReasoning.Predict,
  // Big enough for a long answer with sources, small enough for a step result on the bus (1 MiB).
  maxAnswerBytes: 64 * 1024,
  maxToolResultBytes: 16 * 1024,
  maxSteps: 8,
  // A malformed answer is the step's retryable failure (AGENT_BAD_ANSWER), visible and durable.
  maxCorrections: 0,
  // Retries belong to the step's retry policy (durable, with backoff); none hidden in here.
  providerRetries: 0,
  requestTimeoutMs: 120_000,
  stream: true,
});

/**
 * What `defineAgent` returns: a worker definition (its handler always returns a promise), plus
 * what the agent is, for tools and operators.
 */
export type AgentDefinition<I = Record<string, unknown>, A = Record<string, unknown>> = Omit<
  WorkerDefinition<I, AgentResult<A>>,
  'handler'
> & {
  readonly handler: (input: I, ctx: WorkerContext) => Promise<AgentResult<A>>;
  readonly agent: AgentInfo;
};

/** Description of an agent, without secrets. */
export interface AgentInfo {
  readonly signature: AgentSignature;
  readonly reasoning: AgentReasoning;
  readonly tools: readonly string[];
  readonly model: string;
}

const KNOWN_OPTIONS: ReadonlySet<string> = new Set([
  'signature',
  'description',
  'reasoning',
  'tools',
  'model',
  'memo',
  'prices',
  'budget',
  'maxAnswerBytes',
  'maxToolResultBytes',
  'maxSteps',
  'maxCorrections',
  'providerRetries',
  'requestTimeoutMs',
  'stream',
  'temperature',
  'maxTokens',
  'worker',
  'clock',
  'tracer',
]);

/** Largest `maxAnswerBytes` and `maxToolResultBytes`: half of what an agent's result may hold. */
const MAX_ANSWER_BYTES = Math.floor(MAX_AGENT_RESULT_BYTES / 2);

function integer(value: unknown, label: string, min: number, problems: string[]): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || (value as number) < min) {
    problems.push(`${label} must be an integer ≥ ${min}`);
  }
}

function checkModel(model: unknown, problems: string[]): void {
  if (typeof model !== 'object' || model === null) {
    problems.push('model must be { baseUrl, apiKey, model } (see llmConfigFromEnv)');
    return;
  }
  const m = model as Record<string, unknown>;
  if (typeof m['baseUrl'] !== 'string' || !/^https?:\/\//.test(m['baseUrl'])) {
    problems.push('model.baseUrl must be an http or https URL');
  }
  // Never echo the key itself.
  if (typeof m['apiKey'] !== 'string' || m['apiKey'] === '') {
    problems.push('model.apiKey must be a non-empty string (any value for a server without auth)');
  }
  if (typeof m['model'] !== 'string' || m['model'].trim() === '')
    problems.push('model.model must be a model name');
}

/**
 * Defines an LLM agent as a worker: hosted by any WorkerManager like other workers, it reads its
 * signature's input fields from the step input, asks the model (any OpenAI-compatible server,
 * through Ax), and returns an {@link AgentResult}: the answer, the tool calls, usage and cost. The
 * result is written to `memo` under the step's idempotency key before it is returned, and a
 * command delivered again for that key returns it without calling the model. Throws a
 * ValidationError listing every problem at once.
 *
 * @example
 * const researcher = defineAgent('research.answer', {
 *   signature: 'question:string -> answer:string, sources:string[]',
 *   description: 'Answer from the corpus only; cite document ids.',
 *   reasoning: 'react',
 *   tools: [searchCorpus],
 *   model, // an app's config module fills it with llmConfigFromEnv(env) with the env it reads
 *   memo: new MemoryAgentMemo(),
 *   prices: { 'gpt-4o-mini': { inputUsdPerMTok: 0.15, outputUsdPerMTok: 0.6 } },
 * });
 * const manager = new WorkerManager({ bus, workers: [researcher] });
 */
export function defineAgent<I = Record<string, unknown>, A = Record<string, unknown>>(
  name: string,
  options: AgentOptions,
): AgentDefinition<I, A> {
  const problems: string[] = [];
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError(`invalid agent ${JSON.stringify(name)}`, ['options must be an object']);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) problems.push(`unknown option "${key}"`);
  }

  let signature: AgentSignature | undefined;
  if (typeof options.signature !== 'string' || options.signature.trim() === '') {
    problems.push('signature must be an Ax signature such as "question:string -> answer:string"');
  } else {
    try {
      signature = parseSignature(options.signature);
    } catch (err) {
      problems.push(...(err instanceof ValidationError ? err.problems : [String(err)]));
    }
  }
  if (options.description !== undefined && typeof options.description !== 'string') {
    problems.push('description must be a string');
  }

  const reasoning = options.reasoning ?? DEFAULT_AGENT_OPTIONS.reasoning;
  const modes: readonly string[] = Object.values(AgentReasoning);
  if (!modes.includes(reasoning)) problems.push(`reasoning must be one of ${modes.join(', ')}`);
  const tools = options.tools ?? [];
  problems.push(...validateTools(tools));
  if (reasoning === AgentReasoning.React && tools.length === 0)
    problems.push('reasoning "react" needs tools');
  if (reasoning !== AgentReasoning.React && tools.length > 0) {
    problems.push(`tools are called only with reasoning "react" (got "${reasoning}")`);
  }
  if (
    reasoning === AgentReasoning.ChainOfThought &&
    signature !== undefined &&
    [...signature.inputs, ...signature.outputs].some((f) => f.name === REASONING_FIELD)
  ) {
    problems.push(
      `chain-of-thought adds a "${REASONING_FIELD}" output field: the signature must not have one`,
    );
  }

  checkModel(options.model, problems);
  const memo = options.memo as Partial<AgentMemo> | undefined;
  if (typeof memo?.get !== 'function' || typeof memo.put !== 'function') {
    problems.push('memo must be an AgentMemo ({ get, put }), e.g. new MemoryAgentMemo()');
  }
  if (options.prices !== undefined) problems.push(...validatePriceTable(options.prices));
  if (options.budget !== undefined) problems.push(...validateBudget(options.budget));
  integer(options.maxAnswerBytes, 'maxAnswerBytes', 256, problems);
  integer(options.maxToolResultBytes, 'maxToolResultBytes', 256, problems);
  // The answer is the step's output, which a bus message must carry: half the room at most.
  for (const [label, value] of [
    ['maxAnswerBytes', options.maxAnswerBytes],
    ['maxToolResultBytes', options.maxToolResultBytes],
  ] as const) {
    if (typeof value === 'number' && value > MAX_ANSWER_BYTES)
      problems.push(`${label} must be at most ${MAX_ANSWER_BYTES} (a step's output must fit a bus message)`);
  }
  integer(options.maxSteps, 'maxSteps', 1, problems);
  integer(options.maxCorrections, 'maxCorrections', 0, problems);
  integer(options.providerRetries, 'providerRetries', 0, problems);
  integer(options.requestTimeoutMs, 'requestTimeoutMs', 1, problems);
  if (typeof options.requestTimeoutMs === 'number' && options.requestTimeoutMs > MAX_TIMER_MS)
    problems.push(`requestTimeoutMs must be at most ${MAX_TIMER_MS} (what a timer can wait)`);
  integer(options.maxTokens, 'maxTokens', 1, problems);
  if (
    options.temperature !== undefined &&
    !(typeof options.temperature === 'number' && options.temperature >= 0 && options.temperature <= 2)
  ) {
    problems.push('temperature must be a number from 0 to 2');
  }
  if (options.stream !== undefined && typeof options.stream !== 'boolean')
    problems.push('stream must be a boolean');

  // The worker is made before the checks end so that its problems are listed with ours; its
  // handler runs only once `runtime` exists (defineAgent throws before returning otherwise).
  const handler = (input: I, ctx: WorkerContext): Promise<AgentResult<A>> =>
    runtime.run(input, ctx) as Promise<AgentResult<A>>;
  let worker: WorkerDefinition<I, AgentResult<A>> | undefined;
  try {
    worker = defineWorker<I, AgentResult<A>>(name, handler, options.worker);
  } catch (err) {
    problems.push(...(err instanceof ValidationError ? err.problems : [String(err)]));
  }
  if (problems.length > 0 || signature === undefined || worker === undefined) {
    throw new ValidationError(
      `invalid agent ${typeof name === 'string' ? JSON.stringify(name) : ''}`.trim(),
      problems,
    );
  }

  const model = options.model;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_AGENT_OPTIONS.requestTimeoutMs;
  const tracer = options.tracer ?? trace.getTracer(AGENT_TRACER_NAME);
  const createLlm = (fetch: typeof globalThis.fetch): AxAIService =>
    ai({
      name: 'openai',
      apiKey: model.apiKey,
      apiURL: model.baseUrl.replace(/\/+$/, ''),
      // Any model name the server knows; Ax's enum lists only OpenAI's own.
      config: { model: model.model as AxAIOpenAIModel },
      options: {
        fetch,
        timeout: requestTimeoutMs,
        retry: { maxRetries: options.providerRetries ?? DEFAULT_AGENT_OPTIONS.providerRetries },
        tracer,
      },
    });
  const runtime = new AgentRuntime({
    name,
    signature,
    description: options.description,
    reasoning,
    tools,
    createLlm,
    model: model.model,
    secrets: [model.apiKey],
    memo: options.memo,
    prices: options.prices,
    budget: options.budget,
    maxAnswerBytes: options.maxAnswerBytes ?? DEFAULT_AGENT_OPTIONS.maxAnswerBytes,
    maxToolResultBytes: options.maxToolResultBytes ?? DEFAULT_AGENT_OPTIONS.maxToolResultBytes,
    maxSteps: options.maxSteps ?? DEFAULT_AGENT_OPTIONS.maxSteps,
    maxCorrections: options.maxCorrections ?? DEFAULT_AGENT_OPTIONS.maxCorrections,
    stream: options.stream ?? DEFAULT_AGENT_OPTIONS.stream,
    temperature: options.temperature,
    maxTokens: options.maxTokens,
    requestTimeoutMs,
    clock: options.clock ?? systemClock,
    tracer,
  });
  const agent: AgentInfo = Object.freeze({
    signature,
    reasoning,
    tools: tools.map((t) => t.name),
    model: model.model,
  });
  // The handler is ours, not the one defineWorker typed loosely: it always returns a promise.
  return Object.freeze({ ...worker, handler, agent });
}
