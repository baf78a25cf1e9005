/**
 * LLM agents as MultiAgents workers, on Ax (DSPy-style signatures): `defineAgent` returns a worker
 * definition any WorkerManager hosts. Answers are paid for once (an {@link AgentMemo} keyed by the
 * step's idempotency key), usage and cost are recorded, tokens stream as `step.progress`.
 *
 * @example
 * const model = llmConfigFromEnv(env); // in an app's config module
 * const agent = defineAgent('qa.answer', {
 *   signature: 'question:string -> answer:string',
 *   model,
 *   memo: new MemoryAgentMemo(),
 * });
 */

/** Defines an LLM agent as a worker, its options and defaults. */
export { defineAgent, DEFAULT_AGENT_OPTIONS } from './define-agent';
/** What defineAgent takes and returns. */
export type { AgentOptions, AgentDefinition, AgentInfo } from './define-agent';
/** Reasoning modes: predict, chain-of-thought, react. */
export { AgentReasoning } from './agent-reasoning';
/** An agent step's output and memo record: answer, tool calls, usage, model. */
export type { AgentResult, AgentUsage, ToolCallRecord } from './agent-result';
/** Shape check for records read back from a memo store. */
export { isAgentResult } from './agent-result';
/** The memo port (put-if-absent by idempotency key) and its in-memory implementation. */
export { MemoryAgentMemo, DEFAULT_MEMORY_AGENT_MEMO_MAX_ENTRIES } from './agent-memo';
/** The memo port's contract and the memory implementation's options. */
export type { AgentMemo, MemoryAgentMemoOptions } from './agent-memo';
/** Tools a react agent calls: typed functions with a JSON schema. */
export { defineTool, TOOL_NAME_PATTERN } from './agent-tool';
/** A tool, its argument schema and what its handler gets. */
export type { AgentTool, ToolContext, ToolParametersSchema, ToolPropertySchema } from './agent-tool';
/** Signatures parsed into fields, and the field chain-of-thought adds. */
export { parseSignature, REASONING_FIELD } from './agent-signature';
/** A parsed signature and its fields. */
export type { AgentSignature, SignatureField } from './agent-signature';
/** Pure cut of an answer to a byte size, keeping its types. */
export { truncateAnswer } from './truncate-answer';
/** What truncateAnswer returns. */
export type { TruncatedAnswer } from './truncate-answer';
/** Error codes of agent steps and the errors that carry them. */
export { AgentErrorCode, AgentError, AgentBadAnswerError } from './agent-errors';
/** Options of AgentError. */
export type { AgentErrorOptions } from './agent-errors';
/** Model settings from the environment (apps call it), and their redaction for logs. */
export { llmConfigFromEnv, redactLlmConfig, LLM_ENV, REDACTED } from './llm-config';
/** Where an agent's model lives, and the environment shape llmConfigFromEnv reads. */
export type { LlmConfig, LlmEnvironment } from './llm-config';
/** Cost and budget helpers (from contracts), for price tables and run budgets. */
export { costUsd, costForModel, checkBudget } from '@multiagents/contracts';
/** Budget, price and usage types (from contracts). */
export type { Budget, BudgetCheck, ModelPrice, PriceTable, Spend, TokenCounts } from '@multiagents/contracts';
/** A fake OpenAI-compatible server for offline examples and tests. */
export { startFakeLlmServer } from './fake-llm-server/fake-llm-server';
/** The fake server, its options, scripted replies and recorded requests. */
export type {
  FakeLlmServer,
  FakeLlmServerOptions,
  FakeLlmReply,
  FakeLlmRequest,
  FakeToolCall,
  FakeChatMessage,
} from './fake-llm-server/fake-llm-server';
