import { ValidationError } from '@multiagents/contracts';
import { createMemoryBackend } from '@multiagents/memory';
import {
  silentLogger,
  systemClock,
  type Clock,
  type DefinitionStore,
  type EventBus,
  type Logger,
  type MemoStore,
  type OrchestratorOptions,
  type RunStore,
  type TimelineStore,
  type WorkerRegistry,
} from '@multiagents/core';
import { createNatsBackend } from '@multiagents/nats';
import {
  clusterPartitions,
  createRedisBackend,
  inspectRedisCluster,
  readClusterHashField,
  redisClusterClientFactory,
  RedisKeys,
} from '@multiagents/redis';
import { readFileSync } from 'node:fs';
import { withUnwrappedPayloadKeys } from './kms';
import { SealingMemoStore } from './sealing-memo-store';
import { SealingRunStore } from './sealing-run-store';
import { SealingTimelineStore } from './sealing-timeline-store';
import type { RedisCredentials, ServiceConfig } from './service-config';
import { isConfigurationError, maskUrl, waitUntilReachable } from './startup';

/** The settings {@link openBackend} reads. */
export type BackendSettings =
  | 'backend'
  | 'redisUrl'
  | 'redisCluster'
  | 'natsUrl'
  | 'redisPartitions'
  | 'natsReplicas'
  | 'prefix'
  | 'busCodec'
  | 'wrappedPayloadKeys'
  | 'redisCredentials'
  | 'natsCredentials';

/** What openBackend needs of the service configuration. */
export type BackendConfig = Pick<ServiceConfig, BackendSettings>;

/** ioredis options of the Redis credentials: ACL user, password, TLS files read now. */
function redisConnectOptions(credentials: RedisCredentials | undefined): Record<string, unknown> | undefined {
  if (credentials === undefined) return undefined;
  const tls = credentials.tls;
  return {
    ...(credentials.username === undefined ? {} : { username: credentials.username }),
    ...(credentials.password === undefined ? {} : { password: credentials.password }),
    ...(tls === undefined
      ? {}
      : {
          tls: {
            ...(tls.caFile === undefined ? {} : { ca: readFileSync(tls.caFile) }),
            ...(tls.certFile === undefined ? {} : { cert: readFileSync(tls.certFile) }),
            ...(tls.keyFile === undefined ? {} : { key: readFileSync(tls.keyFile) }),
          },
        }),
  };
}

/** What an orchestrator should set on a backend: how it may lose messages decides. */
export type RecommendedOrchestratorOptions = Pick<
  OrchestratorOptions,
  'redispatchAfterMs' | 'redispatchOnRestored' | 'recoverySweepIntervalMs'
>;

/** The adapters behind the core ports for one configured backend. */
export interface Backend {
  readonly bus: EventBus;
  readonly runs: RunStore;
  readonly definitions: DefinitionStore;
  /** The live worker-manager replicas. */
  readonly registry: WorkerRegistry;
  /** Run timelines and once-only marks (the event-monitor's). */
  readonly timelines: TimelineStore;
  /**
   * Records written once per key on the service's own broker (put-if-absent, kept at least as long
   * as finished runs): an agent's `memo`, so a command redelivered to another replica returns the
   * recorded answer instead of paying the model again. Worker modules get it through
   * `createWorkers({ memo })`.
   */
  readonly memo: MemoStore;
  /**
   * Orchestrator settings for this backend: whether commands are sent again when their results do
   * not come (a broker that may forget what it acknowledged), and how eagerly.
   */
  readonly orchestrator: RecommendedOrchestratorOptions;
  /**
   * Whether the broker can be reached now: what a service's `/readyz` adds to its own readiness,
   * so a replica that lost its broker is taken out of rotation until it is back.
   */
  connected(): boolean;
  /** Closes every adapter (and the connection they share, if any). */
  close(): Promise<void>;
}

/** Options of {@link openBackend}. */
export interface OpenBackendOptions {
  readonly logger?: Logger;
  readonly clock?: Clock;
  /**
   * Run store maintenance in this process (retention purges where the broker has no TTL).
   * Orchestrators turn it on; worker-managers need not.
   */
  readonly maintenance?: boolean;
}

/** How long terminal runs are kept on the Redis and NATS backends: 7 days. */
export const TERMINAL_RUN_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * Opens the backend a service's configuration names (SPEC §1): `memory` (one process), `redis`
 * (Streams + Lua) or `nats` (JetStream + KV). The one place that knows every backend, so apps
 * stay thin and backends never know each other.
 */
