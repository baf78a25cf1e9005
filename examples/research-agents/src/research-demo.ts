import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MemoryAgentMemo,
  startFakeLlmServer,
  type AgentMemo,
  type FakeLlmReply,
  type FakeLlmServer,
  type LlmConfig,
} from '@multiagents/agents';
import { EventType, Topics, type StepProgressPayload, type WorkflowDefinition } from '@multiagents/contracts';
import { parseDefinition, type Subscription } from '@multiagents/core';
import { startEmbedded, type EmbeddedStack } from '@multiagents/embedded';
import { PublicationStore } from './publication-store';
import { createResearchWorkers } from './research-workers';
import { researchScript } from './research-script';

/** The API key the bundled fake server expects (it is no secret: the server is local and fake). */
export const FAKE_API_KEY = 'sk-fake-research-agents';

/** The research workflow as data, read from workflow.yaml (next to this file in src/). */
export function loadResearchWorkflow(): WorkflowDefinition {
  return parseDefinition(readFileSync(join(__dirname, '..', 'src', 'workflow.yaml'), 'utf8'));
}

/** One `step.progress` event seen on the bus, as a watcher would print it. */
export interface ProgressSeen {
  readonly txId: string;
  readonly step: string;
  readonly attempt: number;
  readonly payload: StepProgressPayload;
}

/** Options of {@link startResearchDemo}. */
export interface ResearchDemoOptions {
  /** A real provider; absent: the bundled fake server with {@link researchScript}. */
  readonly model?: LlmConfig;
  /** The fake server's script (default {@link researchScript}). */
  readonly script?: readonly FakeLlmReply[];
  /** The workflow (default: workflow.yaml). */
  readonly definition?: WorkflowDefinition;
  readonly memo?: AgentMemo;
  readonly requestTimeoutMs?: number;
  /** Called for every `step.progress` event, in the order the bus delivers them. */
  readonly onProgress?: (event: ProgressSeen) => void;
}

/** A running research demo: the embedded stack, the CMS, and the fake model server when offline. */
export interface ResearchDemo {
  readonly stack: EmbeddedStack;
  readonly store: PublicationStore;
  readonly memo: AgentMemo;
  readonly model: LlmConfig;
  readonly definition: WorkflowDefinition;
  /** The bundled fake server (undefined against a real provider). */
  readonly llm: FakeLlmServer | undefined;
  close(): Promise<void>;
}

/**
 * Starts everything the research workflow needs in one process: the fake OpenAI-compatible server
 * (unless a real provider is given), the embedded orchestrator and worker-manager hosting the
 * agents and the CMS workers, and a watcher of `step.progress` events.
 */
export async function startResearchDemo(options: ResearchDemoOptions = {}): Promise<ResearchDemo> {
  const llm =
    options.model === undefined
      ? await startFakeLlmServer({ script: options.script ?? researchScript(), apiKey: FAKE_API_KEY })
      : undefined;
  const model: LlmConfig = options.model ?? {
    baseUrl: llm!.url,
    apiKey: FAKE_API_KEY,
    model: 'fake-model',
  };
  const store = new PublicationStore();
  const memo = options.memo ?? new MemoryAgentMemo();
  const definition = options.definition ?? loadResearchWorkflow();
  const workers = createResearchWorkers({
    model,
    memo,
    store,
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
  });
  const stack = await startEmbedded({ workers, definitions: [definition] });
  let watcher: Subscription | undefined;
  const onProgress = options.onProgress;
  if (onProgress) {
    watcher = await stack.bus.subscribe(
      Topics.events,
      { group: 'research-demo-watch', consumer: 'demo' },
      async ({ envelope }) => {
        if (envelope.type !== EventType.StepProgress || envelope.step === undefined) return;
        onProgress({
          txId: envelope.txId,
          step: envelope.step,
          attempt: envelope.attempt ?? 0,
          payload: envelope.payload as StepProgressPayload,
        });
      },
    );
  }
  return {
    stack,
    store,
    memo,
    model,
    definition,
    llm,
    async close() {
      await watcher?.close();
      await stack.close();
      await llm?.close();
    },
  };
}
