/** One document of the bundled corpus the researchers search. */
export interface CorpusDocument {
  readonly id: string;
  readonly title: string;
  readonly text: string;
}

/**
 * The small corpus bundled with the example, so that `pnpm start:agents` needs no network for its
 * search tool either. Short notes on durable multi-step workflows.
 */
export const CORPUS: readonly CorpusDocument[] = Object.freeze([
  {
    id: 'saga-1987',
    title: 'Sagas (Garcia-Molina and Salem, 1987)',
    text:
      'A saga is a long-lived transaction written as a sequence of local transactions. Each step ' +
      'commits on its own; when a later step fails, the saga runs compensating transactions for ' +
      'the steps that completed, in reverse order, instead of holding locks across all of them.',
  },
  {
    id: 'compensation',
    title: 'Compensation is not rollback',
    text:
      'A compensation is a new action that semantically undoes an earlier one: a refund for a ' +
      'charge, a release for a reservation, an unpublish for a publish. The world saw the first ' +
      'action, so compensations run newest first and must themselves be retried until they succeed.',
  },
  {
    id: 'idempotency',
    title: 'Idempotency keys',
    text:
      'Messages are delivered at least once, so a worker may see the same command twice after a ' +
      'crash or a timeout. An idempotency key that stays the same across deliveries and retries ' +
      'lets the worker return the recorded result instead of repeating a side effect or a paid call.',
  },
  {
    id: 'durable-execution',
    title: 'Durable execution',
    text:
      'A durable workflow engine records every step result before it moves on. When a process dies ' +
      'the run resumes from its last recorded step on another process; nothing that finished is ' +
      'run again, and timers and waits for signals survive restarts.',
  },
  {
    id: 'human-approval',
    title: 'Human in the loop',
    text:
      'A workflow can wait for a person: a wait step pauses the run until a signal arrives, for ' +
      'hours or days if needed, without holding a thread. An approval continues the run; a ' +
      'rejection fails it, and the steps already done are compensated.',
  },
  {
    id: 'llm-budgets',
    title: 'Token budgets for agents',
    text:
      'Language-model agents can loop or fan out without bound. A per-run budget in tokens or ' +
      'dollars, checked before each model call is dispatched and counting the calls in flight, ' +
      'stops a runaway run early and cheaply.',
  },
  {
    id: 'backoff',
    title: 'Retries with backoff',
    text:
      'Transient failures such as HTTP 429 or 503 from a model provider are retried with ' +
      'exponentially growing delays, up to a limit; a step timeout bounds how long one attempt ' +
      'may hang before it is abandoned and retried.',
  },
]);
