import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';
import type { AgentUsage } from './agent-result';

/**
 * Stable codes of agent step failures (they travel in `step.result` errors: compare `code`).
 * `BUDGET_EXCEEDED` is the shared {@link ErrorCode.BudgetExceeded}.
 */
export const AgentErrorCode = {
  /** The model's answer lacks an output field or has one of the wrong type. Retryable. */
  BadAnswer: 'AGENT_BAD_ANSWER',
  /** The step's input lacks a signature input field or has one of the wrong type. Not retryable. */
  BadInput: 'AGENT_BAD_INPUT',
  /**
   * The model provider failed: retryable for 408, 409, 425, 429, 5xx, network errors and timeouts;
   * not for other 4xx (a bad key or request does not get better by retrying).
   */
  ProviderError: 'AGENT_PROVIDER_ERROR',
  /** A `react` agent used its step cap without answering. Not retryable: it would loop again. */
  StepLimit: 'AGENT_STEP_LIMIT',
  /** The memo store could not be read or written. Retryable. */
  MemoUnavailable: 'AGENT_MEMO_UNAVAILABLE',
  /** The memo store holds something that is not an agent result under this key. Not retryable. */
  MemoCorrupt: 'AGENT_MEMO_CORRUPT',
  /** Anything else that went wrong inside the model library. Retryable. */
  Failed: 'AGENT_FAILED',
  /** The same as `ErrorCode.BudgetExceeded`: the agent's own per-attempt budget was used up. */
  BudgetExceeded: ErrorCode.BudgetExceeded,
} as const;
/** One of {@link AgentErrorCode}'s values. */
export type AgentErrorCode = (typeof AgentErrorCode)[keyof typeof AgentErrorCode];

/** Options shared by {@link AgentError}s. */
export interface AgentErrorOptions {
  readonly agent: string;
  readonly retryable: boolean;
  /** What the attempt used before it failed (the run's totals should count it: it was paid). */
  readonly usage?: AgentUsage;
  readonly details?: Record<string, unknown>;
  readonly cause?: unknown;
}

/** An agent step failure with a stable {@link AgentErrorCode}; its details name the agent and usage. */
export class AgentError extends MultiAgentsError {
  readonly agent: string;
  readonly usage: AgentUsage | undefined;

  constructor(code: AgentErrorCode, message: string, options: AgentErrorOptions) {
    super(code, message, {
      retryable: options.retryable,
      cause: options.cause,
      details: {
        agent: options.agent,
        ...(options.usage === undefined ? {} : { usage: options.usage }),
        ...options.details,
      },
    });
    this.agent = options.agent;
    this.usage = options.usage;
  }
}

/**
 * The model answered, but not what the signature asks for. Retryable: models are not
 * deterministic. `raw` (cut to the answer size limit) is kept in the details for the operator.
 */
export class AgentBadAnswerError extends AgentError {
  readonly problems: readonly string[];
  readonly raw: string;

  constructor(agent: string, problems: readonly string[], raw: string, usage: AgentUsage | undefined) {
    super(AgentErrorCode.BadAnswer, `agent ${agent}: malformed answer: ${problems.join('; ')}`, {
      agent,
      retryable: true,
      ...(usage === undefined ? {} : { usage }),
      details: { problems: [...problems], raw },
    });
    this.problems = problems;
    this.raw = raw;
  }
}
