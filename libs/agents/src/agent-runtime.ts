import {
  AxAIRefusalError,
  AxAIServiceAuthenticationError,
  AxAIServiceError,
  AxAIServiceStatusError,
  AxGen,
  type AxAIService,
  type AxFunction,
  type AxFunctionJSONSchema,
  type AxGenOut,
  type AxProgramForwardOptions,
} from '@ax-llm/ax';
import { ROOT_CONTEXT, SpanStatusCode, trace, type Context, type Tracer } from '@opentelemetry/api';
import {
  ErrorCode,
  MultiAgentsError,
  checkBudget,
  costForModel,
  type Budget,
  type PriceTable,
} from '@multiagents/contracts';
import type { Clock } from '@multiagents/core';
import { DEFAULT_OUTPUT_BOUNDS, type WorkerContext } from '@multiagents/worker-sdk';
import { AgentBadAnswerError, AgentError, AgentErrorCode } from './agent-errors';
import { AgentReasoning } from './agent-reasoning';
import type { AgentMemo } from './agent-memo';
import { isAgentResult, type AgentResult, type AgentUsage, type ToolCallRecord } from './agent-result';
import {
  REASONING_FIELD,
  buildAxSignature,
  checkAnswer,
  pickInputs,
  type AgentSignature,
} from './agent-signature';
import { checkToolArguments } from './check-tool-arguments';
import type { AgentTool } from './agent-tool';
import { redactSecrets } from './llm-config';
import { ProviderCallRecorder } from './provider-call-recorder';
import { truncateAnswer } from './truncate-answer';

/** Everything an {@link AgentRuntime} needs, resolved and validated by `defineAgent`. */
export interface AgentRuntimeSettings {
  readonly name: string;
  readonly signature: AgentSignature;
  readonly description: string | undefined;
  readonly reasoning: AgentReasoning;
  readonly tools: readonly AgentTool<never, unknown>[];
  /**
   * Makes the Ax service for one attempt around that attempt's `fetch`. Ax reads `fetch` from the
   * service, never from the call's options, so each attempt gets its own (a cheap object).
   */
  readonly createLlm: (fetch: typeof globalThis.fetch) => AxAIService;
  readonly model: string;
  readonly secrets: readonly string[];
  readonly memo: AgentMemo;
  readonly prices: PriceTable | undefined;
  readonly budget: Budget | undefined;
  readonly maxAnswerBytes: number;
  readonly maxToolResultBytes: number;
  readonly maxSteps: number;
  readonly maxCorrections: number;
  readonly stream: boolean;
  readonly temperature: number | undefined;
  readonly maxTokens: number | undefined;
  /** Ceiling of one model call, its streamed body included. */
  readonly requestTimeoutMs: number;
  readonly clock: Clock;
  readonly tracer: Tracer | undefined;
}

/** The tool calls of one attempt, by call index across all its tools. */
interface ToolLog {
  next: number;
  readonly records: (ToolCallRecord | undefined)[];
}

/** Longest error text taken from the model library into our messages. */
const MAX_CAUSE_CHARS = 500;
/** How long a failed attempt waits for the copies of its responses to be read (usage, raw text). */
const SETTLE_AFTER_FAILURE_MS = 1_000;
/** HTTP statuses that may succeed when tried again. */
const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 409, 425, 429]);

/**
 * Runs agent attempts: memo first, then the model through Ax, then the memo again. One runtime per
 * agent; every attempt gets its own Ax program and call recorder, so attempts never share state.
 */
export class AgentRuntime {
  constructor(private readonly settings: AgentRuntimeSettings) {}

