import type { WorkerList } from '@multiagents/client';
import { textTable } from './text-table';

/**
 * `workers list`: the worker-manager, then one line per hosted worker. LINGERING counts handlers
 * that outlived their attempt (they ignore their abort signal): they hold slots too, so a worker
 * with IN FLIGHT + LINGERING at CAPACITY takes nothing more although few attempts show.
 */
export function workerListLines(list: WorkerList): string[] {
  return [
    `worker-manager ${list.managerId}${list.draining ? ' (draining)' : ''}`,
    ...textTable(
      ['WORKER', 'IN FLIGHT', 'LINGERING', 'CAPACITY', 'CIRCUIT'],
      list.workers.map((w) => [
        w.name,
        String(w.inFlight),
        String(w.lingering),
        String(w.capacity),
        w.circuit,
      ]),
    ),
  ];
}
