/** One call of a tool during an agent attempt, as recorded in its result. */
export interface ToolCallRecord {
  readonly name: string;
  /** The arguments the model gave (JSON data). */
  readonly arguments: unknown;
  /** False when the tool threw: `error` says why, and the model was told so. */
  readonly ok: boolean;
  /** What the tool returned (JSON data), when `ok`; see `resultTruncated`. */
  readonly result?: unknown;
  /** Why the tool failed, as the model was told. */
  readonly error?: { readonly message: string; readonly code?: string };
  /**
   * Set when the recorded result was cut to the size limit, or dropped (with the arguments,
   * `argumentsDropped`) to keep the whole agent result within a worker's output; the model saw
   * all of it.
   */
  readonly resultTruncated?: true;
  /** Set when the arguments were dropped from the record (see `resultTruncated`). */
  readonly argumentsDropped?: true;
  readonly durationMs: number;
}

/** Tokens and money one agent attempt used, every model call counted (corrections included). */
export interface AgentUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
  /** USD from the price table; `null` when the table has no price for the model. */
  readonly costUsd: number | null;
  /** Chat completion requests made. */
  readonly modelCalls: number;
}

/**
 * What an agent step returns (its step output) and what its memo records: the answer is paid for
 * once, and the same record is returned for every later delivery of the step's command.
 */
export interface AgentResult<A = Record<string, unknown>> {
  /** The agent's worker name. */
  readonly agent: string;
  /** The signature's output fields, as JSON data. */
  readonly answer: A;
  /** The added reasoning field of `chain-of-thought` agents. */
  readonly reasoning?: string;
  /** Every tool call in order, as `react` agents made them. */
  readonly toolCalls: readonly ToolCallRecord[];
  readonly usage: AgentUsage;
  /** The model asked for. */
  readonly model: string;
  /** True when the answer was cut to `maxAnswerBytes`; `truncatedFields` says which. */
  readonly truncated: boolean;
  readonly truncatedFields?: readonly string[];
}

/** True when `value` has the shape of an {@link AgentResult} (a record read back from a memo store). */
export function isAgentResult(value: unknown): value is AgentResult {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  const usage = r['usage'] as Record<string, unknown> | null | undefined;
  return (
    typeof r['agent'] === 'string' &&
    typeof r['answer'] === 'object' &&
    r['answer'] !== null &&
    Array.isArray(r['toolCalls']) &&
    typeof r['model'] === 'string' &&
    typeof r['truncated'] === 'boolean' &&
    typeof usage === 'object' &&
    usage !== null &&
    typeof usage['promptTokens'] === 'number' &&
    typeof usage['completionTokens'] === 'number' &&
    typeof usage['totalTokens'] === 'number'
  );
}
