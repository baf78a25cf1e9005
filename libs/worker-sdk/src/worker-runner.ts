import {
  copyJsonData,
  ErrorCode,
  ValidationError,
  toErrorInfo,
  type ErrorInfo,
} from '@multiagents/contracts';
import { silentLogger, systemClock, type Clock, type Logger } from '@multiagents/core';
import { AttemptControl } from './attempt-control';
import { CircuitBreaker, type CircuitStateName } from './circuit-breaker';
import type { WorkerDefinition, WorkerHandler } from './define-worker';
import type { StepCommand } from './parse-step-command';
import {
  DEFAULT_PROGRESS_MAX_PER_SECOND,
  ProgressThrottle,
  type ProgressSink,
  type ProgressUpdate,
} from './progress-throttle';
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
  /** The attempt's own control (what the WorkerManager uses): aborting it aborts the attempt. */
  readonly control?: AttemptControl;
  readonly heartbeat?: HeartbeatSink;
  /** Where `ctx.progress()` reports go, coalesced and rate-bounded; without it they are dropped. */
  readonly progress?: ProgressSink;
  /** Fields added to the attempt's log lines (the observer's `trace_id` and `span_id`). */
  readonly logFields?: Readonly<Record<string, string>> | undefined;
  /** The attempt span's W3C trace context (the observer's), handed to the handler as `ctx.traceHeaders`. */
  readonly traceHeaders?: Readonly<Record<string, string>> | undefined;
}

/** What an observer says of one attempt: its log fields and its span's trace context. */
type AttemptTrace = Pick<RunAttemptOptions, 'logFields' | 'traceHeaders'>;

/** Construction options of a {@link WorkerRunner}. */
export interface WorkerRunnerOptions {
  /** Gets the `worker` field added; attempts add `txId`, `step` and `attempt`. */
  readonly logger?: Logger;
  /** Used to throttle heartbeats. */
  readonly clock?: Clock;
  /** Least time between two published `step.heartbeat`s of one attempt (extensions are never throttled). */
  readonly heartbeatThrottleMs?: number;
  /**
   * Most `step.progress` publications per attempt per second (default
   * {@link DEFAULT_PROGRESS_MAX_PER_SECOND}); 0 turns progress off.
   */
  readonly progressMaxPerSecond?: number;
}

export type { CircuitStateName };

/** Default of {@link WorkerRunnerOptions.heartbeatThrottleMs}. */
export const DEFAULT_HEARTBEAT_THROTTLE_MS = 1_000;

/** How the handler's promise and the attempt's abort raced. */
type Settled =
  | { readonly kind: 'returned'; readonly value: unknown }
  | { readonly kind: 'threw'; readonly error: unknown }
  | { readonly kind: 'aborted'; readonly reason: unknown; readonly timedOut: boolean };

/** The reason `ctx.signal` carries when the attempt's timeout passed. */
class AttemptTimeoutError extends Error {
  override readonly name = 'AttemptTimeoutError';
}

/** A failure that counts against the worker's health (a retryable error, a timeout). */
interface Counted {
  readonly outcome: AttemptOutcome;
  readonly counted: boolean;
}

