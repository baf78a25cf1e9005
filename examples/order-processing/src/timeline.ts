import type { AttemptRecord, Run } from '@multiagents/contracts';

function ms(attempt: { startedAt: number; endedAt?: number }): string {
  return attempt.endedAt === undefined ? 'running' : `${attempt.endedAt - attempt.startedAt} ms`;
}

function attemptLine(attempt: AttemptRecord): string {
  const outcome = attempt.outcome ?? 'running';
  const error = attempt.error ? ` — ${attempt.error.code}: ${attempt.error.message}` : '';
  return `attempt ${attempt.attempt}  ${outcome.padEnd(9)} ${ms(attempt).padStart(8)}${error}`;
}

/**
 * A run's step-by-step timeline as text lines: each step's attempts in the order they started,
 * then the compensations in the order they ran.
 */
export function formatTimeline(run: Run): string[] {
  const t0 = run.startedAt ?? run.createdAt;
  const at = (time: number): string => `+${String(time - t0).padStart(5)} ms`;
  const lines = [`run ${run.txId}  ${run.workflowId} v${run.workflowVersion}  → ${run.state}`];
  const steps = Object.values(run.steps)
    .filter((s) => s.startedAt !== undefined || s.status === 'skipped')
    .sort(
      (a, b) =>
        (a.startedAt ?? a.endedAt ?? 0) - (b.startedAt ?? b.endedAt ?? 0) ||
        (a.completedSeq ?? Number.MAX_SAFE_INTEGER) - (b.completedSeq ?? Number.MAX_SAFE_INTEGER),
    );
  for (const step of steps) {
    if (step.attempts.length === 0) {
      lines.push(`  ${at(step.startedAt ?? step.endedAt ?? t0)}  ${step.name.padEnd(20)} ${step.status}`);
      continue;
    }
    for (const attempt of step.attempts) {
      lines.push(`  ${at(attempt.startedAt)}  ${step.name.padEnd(20)} ${attemptLine(attempt)}`);
    }
  }
  const undone = Object.values(run.steps)
    .filter((s) => s.compensation)
    // Same-millisecond starts are common: the engine undoes newest completion first, so that breaks ties.
    .sort(
      (a, b) =>
        (a.compensation?.startedAt ?? 0) - (b.compensation?.startedAt ?? 0) ||
        (b.completedSeq ?? 0) - (a.completedSeq ?? 0),
    );
  if (undone.length > 0) lines.push('  compensations, in the order they ran:');
  undone.forEach((step, i) => {
    for (const attempt of step.compensation?.attempts ?? []) {
      lines.push(
        `  ${at(attempt.startedAt)}  ${i + 1}. undo ${step.name.padEnd(15)} ${attemptLine(attempt)}`,
      );
    }
  });
  return lines;
}
