/**
 * The NATS backend: the EventBus on JetStream (durable pull consumers per group, dead letters,
 * de-duplication by message id), the RunStore on JetStream KV (one revision-checked write per
 * transition, its outbox dropped by the next write, timers as wake-up messages) and the
 * DefinitionStore, on one connection. Passes the shared conformance suites against nats-server 2.9.
 *
 * @example
 * import { createNatsBackend } from '@multiagents/nats';
 * const { bus, runs, definitions, registry, close } = await createNatsBackend({ servers: 'nats://127.0.0.1:4222' });
 */

/** Connects and builds the bus and stores on one connection. */
export { createNatsBackend } from './nats-backend';
/** What createNatsBackend returns. */
export type { NatsBackend } from './nats-backend';
/** Defaults of the backend's options and of its maintenance. */
export { DEFAULT_NATS_BACKEND_OPTIONS, DEFAULT_NATS_MAINTENANCE_OPTIONS } from './nats-backend-options';
/** Options of createNatsBackend, before and after defaults, and of its maintenance. */
export type {
  NatsBackendOptions,
  ResolvedNatsBackendOptions,
  NatsMaintenanceOptions,
  NatsCredentials,
} from './nats-backend-options';
/** The JetStream EventBus and the headers of its dead letters. */
export { NatsEventBus, DeadLetterHeader } from './nats-event-bus';
/** The RunStore on JetStream KV. */
export { NatsRunStore } from './nats-run-store';
/** The DefinitionStore on JetStream KV. */
export { NatsDefinitionStore } from './nats-definition-store';
/** The WorkerRegistry on JetStream KV. */
export { NatsWorkerRegistry } from './nats-worker-registry';
/** Run timelines and the event-monitor's once-only marks on JetStream KV. */
export { NatsTimelineStore, DEFAULT_TIMELINE_BUCKET_MAX_AGE_MS } from './nats-timeline-store';
/** Records written once per key (agent answers) on JetStream KV: create for put-if-absent. */
export { NatsMemoStore } from './nats-memo-store';
/** What the backend counts. */
export type { NatsCounters } from './nats-context';
/** The one builder of stream, subject, consumer, bucket and key names, and the name rules. */
export { NatsNames, NATS_PREFIX_PATTERN, NATS_TOPIC_PATTERN } from './nats-names';
/** A process's writes of one event-loop turn, made together (the bench's NATS floor uses it too). */
export { TurnWrites } from './turn-writes';
