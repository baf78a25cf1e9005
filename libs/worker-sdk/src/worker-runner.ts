import { ErrorCode, toErrorInfo, type ErrorInfo } from '@multiagents/contracts';
import { silentLogger, systemClock, type Clock, type Logger } from '@multiagents/core';
import {
  CircuitState,
  ConsecutiveBreaker,
  TimeoutStrategy,
  bulkhead,
  circuitBreaker,
  handleAll,
  isBrokenCircuitError,
  isIsolatedCircuitError,
  isTaskCancelledError,
  timeout,
  type BulkheadPolicy,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import type { WorkerDefinition, WorkerHandler } from './define-worker';
import type { StepCommand } from './parse-step-command';
import { toJsonValue } from './to-json-value';
import type { WorkerContext } from './worker-context';

/**
 * How one attempt ended. `aborted` means the caller's signal fired (shutdown or cancel) before
 * the handler finished: nothing is known about the attempt, so the caller decides what to report.
 */
export type AttemptOutcome =
  | { readonly kind: 'completed'; readonly output: unknown }
  | { readonly kind: 'failed'; readonly error: ErrorInfo }
  | { readonly kind: 'aborted'; readonly reason: unknown };

/** Where `ctx.heartbeat()` goes: the WorkerManager publishes a `step.heartbeat` and extends the delivery. */
export interface HeartbeatSink {
  publish(details: unknown): Promise<void>;
  extend(): Promise<void>;
}

/** Per-attempt inputs of {@link WorkerRunner.run}. */
export interface RunAttemptOptions {
  /** Aborting it aborts the attempt: `ctx.signal` fires and the outcome is `aborted`. */
  readonly signal?: AbortSignal;
  readonly heartbeat?: HeartbeatSink;
}

/** Construction options of a {@link WorkerRunner}. */
export interface WorkerRunnerOptions {
  /** Gets the `worker` field added; attempts add `txId`, `step` and `attempt`. */
  readonly logger?: Logger;
  /** Used to throttle heartbeats. */
  readonly clock?: Clock;
  /** Least time between two published `step.heartbeat`s of one attempt (extensions are never throttled). */
  readonly heartbeatThrottleMs?: number;
}

/** A circuit breaker's state as shown to operators (ListWorkers). */
export type CircuitStateName = 'closed' | 'open' | 'half-open' | 'isolated' | 'disabled';

/** Default of {@link WorkerRunnerOptions.heartbeatThrottleMs}. */
export const DEFAULT_HEARTBEAT_THROTTLE_MS = 1_000;

/**
 * Thrown inside the circuit breaker for a failure that should count against the worker's health
 * (a retryable error, a timeout). Non-retryable errors are returned instead of thrown: a declined
 * card says the payment service works, and must not open the circuit for every other run.
 */
class CountedFailure extends Error {
  constructor(readonly info: ErrorInfo) {
    super(info.message);
  }
}

/** How the handler's promise and the attempt's signal raced. */
type Settled =
  | { readonly kind: 'returned'; readonly value: unknown }
  | { readonly kind: 'threw'; readonly error: unknown }
  | { readonly kind: 'signal' };

const NEVER_ABORTED: AbortSignal = new AbortController().signal;

const CIRCUIT_STATE_NAMES: Record<CircuitState, CircuitStateName> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'isolated',
};

/**
 * Runs attempts of one worker with its resilience policies (cockatiel): a bulkhead of
 * `concurrency` slots, a consecutive-failures circuit breaker, and a cooperative timeout per
 * attempt whose AbortSignal is `ctx.signal`. One runner per worker per WorkerManager; usable
 * without a bus, e.g. to test a worker.
 *
 * @example
 * const runner = new WorkerRunner(defineWorker('inventory.reserve', reserve, { timeoutMs: 5_000 }));
 * const outcome = await runner.run(command); // { kind: 'completed', output } | { kind: 'failed', error } | …
 */
export class WorkerRunner {
  readonly name: string;
  /** Most attempts running at once (the worker's `concurrency`). */
  readonly capacity: number;
  private readonly handler: WorkerHandler<unknown, unknown>;
  private readonly timeoutMs: number | undefined;
  private readonly bulkhead: BulkheadPolicy;
  private readonly breaker: CircuitBreakerPolicy | undefined;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly heartbeatThrottleMs: number;
  private active = 0;

