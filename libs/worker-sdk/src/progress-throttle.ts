import type { Clock, Logger } from '@multiagents/core';
import { toJsonValue } from './to-json-value';

/** What a handler reports through `ctx.progress()`; every field is optional. */
export interface ProgressUpdate {
  /**
   * Text appended to named output fields (an agent's token deltas). Reports that pile up between
   * two publications are concatenated per field, so no text is lost by coalescing.
   */
  readonly deltas?: Readonly<Record<string, string>>;
  /** A free-form status (JSON data); coalescing keeps the latest. */
  readonly status?: unknown;
}

/** What one `step.progress` carries, before the WorkerManager adds the command id. */
export interface ProgressReport {
  readonly seq: number;
  readonly deltas?: Readonly<Record<string, string>>;
  readonly status?: unknown;
  readonly droppedChars?: number;
}

/** Where an attempt's coalesced progress goes: the WorkerManager publishes a `step.progress`. */
export interface ProgressSink {
  publish(report: ProgressReport): Promise<void>;
}

/** Schedules one callback; returns a function that cancels it. Injected so tests drive time by hand. */
export type ScheduleFn = (callback: () => void, delayMs: number) => () => void;

/** Default of the progress publication rate: at most this many `step.progress` per attempt per second. */
export const DEFAULT_PROGRESS_MAX_PER_SECOND = 10;

/**
 * Most delta text held for one publication. A bus slower than the model would otherwise let it
 * grow without bound; text past it is dropped and counted in `droppedChars`.
 */
export const MAX_PENDING_PROGRESS_CHARS = 64 * 1024;

/** Options of {@link ProgressThrottle}. */
export interface ProgressThrottleOptions {
  readonly sink: ProgressSink;
  /** At most this many publications per second; must be above zero. */
  readonly maxPerSecond: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Default: `setTimeout`, unref'd (progress never keeps a process alive). */
  readonly schedule?: ScheduleFn;
  /** Default {@link MAX_PENDING_PROGRESS_CHARS}. */
  readonly maxPendingChars?: number;
}

const realSchedule: ScheduleFn = (callback, delayMs) => {
  const timer = setTimeout(callback, delayMs);
  timer.unref();
  return () => clearTimeout(timer);
};

/**
 * Coalesces one attempt's progress reports and hands them to a sink at a bounded rate: two
 * publications start at least `1000 / maxPerSecond` ms apart (so at most `maxPerSecond` in any
 * second), and at most one is in flight. `offer()` never waits and never throws: progress is best
 * effort and must not slow the attempt down or fail it.
 */
export class ProgressThrottle {
  private readonly sink: ProgressSink;
  private readonly intervalMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly schedule: ScheduleFn;
  private readonly maxPendingChars: number;
  private deltas = new Map<string, string>();
  private pendingChars = 0;
  private droppedChars = 0;
  private status: { readonly value: unknown } | undefined;
  private seq = 0;
  private lastPublishedAt: number | undefined;
  private cancelTimer: (() => void) | undefined;
  private inFlight = false;
  private failuresLogged = 0;

  constructor(options: ProgressThrottleOptions) {
    this.sink = options.sink;
    this.intervalMs = Math.ceil(1_000 / options.maxPerSecond);
    this.clock = options.clock;
    this.logger = options.logger;
    this.schedule = options.schedule ?? realSchedule;
    this.maxPendingChars = options.maxPendingChars ?? MAX_PENDING_PROGRESS_CHARS;
  }

  /** Publications handed to the sink so far (the last `seq`). */
  get published(): number {
    return this.seq;
  }

  /** Adds a report to what the next publication carries, and publishes now if the rate allows. */
  offer(update: ProgressUpdate): void {
    try {
      if (!this.merge(update)) return;
      this.pump();
    } catch (err) {
      this.logger.warn({ err }, 'progress report ignored');
    }
  }

  /** Stops any scheduled publication; what is pending is dropped. */
  cancel(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.deltas.clear();
    this.status = undefined;
  }

  /** True when the update added anything to publish. */
  private merge(update: ProgressUpdate): boolean {
    if (typeof update !== 'object' || update === null) return false;
    let changed = false;
    const deltas: unknown = update.deltas;
    if (typeof deltas === 'object' && deltas !== null) {
      for (const [field, text] of Object.entries(deltas)) {
        if (typeof text !== 'string' || text.length === 0) continue;
        const room = this.maxPendingChars - this.pendingChars;
        const kept = text.length <= room ? text : text.slice(0, Math.max(0, room));
        this.droppedChars += text.length - kept.length;
        if (kept.length === 0) continue;
        this.deltas.set(field, (this.deltas.get(field) ?? '') + kept);
        this.pendingChars += kept.length;
        changed = true;
      }
    }
    if (update.status !== undefined) {
      const json = toJsonValue(update.status);
      if (json.ok) {
        this.status = { value: json.value };
        changed = true;
      } else {
        this.logger.warn({ reason: json.reason }, 'progress status is not JSON-serialisable; ignored');
      }
    }
    return changed || this.droppedChars > 0;
  }

  private hasPending(): boolean {
    return this.deltas.size > 0 || this.status !== undefined || this.droppedChars > 0;
  }

  private pump(): void {
    if (this.inFlight || this.cancelTimer !== undefined || !this.hasPending()) return;
    const now = this.clock.now();
    const dueAt = this.lastPublishedAt === undefined ? now : this.lastPublishedAt + this.intervalMs;
    if (dueAt <= now) {
      this.publish(now);
      return;
    }
    this.cancelTimer = this.schedule(() => {
      this.cancelTimer = undefined;
      this.pump();
    }, dueAt - now);
  }

  private publish(now: number): void {
    const report: ProgressReport = {
      seq: ++this.seq,
      ...(this.deltas.size > 0 ? { deltas: Object.fromEntries(this.deltas) } : {}),
      ...(this.status !== undefined ? { status: this.status.value } : {}),
      ...(this.droppedChars > 0 ? { droppedChars: this.droppedChars } : {}),
    };
    this.deltas = new Map();
    this.pendingChars = 0;
    this.droppedChars = 0;
    this.status = undefined;
    this.lastPublishedAt = now;
    this.inFlight = true;
    Promise.resolve()
      .then(() => this.sink.publish(report))
      .catch((err: unknown) => {
        // One line per attempt is enough to notice a broken bus; progress is best effort.
        if (this.failuresLogged++ === 0) this.logger.warn({ err }, 'publishing step.progress failed');
      })
      .finally(() => {
        this.inFlight = false;
        this.pump();
      });
  }
}
