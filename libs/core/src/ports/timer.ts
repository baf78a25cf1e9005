/** What a timer means when it fires. */
export interface TimerPayload {
  /** `start`: the attempt's schedule-to-start deadline (no worker took the command in time). */
  readonly kind: 'retry' | 'timeout' | 'heartbeat' | 'start' | 'sleep' | 'wait';
  readonly step: string;
  /** The attempt it belongs to: a timer of an older attempt is stale and ignored. */
  readonly attempt: number;
  readonly compensation?: boolean;
}

/** A durable timer. Ids are deterministic, so scheduling the same timer twice replaces it. */
export interface Timer {
  readonly id: string;
  readonly txId: string;
  readonly dueAt: number;
  readonly payload: TimerPayload;
}

const TIMER_KINDS: ReadonlySet<string> = new Set(['retry', 'timeout', 'heartbeat', 'start', 'sleep', 'wait']);

/**
 * `<txId>:<kind>:<step>:<attempt>` (`:undo` appended for a compensation's timer). Neither txIds nor
 * step names contain `:`, so the id alone says what the timer is (see {@link parseTimerId}): a
 * store keeps the id and the due time, nothing else.
 */
export function timerIdFor(txId: string, payload: TimerPayload): string {
  return `${txId}:${payload.kind}:${payload.step}:${payload.attempt}${payload.compensation ? ':undo' : ''}`;
}

/** The timer an id names, given its due time; undefined when the id is not one {@link timerIdFor} makes. */
export function parseTimerId(id: string, dueAt: number): Timer | undefined {
  const parts = id.split(':');
  if (parts.length !== 4 && !(parts.length === 5 && parts[4] === 'undo')) return undefined;
  const [txId, kind, step, attemptText] = parts as [string, string, string, string];
  const attempt = Number(attemptText);
  if (!txId || !step || !TIMER_KINDS.has(kind) || !Number.isSafeInteger(attempt) || attempt < 0) {
    return undefined;
  }
  const payload: TimerPayload = {
    kind: kind as TimerPayload['kind'],
    step,
    attempt,
    ...(parts.length === 5 ? { compensation: true } : {}),
  };
  return { id, txId, dueAt, payload };
}
