import { resolve } from 'node:path';
import { ValidationError } from '@multiagents/contracts';
import type { WorkerDefinition } from './define-worker';

type AnyWorker = WorkerDefinition<never, unknown>;

function isWorker(value: unknown): value is AnyWorker {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { name?: unknown }).name === 'string' &&
    typeof (value as { handler?: unknown }).handler === 'function'
  );
}

/**
 * Loads worker modules by path, as the services do with MULTIAGENTS_WORKER_MODULES. Each module
 * exports `workers` (an array of defineWorker results) or a default array. Throws a
 * ValidationError listing every module that could not be loaded and every duplicate name.
 */
export function loadWorkerModules(paths: readonly string[]): AnyWorker[] {
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
    const list = exported['workers'] ?? exported['default'];
    if (!Array.isArray(list) || !list.every(isWorker)) {
      problems.push(`${path}: must export "workers", an array of defineWorker(...) results`);
      continue;
    }
    workers.push(...list);
  }
  const seen = new Set<string>();
  for (const worker of workers) {
    if (seen.has(worker.name)) problems.push(`worker ${worker.name} is defined twice`);
    seen.add(worker.name);
  }
  if (problems.length > 0) throw new ValidationError('cannot load workers', problems);
  return workers;
}