  /** One attempt of the agent's step (the worker handler). */
  async run(input: unknown, ctx: WorkerContext): Promise<AgentResult> {
    const { name, memo } = this.settings;
    const key = ctx.idempotencyKey;
    let recorded: AgentResult | undefined;
    try {
      recorded = await memo.get(key);
    } catch (err) {
      // Calling the model without knowing whether it already answered could pay for it twice.
      throw new AgentError(AgentErrorCode.MemoUnavailable, `agent ${name}: cannot read its memo`, {
        agent: name,
        retryable: true,
        cause: err,
        details: { idempotencyKey: key },
      });
    }
    if (recorded !== undefined) {
      if (!isAgentResult(recorded)) {
        throw new AgentError(AgentErrorCode.MemoCorrupt, `agent ${name}: its memo holds no agent result`, {
          agent: name,
          retryable: false,
          details: { idempotencyKey: key },
        });
      }
      ctx.logger.info(
        { idempotencyKey: key, modelCalls: 0 },
        'agent answer replayed from its memo; the model is not called again',
      );
      return recorded;
    }

    const { values, problems } = pickInputs(input, this.settings.signature.inputs);
    if (problems.length > 0) {
      throw new AgentError(AgentErrorCode.BadInput, `agent ${name}: bad input: ${problems.join('; ')}`, {
        agent: name,
        retryable: false,
        details: { problems },
      });
    }
    const result = await this.callModel(values, ctx);
    try {
      // First writer wins: when another attempt recorded an answer meanwhile, return that one.
      return await memo.put(key, result);
    } catch (err) {
      // The answer is paid for: returning it beats failing (which would pay again on the retry).
      ctx.logger.warn(
        { idempotencyKey: key, reason: err instanceof Error ? err.message : String(err) },
        'agent answer not recorded in its memo; a redelivery of this command would call the model again',
      );
      return result;
    }
  }

  private async callModel(values: Record<string, unknown>, ctx: WorkerContext): Promise<AgentResult> {
    const s = this.settings;
    const toolLog: ToolLog = { next: 0, records: [] };
    const recorder: ProviderCallRecorder = new ProviderCallRecorder({
      maxContentChars: s.maxAnswerBytes,
      callTimeoutMs: s.requestTimeoutMs,
      beforeCall: () => this.checkOwnBudget(recorder),
    });
    const cot = s.reasoning === AgentReasoning.ChainOfThought;
    const gen = new AxGen<Record<string, unknown>, AxGenOut>(
      buildAxSignature(s.signature.source, {
        ...(s.description === undefined ? {} : { description: s.description }),
        reasoningField: cot,
      }),
    );
    const modelConfig = {
      ...(s.temperature === undefined ? {} : { temperature: s.temperature }),
      ...(s.maxTokens === undefined ? {} : { maxTokens: s.maxTokens }),
    };
    const llm = s.createLlm(recorder.fetch);
    // The attempt's span (given explicitly: no context manager is needed) parents the model calls.
    const parent = s.tracer === undefined ? undefined : parentContext(ctx.traceHeaders);
    const options: AxProgramForwardOptions<string> = {
      abortSignal: ctx.signal,
      ...(parent === undefined ? {} : { traceContext: parent }),
      maxRetries: s.maxCorrections,
      stream: s.stream,
      ...(Object.keys(modelConfig).length > 0 ? { modelConfig } : {}),
      ...(s.reasoning === AgentReasoning.React
        ? {
            functions: s.tools.map((tool) => this.wrapTool(tool, ctx, toolLog, parent)),
            maxSteps: s.maxSteps,
          }
        : {}),
    };

    let output: Record<string, unknown>;
    try {
      output = s.stream
        ? await this.streamOutput(llm, gen, values, options, ctx)
        : await gen.forward(llm, values, options);
    } catch (err) {
      await settleWithin(recorder, SETTLE_AFTER_FAILURE_MS);
      throw this.classify(err, ctx, this.usage(recorder, gen), recorder);
    }
    await recorder.settled();
    const usage = this.usage(recorder, gen);
    // Ax drops an empty list from a streamed answer (`sources: []` yields no delta), yet it has
    // checked that required fields were there: a required list it let through is an empty one.
    for (const field of s.signature.outputs) {
      if (field.isArray && !field.isOptional && output[field.name] === undefined) output[field.name] = [];
    }

    const problems = checkAnswer(output, s.signature.outputs);
    if (problems.length > 0) throw new AgentBadAnswerError(s.name, problems, recorder.lastContent(), usage);

    const answer: Record<string, unknown> = {};
    for (const field of s.signature.outputs) {
      if (Object.hasOwn(output, field.name) && output[field.name] !== undefined)
        answer[field.name] = output[field.name];
    }
    const reasoning =
      cot && typeof output[REASONING_FIELD] === 'string' ? output[REASONING_FIELD] : undefined;
    // JSON data from here on (dates become strings), then cut to size together.
    const whole = JSON.parse(
      JSON.stringify(reasoning === undefined ? answer : { [REASONING_FIELD]: reasoning, ...answer }),
    ) as Record<string, unknown>;
    const cut = truncateAnswer(whole, s.maxAnswerBytes);
    const { [REASONING_FIELD]: keptReasoning, ...keptAnswer } = cut.answer;
    if (cut.truncated) {
      ctx.logger.warn(
        { fields: cut.truncatedFields, maxAnswerBytes: s.maxAnswerBytes },
        'agent answer truncated to its size limit',
      );
    }
    const result: AgentResult = {
      agent: s.name,
      answer: cot ? keptAnswer : cut.answer,
      ...(cot && typeof keptReasoning === 'string' ? { reasoning: keptReasoning } : {}),
      toolCalls: [],
      usage,
      model: s.model,
      truncated: cut.truncated,
      ...(cut.truncated ? { truncatedFields: cut.truncatedFields } : {}),
    };
    // In call order (parallel calls may finish in another order), within what is left of the
    // output's room: a paid answer too big to be a step's output would be refused for good.
    const room = MAX_AGENT_RESULT_BYTES - Buffer.byteLength(JSON.stringify(result));
    const toolCalls = fitToolCalls(
      toolLog.records.filter((r) => r !== undefined),
      room,
    );
    if (toolCalls.dropped > 0) {
      ctx.logger.warn(
        { dropped: toolCalls.dropped, maxResultBytes: MAX_AGENT_RESULT_BYTES },
        'tool call results and arguments dropped from the agent result to fit its size limit',
      );
    }
    return { ...result, toolCalls: toolCalls.records };
  }

