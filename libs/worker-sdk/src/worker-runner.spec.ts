import { setImmediate as realTurn } from 'node:timers/promises';
import { ErrorCode, NonRetryableError } from '@multiagents/contracts';
import { defineWorker, type WorkerHandler } from './define-worker';
import { deferred, isSettled, manualClock, recordingLogger, stepCommand } from './test-support';
import type { WorkerContext } from './worker-context';
import type { WorkerOptions } from './worker-options';
import type { ProgressReport, ProgressSink } from './progress-throttle';
import { WorkerRunner, type AttemptOutcome, type HeartbeatSink } from './worker-runner';
import { AttemptControl } from './attempt-control';

function runner(handler: WorkerHandler<never, unknown>, options?: WorkerOptions, extra = {}): WorkerRunner {
  return new WorkerRunner(defineWorker('inventory.reserve', handler, options), extra);
}

const never = (): Promise<never> => new Promise<never>(() => undefined);

function failed(outcome: AttemptOutcome): Extract<AttemptOutcome, { kind: 'failed' }>['error'] {
  if (outcome.kind !== 'failed') throw new Error(`expected a failure, got ${JSON.stringify(outcome)}`);
  return outcome.error;
}

beforeEach(() => {
  // Promise callbacks stay real; the attempt timers and Date.now() (the circuit's clock) are faked.
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] });
});
afterEach(() => {
  jest.useRealTimers();
});