  constructor(definition: WorkerDefinition<never, unknown>, options: WorkerRunnerOptions = {}) {
    this.name = definition.name;
    this.capacity = definition.options.concurrency;
    // The input comes off the wire as JSON data; the handler's input type is its author's claim.
    this.handler = definition.handler as WorkerHandler<unknown, unknown>;
    this.timeoutMs = definition.options.timeoutMs;
    // The bus already limits deliveries to `concurrency`; the bulkhead enforces the same limit when
    // the runner is used directly. Its queue is unbounded because the bus bounds what arrives.
    this.bulkhead = bulkhead(definition.options.concurrency, Number.POSITIVE_INFINITY);
    const breaker = definition.options.circuitBreaker;
    this.breaker =
      breaker === false
        ? undefined
        : circuitBreaker(handleAll, {
            halfOpenAfter: breaker.halfOpenAfterMs,
            breaker: new ConsecutiveBreaker(breaker.consecutiveFailures),
          });
    this.logger = (options.logger ?? silentLogger).child({ worker: definition.name });
    this.clock = options.clock ?? systemClock;
    this.heartbeatThrottleMs = options.heartbeatThrottleMs ?? DEFAULT_HEARTBEAT_THROTTLE_MS;
    this.breaker?.onBreak(() =>
      this.logger.warn({}, 'circuit opened: attempts fail fast until it half-opens'),
    );
    this.breaker?.onReset(() => this.logger.info({}, 'circuit closed'));
  }

  /** Attempts started and not finished (running or waiting for a slot). */
  get inFlight(): number {
    return this.active;
  }

  /** The circuit breaker's state, or `disabled`. */
  get circuitState(): CircuitStateName {
    return this.breaker === undefined ? 'disabled' : CIRCUIT_STATE_NAMES[this.breaker.state];
  }

  /**
   * Runs one attempt of `command`. Never rejects: every way an attempt can end (a thrown
   * non-Error, a hung handler, an open circuit, an output that is not JSON) is an outcome.
   */
  async run(command: StepCommand, options: RunAttemptOptions = {}): Promise<AttemptOutcome> {
    const signal = options.signal ?? NEVER_ABORTED;
    const logger = this.logger.child({ txId: command.txId, step: command.step, attempt: command.attempt });
    const attempt = (): Promise<AttemptOutcome> =>
      this.bulkhead.execute(() => this.runWithTimeout(command, signal, logger, options.heartbeat), signal);
    this.active++;
    try {
      return await (this.breaker === undefined ? attempt() : this.breaker.execute(attempt, signal));
    } catch (err) {
      if (err instanceof CountedFailure) return { kind: 'failed', error: err.info };
      if (isBrokenCircuitError(err) || isIsolatedCircuitError(err)) {
        logger.debug({}, 'circuit open: attempt not run');
        return {
          kind: 'failed',
          error: {
            code: ErrorCode.CircuitOpen,
            message: `worker ${this.name} is failing: its circuit breaker is open`,
            retryable: true,
            details: { worker: this.name },
          },
        };
      }
      // Aborted while waiting for a bulkhead slot or for a half-open trial: the handler never ran.
      if (isTaskCancelledError(err) && signal.aborted)
        return { kind: 'aborted', reason: signal.reason as unknown };
      logger.error({ err }, 'unexpected failure around a worker attempt');
      return { kind: 'failed', error: { ...toErrorInfo(err), code: ErrorCode.Internal, retryable: true } };
    } finally {
      this.active--;
    }
  }

