/**
 * Test support: a worker module (MULTIAGENTS_WORKER_MODULES) whose one worker streams its answer
 * as progress deltas before it returns it, the way an agent streams tokens, and the workflow it
 * serves: it waits for `go` (so a watcher can attach first), streams, then waits for `done` (so
 * the watcher's output can be read while the run is still live).
 */
import type { WorkflowDefinition } from '@multiagents/contracts';
import { defineWorker } from '@multiagents/worker-sdk';

/** The text the worker streams, in these pieces. */
export const STREAMED_PIECES = ['Hel', 'lo, ', 'wor', 'ld'] as const;

export const workers = [
  defineWorker('test.streamer', async (_input: unknown, ctx) => {
    for (const piece of STREAMED_PIECES) {
      ctx.progress?.({ deltas: { answer: piece } });
      await new Promise((resolve) => setImmediate(resolve));
    }
    ctx.progress?.({ status: { phase: 'written' } });
    return { answer: STREAMED_PIECES.join('') };
  }),
];

export const STREAMED_ANSWER: WorkflowDefinition = {
  id: 'streamed_answer',
  version: 1,
  steps: [
    { name: 'go', kind: 'wait', signal: 'go', timeoutMs: 600_000 },
    { name: 'draft', kind: 'task', worker: 'test.streamer' },
    { name: 'done', kind: 'wait', signal: 'done', timeoutMs: 600_000 },
  ],
};