export async function openBackend(given: BackendConfig, options: OpenBackendOptions = {}): Promise<Backend> {
  // Payload keys a KMS wrapped are unwrapped now, into this process's memory only.
  const busCodec = await withUnwrappedPayloadKeys(given);
  const config: BackendConfig = busCodec === given.busCodec ? given : { ...given, busCodec };
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  switch (config.backend) {
    case 'memory': {
      const backend = createMemoryBackend({
        clock,
        ...(config.busCodec === undefined ? {} : { bus: { codec: config.busCodec } }),
      });
      // An in-process bus never loses what it acknowledged.
      return { ...backend, orchestrator: { redispatchAfterMs: 0 } };
    }
    case 'redis': {
      const url = required(config.redisUrl, 'REDIS_URL');
      if (config.redisCluster && config.redisCredentials !== undefined) {
        throw new ValidationError('Redis Cluster', [
          'REDIS_USERNAME, REDIS_PASSWORD and REDIS_TLS_* apply to a single Redis server: with a Redis ' +
            'Cluster, put the credentials in the REDIS_URL seeds (redis://user:password@host:port, rediss:// for TLS)',
        ]);
      }
      const cluster = config.redisCluster ? await openRedisCluster(url, config, logger) : undefined;
      const partitions = cluster?.partitions ?? config.redisPartitions;
      const backend = createRedisBackend({
        ...(cluster ? { connect: cluster.connect } : { url }),
        prefix: config.prefix,
        ...(partitions === undefined ? {} : { partitions }),
        terminalRunTtlMs: TERMINAL_RUN_TTL_MS,
        ...(config.busCodec === undefined ? {} : { codec: config.busCodec }),
        ...(config.redisCredentials === undefined
          ? {}
          : { redis: redisConnectOptions(config.redisCredentials) }),
        logger: logger.child({ component: 'redis' }),
        clock,
      });
      return {
        ...backend,
        ...sealedAtRest(backend, config),
        // One script writes a run with its commands, and Redis keeps a consistent prefix of its
        // history across a crash (AOF) or a failover: a command is lost only with its transition.
        // Sending commands again is a safety net here, not a recovery path.
        orchestrator: {
          redispatchAfterMs: 5 * 60_000,
          redispatchOnRestored: false,
          recoverySweepIntervalMs: 0,
        },
      };
    }
    case 'nats': {
      const backend = await namingReplicasVariable(
        createNatsBackend({
          servers: required(config.natsUrl, 'NATS_URL')
            .split(',')
            .map((server) => server.trim()),
          prefix: config.prefix,
          ...(config.natsReplicas === undefined ? {} : { replicas: config.natsReplicas }),
          ...(config.busCodec === undefined ? {} : { codec: config.busCodec }),
          ...(config.natsCredentials === undefined ? {} : { credentials: config.natsCredentials }),
          ...(options.maintenance ? { maintenance: { terminalRunTtlMs: TERMINAL_RUN_TTL_MS } } : {}),
          // Every process alike (the first one creates the bucket): as long as finished runs.
          memoMaxAgeMs: TERMINAL_RUN_TTL_MS,
          logger: logger.child({ component: 'nats' }),
          clock,
        }),
      );
      return {
        ...backend,
        ...sealedAtRest(backend, config),
        // The outbox is published after the KV write, and a server killed mid-write may lose the
        // tail of its log (writes reach the disk asynchronously): commands are sent again when
        // their results do not come, after a reconnect, and by a sweep over the live runs.
        orchestrator: {
          redispatchAfterMs: 30_000,
          redispatchOnRestored: true,
          recoverySweepIntervalMs: 10_000,
        },
      };
    }
  }
}

/**
 * {@link openBackend}, tried again with growing delays while the broker cannot be reached (the
 * NATS backend connects as it opens; Redis connects lazily, so its first command is the probe).
 * Resolves undefined when `signal` aborted the wait; configuration errors are thrown at once.
 */
