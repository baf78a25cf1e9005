import { isTerminalRunState, RunState, type Run } from '@multiagents/contracts';
import type { Orchestrator } from '@multiagents/core';

/**
 * Resolves with the run once `accept` holds for it (checked now, then on every change this process
 * writes), or once it is terminal: a run that ended elsewhere never leaves the caller waiting.
 */
export function waitForRun(
  orchestrator: Orchestrator,
  txId: string,
  accept: (run: Run) => boolean,
): Promise<Run> {
  return new Promise<Run>((resolve, reject) => {
    let done = false;
    const finish = (run: Run): void => {
      if (done) return;
      done = true;
      unsubscribe();
      resolve(run);
    };
    const unsubscribe = orchestrator.onRunChanged((run) => {
      if (run.txId === txId && (accept(run) || isTerminalRunState(run.state))) finish(run);
    });
    orchestrator.getRun(txId).then(
      (run) => {
        if (accept(run) || isTerminalRunState(run.state)) finish(run);
      },
      (err: unknown) => {
        done = true;
        unsubscribe();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** True once the run waits for its reviewer (the `approve` wait step is waiting for its signal). */
export function awaitsReview(run: Run): boolean {
  return run.state === RunState.Waiting && run.steps['approve']?.status === 'waiting';
}

/** What a reviewer decides: the payload of the `review` signal. */
export interface ReviewDecision {
  readonly approved: boolean;
  readonly reason?: string;
}

/** The draft a run waits on, from its `write` step. */
export function draftOf(run: Run): { title: string; draft: string } | undefined {
  const answer = (run.context['draft'] as { answer?: { title?: unknown; draft?: unknown } } | undefined)
    ?.answer;
  return typeof answer?.title === 'string' && typeof answer.draft === 'string'
    ? { title: answer.title, draft: answer.draft }
    : undefined;
}

/**
 * Runs one question through the research workflow: start it, wait for the draft, let `review`
 * decide (a person, or the demo's scripted reviewer), send the decision as the `review` signal and
 * wait for the end. Resolves with the run once it is terminal (also when it ended before review).
 */
export async function researchOnce(
  orchestrator: Orchestrator,
  input: { question: string; failAnnouncement?: boolean },
  review: (run: Run) => ReviewDecision | Promise<ReviewDecision>,
): Promise<Run> {
  const { txId } = await orchestrator.startWorkflow('research_agents', input);
  const waiting = await waitForRun(orchestrator, txId, awaitsReview);
  if (isTerminalRunState(waiting.state)) return waiting;
  await orchestrator.signal(txId, 'review', await review(waiting));
  return orchestrator.waitForTerminal(txId);
}
