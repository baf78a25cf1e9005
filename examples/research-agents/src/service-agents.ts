/**
 * The research workers as a worker module for the services, on a shared broker:
 * `MULTIAGENTS_WORKER_MODULES=examples/research-agents/dist/service-agents.js` on every
 * worker-manager replica, with MULTIAGENTS_LLM_BASE_URL, MULTIAGENTS_LLM_API_KEY and
 * MULTIAGENTS_LLM_MODEL set. The agents record their answers in the service's own memo (the
 * backend's, on its Redis or NATS), so a command redelivered to another replica after a crash
 * returns the recorded answer instead of calling the model again.
 */
import { llmConfigFromEnv, LLM_ENV } from '@multiagents/agents';
import type { WorkerDefinition, WorkerServices } from '@multiagents/worker-sdk';
import { createResearchWorkers } from './research-workers';

/** Called once by the service with its services: the workers it hosts, on its memo. */
export function createWorkers({ memo }: WorkerServices): WorkerDefinition<never, unknown>[] {
  // A worker module is its process's composition root: it reads its own settings.
  const model = llmConfigFromEnv(process.env);
  if (model === undefined) {
    throw new Error(
      `set ${LLM_ENV.baseUrl}, ${LLM_ENV.apiKey} and ${LLM_ENV.model} (the model the agents ask)`,
    );
  }
  return createResearchWorkers({ model, memo });
}
