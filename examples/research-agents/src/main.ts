/**
 * `pnpm start:agents`: the research workflow end to end in one process. A planner agent splits the
 * question, three researcher agents answer in parallel with a search tool over the bundled corpus,
 * a writer agent streams a draft, a reviewer approves it and it is published; then the same
 * question again, rejected this time, so the draft is discarded. Prints the streamed draft, each
 * run's timeline and its token totals.
 *
 * Offline by default, against the fake OpenAI-compatible server the example ships. With
 * MULTIAGENTS_LLM_BASE_URL, MULTIAGENTS_LLM_API_KEY and MULTIAGENTS_LLM_MODEL set it asks that
 * provider instead. `-- "your question"` asks another question.
 */
import { llmConfigFromEnv } from '@multiagents/agents';
import { agentsDemo } from './agents-demo';
import { DEFAULT_QUESTION } from './research-script';

async function main(): Promise<void> {
  const question = process.argv.slice(2).find((a) => !a.startsWith('-')) ?? DEFAULT_QUESTION;
  const provider = llmConfigFromEnv(process.env);
  const outcome = await agentsDemo({
    question,
    ...(provider ? { provider } : {}),
    write: (text) => process.stdout.write(text),
  });
  if (!outcome.ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
