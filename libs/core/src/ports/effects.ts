import type { Envelope } from '@multiagents/contracts';

/** What a timer means when it fires. */
export interface TimerPayload {
  readonly kind: 'retry' | 'timeout' | 'heartbeat' | 'sleep' | 'wait';
  readonly step: string;
  /** The attempt it belongs to: a timer of an older attempt is stale and ignored. */
  readonly attempt: number;
  readonly compensation?: boolean;
}

/** A durable timer. Ids are deterministic, so scheduling the same timer twice is harmless. */
export interface Timer {
  readonly id: string;
  readonly txId: string;
  readonly dueAt: number;
  readonly payload: TimerPayload;
}

/**
 * Something the engine wants done. Effects are written to the outbox in the same compare-and-set
 * as the state that caused them, then carried out; a crash in between carries them out again on
 * recovery, so every effect must be safe to repeat.
 */
export type Effect =
  | { readonly type: 'publish'; readonly topic: string; readonly envelope: Envelope }
  | { readonly type: 'schedule'; readonly timer: Timer }
  | { readonly type: 'unschedule'; readonly timerId: string };
