import type { AttemptRecord, Run, StepRecord } from '@multiagents/contracts';

/** Usage an agent step's output reports (absent on other steps). */
interface ReportedUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly costUsd: number | null;
  readonly modelCalls: number;
}

function usageOf(step: StepRecord): ReportedUsage | undefined {
  const usage = (step.output as { usage?: ReportedUsage } | undefined)?.usage;
  return typeof usage?.promptTokens === 'number' ? usage : undefined;
}

function duration(attempt: { startedAt: number; endedAt?: number }): string {
  return attempt.endedAt === undefined ? 'running' : `${attempt.endedAt - attempt.startedAt} ms`;
}

/** `$0.000123` with enough digits to see a fraction of a cent. */
export function formatUsd(usd: number | null | undefined): string {
  return usd === null || usd === undefined ? 'unpriced' : `$${usd.toFixed(6)}`;
}

function attemptLine(step: StepRecord, attempt: AttemptRecord, last: boolean): string {
  const outcome = (attempt.outcome ?? 'running').padEnd(9);
  const error = attempt.error ? ` — ${attempt.error.code}: ${attempt.error.message}` : '';
  const usage = last ? usageOf(step) : undefined;
  const tokens = usage
    ? `  ${usage.promptTokens}+${usage.completionTokens} tokens, ${usage.modelCalls} model call${usage.modelCalls === 1 ? '' : 's'}`
    : '';
  return `attempt ${attempt.attempt}  ${outcome} ${duration(attempt).padStart(8)}${tokens}${error}`;
}

/**
 * A run's timeline as text: each step's attempts in the order they started (agent steps with their
 * tokens and model calls), the compensations in the order they ran, then the run's token totals.
 */
export function formatResearchTimeline(run: Run): string[] {
  const t0 = run.startedAt ?? run.createdAt;
  const at = (time: number): string => `+${String(time - t0).padStart(5)} ms`;
  const lines = [`run ${run.txId}  ${run.workflowId} v${run.workflowVersion}  → ${run.state}`];
  const steps = Object.values(run.steps)
    .filter((s) => s.startedAt !== undefined || s.status === 'skipped')
    .sort(
      (a, b) =>
        (a.startedAt ?? a.endedAt ?? 0) - (b.startedAt ?? b.endedAt ?? 0) ||
        (a.completedSeq ?? Number.MAX_SAFE_INTEGER) - (b.completedSeq ?? Number.MAX_SAFE_INTEGER) ||
        a.name.localeCompare(b.name),
    );
  for (const step of steps) {
    if (step.attempts.length === 0) {
      const when = step.startedAt ?? step.endedAt ?? t0;
      const waited = step.endedAt !== undefined && step.startedAt !== undefined;
      lines.push(
        `  ${at(when)}  ${step.name.padEnd(14)} ${step.status}${waited ? ` after ${step.endedAt! - step.startedAt!} ms` : ''}`,
      );
      continue;
    }
    step.attempts.forEach((attempt, i) => {
      lines.push(
        `  ${at(attempt.startedAt)}  ${step.name.padEnd(14)} ${attemptLine(step, attempt, i === step.attempts.length - 1)}`,
      );
    });
  }
  const undone = Object.values(run.steps)
    .filter((s) => s.compensation)
    .sort(
      (a, b) =>
        (a.compensation?.startedAt ?? 0) - (b.compensation?.startedAt ?? 0) ||
        (b.completedSeq ?? 0) - (a.completedSeq ?? 0),
    );
  if (undone.length > 0) lines.push('  compensations, in the order they ran:');
  undone.forEach((step, i) => {
    for (const attempt of step.compensation?.attempts ?? []) {
      lines.push(
        `  ${at(attempt.startedAt)}  ${i + 1}. undo ${step.name.padEnd(9)} attempt ${attempt.attempt}  ${(attempt.outcome ?? 'running').padEnd(9)} ${duration(attempt).padStart(8)}`,
      );
    }
  });
  const usage = run.usage;
  lines.push(
    usage
      ? `  tokens: ${usage.promptTokens} prompt + ${usage.completionTokens} completion = ${usage.totalTokens} ` +
          `over ${usage.attempts} agent attempts; cost ${formatUsd(usage.costUsd)}`
      : '  tokens: none (no agent step reported usage)',
  );
  return lines;
}
