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
/** Jest suite for the RunStore port (atomic transitions, CAS, listing, timers). */
export { runStoreConformance } from './run-store-conformance';
/** What a RunStore backend's test factory returns. */
export type { RunStoreFixture } from './run-store-conformance';
/** Jest suite for the DefinitionStore port. */
export { definitionStoreConformance } from './definition-store-conformance';
/** What a DefinitionStore adapter's test factory returns. */
export type { DefinitionStoreFixture } from './definition-store-conformance';
/** The WorkerRegistry contract as Jest tests. */
export { workerRegistryConformance } from './worker-registry-conformance';
/** What a WorkerRegistry adapter's factory returns. */
export type { WorkerRegistryFixture } from './worker-registry-conformance';
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
export { itOnEachBroker } from './on-each-broker';
export type { BrokerName } from './on-each-broker';
/** A private server process and its options. */
export type {
  ServerProcess,
  RedisServerOptions,
  NatsServerOptions,
  NatsServerProcess,
} from './server-process';
/** A service running as its own process (fault tests, multi-process benchmark). */
export { ServiceProcess } from './service-process';
/** A throw-away CA (openssl) that issues server and client certificates for TLS tests. */
export { createTestCa } from './test-pki';
/** A test CA and the certificates it issues. */
export type { TestCa, TestCertificate } from './test-pki';

/** Keys that appear twice in one object of a JSON text (log lines must have none). */
export { duplicateJsonKeys } from './duplicate-keys';
/** Reads a Prometheus or OpenMetrics text exposition (what `/metrics` serves) in tests. */
export { parseMetricsText, findSamples, sumSamples } from './metrics-text';
/** One parsed sample. */
export type { MetricSample } from './metrics-text';
/** A private Prometheus scraping test endpoints, with its HTTP API. */
export { startPrometheusServer } from './prometheus-server';
/** Its options and the shapes its API answers with. */
export type {
  PrometheusServer,
  PrometheusServerOptions,
  PrometheusSeries,
  PrometheusExemplar,
} from './prometheus-server';
/** A real OTLP/HTTP (protobuf) trace receiver for tests, and its decoder. */
export { OtlpReceiver, OtlpSpanKind, decodeOtlpTraces } from './otlp-receiver';
/** One received span. */
export type { ReceivedSpan } from './otlp-receiver';
/** The TimelineStore contract as Jest tests. */
export { timelineStoreConformance } from './timeline-store-conformance';
/** What a TimelineStore adapter's factory returns. */
export type { TimelineStoreFixture } from './timeline-store-conformance';
/** The MemoStore contract (put-if-absent, first writer wins, JSON round trip) as Jest tests. */
export { memoStoreConformance } from './memo-store-conformance';
/** What a MemoStore adapter's factory returns. */
export type { MemoStoreFixture } from './memo-store-conformance';
/** Private Redis Cluster (masters + replicas) and JetStream cluster processes on loopback. */
export { startRedisClusterProcesses, startNatsClusterProcesses } from './cluster-process';
/** The clusters' handles and options. */
export type {
  RedisClusterProcesses,
  RedisClusterOptions,
  RedisClusterNodeInfo,
  NatsClusterProcesses,
} from './cluster-process';
/** V8's view of hidden classes, for tests of hot-path data shapes. */
export { v8Shapes } from './v8-shapes';
export type { V8Shapes } from './v8-shapes';
