/**
 * Bulk actions of the dashboard: cancel, or retry what failed in, the runs a filter selects.
 *
 * Two requests, like every destructive action here: a GET shows how many runs the action would
 * touch (nothing changes), and the confirmation POSTs the filter back with the moment it was
 * counted and the count. The POST selects again, only among runs created up to that moment, and
 * acts on at most the confirmed number: a run started after the user confirmed is never touched,
 * and a run that ended meanwhile is reported as skipped, not as an error.
 */
import { ErrorCode, isTerminalRunState, RunState, StepStatus, type Run } from '@multiagents/contracts';
import type { RunFilter, RunStore } from '@multiagents/core';
import type { EventMonitor } from '@multiagents/monitor';
import type { DashboardActions } from './dashboard-actions';
import { DERIVED_FILTERS, type RunsQuery } from './views';

export const BULK_ACTIONS = ['cancel', 'retry'] as const;
export type BulkAction = (typeof BULK_ACTIONS)[number];

export function isBulkAction(value: string): value is BulkAction {
  return (BULK_ACTIONS as readonly string[]).includes(value);
}

/** The most runs one bulk action touches; the confirmation says when the filter selects more. */
export const MAX_BULK_RUNS = 10_000;
/** Calls to the orchestrator in flight at once during a bulk action. */
const BULK_CONCURRENCY = 16;
const SCAN_PAGE = 500;

/** Whether the action applies to the run as it is now. */
export function bulkApplies(action: BulkAction, run: Run): boolean {
  if (action === 'cancel') return !isTerminalRunState(run.state) && run.state !== RunState.Cancelling;
  return run.state === RunState.Failed || run.state === RunState.CompensationFailed;
}

/** What a bulk action did, run by run. */
export interface BulkResult {
  readonly action: BulkAction;
  /** Runs the orchestrator accepted the action for. */
  readonly done: number;
  /** Runs that no longer allowed it when their turn came (ended, or retried by someone else). */
  readonly skipped: number;
  /** Runs the orchestrator refused for another reason, with the first few reasons. */
  readonly refused: number;
  readonly reasons: readonly string[];
}

export interface BulkSelection {
  /** The runs the action applies to, newest first, at most the limit asked for. */
  readonly runs: readonly Run[];
  /** True when more runs matched than the limit. */
  readonly truncated: boolean;
}

type SelectDeps = {
  readonly runs: Pick<RunStore, 'list' | 'get'>;
  readonly monitor: Pick<EventMonitor, 'listStuckRuns' | 'listRetryingRuns'>;
};

function dayStart(day: string): number {
  return Date.parse(`${day}T00:00:00Z`);
}

function dayEnd(day: string): number {
  return Date.parse(`${day}T23:59:59.999Z`);
}

function inQuery(run: Run, query: RunsQuery, until: number): boolean {
  if (run.createdAt > until) return false;
  // A derived state (stuck, retrying) was checked by the watchdog's list the run came from.
  if (query.state !== undefined && !DERIVED_FILTERS.includes(query.state) && run.state !== query.state)
    return false;
  if (query.workflowId !== undefined && run.workflowId !== query.workflowId) return false;
  if (query.from !== undefined && run.createdAt < dayStart(query.from)) return false;
  if (query.to !== undefined && run.createdAt > dayEnd(query.to)) return false;
  return true;
}

/**
 * The runs the filter selects that were created by `until` and that the action applies to now,
 * newest first, at most `limit` of them.
 */
export async function selectForBulk(
  deps: SelectDeps,
  action: BulkAction,
  query: RunsQuery,
  until: number,
  limit: number,
): Promise<BulkSelection> {
  const picked: Run[] = [];
  const take = (run: Run | undefined): boolean => {
    if (run === undefined || !inQuery(run, query, until) || !bulkApplies(action, run)) return true;
    if (picked.length === limit) return false;
    picked.push(run);
    return true;
  };
  // One run, or the monitor's derived lists (the store has no index of those): look each one up.
  let ids: readonly string[] | undefined;
  if (query.txId !== undefined) ids = [query.txId];
  else if (query.state !== undefined && DERIVED_FILTERS.includes(query.state)) {
    const only = query.workflowId === undefined ? {} : { workflowId: query.workflowId };
    ids = (
      query.state === 'stuck'
        ? await deps.monitor.listStuckRuns(only)
        : await deps.monitor.listRetryingRuns(only)
    ).map((r) => r.txId);
  }
  if (ids !== undefined) {
    for (const txId of ids) {
      if (!take((await deps.runs.get(txId))?.run)) return { runs: picked, truncated: true };
    }
    return { runs: picked, truncated: false };
  }
  const filter: { -readonly [K in keyof RunFilter]: RunFilter[K] } = {
    createdBefore: query.to === undefined ? until : Math.min(until, dayEnd(query.to)),
  };
  if (query.state !== undefined) filter.state = query.state as RunState;
  if (query.workflowId !== undefined) filter.workflowId = query.workflowId;
  if (query.from !== undefined) filter.createdAfter = dayStart(query.from);
  let cursor: string | undefined;
  do {
    const page = await deps.runs.list(filter, SCAN_PAGE, cursor);
    for (const run of page.runs) if (!take(run)) return { runs: picked, truncated: true };
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return { runs: picked, truncated: false };
}

/** One run's share of a bulk action: what failed is retried (a failed compensation resumed). */
async function actOn(actions: DashboardActions, action: BulkAction, run: Run): Promise<void> {
  if (action === 'cancel') {
    await actions.cancelWorkflow(run.txId, 'cancelled in bulk from the dashboard');
    return;
  }
  if (run.state === RunState.CompensationFailed) {
    await actions.resumeCompensation(run.txId);
    return;
  }
  for (const step of Object.values(run.steps)) {
    if (step.status === StepStatus.Failed) await actions.retryStep(run.txId, step.name);
  }
}

/** Carries the action out on each run, a few at a time, and counts what happened. */
export async function runBulk(
  actions: DashboardActions,
  action: BulkAction,
  runs: readonly Run[],
): Promise<BulkResult> {
  let done = 0;
  let skipped = 0;
  let refused = 0;
  const reasons: string[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < runs.length) {
      const run = runs[next++] as Run;
      try {
        await actOn(actions, action, run);
        done++;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code === ErrorCode.FailedPrecondition || code === ErrorCode.NotFound) skipped++;
        else {
          refused++;
          if (reasons.length < 5)
            reasons.push(`${run.txId}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(BULK_CONCURRENCY, runs.length) }, lane));
  return { action, done, skipped, refused, reasons };
}