/**
 * Runs attempts of one worker with its resilience rules: at most `concurrency` handlers running
 * at once (more attempts wait for a slot), a consecutive-failures circuit breaker, and a
 * cooperative timeout per attempt whose AbortSignal is `ctx.signal`. One runner per worker per
 * WorkerManager; usable without a bus, e.g. to test a worker. Written for the hot path: no event
 * listener, promise chain or policy object per attempt beyond the handler's own.
 *
 * An attempt and its slot end at different times when the attempt ends first (timeout, cancel,
 * drain): the outcome is returned at once, so a retry elsewhere need not wait, but the slot is
 * the handler's and is freed only when its promise settles. A handler that ignores its signal
 * thus keeps its slot (as Temporal and BullMQ keep theirs until the function returns): the bound
 * that protects a downstream API holds exactly when that API hangs, and hung handlers cannot pile
 * up. Such a handler is counted in {@link lingering} until it settles.
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
  private readonly breaker: CircuitBreaker | undefined;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly heartbeatThrottleMs: number;
  private readonly progressMaxPerSecond: number;
  /** Attempts whose outcome is not decided yet (see {@link inFlight}). */
  private active = 0;
  /** Slots taken: handlers running, including those that outlived their attempt. */
  private running = 0;
  /** Handlers still running after their attempt ended (see {@link lingering}). */
  private overrunning = 0;
  /** Attempts waiting for a slot, first come first served. */
  private readonly waiting: (() => void)[] = [];

  constructor(definition: WorkerDefinition<never, unknown>, options: WorkerRunnerOptions = {}) {
    this.name = definition.name;
    this.capacity = definition.options.concurrency;
    // The input comes off the wire as JSON data; the handler's input type is its author's claim.
    this.handler = definition.handler as WorkerHandler<unknown, unknown>;
    this.timeoutMs = definition.options.timeoutMs;
    this.logger = (options.logger ?? silentLogger).child({ worker: definition.name });
    this.clock = options.clock ?? systemClock;
    this.heartbeatThrottleMs = options.heartbeatThrottleMs ?? DEFAULT_HEARTBEAT_THROTTLE_MS;
    this.progressMaxPerSecond = options.progressMaxPerSecond ?? DEFAULT_PROGRESS_MAX_PER_SECOND;
    if (!(Number.isFinite(this.progressMaxPerSecond) && this.progressMaxPerSecond >= 0)) {
      throw new ValidationError(`invalid WorkerRunner options for ${definition.name}`, [
        `progressMaxPerSecond must be a finite number ≥ 0 (got ${String(this.progressMaxPerSecond)})`,
      ]);
    }
    const breaker = definition.options.circuitBreaker;
    this.breaker =
      breaker === false
        ? undefined
        : new CircuitBreaker(breaker, this.clock, (state) => {
            if (state === 'open')
              this.logger.warn({}, 'circuit opened: attempts fail fast until it half-opens');
            else this.logger.info({}, 'circuit closed');
          });
  }

  /**
   * Attempts whose outcome is not decided yet: handlers running for their attempt, and attempts
   * waiting for a slot. An attempt that timed out or was aborted is no longer counted, even while
   * its handler goes on (that one is in {@link lingering}).
   */
  get inFlight(): number {
    return this.active;
  }

  /**
   * Handlers still running after their attempt ended (timed out, cancelled, given up by a drain)
   * because they did not stop at `ctx.signal`. Each still holds its slot: `inFlight + lingering`
   * is what the `capacity` is shared by.
   */
  get lingering(): number {
    return this.overrunning;
  }

  /** The circuit breaker's state, or `disabled`. */
  get circuitState(): CircuitStateName {
    return this.breaker === undefined ? 'disabled' : this.breaker.state;
  }

  /**
   * Runs one attempt of `command`. Never rejects: every way an attempt can end (a thrown
   * non-Error, a hung handler, an open circuit, an output that is not JSON) is an outcome.
   */
  async run(command: StepCommand, options: RunAttemptOptions = {}): Promise<AttemptOutcome> {
    const control = options.control ?? new AttemptControl();
    const outer = options.signal;
    let detach: (() => void) | undefined;
    if (outer !== undefined) {
      // The caller's own signal (direct use): the one listener of the slow path.
      if (outer.aborted) control.abort(outer.reason);
      else {
        const forward = (): void => control.abort(outer.reason);
        outer.addEventListener('abort', forward, { once: true });
        detach = () => outer.removeEventListener('abort', forward);
      }
    }
    this.active++;
    try {
      return await this.attempt(command, control, options.heartbeat, options.progress, options);
    } catch (err) {
      this.logger.error({ err }, 'unexpected failure around a worker attempt');
      return { kind: 'failed', error: { ...toErrorInfo(err), code: ErrorCode.Internal, retryable: true } };
    } finally {
      this.active--;
      detach?.();
    }
  }

  private async attempt(
    command: StepCommand,
    control: AttemptControl,
    sink: HeartbeatSink | undefined,
    progress: ProgressSink | undefined,
    trace: AttemptTrace,
  ): Promise<AttemptOutcome> {
    // Cancelled (interrupted) before it began: nothing was done, so nothing is started.
    if (control.aborted || control.interrupted) return { kind: 'aborted', reason: control.reason };
    const ticket = this.breaker?.enter() ?? 'run';
    if (ticket === 'reject') {
      this.logger.debug({ txId: command.txId, step: command.step }, 'circuit open: attempt not run');
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
    let judged: Counted | undefined;
    try {
      if (!(await this.acquire(control))) {
        return { kind: 'aborted', reason: control.reason };
      }
      // Aborted between the grant of its slot and now (a cancel in a promise callback in between):
      // nothing would hear it once the handler runs, so the handler must not run.
      if (control.aborted || control.interrupted) {
        this.release();
        return { kind: 'aborted', reason: control.reason };
      }
      // From here the slot is the handler's: `invoke` releases it when the handler settles.
      judged = await this.runHandler(command, control, sink, progress, trace);
      return judged.outcome;
    } finally {
      if (this.breaker) {
        if (judged === undefined || judged.outcome.kind === 'aborted') this.breaker.released(ticket);
        else if (judged.counted) this.breaker.failed(ticket);
        else this.breaker.succeeded(ticket);
      }
    }
  }

  /** Waits for a slot; false when the attempt was aborted while waiting (it never ran). */
  private acquire(control: AttemptControl): Promise<boolean> | boolean {
    if (this.running < this.capacity) {
      this.running++;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const take = (): void => {
        control.onAbort(undefined);
        this.running++;
        resolve(true);
      };
      this.waiting.push(take);
      control.onAbort(() => {
        const index = this.waiting.indexOf(take);
        if (index >= 0) this.waiting.splice(index, 1);
        control.onAbort(undefined);
        resolve(false);
      });
    });
  }

  private release(): void {
    this.running--;
    const next = this.waiting.shift();
    if (next) next();
  }

  /** Runs the handler under the attempt's timeout, and sorts what happened into outcomes. */
  private async runHandler(
    command: StepCommand,
    control: AttemptControl,
    sink: HeartbeatSink | undefined,
    progress: ProgressSink | undefined,
    trace: AttemptTrace,
  ): Promise<Counted> {
    const timeoutMs = smallest(this.timeoutMs, command.payload.timeoutMs);
    const logger = this.attemptLogger(command, trace.logFields);
    const settled = await this.invoke(
      command,
      control,
      timeoutMs,
      logger,
      sink,
      progress,
      trace.traceHeaders,
    );
    switch (settled.kind) {
      case 'aborted':
        if (!settled.timedOut) {
          logger().info({}, 'attempt aborted before its handler finished');
          return { outcome: { kind: 'aborted', reason: settled.reason }, counted: false };
        }
        logger().warn({ timeoutMs }, 'attempt timed out');
        return {
          outcome: {
            kind: 'failed',
            error: {
              code: ErrorCode.Timeout,
              message: `worker ${this.name} did not finish within ${timeoutMs} ms`,
              retryable: true,
              details: { timeoutMs },
            },
          },
          counted: true,
        };
      case 'threw': {
        const error = toErrorInfo(settled.error);
        logger().info({ code: error.code, retryable: error.retryable }, `attempt failed: ${error.message}`);
        return { outcome: { kind: 'failed', error }, counted: error.retryable };
      }
      case 'returned': {
        const json = toJsonValue(settled.value);
        if (!json.ok) {
          logger().warn({ reason: json.reason }, 'attempt returned an output that is not JSON-serialisable');
          // Running it again returns the same kind of value: this is a bug in the worker.
          return {
            outcome: {
              kind: 'failed',
              error: {
                code: ErrorCode.WorkerError,
                message: `worker ${this.name} returned an output that is not JSON-serialisable: ${json.reason}`,
                retryable: false,
                details: { reason: 'output_not_serialisable' },
              },
            },
            counted: false,
          };
        }
        return { outcome: { kind: 'completed', output: json.value }, counted: false };
      }
    }
  }

  /** The attempt's logger, made on first use: most attempts log nothing. */
  private attemptLogger(
    command: StepCommand,
    logFields: Readonly<Record<string, string>> | undefined,
  ): () => Logger {
    let child: Logger | undefined;
    return () =>
      (child ??= this.logger.child({
        txId: command.txId,
        step: command.step,
        attempt: command.attempt,
        ...logFields,
      }));
  }

  /**
   * Calls the handler and settles on whichever comes first: its result, or the attempt's abort.
   * Owns the attempt's slot from the call on and releases it when the handler's promise settles,
   * which may be long after this one did (a handler that ignores its signal).
   */
  private invoke(
    command: StepCommand,
    control: AttemptControl,
    timeoutMs: number | undefined,
    logger: () => Logger,
    sink: HeartbeatSink | undefined,
    progress: ProgressSink | undefined,
    traceHeaders: Readonly<Record<string, string>> | undefined,
  ): Promise<Settled> {
    return new Promise<Settled>((resolve) => {
      /** The attempt's outcome is decided (the handler may still run). */
      let finished = false;
      let timedOut = false;
      let timer: NodeJS.Timeout | undefined;
      /** The handler's promise settled. */
      let settled = false;
      /** When the attempt ended with its handler still running, on `this.clock`. */
      let endedAt = 0;
      let warned = false;
      // Both sides of the race end here: the handler settling (once; it frees the slot) and the
      // abort (which decides the outcome only if the handler has not settled first).
      const finish = (result: Settled): void => {
        if (result.kind !== 'aborted') {
          if (settled) return;
          settled = true;
          // The slot is freed by the handler's end, never by its attempt's.
          this.release();
          if (finished) {
            this.overran(result, endedAt, warned, logger);
            return;
          }
        } else if (finished) return;
        finished = true;
        if (timer !== undefined) clearTimeout(timer);
        control.onAbort(undefined);
        resolve(result);
      };
      // Heard before the handler's own listeners fire: the attempt is classified by why it was
      // aborted, not by whatever error the handler throws then.
      control.onAbort((reason) => {
        finish({ kind: 'aborted', reason, timedOut });
        if (settled) return;
        // The outcome goes out now; the handler keeps its slot until it settles.
        this.overrunning++;
        endedAt = this.clock.now();
        // A handler that stops at its signal settles within the promise callbacks the abort
        // set off: only one still running on the loop's next turn is worth a warning.
        setImmediate(() => {
          if (settled) return;
          warned = true;
          logger().warn(
            timedOut ? { timedOut, timeoutMs } : { timedOut },
            'handler still running after its attempt ended: it ignores ctx.signal, and keeps its slot until it returns',
          );
        });
      });
      if (timeoutMs !== undefined) {
        // Cooperative: the timeout only fires the signal; a handler that ignores it cannot hold
        // the attempt past the timeout, only its slot (see the class comment).
        timer = setTimeout(() => {
          timedOut = true;
          control.abort(new AttemptTimeoutError(`attempt timed out after ${timeoutMs} ms`));
        }, timeoutMs);
      }
      try {
        const ctx = this.context(command, control, logger, sink, progress, () => finished, traceHeaders);
        // Both callbacks: a handler that rejects after its attempt ended is still heard here,
        // never an unhandled rejection.
        Promise.resolve(this.handler(ownCopy(command.payload.input), ctx)).then(
          (value) => finish({ kind: 'returned', value }),
          (error: unknown) => finish({ kind: 'threw', error }),
        );
      } catch (error) {
        finish({ kind: 'threw', error });
      }
    });
  }

  /** A handler settled after its attempt had ended: its slot was just freed. */
  private overran(result: Settled, endedAt: number, warned: boolean, logger: () => Logger): void {
    this.overrunning--;
    // Only one that was warned about: a handler that stopped at its signal is the normal case.
    if (!warned) return;
    const overranMs = this.clock.now() - endedAt;
    if (result.kind === 'threw')
      logger().info(
        { overranMs, err: result.error },
        `handler threw ${overranMs} ms after its attempt ended; its slot is free`,
      );
    else
      logger().info(
        { overranMs },
        `handler returned ${overranMs} ms after its attempt ended; its slot is free`,
      );
  }

  private context(
    command: StepCommand,
    control: AttemptControl,
    logger: () => Logger,
    sink: HeartbeatSink | undefined,
    progressSink: ProgressSink | undefined,
    isFinished: () => boolean,
    traceHeaders: Readonly<Record<string, string>> | undefined,
  ): WorkerContext {
    // One throttle per attempt, made on the first report (most attempts report none): the rate
    // bound is per attempt, and a retry starts a fresh sequence.
    let throttle: ProgressThrottle | undefined;
    // What was reported before the attempt ended is still published (at the bounded rate);
    // reports after it would describe a delivery that is no longer ours.
    const progress = (update: ProgressUpdate): void => {
      if (progressSink === undefined || this.progressMaxPerSecond === 0 || isFinished()) return;
      throttle ??= new ProgressThrottle({
        sink: progressSink,
        maxPerSecond: this.progressMaxPerSecond,
        clock: this.clock,
        logger: logger(),
      });
      throttle.offer(update);
    };
    let lastPublishedAt: number | undefined;
    // At most a third of the step's heartbeat timeout: a handler that beats more often than its
    // timeout then always has one published in time (a dropped beat is followed by a published
    // one within two thirds of the timeout), whatever the manager's throttle.
    const window =
      command.payload.heartbeatTimeoutMs === undefined
        ? this.heartbeatThrottleMs
        : Math.min(this.heartbeatThrottleMs, Math.floor(command.payload.heartbeatTimeoutMs / 3));
    const heartbeat = async (details?: unknown): Promise<void> => {
      // After the attempt ended its heartbeats would describe a delivery that is no longer ours.
      if (sink === undefined || isFinished()) return;
      const now = this.clock.now();
      const publish = lastPublishedAt === undefined || now - lastPublishedAt >= window;
      const tasks: Promise<void>[] = [Promise.resolve().then(() => sink.extend())];
      if (publish) {
        lastPublishedAt = now;
        let data: unknown;
        if (details !== undefined) {
          const json = toJsonValue(details);
          if (json.ok) data = json.value;
          else
            logger().warn(
              { reason: json.reason },
              'heartbeat details are not JSON-serialisable; sent without them',
            );
        }
        tasks.push(Promise.resolve().then(() => sink.publish(data)));
      }
      // A lost heartbeat is not the step's failure: the orchestrator's heartbeat timeout judges liveness.
      for (const result of await Promise.allSettled(tasks)) {
        if (result.status === 'rejected')
          logger().warn({ err: result.reason as unknown }, 'heartbeat failed');
      }
    };
    return new AttemptContext(command, control, logger, heartbeat, progress, traceHeaders);
  }
}

