/**
 * A worker module (MULTIAGENTS_WORKER_MODULES) for the agent redelivery test: one agent,
 * `research.answer`, against the fake model server at AGENT_LLM_URL, recording its answers in the
 * worker-manager's own memo (`createWorkers({ memo })`: the backend's, on its broker), which
 * outlives the process. With AGENT_CRASH_AFTER_MEMO=1 the process kills itself with SIGKILL the
 * moment the answer is recorded: after the model answered, before the result is published or the
 * command acknowledged. Test-only.
 */
import { defineAgent, type AgentMemo } from '@multiagents/agents';
import type { WorkerServices } from '@multiagents/worker-sdk';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is required`);
  return value;
};

/** The fault injector: the memo, killed -9 right after its first record is written. */
function crashingAfterPut(durable: AgentMemo): AgentMemo {
  return {
    get: (key) => durable.get(key),
    put: async (key, record) => {
      const kept = await durable.put(key, record);
      process.stderr.write(`fault injector: SIGKILL right after the answer to ${key} was recorded\n`);
      process.kill(process.pid, 'SIGKILL');
      return kept;
    },
  };
}

/** The hosted workers, on the service's memo. */
export function createWorkers({ memo }: WorkerServices) {
  return [
    defineAgent('research.answer', {
      signature: 'question:string -> answer:string, sources:string[]',
      model: { baseUrl: env('AGENT_LLM_URL'), apiKey: env('AGENT_LLM_KEY'), model: 'fake-model' },
      memo: process.env['AGENT_CRASH_AFTER_MEMO'] === '1' ? crashingAfterPut(memo) : memo,
    }),
  ];
}
