import { ErrorCode, MAX_TIMER_MS, ValidationError } from '@multiagents/contracts';
import { defineWorker } from './define-worker';
import { DEFAULT_WORKER_OPTIONS, type WorkerOptions } from './worker-options';

const handler = (): string => 'ok';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).code).toBe(ErrorCode.InvalidArgument);
    return (err as ValidationError).problems;
  }
  throw new Error('expected a ValidationError');
}

describe('defineWorker', () => {
  it('applies the defaults and freezes the definition', () => {
    const worker = defineWorker('inventory.reserve', handler);
    expect(worker.name).toBe('inventory.reserve');
    expect(worker.handler).toBe(handler);
    expect(worker.options).toEqual(DEFAULT_WORKER_OPTIONS);
    expect(Object.isFrozen(worker)).toBe(true);
  });

  it('keeps given options and fills a partial circuit breaker from the defaults', () => {
    const worker = defineWorker('payment.charge', handler, {
      concurrency: 3,
      timeoutMs: 2_000,
      circuitBreaker: { consecutiveFailures: 2 },
    });
    expect(worker.options).toEqual({
      concurrency: 3,
      timeoutMs: 2_000,
      circuitBreaker: { consecutiveFailures: 2, halfOpenAfterMs: 10_000 },
    });
    expect(defineWorker('payment.refund', handler, { circuitBreaker: false }).options.circuitBreaker).toBe(
      false,
    );
  });

  it.each(['a', 'payment.charge', 'ns:worker-1_v2', 'A.B.C'])('accepts the name %s', (name) => {
    expect(defineWorker(name, handler).name).toBe(name);
  });

  it.each(['', 'has space', 'slash/name', 'star*', 'ünï'])('rejects the name %j', (name) => {
    expect(problemsOf(() => defineWorker(name, handler))).toEqual([expect.stringContaining('name')]);
  });

  it('lists every problem at once', () => {
    const problems = problemsOf(() =>
      defineWorker(
        'bad name',
        'not a function' as never,
        {
          concurrency: 0,
          timeoutMs: 1.5,
          circuitBreaker: { consecutiveFailures: -1, halfOpenAfterMs: Number.NaN, extra: 1 } as never,
          concurency: 4,
        } as WorkerOptions,
      ),
    );
    expect(problems).toEqual([
      expect.stringContaining('name "bad name"'),
      'handler must be a function (got "not a function")',
      'unknown option "concurency"',
      'concurrency must be a positive integer (got 0)',
      'timeoutMs must be a positive integer (got 1.5)',
      'unknown option "circuitBreaker.extra"',
      'circuitBreaker.consecutiveFailures must be a positive integer (got -1)',
      'circuitBreaker.halfOpenAfterMs must be a positive integer (got NaN)',
    ]);
  });

  it('refuses durations longer than a timer can wait (a timer fires those after 1 ms)', () => {
    expect(
      problemsOf(() =>
        defineWorker('w', handler, { timeoutMs: 2 ** 31, circuitBreaker: { halfOpenAfterMs: 3e9 } }),
      ),
    ).toEqual([
      `timeoutMs must be at most ${MAX_TIMER_MS} ms, what a timer can wait (got ${2 ** 31})`,
      `circuitBreaker.halfOpenAfterMs must be at most ${MAX_TIMER_MS} ms, what a timer can wait (got 3000000000)`,
    ]);
    expect(() => defineWorker('w', handler, { timeoutMs: MAX_TIMER_MS })).not.toThrow();
  });

  it('rejects options and a circuit breaker that are not objects', () => {
    expect(problemsOf(() => defineWorker('w', handler, 5 as never))).toEqual([
      'options must be an object (got 5)',
    ]);
    expect(problemsOf(() => defineWorker('w', handler, { circuitBreaker: true } as never))).toEqual([
      'circuitBreaker must be an object or false (got true)',
    ]);
  });
});

describe('worker names', () => {
  it.each(['a..b', '.a', 'a.', 'a b', 'x'.repeat(129)])(
    'refuses %j: it could not name a topic or subject',
    (name) => {
      expect(() => defineWorker(name, () => null)).toThrow(/dot-separated tokens/);
    },
  );

  it('accepts dotted names', () => {
    expect(defineWorker('inventory.reserve:v2', () => null).name).toBe('inventory.reserve:v2');
  });
});