  /**
   * Runs the program streamed, forwarding text deltas to `ctx.progress`, and merges the deltas the
   * way Ax's own `forward()` does. A new `version` means Ax started over (a correction after a
   * malformed answer, or the next step of a tool loop): the merged values restart, and watchers get
   * a `{ restarted: true }` status.
   */
  private async streamOutput(
    llm: AxAIService,
    gen: AxGen<Record<string, unknown>, AxGenOut>,
    values: Record<string, unknown>,
    options: AxProgramForwardOptions<string>,
    ctx: WorkerContext,
  ): Promise<Record<string, unknown>> {
    let version: number | undefined;
    let merged: Record<string, unknown> = {};
    for await (const item of gen.streamingForward(llm, values, options)) {
      if (item.index !== 0) continue;
      if (item.version !== version) {
        if (version !== undefined) ctx.progress?.({ status: { restarted: true } });
        version = item.version;
        merged = {};
      }
      const deltas: Record<string, string> = {};
      for (const [field, delta] of Object.entries(item.delta as Record<string, unknown>)) {
        const previous = merged[field];
        if (typeof delta === 'string' && (previous === undefined || typeof previous === 'string')) {
          merged[field] = (previous ?? '') + delta;
          deltas[field] = delta;
        } else if (Array.isArray(delta)) {
          merged[field] = [
            ...(Array.isArray(previous) ? (previous as unknown[]) : []),
            ...(delta as unknown[]),
          ];
        } else {
          merged[field] = delta;
        }
      }
      if (Object.keys(deltas).length > 0) ctx.progress?.({ deltas });
    }
    return merged;
  }