export async function openBackendWhenReachable(
  config: BackendConfig,
  options: OpenBackendOptions & { readonly signal?: AbortSignal },
): Promise<Backend | undefined> {
  if (config.backend !== 'memory') {
    const log = options.logger ?? silentLogger;
    if (config.busCodec?.payloadKeys === undefined && config.wrappedPayloadKeys === undefined) {
      log.warn(
        {},
        'BUS PAYLOADS ARE PLAINTEXT: inputs, outputs and context travel unencrypted (set MULTIAGENTS_PAYLOAD_KEYS)',
      );
    } else if (config.wrappedPayloadKeys !== undefined) {
      log.info(
        {
          kmsModule: config.wrappedPayloadKeys.kmsModule,
          keyIds: [...config.wrappedPayloadKeys.wrapped.keys()],
        },
        'payload keys are unwrapped by the KMS module as the backend opens',
      );
    }
    if (config.busCodec?.keys === undefined && config.busCodec?.verificationKeys === undefined) {
      log.warn(
        {},
        'BUS SIGNING IS OFF: any process that can write to the broker can forge commands and results ' +
          '(set MULTIAGENTS_BUS_SIGNING_KEY and MULTIAGENTS_BUS_VERIFICATION_KEYS)',
      );
    } else {
      log.info(
        {
          signingKeyId: config.busCodec.keys?.currentKeyId,
          verificationKeyIds: [
            ...(config.busCodec.verificationKeys ?? config.busCodec.keys?.keys ?? new Map()).keys(),
          ],
        },
        'bus envelopes are signed and verified before parsing',
      );
    }
  }
  let backend: Backend | undefined;
  const address = (config.backend === 'redis' ? config.redisUrl : config.natsUrl) ?? '';
  const reachable = await waitUntilReachable(
    async () => {
      backend ??= await openBackend(config, options);
      await backend.registry.list();
    },
    {
      logger: options.logger ?? silentLogger,
      address,
      // A bad setting: not worth waiting for.
      fatal: isConfigurationError,
      ...(options.signal ? { signal: options.signal } : {}),
    },
  );
  if (!reachable) {
    await backend?.close();
    return undefined;
  }
  return backend;
}

/**
 * With payload keys, what a broker keeps of a run's data is encrypted at rest too: the run
 * records ({@link SealingRunStore}), the agents' memos ({@link SealingMemoStore}) and the
 * event-monitor's timelines ({@link SealingTimelineStore}).
 */
function sealedAtRest(
  stores: Pick<Backend, 'runs' | 'memo' | 'timelines'>,
  config: Pick<ServiceConfig, 'busCodec' | 'acceptPlaintextAtRest'>,
): Pick<Backend, 'runs' | 'memo' | 'timelines'> {
  const keys = config.busCodec?.payloadKeys;
  if (keys === undefined) return stores;
  const options = { acceptPlaintext: config.acceptPlaintextAtRest === true };
  return {
    runs: new SealingRunStore(stores.runs, keys, options),
    memo: new SealingMemoStore(stores.memo, keys, options),
    timelines: new SealingTimelineStore(stores.timelines, keys, options),
  };
}

/**
 * A Redis Cluster at start: every master must answer and the cluster be `ok` (else a retryable
 * error naming the unreachable nodes keeps the service not ready); P is the configured count,
 * else the one recorded for the prefix, else a multiple of the masters found.
 */
async function openRedisCluster(
  url: string,
  config: BackendConfig,
  logger: Logger,
): Promise<{ connect: ReturnType<typeof redisClusterClientFactory>; partitions: number }> {
  const seeds = url
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const connect = redisClusterClientFactory({ seeds });
  const topology = await inspectRedisCluster({ seeds });
  if (topology.unreachable.length > 0) {
    logger.warn(
      { broker: maskUrl(url), unreachable: topology.unreachable },
      'some Redis Cluster seed nodes do not answer; the cluster is ok without them',
    );
  }
  let partitions = config.redisPartitions;
  if (partitions === undefined) {
    const recorded = await readClusterHashField(
      { seeds },
      topology,
      new RedisKeys(config.prefix, 1).config(),
      'partitions',
    );
    partitions = recorded === null ? clusterPartitions(topology) : Number(recorded);
    logger.info(
      { masters: topology.masters.length, partitions, recorded: recorded !== null },
      'Redis Cluster partitions (MULTIAGENTS_REDIS_PARTITIONS unset)',
    );
  }
  return { connect, partitions };
}

/** A replicas problem of the NATS backend, told in the variable that sets it (exit 78). */
async function namingReplicasVariable<T>(opening: Promise<T>): Promise<T> {
  try {
    return await opening;
  } catch (err) {
    if (err instanceof ValidationError && err.problems.some((p) => p.startsWith('replicas '))) {
      throw new ValidationError(
        'NATS replicas',
        err.problems.map((p) => p.replace(/^replicas (\d+)/, 'MULTIAGENTS_NATS_REPLICAS=$1')),
      );
    }
    throw err;
  }
}

function required(value: string | undefined, name: string): string {
  if (!value) throw new ValidationError('backend settings', [`${name} is required for this backend`]);
  return value;
}
