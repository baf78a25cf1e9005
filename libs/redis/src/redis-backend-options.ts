import { ValidationError, type EnvelopeCodecOptions } from '@multiagents/contracts';
import { silentLogger, systemClock, type Clock, type Logger } from '@multiagents/core';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { DEFAULT_REDIS_KEY_PREFIX, RedisKeys } from './redis-keys';

/** What a connection is used for: commands (scripts, publishes, queries) or one blocking reader. */
export type RedisClientRole = 'commands' | 'reader';

/** An ioredis client: a single server (or Sentinel) connection, or a Redis Cluster client. */
export type RedisClient = Redis | Cluster;

/**
 * Opens a new client for `role`. The backend calls it once for commands and once per blocking
 * reader (a blocked XREADGROUP holds its connection), closes what it opened, and sets no options
 * on the client: the factory decides timeouts and reconnection (see {@link createRedisClient}).
 */
export type RedisClientFactory = (role: RedisClientRole) => RedisClient;

/** Defaults of {@link RedisBackendOptions}. */
export const DEFAULT_REDIS_BACKEND_OPTIONS = {
  prefix: DEFAULT_REDIS_KEY_PREFIX,
  partitions: 1,
  /** Terminal runs expire after 7 days (a Redis TTL on the run's hash). */
  terminalRunTtlMs: 7 * 24 * 60 * 60 * 1000,
  /** Entries the events stream of each partition keeps (XADD MAXLEN ~). */
  eventsMaxLen: 100_000,
  /** How often index entries of expired runs are looked for (a slice of each partition); 0: never. */
  indexPruneIntervalMs: 60_000,
  /** Longest a subscription's XREADGROUP blocks before it reads again. */
  blockMs: 1_000,
  /** Most entries one read or one reclaim pass takes per stream (never more than free handler slots). */
  batchSize: 64,
  /** How often each subscription reclaims entries idle past its visibility timeout (XAUTOCLAIM). */
  claimIntervalMs: 1_000,
  /** How often the streams this process touched are trimmed; 0 turns periodic trimming off. */
  trimIntervalMs: 5_000,
  /** Entries an unpartitioned topic keeps while it has no consumer group (MAXLEN ~). */
  maxRetainedPerTopic: 100_000,
  /** Dead letters kept per topic and partition; the oldest beyond this are dropped. */
  maxDeadLettersPerTopic: 10_000,
  /** A command Redis has not answered within this long is rejected with TIMEOUT. */
  commandTimeoutMs: 5_000,
  /** Longest wait between two reconnection attempts (exponential backoff from 50 ms, plus jitter). */
  reconnectMaxDelayMs: 2_000,
  /** Reconnection attempts after which commands queued while Redis is away are rejected. */
  maxRetriesPerRequest: 10,
} as const;

/** Options of {@link createRedisBackend}. Either `url` or `connect` is required. */
export interface RedisBackendOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  readonly url?: string;
  /** More ioredis options for the connections opened from `url` (TLS, password…); `keyPrefix` is refused. */
  readonly redis?: RedisOptions;
  /** Opens the clients instead of `url` (Redis Cluster, Sentinel, a test double). */
  readonly connect?: RedisClientFactory;
  /** Namespace of every key (`MULTIAGENTS_PREFIX`); default `multiagents`. */
  readonly prefix?: string;
  /**
   * Partitions P: a run lives in partition hash(txId) mod P, with its own streams, timers and
   * indexes under one hash tag (one Redis Cluster slot). Recorded in Redis at first use; a process
   * configured with another P for the same prefix is refused. Default 1.
   */
  readonly partitions?: number;
  /** How long a terminal run is kept (Redis TTL), in ms; 0 keeps runs forever. Default 7 days. */
  readonly terminalRunTtlMs?: number;
  /**
   * How long a memo record (`backend.memo`, an agent's recorded answer) is kept after it is
   * written (Redis TTL), in ms; 0 keeps records forever. Default: `terminalRunTtlMs`, and never
   * shorter than it (0 only when runs are kept forever too), so a record outlives every delivery
   * of its command.
   */
  readonly memoTtlMs?: number;
  /** Entries each partition's events stream keeps (approximate, XADD MAXLEN ~). */
  readonly eventsMaxLen?: number;
  /**
   * How often the run store drops the index entries of runs that expired: each pass sweeps each
   * partition's index in bounded rounds, up to 50,000 entries, going on where the last pass
   * stopped (list() also drops those it meets); 0 turns it off.
   */
  readonly indexPruneIntervalMs?: number;
  readonly blockMs?: number;
  readonly batchSize?: number;
  readonly claimIntervalMs?: number;
  readonly trimIntervalMs?: number;
  readonly maxRetainedPerTopic?: number;
  readonly maxDeadLettersPerTopic?: number;
  readonly commandTimeoutMs?: number;
  readonly reconnectMaxDelayMs?: number;
  readonly maxRetriesPerRequest?: number;
  /** Passed to `encodeEnvelope`/`decodeEnvelope` (signing key, size limit). */
  readonly codec?: EnvelopeCodecOptions;
  /** Stamps dead letters; visibility and retry timing run on real time, as Redis' idle times do. */
  readonly clock?: Clock;
  /** Connection trouble and background failures are logged here. */
  readonly logger?: Logger;
}

/** {@link RedisBackendOptions} after defaults. */
export interface ResolvedRedisBackendOptions {
  readonly url: string | undefined;
  readonly redis: RedisOptions | undefined;
  readonly connect: RedisClientFactory | undefined;
  readonly prefix: string;
  readonly partitions: number;
  readonly terminalRunTtlMs: number;
  readonly memoTtlMs: number;
  readonly eventsMaxLen: number;
  readonly indexPruneIntervalMs: number;
  readonly blockMs: number;
  readonly batchSize: number;
  readonly claimIntervalMs: number;
  readonly trimIntervalMs: number;
  readonly maxRetainedPerTopic: number;
  readonly maxDeadLettersPerTopic: number;
  readonly commandTimeoutMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly maxRetriesPerRequest: number;
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
}

