/**
 * The order workers as a worker module for the services:
 * `MULTIAGENTS_WORKER_MODULES=examples/order-processing/dist/service-workers.js`.
 */
import { createOrderWorkers } from './order-workers';

/**
 * What a worker module exports: the workers the service hosts. No effects ledger: nothing in a
 * service process reads it (the bench checks the stored runs), and it would grow by a key per step
 * for as long as the service runs.
 */
export const workers = createOrderWorkers();