/**
 * The `ctx` a handler gets. A class, not an object literal: V8 makes a literal with getters (the
 * lazy `signal` and `logger`) a dictionary object, a hash table allocated on every attempt; this
 * one has fixed fields and its getters on the prototype.
 */
class AttemptContext implements WorkerContext {
  readonly txId: string;
  readonly workflowId: string;
  readonly step: string;
  readonly attempt: number;
  readonly idempotencyKey: string;
  readonly compensation: boolean;
  readonly heartbeat: (details?: unknown) => Promise<void>;
  readonly progress: (update: ProgressUpdate) => void;
  readonly traceHeaders?: Readonly<Record<string, string>>;
  readonly #control: AttemptControl;
  readonly #logger: () => Logger;

  constructor(
    command: StepCommand,
    control: AttemptControl,
    logger: () => Logger,
    heartbeat: (details?: unknown) => Promise<void>,
    progress: (update: ProgressUpdate) => void,
    traceHeaders: Readonly<Record<string, string>> | undefined,
  ) {
    this.txId = command.txId;
    this.workflowId = command.workflowId;
    this.step = command.step;
    this.attempt = command.attempt;
    this.idempotencyKey = command.payload.idempotencyKey;
    this.compensation = command.payload.compensation;
    this.heartbeat = heartbeat;
    this.progress = progress;
    this.traceHeaders = traceHeaders;
    this.#control = control;
    this.#logger = logger;
  }

  /** Made on first read: most handlers never look at it. */
  get signal(): AbortSignal {
    return this.#control.signal;
  }

  get logger(): Logger {
    return this.#logger();
  }
}

/**
 * The input as the handler may use it. An in-process bus hands out deep-frozen messages (so no
 * consumer changes what another sees): the handler gets its own copy, mutable as it would be
 * after crossing a broker.
 */
function ownCopy(input: unknown): unknown {
  return typeof input === 'object' && input !== null && Object.isFrozen(input)
    ? (copyJsonData(input, Number.POSITIVE_INFINITY) ?? structuredClone(input))
    : input;
}

function smallest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}