describe('WorkerRunner', () => {
  describe('a successful attempt', () => {
    it('passes the input and context, and returns the output as JSON data', async () => {
      let seen: { input: unknown; ctx: WorkerContext } | undefined;
      const r = runner(
        (input: unknown, ctx) => {
          seen = { input, ctx };
          return { reservationId: 'r-1', at: new Date(Date.UTC(2024, 0, 1)), skip: undefined };
        },
        undefined,
        { logger: recordingLogger() },
      );
      const outcome = await r.run(
        stepCommand({ compensation: true, idempotencyKey: 'tx-1:reserve:undo' }, 3),
      );
      expect(outcome).toEqual({
        kind: 'completed',
        output: { reservationId: 'r-1', at: '2024-01-01T00:00:00.000Z' },
      });
      expect(seen?.input).toEqual({ sku: 'A-1', quantity: 2 });
      expect(seen?.ctx).toMatchObject({
        txId: 'tx-1',
        workflowId: 'order_processing',
        step: 'reserve',
        attempt: 3,
        idempotencyKey: 'tx-1:reserve:undo',
        compensation: true,
      });
      // The signal means "stop"; it does not fire just because the handler returned.
      expect(seen?.ctx.signal.aborted).toBe(false);
    });

    it("hands a frozen input (the in-process bus) over as the handler's own mutable deep copy", async () => {
      const frozen = (value: object): object => {
        for (const child of Object.values(value))
          if (typeof child === 'object' && child !== null) frozen(child);
        return Object.freeze(value);
      };
      // As JSON.parse makes it: "__proto__" is an own key, not the prototype.
      const input = frozen(
        JSON.parse(
          '{"sku":"A-1","lines":[{"n":1},[2,null]],"meta":{"ok":true},"__proto__":{"x":1}}',
        ) as object,
      );
      let seen: Record<string, unknown> | undefined;
      const r = runner((given: Record<string, unknown>) => {
        seen = given;
        given['sku'] = 'changed';
        (given['lines'] as unknown[]).push('more');
        (given['meta'] as Record<string, unknown>)['ok'] = false;
        return {};
      });
      const outcome = await r.run(stepCommand({ input: input }));
      expect(outcome.kind).toBe('completed');
      expect(JSON.stringify(seen)).toBe(
        '{"sku":"changed","lines":[{"n":1},[2,null],"more"],"meta":{"ok":false},"__proto__":{"x":1}}',
      );
      expect(Object.getPrototypeOf(seen)).toBe(Object.prototype);
      expect(Object.prototype.hasOwnProperty.call(seen, '__proto__')).toBe(true);
      // The message every other consumer sees is untouched.
      expect(JSON.stringify(input)).toBe(
        '{"sku":"A-1","lines":[{"n":1},[2,null]],"meta":{"ok":true},"__proto__":{"x":1}}',
      );
    });

    it('gives the handler a logger carrying worker, txId, step and attempt', async () => {
      const logger = recordingLogger();
      const r = runner(
        (_input, ctx) => {
          ctx.logger.info({ extra: 1 }, 'hello');
          return null;
        },
        undefined,
        { logger },
      );
      await r.run(stepCommand({}, 2));
      expect(logger.lines).toContainEqual({
        level: 'info',
        fields: { worker: 'inventory.reserve', txId: 'tx-1', step: 'reserve', attempt: 2, extra: 1 },
        message: 'hello',
      });
    });

    it('reports a handler that returns nothing as output null', async () => {
      expect(await runner(() => undefined).run(stepCommand())).toEqual({ kind: 'completed', output: null });
    });
  });

  describe('timeouts', () => {
    it('reports a handler that ignores its signal and hangs as a retryable TIMEOUT once the timeout passes', async () => {
      let signal: AbortSignal | undefined;
      const r = runner(
        (_input, ctx) => {
          signal = ctx.signal;
          return never();
        },
        { timeoutMs: 1_000 },
      );
      const outcome = r.run(stepCommand());
      await jest.advanceTimersByTimeAsync(999);
      expect(await isSettled(outcome)).toBe(false);
      expect(signal?.aborted).toBe(false);
      await jest.advanceTimersByTimeAsync(1);
      expect(failed(await outcome)).toEqual({
        code: ErrorCode.Timeout,
        message: 'worker inventory.reserve did not finish within 1000 ms',
        retryable: true,
        details: { timeoutMs: 1_000 },
      });
      expect(signal?.aborted).toBe(true);
      expect(r.inFlight).toBe(0);
    });

    it("reports a TIMEOUT, not the handler's own error, when a handler stops because its signal fired", async () => {
      const r = runner(
        (_input, ctx) =>
          new Promise((_resolve, reject) => {
            ctx.signal.addEventListener('abort', () => reject(new Error('aborted by signal')));
          }),
        { timeoutMs: 50 },
      );
      const outcome = r.run(stepCommand());
      await jest.advanceTimersByTimeAsync(50);
      expect(failed(await outcome).code).toBe(ErrorCode.Timeout);
    });

    it('uses the command timeout when it is smaller than the worker ceiling', async () => {
      const r = runner(never, { timeoutMs: 10_000 });
      const outcome = r.run(stepCommand({ timeoutMs: 200 }));
      await jest.advanceTimersByTimeAsync(200);
      expect(failed(await outcome).details).toEqual({ timeoutMs: 200 });
    });

    it('uses the worker ceiling when it is smaller than the command timeout', async () => {
      const r = runner(never, { timeoutMs: 300 });
      const outcome = r.run(stepCommand({ timeoutMs: 60_000 }));
      await jest.advanceTimersByTimeAsync(300);
      expect(failed(await outcome).details).toEqual({ timeoutMs: 300 });
    });

    it('has no timeout when neither the worker nor the command sets one', async () => {
      const gate = deferred<string>();
      const r = runner(() => gate.promise);
      const outcome = r.run(stepCommand());
      await jest.advanceTimersByTimeAsync(24 * 3_600_000);
      expect(await isSettled(outcome)).toBe(false);
      gate.resolve('late but fine');
      expect(await outcome).toEqual({ kind: 'completed', output: 'late but fine' });
    });
  });

  describe('aborts', () => {
    it('fires ctx.signal and reports aborted, with the reason, when the caller aborts', async () => {
      let signal: AbortSignal | undefined;
      const r = runner(
        (_input, ctx) => {
          signal = ctx.signal;
          return never();
        },
        { timeoutMs: 60_000 },
      );
      const controller = new AbortController();
      const outcome = r.run(stepCommand(), { signal: controller.signal });
      await jest.advanceTimersByTimeAsync(10);
      const reason = new Error('shutting down');
      controller.abort(reason);
      expect(await outcome).toEqual({ kind: 'aborted', reason });
      expect(signal?.aborted).toBe(true);
    });

    it('does not call the handler when the signal has already fired', async () => {
      const handler = jest.fn(() => 'ran');
      const controller = new AbortController();
      controller.abort('early');
      expect(await runner(handler).run(stepCommand(), { signal: controller.signal })).toEqual({
        kind: 'aborted',
        reason: 'early',
      });
      expect(handler).not.toHaveBeenCalled();
    });
  });

  describe('errors', () => {
    it('reports a NonRetryableError as not retryable, with its partial effects', async () => {
      const r = runner(() => {
        throw new NonRetryableError('card declined', { code: 'CARD_DECLINED', partialEffects: true });
      });
      expect(failed(await r.run(stepCommand()))).toEqual({
        code: 'CARD_DECLINED',
        message: 'card declined',
        retryable: false,
        partialEffects: true,
      });
    });

    it('reports any other Error as retryable', async () => {
      const r = runner(async () => {
        await Promise.resolve();
        throw new TypeError('socket hang up');
      });
      expect(failed(await r.run(stepCommand()))).toEqual({
        code: ErrorCode.WorkerError,
        message: 'socket hang up',
        retryable: true,
      });
    });

    /* eslint-disable @typescript-eslint/prefer-promise-reject-errors, @typescript-eslint/only-throw-error --
       workers written in plain JavaScript do throw such values; this is what is under test. */
    it.each<[string, () => unknown]>([
      ['a string', () => Promise.reject('boom')],
      ['undefined', () => Promise.reject(undefined)],
      ['a frozen object', () => Promise.reject(Object.freeze({ why: 'x' }))],
      [
        'a synchronous string',
        () => {
          throw 'sync boom';
        },
      ],
    ])('turns %s thrown into a retryable NON_ERROR_THROWN failure', async (_label, handler) => {
      const error = failed(await runner(handler).run(stepCommand()));
      expect(error.code).toBe(ErrorCode.NonErrorThrown);
      expect(error.retryable).toBe(true);
    });
    /* eslint-enable @typescript-eslint/prefer-promise-reject-errors, @typescript-eslint/only-throw-error */

    it.each<[string, unknown]>([
      ['a BigInt', { amount: 10n }],
      [
        'a cycle',
        (() => {
          const node: Record<string, unknown> = {};
          node.self = node;
          return node;
        })(),
      ],
    ])('reports an output with %s as a non-retryable failure', async (_label, output) => {
      const error = failed(await runner(() => output).run(stepCommand()));
      expect(error).toMatchObject({ code: ErrorCode.WorkerError, retryable: false });
      expect(error.message).toContain('not JSON-serialisable');
    });
  });

  describe('circuit breaker', () => {
    const breaker = { consecutiveFailures: 3, halfOpenAfterMs: 1_000 };

    it('opens after N retryable failures in a row, fails fast, then half-opens and closes on success', async () => {
      let fail = true;
      const handler = jest.fn(() => {
        if (fail) throw new Error('downstream unavailable');
        return 'ok';
      });
      const r = runner(handler, { circuitBreaker: breaker });
      for (let i = 0; i < 3; i++) expect(failed(await r.run(stepCommand())).code).toBe(ErrorCode.WorkerError);
      expect(r.circuitState).toBe('open');

      const fast = failed(await r.run(stepCommand()));
      expect(fast).toMatchObject({ code: ErrorCode.CircuitOpen, retryable: true });
      expect(handler).toHaveBeenCalledTimes(3);

      await jest.advanceTimersByTimeAsync(999);
      expect(failed(await r.run(stepCommand())).code).toBe(ErrorCode.CircuitOpen);
      await jest.advanceTimersByTimeAsync(1);
      fail = false;
      expect(await r.run(stepCommand())).toEqual({ kind: 'completed', output: 'ok' });
      expect(handler).toHaveBeenCalledTimes(4);
      expect(r.circuitState).toBe('closed');
    });

    it('opens again when the half-open trial fails', async () => {
      const handler = jest.fn(() => Promise.reject(new Error('still down')));
      const r = runner(handler, { circuitBreaker: breaker });
      for (let i = 0; i < 3; i++) await r.run(stepCommand());
      await jest.advanceTimersByTimeAsync(1_000);
      expect(failed(await r.run(stepCommand())).code).toBe(ErrorCode.WorkerError);
      expect(r.circuitState).toBe('open');
      expect(failed(await r.run(stepCommand())).code).toBe(ErrorCode.CircuitOpen);
      expect(handler).toHaveBeenCalledTimes(4);
    });

    it('counts timeouts as failures', async () => {
      const r = runner(never, {
        timeoutMs: 10,
        circuitBreaker: { consecutiveFailures: 2, halfOpenAfterMs: 1_000 },
      });
      for (let i = 0; i < 2; i++) {
        const outcome = r.run(stepCommand());
        await jest.advanceTimersByTimeAsync(10);
        expect(failed(await outcome).code).toBe(ErrorCode.Timeout);
      }
      expect(r.circuitState).toBe('open');
    });

    it('does not count non-retryable errors: a business refusal is not an unhealthy worker', async () => {
      const r = runner(
        () => {
          throw new NonRetryableError('card declined');
        },
        { circuitBreaker: breaker },
      );
      for (let i = 0; i < 10; i++) expect(failed(await r.run(stepCommand())).retryable).toBe(false);
      expect(r.circuitState).toBe('closed');
    });

    it('never opens when turned off', async () => {
      const r = runner(
        () => {
          throw new Error('down');
        },
        { circuitBreaker: false },
      );
      for (let i = 0; i < 20; i++)
        expect(failed(await r.run(stepCommand())).code).toBe(ErrorCode.WorkerError);
      expect(r.circuitState).toBe('disabled');
    });
  });

  describe('concurrency', () => {
    it('runs at most `concurrency` handlers at once and queues the rest', async () => {
      const gates = Array.from({ length: 5 }, () => deferred<number>());
      let running = 0;
      let maxRunning = 0;
      let started = 0;
      const r = runner(
        async () => {
          const gate = gates[started++]!;
          running++;
          maxRunning = Math.max(maxRunning, running);
          try {
            return await gate.promise;
          } finally {
            running--;
          }
        },
        { concurrency: 2 },
      );
      const outcomes = gates.map(() => r.run(stepCommand()));
      await jest.advanceTimersByTimeAsync(0);
      expect(started).toBe(2);
      expect(r.inFlight).toBe(5);
      gates.forEach((gate, i) => gate.resolve(i));
      expect(await Promise.all(outcomes)).toEqual(gates.map((_g, i) => ({ kind: 'completed', output: i })));
      expect(maxRunning).toBe(2);
      expect(r.inFlight).toBe(0);
      expect(r.capacity).toBe(2);
    });
  });

  describe('a handler that outlives its attempt', () => {
    /**
     * Lets the loop turn a few times for real (what a handler let into a slot by mistake needs to
     * start) and runs the fake timers due now (the runner's check for handlers still running).
     */
    async function turns(count = 5): Promise<void> {
      for (let i = 0; i < count; i++) {
        await realTurn();
        await jest.advanceTimersByTimeAsync(0);
      }
    }

    const OVERRUN_WARNING = 'handler still running after its attempt ended';

    it.each<[string, 'timeout' | 'abort', 'returns' | 'rejects']>([
      ['times out, then returns', 'timeout', 'returns'],
      ['times out, then rejects', 'timeout', 'rejects'],
      ['is aborted, then returns', 'abort', 'returns'],
    ])(
      'keeps its slot when its attempt %s: the outcome comes at once, the next handler starts only once it settled',
      async (_label, ending, late) => {
        const logger = recordingLogger();
        const first = deferred<string>();
        let secondStarted = false;
        const r = runner(
          (_input, ctx) => {
            // The first attempt ignores its signal; the second is the one waiting for the slot.
            if (ctx.attempt === 1) return first.promise;
            secondStarted = true;
            return 'second done';
          },
          { concurrency: 1, timeoutMs: 50 },
          { logger },
        );
        const caller = new AbortController();
        const a = r.run(stepCommand({}, 1), { signal: caller.signal });
        const b = r.run(stepCommand({ commandId: 'tx-1:reserve:2' }, 2));
        await jest.advanceTimersByTimeAsync(0);
        expect(secondStarted).toBe(false);

        const reason = new Error('shutting down');
        if (ending === 'timeout') await jest.advanceTimersByTimeAsync(50);
        else caller.abort(reason);
        // Reported without waiting for the handler, which has not settled.
        const outcome = await a;
        if (ending === 'timeout') expect(failed(outcome).code).toBe(ErrorCode.Timeout);
        else expect(outcome).toEqual({ kind: 'aborted', reason });

        await turns();
        expect(secondStarted).toBe(false);
        expect(await isSettled(b)).toBe(false);
        expect(r.inFlight).toBe(1);
        expect(r.lingering).toBe(1);
        // Time goes by: the second attempt's own timeout starts with its handler, not before.
        await jest.advanceTimersByTimeAsync(1_000);
        expect(secondStarted).toBe(false);

        if (late === 'returns') first.resolve('too late');
        else first.reject(new Error('failed too late'));
        expect(await b).toEqual({ kind: 'completed', output: 'second done' });
        expect(secondStarted).toBe(true);
        expect(r.inFlight).toBe(0);
        expect(r.lingering).toBe(0);

        const about = { worker: 'inventory.reserve', txId: 'tx-1', step: 'reserve', attempt: 1 };
        const warnings = logger.lines.filter((l) => l.message.startsWith(OVERRUN_WARNING));
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toMatchObject({ level: 'warn', fields: about });
        const settledLine = logger.lines.find((l) => l.message.includes('after its attempt ended;'));
        expect(settledLine).toMatchObject({ level: 'info', fields: { ...about, overranMs: 1_000 } });
        expect(settledLine?.message).toBe(
          `handler ${late === 'returns' ? 'returned' : 'threw'} 1000 ms after its attempt ended; its slot is free`,
        );

        // Jest fails the test on an unhandled rejection (the late one): give it turns to surface.
        await turns();
      },
    );

    it('frees the slot of a handler that stops at its signal, without a warning', async () => {
      const logger = recordingLogger();
      let started = 0;
      const r = runner(
        (_input, ctx) =>
          ++started === 1
            ? new Promise((_resolve, reject) => {
                ctx.signal.addEventListener('abort', () => reject(new Error('stopped')));
              })
            : 'second done',
        { concurrency: 1, timeoutMs: 50 },
        { logger },
      );
      const a = r.run(stepCommand());
      const b = r.run(stepCommand({}, 2));
      await jest.advanceTimersByTimeAsync(50);
      expect(failed(await a).code).toBe(ErrorCode.Timeout);
      expect(await b).toEqual({ kind: 'completed', output: 'second done' });
      await turns();
      expect(r.lingering).toBe(0);
      expect(logger.lines.filter((l) => l.message.startsWith(OVERRUN_WARNING))).toEqual([]);
    });

    it('does not run the handler of an attempt aborted just as it got its slot', async () => {
      const handler = jest.fn(() => 'ran');
      const r = runner(handler, { concurrency: 1 });
      const control = new AttemptControl();
      const outcome = r.run(stepCommand(), { control });
      // Before the runner's next promise callback: nothing listens to the control yet.
      control.abort('cancelled');
      expect(await outcome).toEqual({ kind: 'aborted', reason: 'cancelled' });
      expect(handler).not.toHaveBeenCalled();
      // The slot it was granted is free again.
      expect(await r.run(stepCommand({}, 2))).toEqual({ kind: 'completed', output: 'ran' });
    });
  });

  describe('interrupt (a cooperative cancel)', () => {
    it('fires the signal and lets the handler decide the outcome', async () => {
      const gate = deferred();
      const started = deferred();
      let signal: AbortSignal | undefined;
      const r = runner(async (_input, ctx) => {
        signal = ctx.signal;
        started.resolve();
        await gate.promise;
        return 'done anyway';
      });
      const control = new AttemptControl();
      const outcome = r.run(stepCommand(), { control });
      await started.promise;
      control.interrupt('cancelled');
      expect(signal?.aborted).toBe(true);
      expect(signal?.reason).toBe('cancelled');
      expect(control.interrupted).toBe(true);
      gate.resolve();
      expect(await outcome).toEqual({ kind: 'completed', output: 'done anyway' });
    });

    it('does not start a handler interrupted while it waited for a slot, and frees nothing it did not take', async () => {
      const gate = deferred();
      const later = jest.fn(() => 'ran');
      let calls = 0;
      const r = runner(() => (++calls === 1 ? gate.promise.then(() => 'first') : later()), {
        concurrency: 1,
      });
      const first = r.run(stepCommand());
      const control = new AttemptControl();
      const waiting = r.run(stepCommand({}, 2), { control });
      control.interrupt('cancelled');
      gate.resolve();
      expect(await first).toEqual({ kind: 'completed', output: 'first' });
      expect(await waiting).toEqual({ kind: 'aborted', reason: 'cancelled' });
      expect(later).not.toHaveBeenCalled();
      expect(await r.run(stepCommand({}, 3))).toEqual({ kind: 'completed', output: 'ran' });
    });
  });

  describe('heartbeats', () => {
    /**
     * A runner whose attempt holds until `gate` resolves, with a 1,000 ms heartbeat throttle on a
     * manual clock; `ctx()` is the attempt's context once it started.
     */
    function heldAttempt() {
      const clock = manualClock();
      const hb = sink();
      const gate = deferred();
      let ctx: WorkerContext | undefined;
      const r = runner(
        async (_input, c) => {
          ctx = c;
          await gate.promise;
          return 'done';
        },
        undefined,
        { clock, heartbeatThrottleMs: 1_000 },
      );
      return { clock, hb, gate, r, ctx: () => ctx as WorkerContext };
    }

    function sink(): HeartbeatSink & { published: unknown[]; extended: number } {
      const s = {
        published: [] as unknown[],
        extended: 0,
        publish: (details: unknown) => {
          s.published.push(details);
          return Promise.resolve();
        },
        extend: () => {
          s.extended++;
          return Promise.resolve();
        },
      };
      return s;
    }

    it('extends on every call but publishes at most once per throttle window', async () => {
      const { clock, hb, gate, r, ctx: context } = heldAttempt();
      const outcome = r.run(stepCommand(), { heartbeat: hb });
      await jest.advanceTimersByTimeAsync(0);
      await context().heartbeat({ progress: 0.1 });
      clock.advance(500);
      await context().heartbeat({ progress: 0.2 });
      clock.advance(500);
      await context().heartbeat({ progress: 0.3, at: new Date(Date.UTC(2024, 0, 1)) });
      await context().heartbeat();
      expect(hb.extended).toBe(4);
      expect(hb.published).toEqual([{ progress: 0.1 }, { progress: 0.3, at: '2024-01-01T00:00:00.000Z' }]);
      gate.resolve();
      await outcome;
      await context().heartbeat({ progress: 1 });
      expect(hb.extended).toBe(4);
    });

    it("publishes often enough for the step's heartbeat timeout, whatever the throttle", async () => {
      const { clock, hb, gate, r, ctx: context } = heldAttempt();
      // Timeout 1,000 ms, a beat every 500 ms: a 1,000 ms throttle would publish one beat a
      // second, and the orchestrator would time the healthy attempt out between two of them.
      const outcome = r.run(stepCommand({ heartbeatTimeoutMs: 1_000 }), { heartbeat: hb });
      await jest.advanceTimersByTimeAsync(0);
      const publishedAt: number[] = [];
      for (let beat = 0; beat <= 6; beat++) {
        const before = hb.published.length;
        await context().heartbeat({ beat });
        if (hb.published.length > before) publishedAt.push(clock.now());
        clock.advance(500);
      }
      const gaps = publishedAt.slice(1).map((at, i) => at - (publishedAt[i] as number));
      expect(gaps.length).toBeGreaterThan(0);
      expect(Math.max(...gaps)).toBeLessThan(1_000);
      gate.resolve();
      await outcome;
    });

    it('never rejects, even when publishing and extending fail, and sends unserialisable details without them', async () => {
      const logger = recordingLogger();
      let published: unknown = 'nothing';
      const failing: HeartbeatSink = {
        publish: (details) => {
          published = details;
          return Promise.reject(new Error('bus down'));
        },
        extend: () => {
          throw new Error('gone');
        },
      };
      const r = runner(
        async (_input, ctx) => {
          await ctx.heartbeat({ big: 1n });
          return 'survived';
        },
        undefined,
        { logger },
      );
      expect(await r.run(stepCommand(), { heartbeat: failing })).toEqual({
        kind: 'completed',
        output: 'survived',
      });
      expect(published).toBeUndefined();
      expect(logger.lines.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([
        'heartbeat details are not JSON-serialisable; sent without them',
        'heartbeat failed',
        'heartbeat failed',
      ]);
    });
  });

  describe('progress', () => {
    function progressSink(): ProgressSink & { reports: ProgressReport[] } {
      const reports: ProgressReport[] = [];
      return { reports, publish: async (report) => void reports.push(report) };
    }

    it('hands ctx.progress() reports to the sink, and ignores those made after the attempt ended', async () => {
      const sink = progressSink();
      let ctx: WorkerContext | undefined;
      const r = runner((_input, c) => {
        ctx = c;
        c.progress?.({ deltas: { answer: 'Paris' } });
        return 'done';
      });
      expect(await r.run(stepCommand(), { progress: sink })).toEqual({ kind: 'completed', output: 'done' });
      await jest.advanceTimersByTimeAsync(0);
      expect(sink.reports).toEqual([{ seq: 1, deltas: { answer: 'Paris' } }]);

      ctx!.progress?.({ deltas: { answer: ' again' } });
      await jest.advanceTimersByTimeAsync(1_000);
      expect(sink.reports).toHaveLength(1);
    });

    it('publishes what was coalesced before the attempt ended, at the bounded rate', async () => {
      const sink = progressSink();
      const r = runner(
        (_input, ctx) => {
          for (const token of ['a', 'b', 'c']) ctx.progress?.({ deltas: { answer: token } });
          return 'done';
        },
        undefined,
        { progressMaxPerSecond: 5 },
      );
      await r.run(stepCommand(), { progress: sink });
      await jest.advanceTimersByTimeAsync(199);
      expect(sink.reports).toEqual([{ seq: 1, deltas: { answer: 'a' } }]);
      await jest.advanceTimersByTimeAsync(1);
      expect(sink.reports).toEqual([
        { seq: 1, deltas: { answer: 'a' } },
        { seq: 2, deltas: { answer: 'bc' } },
      ]);
    });

    it('is off with progressMaxPerSecond 0, and refuses a negative rate', async () => {
      const sink = progressSink();
      const r = runner((_input, ctx) => (ctx.progress?.({ deltas: { answer: 'x' } }), 'done'), undefined, {
        progressMaxPerSecond: 0,
      });
      await r.run(stepCommand(), { progress: sink });
      await jest.advanceTimersByTimeAsync(1_000);
      expect(sink.reports).toEqual([]);
      expect(() => runner(() => 1, undefined, { progressMaxPerSecond: -1 })).toThrow(
        'progressMaxPerSecond must be a finite number ≥ 0',
      );
    });
  });
});
