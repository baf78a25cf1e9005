/**
 * Test support shared by every package: one conformance suite per port (run against every
 * adapter, memory included), a manual clock, polling and fixture helpers.
 *
 * @example
 * import { eventBusConformance } from '@multiagents/testing';
 * eventBusConformance('memory', async () => ({ bus: new MemoryEventBus() }));
 */

/** Jest suite for the EventBus port; see {@link eventBusConformance}. */
export { eventBusConformance } from './event-bus-conformance';
/** What an EventBus adapter's test factory returns, and the suite's options. */
export type { EventBusFixture, EventBusConformanceOptions } from './event-bus-conformance';
/** Jest suite for the StateStore port. */
export { stateStoreConformance } from './state-store-conformance';
/** What a StateStore adapter's test factory returns. */
export type { StateStoreFixture } from './state-store-conformance';
/** Jest suite for the TimerStore port. */
export { timerStoreConformance } from './timer-store-conformance';
/** What a TimerStore adapter's test factory returns. */
export type { TimerStoreFixture } from './timer-store-conformance';
/** Jest suite for the DefinitionStore port. */
export { definitionStoreConformance } from './definition-store-conformance';
/** What a DefinitionStore adapter's test factory returns. */
export type { DefinitionStoreFixture } from './definition-store-conformance';
/** A Clock moved by hand, and where it starts. */
export { ManualClock, DEFAULT_MANUAL_CLOCK_START_MS } from './manual-clock';
/** Bounded polling for real-time integration checks. */
export { waitFor, DEFAULT_WAIT_FOR_TIMEOUT_MS, DEFAULT_WAIT_FOR_INTERVAL_MS } from './wait-for';
/** Options of {@link waitFor}. */
export type { WaitForOptions } from './wait-for';
/** A real-time delay for bounded "nothing else happens" checks. */
export { sleep } from './sleep';
/** Builds a valid Run with a fresh txId. */
export { makeRun } from './make-run';
/** Builds a valid Envelope with a fresh id. */
export { makeEnvelope } from './make-envelope';
/** Private redis-server and nats-server processes for integration tests. */
export { startRedisServer, startNatsServer, startServerProcess, freePort } from './server-process';
/** A private server process and its options. */
export type { ServerProcess, RedisServerOptions } from './server-process';
/** A service running as its own process (fault tests, multi-process benchmark). */
export { ServiceProcess } from './service-process';
