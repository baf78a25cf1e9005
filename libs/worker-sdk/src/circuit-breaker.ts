import type { Clock } from '@multiagents/core';

/** A circuit breaker's state as shown to operators (ListWorkers). */
export type CircuitStateName = 'closed' | 'open' | 'half-open' | 'isolated' | 'disabled';

/** Settings of a {@link CircuitBreaker}. */
export interface CircuitBreakerSettings {
  /** Counted failures in a row that open the circuit. */
  readonly consecutiveFailures: number;
  /** How long an open circuit fails fast before one trial attempt is let through. */
  readonly halfOpenAfterMs: number;
}

/**
 * A consecutive-failures circuit breaker: `consecutiveFailures` counted failures in a row open it;
 * while open, attempts fail fast; after `halfOpenAfterMs` one trial attempt goes through (others
 * still fail fast): its success closes the circuit, its failure opens it again. What counts as a
 * failure is the caller's call (retryable errors and timeouts, not a business refusal).
 */
export class CircuitBreaker {
  private failures = 0;
  private openedAt: number | undefined;
  private trialRunning = false;

  constructor(
    private readonly settings: CircuitBreakerSettings,
    private readonly clock: Clock,
    private readonly onChange: (state: 'open' | 'closed') => void = () => undefined,
  ) {}

  /** The state right now. */
  get state(): CircuitStateName {
    if (this.openedAt === undefined) return 'closed';
    return this.clock.now() - this.openedAt >= this.settings.halfOpenAfterMs ? 'half-open' : 'open';
  }

  /**
   * Asks to run an attempt: 'run' (closed), 'trial' (the one half-open attempt) or 'reject'
   * (open, or a trial is already running). A 'run' or 'trial' must be followed by exactly one of
   * {@link succeeded}, {@link failed} or {@link released}.
   */
  enter(): 'run' | 'trial' | 'reject' {
    const state = this.state;
    if (state === 'closed') return 'run';
    if (state === 'half-open' && !this.trialRunning) {
      this.trialRunning = true;
      return 'trial';
    }
    return 'reject';
  }

  succeeded(ticket: 'run' | 'trial'): void {
    this.failures = 0;
    if (ticket === 'trial') this.trialRunning = false;
    if (this.openedAt !== undefined) {
      this.openedAt = undefined;
      this.onChange('closed');
    }
  }

  failed(ticket: 'run' | 'trial'): void {
    if (ticket === 'trial') {
      this.trialRunning = false;
      this.open();
      return;
    }
    this.failures += 1;
    if (this.openedAt === undefined && this.failures >= this.settings.consecutiveFailures) this.open();
  }

  /** The attempt ended without telling anything about the worker's health (aborted). */
  released(ticket: 'run' | 'trial'): void {
    if (ticket === 'trial') this.trialRunning = false;
  }

  private open(): void {
    this.openedAt = this.clock.now();
    this.failures = 0;
    this.onChange('open');
  }
}
