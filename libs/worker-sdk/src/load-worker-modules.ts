import { resolve } from 'node:path';
import { ValidationError } from '@multiagents/contracts';
import type { MemoStore } from '@multiagents/core';
import { defineWorker, type WorkerDefinition } from './define-worker';

type AnyWorker = WorkerDefinition<never, unknown>;

/**
 * What a service hands to the `createWorkers` function of a worker module: things that live on
 * the service's own backend, so a module needs no broker address or connection of its own.
 */
export interface WorkerServices {
  /**
   * Records written once per key on the service's broker (put-if-absent, kept at least as long as
   * finished runs): give it to `defineAgent(…, { memo })`, so a command redelivered to another
   * replica returns the recorded answer instead of calling the model again.
   */
  readonly memo: MemoStore;
}

/**
 * What a worker module exports: `workers` (an array of defineWorker/defineAgent results), a
 * default array, or `createWorkers(services)` returning that array when its workers need the
 * service's {@link WorkerServices} (an agent's memo).
 */
export interface WorkerModule {
  readonly workers?: readonly AnyWorker[];
  readonly createWorkers?: (services: WorkerServices) => readonly AnyWorker[];
}

function isWorker(value: unknown): value is AnyWorker {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { name?: unknown }).name === 'string' &&
    typeof (value as { handler?: unknown }).handler === 'function'
  );
}

/**
 * A worker a module exported, checked as `defineWorker` checks one: a module may build the object
 * by hand, and a name, handler or option it got wrong would otherwise surface later (an attempt
 * waiting for ever on an undefined concurrency, or a manager that cannot start). Extra fields
 * (an agent's) are kept; the options come back resolved.
 */
function checkedWorker(path: string, worker: AnyWorker): AnyWorker | string[] {
  try {
    const checked = defineWorker(worker.name, worker.handler, worker.options);
    return Object.freeze({ ...worker, options: checked.options });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    return err.problems.map((problem) => `${path}: worker ${JSON.stringify(worker.name)}: ${problem}`);
  }
}

/** The workers one loaded module gives, or the problem with it. */
function workersOf(
  path: string,
  exported: Record<string, unknown>,
  services: WorkerServices | undefined,
): AnyWorker[] | string {
  const factory = exported['createWorkers'];
  const list = exported['workers'] ?? exported['default'];
  if (factory !== undefined) {
    if (list !== undefined) return `${path}: export either "workers" or "createWorkers", not both`;
    if (typeof factory !== 'function') {
      return `${path}: "createWorkers" must be a function (services) => an array of defineWorker(...) results`;
    }
    if (services === undefined) {
      return `${path}: exports "createWorkers(services)", but this host gives no services: export "workers" instead`;
    }
    let created: unknown;
    try {
      created = (factory as (services: WorkerServices) => unknown)(services);
    } catch (err) {
      return `${path}: createWorkers threw: ${String((err as Error)?.message ?? err).split('\n')[0]}`;
    }
    if (created instanceof Promise) {
      return `${path}: createWorkers must return the array itself, not a promise`;
    }
    if (!Array.isArray(created) || !created.every(isWorker)) {
      return `${path}: createWorkers must return an array of defineWorker(...) results`;
    }
    return created;
  }
  if (!Array.isArray(list) || !list.every(isWorker)) {
    return `${path}: must export "workers", an array of defineWorker(...) results, or "createWorkers(services)" returning one`;
  }
  return list;
}

/**
 * Loads worker modules by path, as the services do with MULTIAGENTS_WORKER_MODULES. Each module
 * exports `workers` (an array of defineWorker results), a default array, or
 * `createWorkers(services)`, called once here with `services` (the host's {@link WorkerServices},
 * such as the backend's memo) and returning that array. Throws a ValidationError listing every
 * module that could not be loaded and every duplicate name.
 *
 * @example
 * // my-agents.js, named in MULTIAGENTS_WORKER_MODULES
 * exports.createWorkers = ({ memo }) => [defineAgent('qa.answer', { signature, model, memo })];
 * // the host
 * const workers = loadWorkerModules(['./my-agents.js'], { memo: backend.memo });
 */
export function loadWorkerModules(paths: readonly string[], services?: WorkerServices): AnyWorker[] {
  const problems: string[] = [];
  const workers: AnyWorker[] = [];
  for (const path of paths) {
    let exported: Record<string, unknown>;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- user modules are named at run time
      exported = require(resolve(path)) as Record<string, unknown>;
    } catch (err) {
      problems.push(`${path}: cannot load: ${(err as Error).message.split('\n')[0]}`);
      continue;
    }
    const found = workersOf(path, exported, services);
    if (typeof found === 'string') {
      problems.push(found);
      continue;
    }
    for (const worker of found) {
      const checked = checkedWorker(path, worker);
      if (Array.isArray(checked)) problems.push(...checked);
      else workers.push(checked);
    }
  }
  const seen = new Set<string>();
  for (const worker of workers) {
    if (seen.has(worker.name)) problems.push(`worker ${worker.name} is defined twice`);
    seen.add(worker.name);
  }
  if (problems.length > 0) throw new ValidationError('cannot load workers', problems);
  return workers;
}