  private wrapTool(
    tool: AgentTool<never, unknown>,
    ctx: WorkerContext,
    log: ToolLog,
    parent: Context | undefined,
  ): AxFunction {
    const s = this.settings;
    return {
      name: tool.name,
      description: tool.description,
      parameters: tool.parameters as unknown as AxFunctionJSONSchema,
      func: (args: unknown): Promise<unknown> => {
        const tracer = s.tracer;
        if (tracer === undefined) return this.callTool(tool, ctx, log, args);
        return tracer.startActiveSpan(
          `execute_tool ${tool.name}`,
          {
            attributes: {
              'gen_ai.operation.name': 'execute_tool',
              'gen_ai.tool.name': tool.name,
              'gen_ai.agent.name': s.name,
            },
          },
          parent ?? ROOT_CONTEXT,
          async (span) => {
            try {
              const result = await this.callTool(tool, ctx, log, args);
              const failed = typeof result === 'object' && result !== null && 'error' in result;
              if (failed)
                span.setStatus({
                  code: SpanStatusCode.ERROR,
                  message: String(result.error),
                });
              return result;
            } catch (err) {
              span.setStatus({
                code: SpanStatusCode.ERROR,
                message: err instanceof Error ? err.message : String(err),
              });
              throw err;
            } finally {
              span.end();
            }
          },
        );
      },
    };
  }

  /** Runs one tool call, records it, and answers the model with its result or an `{ error }`. */
  private async callTool(
    tool: AgentTool<never, unknown>,
    ctx: WorkerContext,
    log: ToolLog,
    args: unknown,
  ): Promise<unknown> {
    const s = this.settings;
    const callIndex = log.next++;
    const started = s.clock.now();
    const record = (outcome: Partial<ToolCallRecord> & Pick<ToolCallRecord, 'ok'>): void => {
      log.records[callIndex] = {
        name: tool.name,
        arguments: toJsonOrNull(args),
        durationMs: Math.max(0, s.clock.now() - started),
        ...outcome,
      };
    };
    const fail = (message: string, code?: string): { error: string } => {
      const safe = redactSecrets(message, s.secrets).slice(0, MAX_CAUSE_CHARS);
      record({ ok: false, error: { message: safe, ...(code === undefined ? {} : { code }) } });
      ctx.progress?.({ status: { tool: tool.name, ok: false } });
      // What the model reads as the tool's result: it may try again or answer without it.
      return { error: safe };
    };
    // Ax passes arguments through without checking them against the schema.
    const argumentProblems = checkToolArguments(args, tool.parameters);
    if (argumentProblems.length > 0) {
      return fail(`invalid arguments: ${argumentProblems.join('; ')}`, 'INVALID_ARGUMENTS');
    }
    let value: unknown;
    try {
      value = await tool.handler(args as never, {
        signal: ctx.signal,
        idempotencyKey: ctx.idempotencyKey,
        callIndex,
        logger: ctx.logger.child({ tool: tool.name, callIndex }),
      });
    } catch (err) {
      // The attempt is over: stop the loop instead of telling the model.
      if (ctx.signal.aborted) throw err;
      const code = err instanceof MultiAgentsError ? err.code : undefined;
      return fail(err instanceof Error ? err.message || err.name : String(err), code);
    }
    const json = toJson(value);
    if (!json.ok) return fail(`the tool returned a value that is not JSON data: ${json.reason}`);
    const cut = truncateAnswer({ result: json.value }, s.maxToolResultBytes);
    record({
      ok: true,
      result: cut.answer['result'],
      ...(cut.truncated ? { resultTruncated: true } : {}),
    });
    ctx.progress?.({ status: { tool: tool.name, ok: true } });
    return json.value;
  }

  /** Refuses a further model call once the attempt's own budget is used up. */
  private checkOwnBudget(recorder: ProviderCallRecorder): void {
    const { budget, name } = this.settings;
    if (budget === undefined) return;
    const usage = this.usage(recorder, undefined);
    // Reserving one token: a budget that is exactly used up allows no further call.
    const check = checkBudget(
      budget,
      { tokens: usage.totalTokens, costUsd: usage.costUsd ?? 0 },
      { tokens: 1, costUsd: 0 },
    );
    if (check.exceeded) {
      throw new AgentError(
        AgentErrorCode.BudgetExceeded,
        `agent ${name}: its budget is used up (${check.reasons.join('; ')})`,
        { agent: name, retryable: false, usage, details: { budget } },
      );
    }
  }

