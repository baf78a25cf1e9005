import type { FakeLlmReply, FakeLlmRequest } from '@multiagents/agents';

/** The question `pnpm start:agents` asks when none is given. */
export const DEFAULT_QUESTION = 'How do sagas keep multi-step workflows reliable?';

/** What the scripted planner answers (whatever the question: the fake model has one plan). */
export const SCRIPTED_SUB_QUESTIONS = [
  'What is a saga?',
  'How are completed steps undone when a later step fails?',
  'What stops a redelivered command from repeating its side effects?',
] as const;

/** One scripted researcher: the search it makes, then the answer it gives from the hits. */
const RESEARCH = [
  {
    query: 'saga long-lived transaction',
    answer:
      'A saga is a long-lived transaction split into local steps that each commit on their own. ' +
      'When a later step fails, the completed steps are compensated in reverse order.',
    sources: ['saga-1987'],
  },
  {
    query: 'compensation undo refund unpublish',
    answer:
      'Each completed step is undone by its compensation, a new action such as a refund or an ' +
      'unpublish, run newest first and retried until it succeeds.',
    sources: ['compensation', 'saga-1987'],
  },
  {
    query: 'idempotency key redelivered command',
    answer:
      'Commands are delivered at least once, so workers use an idempotency key that stays the same ' +
      'across deliveries and return the recorded result instead of repeating the effect.',
    sources: ['idempotency'],
  },
] as const;

const TITLE = 'Sagas: reliable workflows without distributed locks';
const DRAFT =
  'A saga runs a long business process as a chain of local steps, each committed on its own. ' +
  'When a step fails, the steps already done are undone by compensations (a refund, a release, an ' +
  'unpublish) in reverse order, so the system returns to a consistent state without holding locks. ' +
  'Because messages can arrive twice, every step carries an idempotency key and returns its ' +
  'recorded result on a redelivery, so no side effect, and no paid model call, happens twice.';

const system = (text: string) => (r: FakeLlmRequest) => r.systemMessage.includes(text);
const asks = (subQuestion: string) => (r: FakeLlmRequest) => r.lastUserMessage.includes(subQuestion);

/**
 * The fake model's script for the research workflow: the planner's three sub-questions, each
 * researcher's search (a tool call) and answer once the hits came back, and the writer's streamed
 * draft with its reasoning. Usage is the server's default estimate (about four characters a token).
 */
export function researchScript(): FakeLlmReply[] {
  const replies: FakeLlmReply[] = [
    {
      match: system('Split the research question'),
      fields: { subQuestions: [...SCRIPTED_SUB_QUESTIONS] },
    },
  ];
  SCRIPTED_SUB_QUESTIONS.forEach((subQuestion, i) => {
    const research = RESEARCH[i]!;
    replies.push(
      {
        match: (r) => asks(subQuestion)(r) && r.toolResults.length === 0,
        toolCalls: [{ name: 'search_corpus', arguments: { query: research.query } }],
      },
      {
        match: (r) => asks(subQuestion)(r) && r.toolResults.length > 0,
        fields: { answer: research.answer, sources: [...research.sources] },
      },
    );
  });
  replies.push({
    match: system('Write a short article'),
    fields: {
      reasoning:
        'The findings define a saga, explain compensation, and explain idempotency; an article ' +
        'should go from the definition to failure handling to redelivery.',
      title: TITLE,
      draft: DRAFT,
    },
    chunkChars: 16,
  });
  return replies;
}
