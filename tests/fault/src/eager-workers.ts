/**
 * A worker module (MULTIAGENTS_WORKER_MODULES) for the eager-dispatch crash test, hosted by the
 * orchestrators themselves: `eager.first` answers at once; so does `eager.hold`, unless
 * EAGER_HOLD_LOG names a file: then it appends its run's txId there and never finishes (the
 * process holding it is killed -9 by the test). Test-only.
 */
import { appendFileSync } from 'node:fs';
import { defineWorker } from '@multiagents/worker-sdk';

const holdLog = process.env['EAGER_HOLD_LOG'];

export const workers = [
  defineWorker('eager.first', () => ({ first: true })),
  defineWorker('eager.hold', (_input, ctx) => {
    if (holdLog === undefined || holdLog === '') return { held: false };
    appendFileSync(holdLog, `${ctx.txId}\n`);
    return new Promise<never>(() => {});
  }),
];
