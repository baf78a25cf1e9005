import { MAX_WORKER_NAME_LENGTH, ValidationError, WORKER_NAME_PATTERN } from '@multiagents/contracts';
import type { WorkerContext } from './worker-context';
import { describeValue } from './describe-value';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './worker-options';

/**
 * The code of a worker. `input` is what the step's input mapping produced, as JSON data; the type
 * parameter is the author's claim about it, not a check. The returned value must be
 * JSON-serialisable: it becomes the step's output.
 */
export type WorkerHandler<I = unknown, O = unknown> = (input: I, ctx: WorkerContext) => Promise<O> | O;

/** A named worker, ready to be hosted by a WorkerManager. */
export interface WorkerDefinition<I = unknown, O = unknown> {
  readonly name: string;
  readonly handler: WorkerHandler<I, O>;
  readonly options: ResolvedWorkerOptions;
}

/** What worker names look like (defined in contracts, shared with definition validation). */
export { WORKER_NAME_PATTERN };

/**
 * Defines a worker: its name (what workflow steps refer to), its handler and how it runs.
 * Throws a ValidationError listing every problem at once.
 *
 * @example
 * const charge = defineWorker<{ amount: number }, { paymentId: string }>(
 *   'payment.charge',
 *   async (input, ctx) => ({ paymentId: await payments.charge(input.amount, ctx.idempotencyKey, ctx.signal) }),
 *   { concurrency: 8, timeoutMs: 10_000 },
 * );
 */
export function defineWorker<I = unknown, O = unknown>(
  name: string,
  handler: WorkerHandler<I, O>,
  options?: WorkerOptions,
): WorkerDefinition<I, O> {
  const problems: string[] = [];
  if (typeof name !== 'string' || name.length === 0) {
    problems.push(`name must be a non-empty string (got ${describeValue(name)})`);
  } else if (!WORKER_NAME_PATTERN.test(name) || name.length > MAX_WORKER_NAME_LENGTH) {
    problems.push(
      `name ${JSON.stringify(name)} must be dot-separated tokens of letters, digits, _ : - (at most ${MAX_WORKER_NAME_LENGTH} characters)`,
    );
  }
  if (typeof handler !== 'function')
    problems.push(`handler must be a function (got ${describeValue(handler)})`);
  const resolved = resolveWorkerOptions(options, problems);
  if (problems.length > 0) {
    throw new ValidationError(
      `invalid worker ${typeof name === 'string' ? JSON.stringify(name) : ''}`.trim(),
      problems,
    );
  }
  return Object.freeze({ name, handler, options: resolved });
}
