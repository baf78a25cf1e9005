import { redactLlmConfig, type LlmConfig } from '@multiagents/agents';
import type { Run } from '@multiagents/contracts';
import { startResearchDemo, type ProgressSeen } from './research-demo';
import { draftOf, researchOnce } from './run-research';
import { formatResearchTimeline, formatUsd } from './timeline';

/** Options of {@link agentsDemo}. */
export interface AgentsDemoOptions {
  readonly question: string;
  /** A real provider; absent: the bundled fake server. */
  readonly provider?: LlmConfig;
  /** Where the demo's text goes (stdout in `pnpm start:agents`). */
  readonly write: (text: string) => void;
}

/** What {@link agentsDemo} did. */
export interface AgentsDemoOutcome {
  /** The approved run, then the rejected one. */
  readonly runs: readonly Run[];
  /** Model calls the bundled fake server received (undefined against a real provider). */
  readonly modelCalls: number | undefined;
  /** True when the first run completed and the second was compensated. */
  readonly ok: boolean;
}

function summary(run: Run): string {
  const usage = run.usage;
  return usage
    ? `${usage.totalTokens} tokens (${usage.promptTokens} prompt + ${usage.completionTokens} completion), ${formatUsd(usage.costUsd)}`
    : 'no tokens';
}

/**
 * The `pnpm start:agents` demo: one question through the research workflow twice, approved then
 * rejected, printing the agents' tool calls and streamed draft as they arrive, each run's
 * timeline, and the token totals.
 */
export async function agentsDemo(options: AgentsDemoOptions): Promise<AgentsDemoOutcome> {
  const { write, question } = options;
  const line = (text = ''): void => write(`${text}\n`);
  // Characters of each run's draft seen streaming so far (delivered or reported dropped), and the
  // run whose draft is being printed on the current line.
  const streamed = new Map<string, number>();
  let onStreamed: () => void = () => undefined;
  let streaming: string | undefined;
  const printProgress = ({ txId, step, payload }: ProgressSeen): void => {
    const status = payload.status as { tool?: string; ok?: boolean } | undefined;
    if (status?.tool) {
      if (streaming) write('\n');
      streaming = undefined;
      line(`  [${step}] tool ${status.tool} ${status.ok ? 'ok' : 'failed'}`);
    }
    const draft = payload.deltas?.['draft'];
    if (step === 'write' && draft) {
      if (streaming !== txId) {
        write(`  [write] streaming the draft: `);
        streaming = txId;
      }
      write(draft);
    }
    if (step === 'write') {
      streamed.set(txId, (streamed.get(txId) ?? 0) + (draft?.length ?? 0) + (payload.droppedChars ?? 0));
      onStreamed();
    }
  };
  // `step.progress` events are rate-limited and may arrive after the step's result: wait until the
  // draft has been printed (a provider that does not stream gets two seconds).
  const streamPrinted = (txId: string, chars: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2_000);
      onStreamed = () => {
        if ((streamed.get(txId) ?? 0) < chars) return;
        clearTimeout(timer);
        resolve();
      };
      onStreamed();
    });

  const demo = await startResearchDemo({
    ...(options.provider ? { model: options.provider } : {}),
    onProgress: printProgress,
  });
  const where = demo.llm
    ? `the bundled fake OpenAI-compatible server at ${demo.llm.url} (scripted answers, streamed, with usage)`
    : JSON.stringify(redactLlmConfig(demo.model));
  line(`MultiAgents agent steps: research workflow "${demo.definition.id}" against ${where}`);
  line(`Question: ${question}\n`);

  const runs: Run[] = [];
  try {
    for (const approve of [true, false]) {
      line(`— run ${runs.length + 1}: the reviewer will ${approve ? 'approve' : 'reject'} the draft`);
      const run = await researchOnce(demo.stack.orchestrator, { question }, async (waiting) => {
        const draft = draftOf(waiting);
        await streamPrinted(waiting.txId, draft?.draft.length ?? 0);
        if (streaming) write('\n');
        streaming = undefined;
        line(`  run ${waiting.txId} is waiting for review: "${draft?.title ?? '?'}"`);
        line(
          `  the scripted reviewer sends what a person would: multiagents signal ${waiting.txId} review --payload '{"approved":${approve}}'`,
        );
        return approve ? { approved: true } : { approved: false, reason: 'needs a source on budgets' };
      });
      runs.push(run);
      line();
      for (const text of formatResearchTimeline(run)) line(text);
      const page = demo.store.get(run.txId);
      line(`  CMS: ${page ? `${page.state}${page.title ? ` "${page.title}"` : ''}` : 'nothing'}\n`);
    }
  } finally {
    await demo.close();
  }
  for (const [i, run] of runs.entries()) line(`run ${i + 1} ${run.state}: ${summary(run)}`);
  if (demo.llm) line(`model calls received by the fake server: ${demo.llm.calls}`);
  return {
    runs,
    modelCalls: demo.llm?.calls,
    ok: runs[0]?.state === 'completed' && runs[1]?.state === 'compensated',
  };
}
