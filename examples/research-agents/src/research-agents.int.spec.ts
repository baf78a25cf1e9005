// The research workflow end to end in one process, against the bundled fake OpenAI-compatible
// server over loopback HTTP: approval, rejection, a compensated publish, the run budget, and a
// provider that fails or hangs. Each test counts the model calls the server received.
import type { FakeLlmReply, FakeLlmRequest } from '@multiagents/agents';
import {
  ErrorCode,
  RunState,
  type StepDefinition,
  type TaskStep,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { waitFor } from '@multiagents/testing';
import {
  startResearchDemo,
  loadResearchWorkflow,
  type ProgressSeen,
  type ResearchDemo,
} from './research-demo';
import { DEFAULT_QUESTION, researchScript } from './research-script';
import { agentsDemo } from './agents-demo';
import { draftOf, researchOnce } from './run-research';
import { formatResearchTimeline } from './timeline';

let demo: ResearchDemo | undefined;

afterEach(async () => {
  await demo?.close();
  demo = undefined;
});

/** Model calls of one approved run: the planner 1, each researcher 2 (search, answer), the writer 1. */
const CALLS_PER_RUN = 8;

const approve = () => ({ approved: true });

/** The workflow with some of its task steps changed. */
function withSteps(
  change: (step: TaskStep) => TaskStep,
  extra: Partial<WorkflowDefinition> = {},
): WorkflowDefinition {
  const base = loadResearchWorkflow();
  const map = (step: StepDefinition): StepDefinition =>
    step.kind === 'task'
      ? change(step)
      : step.kind === 'parallel'
        ? { ...step, branches: step.branches.map((b) => b.map(map)) }
        : step;
  return { ...base, ...extra, steps: base.steps.map(map) };
}

describe('the research workflow', () => {
  it('plans, researches in parallel with tool calls, streams the draft in order, waits for approval and publishes', async () => {
    const progress: ProgressSeen[] = [];
    demo = await startResearchDemo({ onProgress: (e) => progress.push(e) });
    const run = await researchOnce(demo.stack.orchestrator, { question: DEFAULT_QUESTION }, approve);

    expect(run.state).toBe(RunState.Completed);
    expect(demo.llm!.calls).toBe(CALLS_PER_RUN);
    // The three researchers ran at once: each started before any of them finished.
    const research = ['research_1', 'research_2', 'research_3'].map((name) => run.steps[name]!);
    const firstEnd = Math.min(...research.map((s) => s.endedAt!));
    for (const step of research) expect(step.startedAt!).toBeLessThanOrEqual(firstEnd);
    // Each researcher searched the corpus once and cited what it found.
    for (const step of research) {
      const output = step.output as {
        toolCalls: { name: string; ok: boolean }[];
        answer: { sources: string[] };
      };
      expect(output.toolCalls).toEqual([expect.objectContaining({ name: 'search_corpus', ok: true })]);
      expect(output.answer.sources.length).toBeGreaterThan(0);
    }
    const page = demo.store.get(run.txId)!;
    expect(page).toMatchObject({ state: 'published', title: draftOf(run)!.title, body: draftOf(run)!.draft });
    expect(page.sources).toEqual(expect.arrayContaining(['saga-1987', 'compensation', 'idempotency']));

    // Usage: each agent step's own, and the run's totals are their sum.
    const agentSteps = ['plan', 'research_1', 'research_2', 'research_3', 'write'];
    const usages = agentSteps.map(
      (name) =>
        (
          run.steps[name]!.output as {
            usage: { promptTokens: number; completionTokens: number; costUsd: number };
          }
        ).usage,
    );
    for (const u of usages) expect(u.promptTokens).toBeGreaterThan(0);
    const prompt = usages.reduce((sum, u) => sum + u.promptTokens, 0);
    const completion = usages.reduce((sum, u) => sum + u.completionTokens, 0);
    expect(run.usage).toMatchObject({
      promptTokens: prompt,
      completionTokens: completion,
      totalTokens: prompt + completion,
      attempts: 5,
    });
    expect(run.usage!.costUsd).toBeCloseTo(
      usages.reduce((sum, u) => sum + u.costUsd, 0),
      12,
    );
    expect(formatResearchTimeline(run).at(-1)).toMatch(
      /^ {2}tokens: \d+ prompt \+ \d+ completion = \d+ over 5 agent attempts; cost \$0\.\d{6}$/,
    );

    // The writer's deltas reached the watcher in order, and together they are the draft.
    const draft = draftOf(run)!.draft;
    const written = () => progress.filter((e) => e.txId === run.txId && e.step === 'write');
    await waitFor(
      () =>
        written().reduce(
          (n, e) => n + (e.payload.deltas?.['draft']?.length ?? 0) + (e.payload.droppedChars ?? 0),
          0,
        ) >= draft.length,
      { description: 'every draft delta at the watcher' },
    );
    expect(written().map((e) => e.payload.seq)).toEqual(written().map((_, i) => i + 1));
    expect(
      written()
        .map((e) => e.payload.deltas?.['draft'] ?? '')
        .join(''),
    ).toBe(draft);
  });

  it('compensates the steps before the review when the reviewer rejects the draft, and publishes nothing', async () => {
    demo = await startResearchDemo();
    const run = await researchOnce(demo.stack.orchestrator, { question: DEFAULT_QUESTION }, () => ({
      approved: false,
      reason: 'too short',
    }));

    expect(run.state).toBe(RunState.Compensated);
    expect(run.steps['approve']).toMatchObject({
      status: 'completed',
      output: { approved: false, reason: 'too short' },
    });
    expect(run.steps['check_review']).toMatchObject({
      status: 'failed',
      error: { code: 'REVIEW_REJECTED', retryable: false },
    });
    expect(run.steps['check_review']!.attempts).toHaveLength(1);
    expect(run.steps['open_draft']!.status).toBe('compensated');
    expect(run.steps['publish']?.startedAt).toBeUndefined();
    expect(demo.store.get(run.txId)?.state).toBe('discarded');
    expect(demo.store.log).toEqual([`open ${run.txId}`, `discard ${run.txId}`]);
    // The agents answered once; rejecting does not ask them again.
    expect(demo.llm!.calls).toBe(CALLS_PER_RUN);
  });

  it('unpublishes when a step after publish fails, then discards the draft', async () => {
    demo = await startResearchDemo();
    const run = await researchOnce(
      demo.stack.orchestrator,
      { question: DEFAULT_QUESTION, failAnnouncement: true },
      approve,
    );
    expect(run.state).toBe(RunState.Compensated);
    expect(run.steps['announce']!.error).toMatchObject({ code: 'NEWSLETTER_REFUSED' });
    expect(demo.store.log).toEqual([
      `open ${run.txId}`,
      `publish ${run.txId}`,
      `unpublish ${run.txId}`,
      `discard ${run.txId}`,
    ]);
  });

  it('fails the writer with BUDGET_EXCEEDED before calling the model once the run is over its budget, and compensates', async () => {
    // The planner and the researchers spend about 3,500 tokens; the budget allows 1,500.
    demo = await startResearchDemo({
      definition: { ...loadResearchWorkflow(), budget: { maxTokens: 1_500 } },
    });
    const run = await researchOnce(demo.stack.orchestrator, { question: DEFAULT_QUESTION }, approve);

    expect(run.state).toBe(RunState.Compensated);
    expect(run.steps['write']).toMatchObject({
      status: 'failed',
      error: { code: ErrorCode.BudgetExceeded, retryable: false },
    });
    // Not dispatched: no attempt reached a worker, and the writer's model was never called.
    expect(demo.llm!.requests.filter((r) => r.systemMessage.includes('Write a short article'))).toEqual([]);
    expect(demo.llm!.calls).toBe(CALLS_PER_RUN - 1);
    expect(run.usage!.totalTokens).toBeGreaterThan(1_500);
    expect(run.steps['open_draft']!.status).toBe('compensated');
    expect(demo.store.get(run.txId)?.state).toBe('discarded');
  });

  it('retries a provider that answers 503, then hangs, with growing delays; the hung attempt times out per the step’s timeoutMs', async () => {
    const planner = (r: FakeLlmRequest) => r.systemMessage.includes('Split the research question');
    const script: FakeLlmReply[] = [
      { match: planner, times: 1, error: { status: 503, message: 'overloaded' } },
      { match: planner, times: 1, hang: 'before-response' },
      ...researchScript(),
    ];
    // The timeout leaves room for a slow first call on a loaded machine; only the hang reaches it.
    const timeoutMs = 3_000;
    const definition = withSteps((step) =>
      step.name === 'plan'
        ? { ...step, timeoutMs, retry: { maxAttempts: 4, initialDelayMs: 150, backoffCoefficient: 2 } }
        : step,
    );
    demo = await startResearchDemo({ script, definition });
    const run = await researchOnce(demo.stack.orchestrator, { question: DEFAULT_QUESTION }, approve);

    expect(formatResearchTimeline(run).join('\n')).toMatch(/→ completed/);
    const attempts = run.steps['plan']!.attempts;
    const unavailable = attempts.findIndex((a) => a.error?.code === 'AGENT_PROVIDER_ERROR');
    // The worker-manager ends the attempt at the step's timeout (or the orchestrator does: timed_out).
    const hung = attempts.findIndex((a) => a.error?.code === ErrorCode.Timeout);
    expect(attempts[unavailable]!.error).toMatchObject({ retryable: true, details: { status: 503 } });
    expect(hung).toBeGreaterThan(unavailable);
    expect(attempts[hung]!.error).toMatchObject({ code: ErrorCode.Timeout, retryable: true });
    expect(attempts[hung]!.endedAt! - attempts[hung]!.startedAt).toBeGreaterThanOrEqual(timeoutMs);
    expect(attempts.at(-1)!.outcome).toBe('completed');
    // Backoff: 150 ms after the first failure, then twice as long after each next one.
    for (let i = 1; i < attempts.length; i++) {
      expect(attempts[i]!.startedAt - attempts[i - 1]!.endedAt!).toBeGreaterThanOrEqual(150 * 2 ** (i - 1));
    }
    await waitFor(() => demo!.llm!.abandoned === 1, { description: 'the hung model call dropped' });
    expect(demo.llm!.calls).toBe(CALLS_PER_RUN + 2);
  });
});

describe('pnpm start:agents', () => {
  it('runs offline end to end: approved and published, then rejected and compensated, with timelines and token totals', async () => {
    let text = '';
    const outcome = await agentsDemo({ question: DEFAULT_QUESTION, write: (t) => void (text += t) });

    expect(outcome.ok).toBe(true);
    expect(outcome.modelCalls).toBe(2 * CALLS_PER_RUN);
    expect(text).toMatch(/research_agents v1 {2}→ completed/);
    expect(text).toMatch(/research_agents v1 {2}→ compensated/);
    expect(text).toContain('[research_1] tool search_corpus ok');
    expect(text).toContain(`[write] streaming the draft: ${draftOf(outcome.runs[0]!)!.draft}`);
    expect(text).toMatch(/REVIEW_REJECTED: the reviewer rejected the draft/);
    expect(text).toMatch(/run 1 completed: \d+ tokens \(\d+ prompt \+ \d+ completion\), \$0\.\d{6}/);
    expect(text).toContain(`model calls received by the fake server: ${2 * CALLS_PER_RUN}`);
  });
});