  /**
   * Every call is counted, failed and corrected ones included: the recorder reads usage off the
   * wire; Ax's own count (which misses failed streamed calls) is the fallback for providers whose
   * usage the recorder cannot read.
   */
  private usage(recorder: ProviderCallRecorder, gen: AxGen | undefined): AgentUsage {
    const wire = recorder.totals();
    let axPrompt = 0;
    let axCompletion = 0;
    for (const entry of gen?.getUsage() ?? []) {
      axPrompt += entry.tokens?.promptTokens ?? 0;
      axCompletion += entry.tokens?.completionTokens ?? 0;
    }
    const promptTokens = Math.max(wire.promptTokens, axPrompt);
    const completionTokens = Math.max(wire.completionTokens, axCompletion);
    return {
      promptTokens,
      completionTokens,
      totalTokens: promptTokens + completionTokens,
      costUsd: costForModel(this.settings.prices, this.settings.model, { promptTokens, completionTokens }),
      modelCalls: recorder.calls.length,
    };
  }

  /** Turns whatever the model library threw into an error with a stable code and retry meaning. */
  private classify(
    err: unknown,
    ctx: WorkerContext,
    usage: AgentUsage,
    recorder: ProviderCallRecorder,
  ): Error {
    const { name, secrets } = this.settings;
    if (ctx.signal.aborted) {
      // The runner reports the attempt by why its signal fired; this is for callers without one.
      const reason: unknown = ctx.signal.reason;
      return reason instanceof Error
        ? reason
        : new MultiAgentsError(ErrorCode.Cancelled, `agent ${name}: attempt aborted`, { retryable: true });
    }
    const ours = findInChain(err, (e) => e instanceof MultiAgentsError);
    if (ours !== undefined) return ours;

    const text = redactSecrets(chainMessage(err), secrets).slice(0, MAX_CAUSE_CHARS);
    const base = { agent: name, usage };
    const statusError = findInChain(err, (e) => e instanceof AxAIServiceStatusError);
    if (statusError instanceof AxAIServiceStatusError) {
      const status = statusError.status;
      return new AgentError(
        AgentErrorCode.ProviderError,
        `agent ${name}: the model provider answered HTTP ${status} ${statusError.statusText}`.trim(),
        { ...base, retryable: status >= 500 || RETRYABLE_STATUSES.has(status), details: { status } },
      );
    }
    if (findInChain(err, (e) => e instanceof AxAIServiceAuthenticationError) !== undefined) {
      return new AgentError(
        AgentErrorCode.ProviderError,
        `agent ${name}: the model provider refused the API key`,
        { ...base, retryable: false, details: { status: 401 } },
      );
    }
    if (recorder.lastCall()?.timedOut === true) {
      return new AgentError(
        AgentErrorCode.ProviderError,
        `agent ${name}: the model call took longer than ${this.settings.requestTimeoutMs} ms`,
        { ...base, retryable: true, details: { kind: 'timeout', timeoutMs: this.settings.requestTimeoutMs } },
      );
    }
    const networkError = recorder.lastCall()?.networkError;
    if (networkError !== undefined) {
      return new AgentError(
        AgentErrorCode.ProviderError,
        `agent ${name}: the model provider cannot be reached (${redactSecrets(networkError, secrets)})`,
        {
          ...base,
          retryable: true,
          details: { kind: 'network', reason: redactSecrets(networkError, secrets) },
        },
      );
    }
    const serviceError = findInChain(err, (e) => e instanceof AxAIServiceError);
    if (serviceError !== undefined) {
      // Network errors, timeouts, streams cut short, unreadable responses: transient.
      return new AgentError(AgentErrorCode.ProviderError, `agent ${name}: model provider failure: ${text}`, {
        ...base,
        retryable: true,
        details: { kind: serviceError.name },
      });
    }
    if (/max steps reached/i.test(text)) {
      return new AgentError(
        AgentErrorCode.StepLimit,
        `agent ${name}: no answer within ${this.settings.maxSteps} steps`,
        { ...base, retryable: false, details: { maxSteps: this.settings.maxSteps } },
      );
    }
    const refusal = findInChain(err, (e) => e instanceof AxAIRefusalError);
    if (
      refusal !== undefined ||
      /validation error|required field|invalid value|invalid function arguments|field .* (is missing|not found)/i.test(
        text,
      )
    ) {
      return new AgentBadAnswerError(name, [firstLine(text)], recorder.lastContent(), usage);
    }
    return new AgentError(AgentErrorCode.Failed, `agent ${name}: ${text}`, {
      ...base,
      retryable: true,
      cause: err,
    });
  }
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

/** The first error in `err`'s cause chain (Ax wraps in `cause` and `originalError`) that `test` accepts. */
function findInChain(err: unknown, test: (e: Error) => boolean): Error | undefined {
  const seen = new Set<unknown>();
  let current: unknown = err;
  while (current instanceof Error && !seen.has(current)) {
    if (test(current)) return current;
    seen.add(current);
    const next: unknown =
      (current as { originalError?: unknown }).originalError ?? (current as { cause?: unknown }).cause;
    current = next;
  }
  return undefined;
}

function chainMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

async function settleWithin(recorder: ProviderCallRecorder, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    recorder.settled(),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}

function toJson(value: unknown): { ok: true; value: unknown } | { ok: false; reason: string } {
  if (value === undefined) return { ok: true, value: null };
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return { ok: false, reason: `a ${typeof value}` };
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

function toJsonOrNull(value: unknown): unknown {
  const json = toJson(value);
  return json.ok ? json.value : null;
}

/** W3C `traceparent` as a parent context: `00-<trace id>-<span id>-<flags>`. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The attempt's span (`ctx.traceHeaders`, from the worker's tracing) as the parent of the agent's
 * spans; without it (an untraced run, a handler called directly) the spans start their own trace.
 */
export function parentContext(headers: Readonly<Record<string, string>> | undefined): Context | undefined {
  const match = TRACEPARENT.exec(headers?.['traceparent'] ?? '');
  if (match === null) return undefined;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: Number.parseInt(match[3] as string, 16),
    isRemote: true,
  });
}

