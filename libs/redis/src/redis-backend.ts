import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';
import { RedisDefinitionStore } from './redis-definition-store';
import { RedisEventBus } from './redis-event-bus';
import { RedisMemoStore } from './redis-memo-store';
import { RedisRunStore } from './redis-run-store';
import { RedisTimelineStore } from './redis-timeline-store';
import { RedisWorkerRegistry } from './redis-worker-registry';

/** The Redis backend: bus and stores over one connection setup (the shape of the memory backend). */
export interface RedisBackend {
  readonly bus: RedisEventBus;
  readonly runs: RedisRunStore;
  readonly definitions: RedisDefinitionStore;
  /** The live worker-manager replicas. */
  readonly registry: RedisWorkerRegistry;
  /** Run timelines and the event-monitor's once-only marks. */
  readonly timelines: RedisTimelineStore;
  /** Records written once per key (agent answers), kept `memoTtlMs`. */
  readonly memo: RedisMemoStore;
  /** The connection they share (keys, counters, readiness). */
  readonly connection: RedisConnection;
  /** Whether Redis can be reached now (the connection is up and ready, not reconnecting). */
  connected(): boolean;
  /** Closes the bus (waiting for handlers in flight and their acks), then the stores, then the connection. */
  close(): Promise<void>;
}

/**
 * The Redis bus, run store and definition store on one connection, so that a transition commits
 * its run, its messages and the acknowledgement of the result that caused it in one script call.
 * Options are validated at once (every problem listed); nothing connects synchronously, and a
 * Redis that is down is waited for (commands fail with TIMEOUT meanwhile).
 *
 * @example
 * const backend = createRedisBackend({ url: 'redis://127.0.0.1:6379', prefix: 'shop', partitions: 4 });
 * const orchestrator = new Orchestrator({ bus: backend.bus, runs: backend.runs, definitions: backend.definitions });
 * // …
 * await backend.close();
 */
export function createRedisBackend(options: RedisBackendOptions): RedisBackend {
  const connection = RedisConnection.open(options);
  const bus = new RedisEventBus(connection);
  const runs = new RedisRunStore(connection);
  const definitions = new RedisDefinitionStore(connection);
  const registry = new RedisWorkerRegistry(connection);
  const timelines = new RedisTimelineStore(connection);
  const memo = new RedisMemoStore(connection);
  let closing: Promise<void> | undefined;
  return {
    bus,
    runs,
    definitions,
    registry,
    timelines,
    memo,
    connection,
    connected: () => connection.isConnected,
    close: () => {
      closing ??= (async () => {
        await bus.close();
        await runs.close();
        await definitions.close();
        await timelines.close();
        await connection.close();
      })();
      return closing;
    },
  };
}
