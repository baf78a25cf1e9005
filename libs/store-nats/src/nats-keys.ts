import { decodeTime, encodeTime, encodeToken } from './key-codec';

/** The KV buckets the NATS stores use, by role. */
export const BucketKind = {
  /** `r.<txId>` run records; `k.<idempotencyKey>` idempotency entries. */
  Runs: 'runs',
  /** `s.<state>.<workflowId>.<window>.<createdAt>.<txId>`: runs by state, workflow and time. */
  RunIndex: 'run-index',
  /** `h.<window>`: the time windows that hold runs (what listing and retention walk). */
  RunWindows: 'run-windows',
  /** `o.<txId>`: runs that may have outbox entries (a superset). */
  Outbox: 'outbox',
  /** `t.<timerId>`: timer records, the truth about each timer. */
  Timers: 'timers',
  /** `d.<slot>.<visibleAt>.<timerId>.<placement>`: timers by the time a claim may take them. */
  TimerDue: 'timer-due',
  /** `b.<slot>`: the slots that hold due entries. */
  TimerSlots: 'timer-slots',
  /** `v.<id>.<version>` stored definitions; `l.<id>` the latest version of each. */
  Definitions: 'definitions',
} as const;
/** One of {@link BucketKind}'s values. */
export type BucketKind = (typeof BucketKind)[keyof typeof BucketKind];

/** An index key of a run, taken apart. */
export interface RunIndexKey {
  readonly key: string;
  readonly stateToken: string;
  readonly workflowToken: string;
  /** Start of the time window the run was created in (ms). */
  readonly window: number;
  readonly createdAt: number;
  readonly txToken: string;
}

/** A timer's due entry, taken apart. */
export interface TimerDueKey {
  readonly key: string;
  readonly slot: number;
  readonly visibleAt: number;
  readonly idToken: string;
  readonly placement: string;
}

/**
 * The one place that names buckets and builds keys. Every string that comes from outside (txIds,
 * workflow ids, idempotency keys, timer ids) goes through {@link encodeToken}, every time through
 * {@link encodeTime}, so keys are valid KV keys and distinct inputs give distinct keys. Bucket
 * names are `<prefix>-<kind>`, so one prefix is one namespace.
 *
 * @example
 * const keys = new NatsKeys('multiagents');
 * keys.bucket(BucketKind.Runs); // 'multiagents-runs'
 * keys.run('3f0c…');            // 'r.3f0c…'
 */
export class NatsKeys {
  constructor(readonly prefix: string) {}

  /** The KV bucket name of a role. */
  bucket(kind: BucketKind): string {
    return `${this.prefix}-${kind}`;
  }

  /** A run's record. */
  run(txId: string): string {
    return `r.${encodeToken(txId)}`;
  }

  /** A run's record, from an already encoded txId (as found in an index key). */
  runByToken(txToken: string): string {
    return `r.${txToken}`;
  }

  /** An idempotency entry. */
  idempotency(key: string): string {
    return `k.${encodeToken(key)}`;
  }

  /** An index key of a run in a state. */
  runIndex(state: string, workflowId: string, createdAt: number, txId: string, windowMs: number): string {
    return [
      's',
      encodeToken(state),
      encodeToken(workflowId),
      encodeTime(windowStart(createdAt, windowMs)),
      encodeTime(createdAt),
      encodeToken(txId),
    ].join('.');
  }

  /** The filter for index keys of one window; absent state or workflow match any. */
  runIndexFilter(window: number, state?: string, workflowId?: string): string {
    const stateToken = state === undefined ? '*' : encodeToken(state);
    const workflowToken = workflowId === undefined ? '*' : encodeToken(workflowId);
    return `s.${stateToken}.${workflowToken}.${encodeTime(window)}.>`;
  }

  /** Takes an index key apart, or undefined when it is not one. */
  parseRunIndex(key: string): RunIndexKey | undefined {
    const parts = key.split('.');
    if (parts.length !== 6 || parts[0] !== 's') return undefined;
    const window = decodeTime(parts[3] as string);
    const createdAt = decodeTime(parts[4] as string);
    if (window === undefined || createdAt === undefined) return undefined;
    return {
      key,
      stateToken: parts[1] as string,
      workflowToken: parts[2] as string,
      window,
      createdAt,
      txToken: parts[5] as string,
    };
  }

  /** The directory entry of a time window (start, ms) that holds runs. */
  runWindow(window: number): string {
    return `h.${encodeTime(window)}`;
  }

  /** The window (start, ms) of a directory entry, or undefined. */
  parseRunWindow(key: string): number | undefined {
    return key.startsWith('h.') ? decodeTime(key.slice(2)) : undefined;
  }

  /** A run's pending-outbox marker. */
  outbox(txId: string): string {
    return `o.${encodeToken(txId)}`;
  }

  /** The encoded txId of a marker, or undefined. */
  parseOutbox(key: string): string | undefined {
    return key.startsWith('o.') && key.length > 2 ? key.slice(2) : undefined;
  }

  /** A timer's record. */
  timer(timerId: string): string {
    return `t.${encodeToken(timerId)}`;
  }

  /** A timer's record, from an already encoded id. */
  timerByToken(idToken: string): string {
    return `t.${idToken}`;
  }

  /** A due entry: the timer may be claimed from `visibleAt`; `placement` is unique per write. */
  timerDue(slot: number, visibleAt: number, timerId: string, placement: string): string {
    return `d.${encodeTime(slot)}.${encodeTime(visibleAt)}.${encodeToken(timerId)}.${placement}`;
  }

  /** The filter for the due entries of one slot. */
  timerDueFilter(slot: number): string {
    return `d.${encodeTime(slot)}.>`;
  }

  /** Takes a due entry apart, or undefined. */
  parseTimerDue(key: string): TimerDueKey | undefined {
    const parts = key.split('.');
    if (parts.length !== 5 || parts[0] !== 'd') return undefined;
    const slot = decodeTime(parts[1] as string);
    const visibleAt = decodeTime(parts[2] as string);
    if (slot === undefined || visibleAt === undefined) return undefined;
    return { key, slot, visibleAt, idToken: parts[3] as string, placement: parts[4] as string };
  }

  /** The directory entry of a slot (start, ms) that holds due entries. */
  timerSlot(slot: number): string {
    return `b.${encodeTime(slot)}`;
  }

  /** The slot (start, ms) of a directory entry, or undefined. */
  parseTimerSlot(key: string): number | undefined {
    return key.startsWith('b.') ? decodeTime(key.slice(2)) : undefined;
  }

  /** One stored version of a definition. */
  definition(id: string, version: number): string {
    return `v.${encodeToken(id)}.${encodeTime(version)}`;
  }

  /** The latest version of a definition (a copy of it). */
  latestDefinition(id: string): string {
    return `l.${encodeToken(id)}`;
  }
}

/** The start of the window of `width` ms that holds `time`. */
export function windowStart(time: number, width: number): number {
  return Math.floor(time / width) * width;
}