  /** Runs the handler under the attempt's timeout, and sorts what happened into outcomes. */
  private async runWithTimeout(
    command: StepCommand,
    outer: AbortSignal,
    logger: Logger,
    sink: HeartbeatSink | undefined,
  ): Promise<AttemptOutcome> {
    const timeoutMs = smallest(this.timeoutMs, command.payload.timeoutMs);
    const invoke = (signal: AbortSignal): Promise<Settled> => this.invoke(command, signal, logger, sink);
    const settled =
      timeoutMs === undefined
        ? await invoke(outer)
        : await timeout(timeoutMs, {
            // Cooperative: the policy only fires the signal; `invoke` stops waiting when it does, so
            // a handler that ignores its signal cannot hold the attempt (or the slot) past the timeout.
            strategy: TimeoutStrategy.Cooperative,
            // The signal means "stop": firing it after a normal return would cancel work the
            // handler deliberately left running.
            abortOnReturn: false,
          }).execute(({ signal }) => invoke(signal), outer);

    switch (settled.kind) {
      case 'signal':
        if (outer.aborted) {
          logger.info({}, 'attempt aborted before its handler finished');
          return { kind: 'aborted', reason: outer.reason as unknown };
        }
        logger.warn({ timeoutMs }, 'attempt timed out');
        throw new CountedFailure({
          code: ErrorCode.Timeout,
          message: `worker ${this.name} did not finish within ${timeoutMs} ms`,
          retryable: true,
          details: { timeoutMs },
        });
      case 'threw': {
        const error = toErrorInfo(settled.error);
        logger.info({ code: error.code, retryable: error.retryable }, `attempt failed: ${error.message}`);
        if (error.retryable) throw new CountedFailure(error);
        return { kind: 'failed', error };
      }
      case 'returned': {
        const json = toJsonValue(settled.value);
        if (!json.ok) {
          logger.warn({ reason: json.reason }, 'attempt returned an output that is not JSON-serialisable');
          // Running it again returns the same kind of value: this is a bug in the worker.
          return {
            kind: 'failed',
            error: {
              code: ErrorCode.WorkerError,
              message: `worker ${this.name} returned an output that is not JSON-serialisable: ${json.reason}`,
              retryable: false,
              details: { reason: 'output_not_serialisable' },
            },
          };
        }
        logger.debug({}, 'attempt completed');
        return { kind: 'completed', output: json.value };
      }
    }
  }

  /** Calls the handler and settles on whichever comes first: its result, or the signal firing. */
  private invoke(
    command: StepCommand,
    signal: AbortSignal,
    logger: Logger,
    sink: HeartbeatSink | undefined,
  ): Promise<Settled> {
    return new Promise<Settled>((resolve) => {
      if (signal.aborted) {
        resolve({ kind: 'signal' });
        return;
      }
      let finished = false;
      const finish = (settled: Settled): void => {
        if (finished) return;
        finished = true;
        signal.removeEventListener('abort', onAbort);
        resolve(settled);
      };
      // Registered before the handler runs, so it fires before any listener of the handler's and the
      // attempt is classified by why the signal fired, not by whatever error the handler throws then.
      const onAbort = (): void => {
        finish({ kind: 'signal' });
        logger.debug({}, 'signal fired; a handler that ignores it keeps running in the background');
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const ctx = this.context(command, signal, logger, sink, () => finished);
      try {
        Promise.resolve(this.handler(command.payload.input, ctx)).then(
          (value) => finish({ kind: 'returned', value }),
          (error: unknown) => finish({ kind: 'threw', error }),
        );
      } catch (error) {
        finish({ kind: 'threw', error });
      }
    });
  }

  private context(
    command: StepCommand,
    signal: AbortSignal,
    logger: Logger,
    sink: HeartbeatSink | undefined,
    isFinished: () => boolean,
  ): WorkerContext {
    let lastPublishedAt: number | undefined;
    const heartbeat = async (details?: unknown): Promise<void> => {
      // After the attempt ended its heartbeats would describe a delivery that is no longer ours.
      if (sink === undefined || isFinished()) return;
      const now = this.clock.now();
      const publish = lastPublishedAt === undefined || now - lastPublishedAt >= this.heartbeatThrottleMs;
      const tasks: Promise<void>[] = [Promise.resolve().then(() => sink.extend())];
      if (publish) {
        lastPublishedAt = now;
        let data: unknown;
        if (details !== undefined) {
          const json = toJsonValue(details);
          if (json.ok) data = json.value;
          else
            logger.warn(
              { reason: json.reason },
              'heartbeat details are not JSON-serialisable; sent without them',
            );
        }
        tasks.push(Promise.resolve().then(() => sink.publish(data)));
      }
      // A lost heartbeat is not the step's failure: the orchestrator's heartbeat timeout judges liveness.
      for (const result of await Promise.allSettled(tasks)) {
        if (result.status === 'rejected') logger.warn({ err: result.reason as unknown }, 'heartbeat failed');
      }
    };
    return {
      txId: command.txId,
      workflowId: command.workflowId,
      step: command.step,
      attempt: command.attempt,
      idempotencyKey: command.payload.idempotencyKey,
      compensation: command.payload.compensation,
      signal,
      heartbeat,
      logger,
    };
  }
}

function smallest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}
