/**
 * The order workers as a worker module for the services:
 * `MULTIAGENTS_WORKER_MODULES=examples/order-processing/dist/service-workers.js`.
 */
import { createOrderWorkers } from './order-workers';

/** What a worker module exports: the workers the service hosts. */
export const workers = createOrderWorkers();
