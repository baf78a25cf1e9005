import { isTerminalRunState, type ErrorInfo, type Run, type StepRecord } from '@multiagents/contracts';
import { formatDuration, formatTime, textTable } from './text-table';

function errorText(error: ErrorInfo | undefined): string {
  return error === undefined ? '' : `${error.code}: ${error.message}`;
}

function stepDuration(step: { startedAt?: number; endedAt?: number }, now: number): string {
  if (step.startedAt === undefined) return '';
  return formatDuration((step.endedAt ?? now) - step.startedAt);
}

function undoText(step: StepRecord): string {
  const undo = step.compensation;
  if (undo === undefined) return '';
  return undo.attempt > 1 ? `${undo.status} (attempt ${undo.attempt})` : undo.status;
}

/** The steps of a run as table lines: status, attempt, duration, compensation, error. */
export function stepTable(run: Run, now: number): string[] {
  const rows = Object.values(run.steps).map((step) => [
    step.name,
    step.status,
    step.attempt === 0 ? '' : String(step.attempt),
    stepDuration(step, now),
    undoText(step),
    errorText(step.error),
  ]);
  return textTable(['STEP', 'STATUS', 'ATTEMPT', 'DURATION', 'UNDO', 'ERROR'], rows);
}

/** One line about the whole run: id, workflow, state and how long it has taken. */
export function runHeadline(run: Run, now: number): string {
  const elapsed = (run.endedAt ?? (isTerminalRunState(run.state) ? run.updatedAt : now)) - run.createdAt;
  return `run ${run.txId}  ${run.workflowId} v${run.workflowVersion}  ${run.state}  ${formatDuration(elapsed)}`;
}

/** `multiagents get`: every field an operator looks at, then the steps, then the context. */
export function describeRun(run: Run, now: number): string[] {
  const fields: [string, string][] = [
    ['run', run.txId],
    ['workflow', `${run.workflowId} v${run.workflowVersion}`],
    ['state', run.state + (run.cancelRequested ? ' (cancel requested)' : '')],
    ['created', formatTime(run.createdAt)],
  ];
  if (run.endedAt !== undefined) {
    fields.push(['ended', `${formatTime(run.endedAt)} (${formatDuration(run.endedAt - run.createdAt)})`]);
  }
  if (run.idempotencyKey !== undefined) fields.push(['idempotency key', run.idempotencyKey]);
  if (run.error !== undefined) fields.push(['error', errorText(run.error)]);
  if (run.compensationQueue !== undefined && run.compensationQueue.length > 0) {
    fields.push(['left to undo', run.compensationQueue.join(', ')]);
  }
  const waiting = Object.entries(run.signals).filter(([, payloads]) => payloads.length > 0);
  if (waiting.length > 0) {
    fields.push(['early signals', waiting.map(([name, p]) => `${name} (${p.length})`).join(', ')]);
  }
  const width = Math.max(...fields.map(([label]) => label.length));
  return [
    ...fields.map(([label, value]) => `${label.padEnd(width)}  ${value}`),
    '',
    ...stepTable(run, now),
    '',
    `${'input'.padEnd(width)}  ${JSON.stringify(run.input)}`,
    `${'context'.padEnd(width)}  ${JSON.stringify(run.context)}`,
  ];
}

/** `multiagents list`: one line per run. */
export function runListTable(runs: readonly Run[], now: number): string[] {
  return textTable(
    ['TX ID', 'WORKFLOW', 'STATE', 'CREATED', 'DURATION'],
    runs.map((run) => [
      run.txId,
      `${run.workflowId} v${run.workflowVersion}`,
      run.state,
      formatTime(run.createdAt),
      formatDuration((run.endedAt ?? now) - run.createdAt),
    ]),
  );
}

/**
 * What changed from `before` to `after`, one line each, for `watch` when the output is not a
 * terminal (a log, a pipe): the run's state and every step whose status, attempt or undo moved.
 */
export function describeChanges(before: Run | undefined, after: Run): string[] {
  const at = `+${formatDuration(after.updatedAt - after.createdAt).padStart(8)}`;
  const lines: string[] = [];
  if (before === undefined) {
    const why = after.error ? ` — ${errorText(after.error)}` : '';
    lines.push(`${at}  run ${after.txId} ${after.workflowId} v${after.workflowVersion} ${after.state}${why}`);
  } else if (before.state !== after.state) {
    lines.push(
      `${at}  run ${after.state}${after.error && !before.error ? ` — ${errorText(after.error)}` : ''}`,
    );
  }
  for (const step of Object.values(after.steps)) {
    const old = before?.steps[step.name];
    if (step.status === 'pending' && old === undefined) continue;
    if (old === undefined || old.status !== step.status || old.attempt !== step.attempt) {
      const details = [
        step.attempt > 0 ? `attempt ${step.attempt}` : '',
        step.endedAt !== undefined ? stepDuration(step, after.updatedAt) : '',
        errorText(step.error),
      ].filter((d) => d !== '');
      lines.push(`${at}  ${step.name} ${step.status}${details.length > 0 ? ` (${details.join(', ')})` : ''}`);
    }
    const undo = step.compensation;
    if (
      undo !== undefined &&
      (old?.compensation?.status !== undo.status || old.compensation.attempt !== undo.attempt)
    ) {
      lines.push(`${at}  undo ${step.name} ${undo.status} (attempt ${undo.attempt})`);
    }
  }
  return lines;
}