/**
 * Most bytes of an agent's result: a worker's output is at most half a bus message
 * ({@link DEFAULT_OUTPUT_BOUNDS}); a little is kept for the JSON around it.
 */
export const MAX_AGENT_RESULT_BYTES = DEFAULT_OUTPUT_BOUNDS.maxBytes - 4 * 1024;

/**
 * The tool call records within `room` bytes of JSON: the oldest lose their result and arguments
 * first (the model saw them; the answer is what the step is for), each marked so.
 */
function fitToolCalls(
  records: readonly ToolCallRecord[],
  room: number,
): { records: ToolCallRecord[]; dropped: number } {
  const sizes = records.map((r) => Buffer.byteLength(JSON.stringify(r)) + 1);
  let total = sizes.reduce((sum, n) => sum + n, 0);
  const kept = [...records];
  let dropped = 0;
  for (let i = 0; i < kept.length && total > room; i++) {
    const { result: _result, arguments: _arguments, ...rest } = kept[i] as ToolCallRecord;
    const slim: ToolCallRecord = {
      ...rest,
      arguments: null,
      argumentsDropped: true,
      ...(rest.ok ? { resultTruncated: true } : {}),
    };
    const size = Buffer.byteLength(JSON.stringify(slim)) + 1;
    total -= (sizes[i] as number) - size;
    kept[i] = slim;
    dropped += 1;
  }
  return { records: kept, dropped };
}