type IntegerOption = {
  [K in keyof ResolvedRedisBackendOptions]: ResolvedRedisBackendOptions[K] extends number ? K : never;
}[keyof ResolvedRedisBackendOptions];

/** Smallest allowed value of each numeric option. */
const MINIMUMS: Readonly<Record<Exclude<IntegerOption, 'partitions' | 'memoTtlMs'>, number>> = {
  terminalRunTtlMs: 0,
  eventsMaxLen: 1,
  indexPruneIntervalMs: 0,
  blockMs: 1, // BLOCK 0 would block forever
  batchSize: 1,
  claimIntervalMs: 1,
  trimIntervalMs: 0,
  maxRetainedPerTopic: 0,
  maxDeadLettersPerTopic: 1,
  commandTimeoutMs: 1,
  reconnectMaxDelayMs: 1,
  maxRetriesPerRequest: 0,
};

/** Applies the defaults and validates everything, listing every problem in one ValidationError. */
export function resolveRedisBackendOptions(options: RedisBackendOptions): ResolvedRedisBackendOptions {
  const d = DEFAULT_REDIS_BACKEND_OPTIONS;
  const resolved: ResolvedRedisBackendOptions = {
    url: options.url,
    redis: options.redis,
    connect: options.connect,
    prefix: options.prefix ?? d.prefix,
    partitions: options.partitions ?? d.partitions,
    terminalRunTtlMs: options.terminalRunTtlMs ?? d.terminalRunTtlMs,
    memoTtlMs: options.memoTtlMs ?? options.terminalRunTtlMs ?? d.terminalRunTtlMs,
    eventsMaxLen: options.eventsMaxLen ?? d.eventsMaxLen,
    indexPruneIntervalMs: options.indexPruneIntervalMs ?? d.indexPruneIntervalMs,
    blockMs: options.blockMs ?? d.blockMs,
    batchSize: options.batchSize ?? d.batchSize,
    claimIntervalMs: options.claimIntervalMs ?? d.claimIntervalMs,
    trimIntervalMs: options.trimIntervalMs ?? d.trimIntervalMs,
    maxRetainedPerTopic: options.maxRetainedPerTopic ?? d.maxRetainedPerTopic,
    maxDeadLettersPerTopic: options.maxDeadLettersPerTopic ?? d.maxDeadLettersPerTopic,
    commandTimeoutMs: options.commandTimeoutMs ?? d.commandTimeoutMs,
    reconnectMaxDelayMs: options.reconnectMaxDelayMs ?? d.reconnectMaxDelayMs,
    maxRetriesPerRequest: options.maxRetriesPerRequest ?? d.maxRetriesPerRequest,
    codec: options.codec,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? silentLogger,
  };
  const problems: string[] = [];
  if (resolved.url === undefined && resolved.connect === undefined)
    problems.push('url or connect is required');
  if (resolved.url !== undefined && resolved.connect !== undefined)
    problems.push('give url or connect, not both');
  if (
    resolved.url !== undefined &&
    (typeof resolved.url !== 'string' || !/^rediss?:\/\/./.test(resolved.url))
  ) {
    problems.push('url must be a redis:// or rediss:// URL');
  }
  if (resolved.connect !== undefined && typeof resolved.connect !== 'function') {
    problems.push('connect must be a function (role) => ioredis client');
  }
  if (resolved.redis !== undefined) {
    if (typeof resolved.redis !== 'object' || resolved.redis === null) {
      problems.push('redis must be an object of ioredis options');
    } else if (resolved.redis.keyPrefix) {
      problems.push('redis.keyPrefix is not supported: use prefix (keys carry Redis Cluster hash tags)');
    }
    if (resolved.connect !== undefined) problems.push('redis options apply to url connections only');
  }
  problems.push(...RedisKeys.prefixProblems(resolved.prefix));
  problems.push(...RedisKeys.partitionProblems(resolved.partitions));
  for (const [name, min] of Object.entries(MINIMUMS) as [keyof typeof MINIMUMS, number][]) {
    const value = resolved[name];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
      problems.push(`${name} must be an integer >= ${min}`);
    }
  }
  // Checked only when given: by default it follows terminalRunTtlMs, whose own problem is listed.
  if (
    options.memoTtlMs !== undefined &&
    !(Number.isSafeInteger(options.memoTtlMs) && options.memoTtlMs >= 0)
  ) {
    problems.push('memoTtlMs must be an integer >= 0');
  } else if (
    Number.isSafeInteger(resolved.memoTtlMs) &&
    Number.isSafeInteger(resolved.terminalRunTtlMs) &&
    resolved.terminalRunTtlMs >= 0 &&
    (resolved.terminalRunTtlMs === 0
      ? resolved.memoTtlMs !== 0
      : resolved.memoTtlMs !== 0 && resolved.memoTtlMs < resolved.terminalRunTtlMs)
  ) {
    problems.push(
      `memoTtlMs (${resolved.memoTtlMs}) must not be shorter than terminalRunTtlMs ` +
        `(${resolved.terminalRunTtlMs}; 0 is forever): a memo record must outlive its run's commands`,
    );
  }
  if (typeof resolved.clock?.now !== 'function') problems.push('clock must have now()');
  if (typeof resolved.logger?.child !== 'function') problems.push('logger must be a Logger');
  if (problems.length > 0) throw new ValidationError('Redis backend options', problems);
  return resolved;
}
