import {
  AgentReasoning,
  defineAgent,
  MemoryAgentMemo,
  type AgentMemo,
  type LlmConfig,
  type PriceTable,
} from '@multiagents/agents';
import { NonRetryableError } from '@multiagents/contracts';
import { defineWorker, type WorkerDefinition } from '@multiagents/worker-sdk';
import { PublicationStore } from './publication-store';
import { searchCorpusTool } from './search-corpus';

/** Worker names of the research workflow (workflow.yaml uses the same). */
export const ResearchWorker = {
  Plan: 'research.plan',
  Answer: 'research.answer',
  Write: 'research.write',
  OpenDraft: 'cms.open_draft',
  DiscardDraft: 'cms.discard_draft',
  CheckReview: 'review.check',
  Publish: 'cms.publish',
  Unpublish: 'cms.unpublish',
  Announce: 'newsletter.announce',
} as const;

/** USD per million tokens; the fake model is priced like a small hosted one so totals mean something. */
export const RESEARCH_PRICES: PriceTable = Object.freeze({
  'fake-model': { inputUsdPerMTok: 0.15, outputUsdPerMTok: 0.6 },
  'gpt-4o-mini': { inputUsdPerMTok: 0.15, outputUsdPerMTok: 0.6 },
  'gpt-4o': { inputUsdPerMTok: 2.5, outputUsdPerMTok: 10 },
  'gpt-4.1-mini': { inputUsdPerMTok: 0.4, outputUsdPerMTok: 1.6 },
});

/** Options of {@link createResearchWorkers}. */
export interface ResearchWorkersOptions {
  /** The OpenAI-compatible server and model. */
  readonly model: LlmConfig;
  /** Where the agents record their answers (one memo for the three agents: keys are per step). */
  readonly memo?: AgentMemo;
  readonly prices?: PriceTable;
  /** The CMS the publish steps write to. */
  readonly store?: PublicationStore;
  /** Ceiling of one model call (the step's timeout applies too). */
  readonly requestTimeoutMs?: number;
}

/**
 * The workers of the research workflow: three agents (planner, researcher with the corpus search
 * tool, writer) and the plain workers around them (the CMS, the review gate, the announcement).
 */
export function createResearchWorkers(options: ResearchWorkersOptions): WorkerDefinition<never, unknown>[] {
  const memo = options.memo ?? new MemoryAgentMemo();
  const prices = options.prices ?? RESEARCH_PRICES;
  const store = options.store ?? new PublicationStore();
  const common = {
    model: options.model,
    memo,
    prices,
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
  };
  const planner = defineAgent(ResearchWorker.Plan, {
    ...common,
    signature: 'question:string -> subQuestions:string[] "exactly three short sub-questions"',
    description: 'Split the research question into exactly three sub-questions that together answer it.',
  });
  const researcher = defineAgent(ResearchWorker.Answer, {
    ...common,
    signature: 'question:string -> answer:string, sources:string[] "ids of the documents used"',
    description:
      'Answer the question from the corpus only: search it first, then answer in two sentences and cite the document ids.',
    reasoning: AgentReasoning.React,
    tools: [searchCorpusTool],
    maxSteps: 4,
  });
  const writer = defineAgent(ResearchWorker.Write, {
    ...common,
    signature: 'question:string, findings:string[] -> title:string, draft:string',
    description: 'Write a short article (one paragraph) that answers the question from the findings.',
    reasoning: AgentReasoning.ChainOfThought,
  });

  return [
    planner,
    researcher,
    writer,
    defineWorker<{ question: string }, { draftId: string }>(ResearchWorker.OpenDraft, (input, ctx) => ({
      draftId: store.open(ctx.txId, input.question).id,
    })),
    defineWorker<unknown, { discarded: boolean }>(ResearchWorker.DiscardDraft, (_input, ctx) => {
      store.discard(ctx.txId);
      return { discarded: true };
    }),
    defineWorker<{ approved: boolean; reason: string }, { approved: true }>(
      ResearchWorker.CheckReview,
      (input) => {
        if (input.approved !== true) {
          throw new NonRetryableError(
            `the reviewer rejected the draft${input.reason ? `: ${input.reason}` : ''}`,
            {
              code: 'REVIEW_REJECTED',
            },
          );
        }
        return { approved: true };
      },
    ),
    defineWorker<{ title: string; body: string; sources: string[] }, { url: string }>(
      ResearchWorker.Publish,
      (input, ctx) => {
        store.publish(ctx.txId, input);
        return { url: `https://example.org/research/${ctx.txId}` };
      },
    ),
    defineWorker<unknown, { unpublished: boolean }>(ResearchWorker.Unpublish, (_input, ctx) => {
      store.unpublish(ctx.txId);
      return { unpublished: true };
    }),
    defineWorker<{ url: string; fail: boolean }, { announced: string }>(ResearchWorker.Announce, (input) => {
      if (input.fail) {
        throw new NonRetryableError('the newsletter service refused the announcement', {
          code: 'NEWSLETTER_REFUSED',
        });
      }
      return { announced: input.url };
    }),
  ];
}
