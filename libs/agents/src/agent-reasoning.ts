/**
 * How an agent reasons: `predict` answers in one call; `chain-of-thought` answers in one call with
 * a reasoning field written first (Ax 24 has no chain-of-thought program: the field is added to
 * the signature); `react` calls its tools in a loop, up to a step cap, then answers.
 */
export const AgentReasoning = {
  Predict: 'predict',
  ChainOfThought: 'chain-of-thought',
  React: 'react',
} as const;
/** One of {@link AgentReasoning}'s values. */
export type AgentReasoning = (typeof AgentReasoning)[keyof typeof AgentReasoning];
