/**
 * The EventBus on NATS JetStream: one limits-retention stream of topics, durable pull consumers
 * per group, dead letters in their own stream. Same semantics as the memory bus, passes the
 * shared conformance suite against nats-server 2.9.
 *
 * @example
 * import { NatsEventBus } from '@multiagents/bus-nats';
 * const bus = new NatsEventBus({ servers: 'nats://127.0.0.1:4222', prefix: 'multiagents' });
 * await bus.start();
 */

/** The JetStream EventBus and the headers of its dead letters. */
export { NatsEventBus, DeadLetterHeader } from './nats-event-bus';
/** Its options' defaults. */
export { DEFAULT_NATS_BUS_OPTIONS } from './nats-event-bus-options';
/** Options of NatsEventBus, before and after defaults. */
export type { NatsEventBusOptions, ResolvedNatsEventBusOptions } from './nats-event-bus-options';
/** The one builder of stream, subject and consumer names, and the name rules. */
export { NatsNames, NATS_PREFIX_PATTERN, NATS_TOPIC_PATTERN } from './nats-names';
