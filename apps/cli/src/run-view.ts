import {
  isTerminalRunState,
  RunState,
  StepStatus,
  type AttemptRecord,
  type CompensationRecord,
  type ErrorInfo,
  type Run,
  type StepRecord,
} from '@multiagents/contracts';
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
  if (undo.status === 'skipped') return `skipped by an operator (attempt ${undo.attempt} failed)`;
  return undo.attempt > 1 ? `${undo.status} (attempt ${undo.attempt})` : undo.status;
}

/** Steps whose failed undo an operator skipped: their effects were never undone. */
export function skippedUndos(run: Run): string[] {
  return Object.values(run.steps)
    .filter((step) => step.compensation?.status === 'skipped')
    .map((step) => step.name);
}

/** `compensated`, or `compensated (… skipped …)` when an operator gave up an undo. */
function stateText(run: Run): string {
  const skipped = skippedUndos(run);
  const notes = [
    ...(run.cancelRequested ? ['cancel requested'] : []),
    ...(skipped.length > 0
      ? [`not undone: an operator skipped the failed undo of ${skipped.join(', ')}`]
      : []),
  ];
  return notes.length === 0 ? run.state : `${run.state} (${notes.join('; ')})`;
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

function outcomeText(attempt: AttemptRecord): string {
  return attempt.outcome === 'timed_out' ? 'timed out' : (attempt.outcome ?? 'ended');
}

/**
 * Every attempt that failed or timed out, of the steps and of their undos, oldest first: what
 * `get` shows so an operator sees why each retry happened and why an undo failed.
 */
export function failedAttemptTable(run: Run): string[] {
  const failed: { label: string; attempt: AttemptRecord }[] = [];
  for (const step of Object.values(run.steps)) {
    for (const attempt of step.attempts) {
      if (attempt.outcome === 'failed' || attempt.outcome === 'timed_out')
        failed.push({ label: step.name, attempt });
    }
    for (const attempt of step.compensation?.attempts ?? []) {
      if (attempt.outcome === 'failed' || attempt.outcome === 'timed_out') {
        failed.push({ label: `undo ${step.name}`, attempt });
      }
    }
  }
  if (failed.length === 0) return [];
  failed.sort(
    (a, b) => (a.attempt.endedAt ?? a.attempt.startedAt) - (b.attempt.endedAt ?? b.attempt.startedAt),
  );
  return textTable(
    ['FAILED ATTEMPT', 'ATTEMPT', 'OUTCOME', 'ENDED', 'DURATION', 'ERROR'],
    failed.map(({ label, attempt }) => [
      label,
      String(attempt.attempt),
      outcomeText(attempt),
      `+${formatDuration((attempt.endedAt ?? attempt.startedAt) - run.createdAt)}`,
      stepDuration(attempt, attempt.startedAt),
      errorText(attempt.error) || '(no error recorded)',
    ]),
  );
}

/** What an agent step's output says it spent (see @multiagents/agents' AgentResult). */
interface AgentOutput {
  readonly answer: unknown;
  readonly model?: unknown;
  readonly toolCalls?: unknown;
  readonly truncated?: unknown;
  readonly usage: {
    readonly promptTokens: number;
    readonly completionTokens: number;
    readonly costUsd?: unknown;
    readonly modelCalls?: unknown;
  };
}

function agentOutput(output: unknown): AgentOutput | undefined {
  if (typeof output !== 'object' || output === null) return undefined;
  const o = output as Partial<AgentOutput>;
  return typeof o.usage?.promptTokens === 'number' && typeof o.usage.completionTokens === 'number'
    ? (o as AgentOutput)
    : undefined;
}

/**
 * A cost in US dollars, precise enough for a fraction of a cent. A step's output can have any
 * shape (a worker wrote it): anything but a finite number is shown as it is, never trusted.
 */
export function formatUsd(usd: unknown): string {
  if (usd === null || usd === undefined) return 'unpriced';
  return typeof usd === 'number' && Number.isFinite(usd) ? `$${usd.toFixed(6)}` : String(JSON.stringify(usd));
}

/** Longest answer shown in the agent step table (the whole one is in the context). */
const MAX_ANSWER_CHARS = 80;

/**
 * The agent steps of a run: model, tokens, model and tool calls, cost and the start of the answer,
 * for `get` (an operator deciding on an approval reads the answer here).
 */
export function agentStepTable(run: Run): string[] {
  const rows: string[][] = [];
  for (const step of Object.values(run.steps)) {
    const out = agentOutput(step.output);
    if (out === undefined) continue;
    const answer = JSON.stringify(out.answer) ?? '';
    rows.push([
      step.name,
      typeof out.model === 'string' ? out.model : '',
      `${out.usage.promptTokens}+${out.usage.completionTokens}`,
      typeof out.usage.modelCalls === 'number' ? String(out.usage.modelCalls) : '',
      String(Array.isArray(out.toolCalls) ? out.toolCalls.length : 0),
      formatUsd(out.usage.costUsd),
      (answer.length > MAX_ANSWER_CHARS ? `${answer.slice(0, MAX_ANSWER_CHARS - 1)}…` : answer) +
        (out.truncated === true ? ' (truncated)' : ''),
    ]);
  }
  if (rows.length === 0) return [];
  return textTable(['AGENT STEP', 'MODEL', 'TOKENS', 'CALLS', 'TOOLS', 'COST', 'ANSWER'], rows);
}

/** One line about the whole run: id, workflow, state and how long it has taken. */
export function runHeadline(run: Run, now: number): string {
  const elapsed = (run.endedAt ?? (isTerminalRunState(run.state) ? run.updatedAt : now)) - run.createdAt;
  return `run ${run.txId}  ${run.workflowId} v${run.workflowVersion}  ${stateText(run)}  ${formatDuration(elapsed)}`;
}

/** `multiagents get`: every field an operator looks at, the steps, every failed attempt, the context. */
export function describeRun(run: Run, now: number): string[] {
  const fields: [string, string][] = [
    ['run', run.txId],
    ['workflow', `${run.workflowId} v${run.workflowVersion}`],
    ['state', stateText(run)],
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
  if (run.usage !== undefined) {
    const u = run.usage;
    fields.push([
      'tokens',
      `${u.totalTokens} (${u.promptTokens} prompt + ${u.completionTokens} completion) over ${u.attempts} agent attempt${u.attempts === 1 ? '' : 's'}`,
    ]);
    fields.push(['cost', formatUsd(u.costUsd)]);
  }
  const waitingSteps = Object.values(run.steps).filter(
    (step) => step.status === StepStatus.Waiting && step.attempts.length === 0,
  );
  if (run.state === RunState.Waiting && waitingSteps.length > 0) {
    fields.push(['waiting at', waitingSteps.map((step) => step.name).join(', ')]);
  }
  const waiting = Object.entries(run.signals).filter(([, payloads]) => payloads.length > 0);
  if (waiting.length > 0) {
    fields.push(['early signals', waiting.map(([name, p]) => `${name} (${p.length})`).join(', ')]);
  }
  const width = Math.max(...fields.map(([label]) => label.length));
  const failures = failedAttemptTable(run);
  const agents = agentStepTable(run);
  return [
    ...fields.map(([label, value]) => `${label.padEnd(width)}  ${value}`),
    '',
    ...stepTable(run, now),
    ...(agents.length > 0 ? ['', ...agents] : []),
    ...(failures.length > 0 ? ['', ...failures] : []),
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
 * Where a line sorts among lines of the same millisecond: the run's steps and their attempts
 * come before the run turns to unwinding, which comes before the undos it starts; a terminal
 * state is the run's last word.
 */
const Phase = { Steps: 0, Unwinding: 1, Undos: 2, End: 3 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/**
 * Among same-millisecond lines of one phase: what ended (it caused what follows), then the run's
 * state, then what started, unless one subject's own order says otherwise (an attempt that
 * started and failed in the same millisecond).
 */
const Rank = { Ended: 0, Run: 1, Started: 2 } as const;
type Rank = (typeof Rank)[keyof typeof Rank];

/** One line of `watch`'s log output and when it happened. */
interface Happening {
  at: number;
  readonly phase: Phase;
  readonly rank: Rank;
  /** Among same-rank lines: completion order for steps, undo order for undos. */
  readonly seq: number;
  /** The step or undo it is about: its lines keep the order they were found in. */
  readonly subject: string;
  readonly text: string;
}

type Add = (at: number, rank: Rank, text: string) => Happening;

/**
 * The attempts of a step or of its undo that began or ended since `old`: one line as each attempt
 * starts, one as it ends. A failed attempt reads `failed` when it was the last (`final`), else
 * `retrying`.
 */
function attemptHappenings(
  label: string,
  attempts: readonly AttemptRecord[],
  oldAttempts: readonly AttemptRecord[] | undefined,
  final: { attempt: number; failed: boolean },
  add: Add,
): void {
  for (const attempt of attempts) {
    const old = oldAttempts?.find((a) => a.attempt === attempt.attempt);
    if (old === undefined)
      add(attempt.startedAt, Rank.Started, `${label} running (attempt ${attempt.attempt})`);
    if (attempt.endedAt === undefined || old?.endedAt !== undefined) continue;
    const duration = formatDuration(attempt.endedAt - attempt.startedAt);
    if (attempt.outcome === 'completed') {
      add(attempt.endedAt, Rank.Ended, `${label} completed (attempt ${attempt.attempt}, ${duration})`);
      continue;
    }
    const why = [attempt.outcome === 'timed_out' ? 'timed out' : '', duration, errorText(attempt.error)]
      .filter((part) => part !== '')
      .join(', ');
    const last = final.failed && attempt.attempt === final.attempt;
    add(
      attempt.endedAt,
      Rank.Ended,
      last
        ? `${label} failed (attempt ${attempt.attempt}, ${why})`
        : `${label} retrying (attempt ${attempt.attempt} failed, ${why})`,
    );
  }
}

/** Statuses a task step's attempt and undo lines already tell. */
const TOLD_BY_ATTEMPTS: ReadonlySet<StepStatus> = new Set<StepStatus>([
  StepStatus.Running,
  StepStatus.Retrying,
  StepStatus.Completed,
  StepStatus.Failed,
  StepStatus.Compensating,
  StepStatus.Compensated,
  StepStatus.CompensationFailed,
]);

function stepHappenings(step: StepRecord, old: StepRecord | undefined, run: Run, add: Add): void {
  const hasAttempts = step.attempts.length > 0;
  if (hasAttempts) {
    attemptHappenings(
      step.name,
      step.attempts,
      old?.attempts,
      { attempt: step.attempt, failed: step.status === StepStatus.Failed },
      add,
    );
  }
  const moved = old === undefined ? step.status !== StepStatus.Pending : old.status !== step.status;
  if (!moved || (hasAttempts && TOLD_BY_ATTEMPTS.has(step.status))) return;
  // A step without attempts (wait, sleep, parallel, or skipped before it ran): its status line.
  const started = step.status === StepStatus.Running || step.status === StepStatus.Waiting;
  const at = (started ? step.startedAt : step.endedAt) ?? run.updatedAt;
  const details = [
    step.attempt > 0 && !hasAttempts ? `attempt ${step.attempt}` : '',
    step.endedAt !== undefined ? stepDuration(step, step.endedAt) : '',
    errorText(step.error),
  ].filter((d) => d !== '');
  add(
    at,
    started || step.status === StepStatus.Pending ? Rank.Started : Rank.Ended,
    `${step.name} ${step.status}${details.length > 0 ? ` (${details.join(', ')})` : ''}`,
  );
}

/** The undo's lines; returns the line of an operator's skip, whose time the caller settles. */
function undoHappenings(
  step: StepRecord,
  undo: CompensationRecord,
  old: CompensationRecord | undefined,
  add: Add,
): Happening | undefined {
  const label = `undo ${step.name}`;
  if (undo.attempts.length > 0) {
    attemptHappenings(
      label,
      undo.attempts,
      old?.attempts,
      { attempt: undo.attempt, failed: undo.status === 'failed' || undo.status === 'skipped' },
      add,
    );
  } else if (old?.status !== undo.status || old.attempt !== undo.attempt) {
    add(undo.endedAt ?? undo.startedAt, Rank.Ended, `${label} ${undo.status} (attempt ${undo.attempt})`);
  }
  if (undo.status !== 'skipped' || old?.status === 'skipped') return undefined;
  const failedAt = undo.attempts.at(-1)?.endedAt ?? undo.endedAt ?? undo.startedAt;
  return add(failedAt, Rank.Ended, `${label} skipped by an operator: ${step.name} was not undone`);
}

/**
 * Sorts by time and phase; within one millisecond and phase it takes, of the lines whose subject
 * has no earlier line left, the one that ended before the one that started.
 */
function inOrder(happenings: Happening[]): Happening[] {
  const byTime = happenings
    .map((happening, index) => ({ happening, index }))
    .sort(
      (a, b) => a.happening.at - b.happening.at || a.happening.phase - b.happening.phase || a.index - b.index,
    )
    .map(({ happening }) => happening);
  const sorted: Happening[] = [];
  for (let start = 0; start < byTime.length;) {
    const first = byTime[start] as Happening;
    let end = start;
    while (end < byTime.length && byTime[end]?.at === first.at && byTime[end]?.phase === first.phase) end++;
    const group = byTime.slice(start, end);
    while (group.length > 0) {
      // Only the first remaining line of each subject may go next.
      const heads = group.filter((h, i) => group.findIndex((other) => other.subject === h.subject) === i);
      const next = heads.reduce((best, h) =>
        h.rank < best.rank || (h.rank === best.rank && h.seq < best.seq) ? h : best,
      );
      sorted.push(next);
      group.splice(group.indexOf(next), 1);
    }
    start = end;
  }
  return sorted;
}

/**
 * What happened between `before` and `after`, one line each in the order it happened, for `watch`
 * when the output is not a terminal (a log, a pipe): every step attempt and undo attempt that
 * began or ended, every other step status change, and the run's state, each at its own time. A
 * change that arrives late (the watch began after the run moved, or several transitions came in
 * one update) still reads in order, and the run's end comes last.
 */
export function describeChanges(before: Run | undefined, after: Run): string[] {
  const happenings: Happening[] = [];
  const adder =
    (subject: string, phase: Phase, seq: number): Add =>
    (at, rank, text) => {
      const happening: Happening = { at, phase, rank, seq, subject, text };
      happenings.push(happening);
      return happening;
    };
  const steps = Object.values(after.steps);
  const skips: Happening[] = [];
  steps.forEach((step, index) => {
    const old = before?.steps[step.name];
    // Same-time steps in the order they completed, else in definition order.
    stepHappenings(
      step,
      old,
      after,
      adder(step.name, Phase.Steps, step.completedSeq ?? steps.length + index),
    );
    if (step.compensation !== undefined) {
      // Undos run newest completion first.
      const add = adder(`undo ${step.name}`, Phase.Undos, -(step.completedSeq ?? 0));
      const skip = undoHappenings(step, step.compensation, old?.compensation, add);
      if (skip !== undefined) skips.push(skip);
    }
  });
  const undoStarts = happenings.filter((h) => h.phase === Phase.Undos && h.rank === Rank.Started);
  for (const skip of skips) {
    // The record keeps no time for an operator's skip: it came after the failure it gave up on,
    // and before the undos it let start (or, with none left, when the run ended).
    const later = undoStarts.filter((h) => h.subject !== skip.subject && h.at >= skip.at).map((h) => h.at);
    skip.at = later.length > 0 ? Math.min(...later) : (after.endedAt ?? after.updatedAt);
  }

  const lines: string[] = [];
  const line = (at: number, text: string): string =>
    `+${formatDuration(at - after.createdAt).padStart(8)}  ${text}`;
  let shownState: RunState | undefined = before?.state;
  if (before === undefined) {
    // The first line names the run; a later state comes at the time it was reached, below.
    shownState =
      after.startedAt !== undefined || after.state !== RunState.Pending ? RunState.Running : after.state;
    lines.push(
      line(after.createdAt, `run ${after.txId} ${after.workflowId} v${after.workflowVersion} ${shownState}`),
    );
  }
  if (shownState !== after.state) {
    // Why, when the run fails or ends for a reason it did not have before.
    const newError = errorText(after.error) !== errorText(before?.error);
    const why =
      after.error && (newError || isTerminalRunState(after.state)) ? ` — ${errorText(after.error)}` : '';
    const skipped = skippedUndos(after).filter(
      (name) => before?.steps[name]?.compensation?.status !== 'skipped',
    );
    const note = skipped.length > 0 ? ` (not undone: ${skipped.join(', ')})` : '';
    const text = `run ${after.state}${why}${note}`;
    if (isTerminalRunState(after.state)) {
      adder('run', Phase.End, 0)(after.endedAt ?? after.updatedAt, Rank.Run, text);
    } else if (after.state === RunState.Compensating || after.state === RunState.Cancelling) {
      // Unwinding began before the first undo that this update shows starting.
      const at = Math.min(after.updatedAt, ...undoStarts.map((h) => h.at));
      adder('run', Phase.Unwinding, 0)(at, Rank.Run, text);
    } else {
      adder('run', Phase.Steps, 0)(after.updatedAt, Rank.Run, text);
    }
  }
  return [...lines, ...inOrder(happenings).map((h) => line(h.at, h.text))];
}
