import { ValidationError, type EnvelopeCodecOptions } from '@multiagents/contracts';
import { silentLogger, systemClock, type Clock, type Logger } from '@multiagents/core';
import type { RedisOptions } from 'ioredis';
import { DEFAULT_REDIS_KEY_PREFIX, RedisKeys } from './redis-keys';

/** Defaults of {@link RedisEventBusOptions}. */
export const DEFAULT_REDIS_BUS_OPTIONS = {
  prefix: DEFAULT_REDIS_KEY_PREFIX,
  /** Longest a subscription's XREADGROUP blocks before it looks for due work again. */
  blockMs: 1_000,
  /** Most entries one XREADGROUP or one reclaim pass takes (never more than free handler slots). */
  batchSize: 64,
  /** How often each subscription reclaims entries idle past its visibility timeout (XAUTOCLAIM). */
  claimIntervalMs: 1_000,
  /** How often the topics this bus touched are trimmed; 0 turns periodic trimming off. */
  trimIntervalMs: 5_000,
  /** Entries a topic keeps while it has no consumer group (MAXLEN ~). */
  maxRetainedPerTopic: 100_000,
  /** Dead letters kept per topic; the oldest beyond this are dropped. */
  maxDeadLettersPerTopic: 10_000,
  /** A command (publish, ack…) that Redis has not answered within this long is rejected. */
  commandTimeoutMs: 5_000,
  /** Longest wait between two reconnection attempts (exponential backoff from 50 ms, plus jitter). */
  reconnectMaxDelayMs: 2_000,
  /**
   * Reconnection attempts after which the commands queued while Redis is unreachable are
   * rejected (ioredis `maxRetriesPerRequest`), so the offline queue cannot grow without bound.
   */
  maxRetriesPerRequest: 10,
} as const;

/** Options of {@link RedisEventBus}. Either `url` or `client` (or both) is required. */
export interface RedisEventBusOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  readonly url?: string;
  /**
   * ioredis options (host, port, password, tls…), applied over `url`. The bus sets
   * `commandTimeout` and `maxRetriesPerRequest` itself (from the options below) and a
   * `retryStrategy` unless one is given here; `keyPrefix` is refused: use `prefix`.
   */
  readonly client?: RedisOptions;
  /** Namespace of every key (`MULTIAGENTS_PREFIX`); default `multiagents`. */
  readonly prefix?: string;
  /** Passed to `encodeEnvelope`/`decodeEnvelope` (signing key, size limit). */
  readonly codec?: EnvelopeCodecOptions;
  readonly blockMs?: number;
  readonly batchSize?: number;
  readonly claimIntervalMs?: number;
  readonly trimIntervalMs?: number;
  readonly maxRetainedPerTopic?: number;
  readonly maxDeadLettersPerTopic?: number;
  readonly commandTimeoutMs?: number;
  readonly reconnectMaxDelayMs?: number;
  readonly maxRetriesPerRequest?: number;
  /** Stamps dead letters (`deadAt`); visibility and retry timing run on Redis' clock. */
  readonly clock?: Clock;
  /** Connection trouble and background failures are logged here. */
  readonly logger?: Logger;
}

/** {@link RedisEventBusOptions} after defaults. */
export interface ResolvedRedisEventBusOptions {
  readonly url: string | undefined;
  readonly client: RedisOptions | undefined;
  readonly prefix: string;
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly blockMs: number;
  readonly batchSize: number;
  readonly claimIntervalMs: number;
  readonly trimIntervalMs: number;
  readonly maxRetainedPerTopic: number;
  readonly maxDeadLettersPerTopic: number;
  readonly commandTimeoutMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly maxRetriesPerRequest: number;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** Applies the defaults and validates, listing every problem in one `ValidationError`. */
export function resolveRedisEventBusOptions(options: RedisEventBusOptions): ResolvedRedisEventBusOptions {
  const d = DEFAULT_REDIS_BUS_OPTIONS;
  const resolved: ResolvedRedisEventBusOptions = {
    url: options.url,
    client: options.client,
    prefix: options.prefix ?? d.prefix,
    codec: options.codec,
    blockMs: options.blockMs ?? d.blockMs,
    batchSize: options.batchSize ?? d.batchSize,
    claimIntervalMs: options.claimIntervalMs ?? d.claimIntervalMs,
    trimIntervalMs: options.trimIntervalMs ?? d.trimIntervalMs,
    maxRetainedPerTopic: options.maxRetainedPerTopic ?? d.maxRetainedPerTopic,
    maxDeadLettersPerTopic: options.maxDeadLettersPerTopic ?? d.maxDeadLettersPerTopic,
    commandTimeoutMs: options.commandTimeoutMs ?? d.commandTimeoutMs,
    reconnectMaxDelayMs: options.reconnectMaxDelayMs ?? d.reconnectMaxDelayMs,
    maxRetriesPerRequest: options.maxRetriesPerRequest ?? d.maxRetriesPerRequest,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? silentLogger,
  };
  const problems: string[] = [];
  if (resolved.url === undefined && resolved.client === undefined) problems.push('url or client is required');
  if (
    resolved.url !== undefined &&
    (typeof resolved.url !== 'string' || !/^rediss?:\/\/./.test(resolved.url))
  ) {
    problems.push('url must be a redis:// or rediss:// URL');
  }
  if (resolved.client !== undefined && (typeof resolved.client !== 'object' || resolved.client === null)) {
    problems.push('client must be an object of ioredis options');
  } else if (resolved.client?.keyPrefix) {
    problems.push('client.keyPrefix is not supported: use prefix (keys carry Redis Cluster hash tags)');
  }
  problems.push(...RedisKeys.prefixProblems(resolved.prefix));
  const integer = (name: keyof ResolvedRedisEventBusOptions, min: number): void => {
    const value = resolved[name];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      problems.push(`${name} must be an integer >= ${min}`);
    }
  };
  integer('blockMs', 1); // BLOCK 0 would block forever
  integer('batchSize', 1);
  integer('claimIntervalMs', 1);
  integer('trimIntervalMs', 0);
  integer('maxRetainedPerTopic', 0);
  integer('maxDeadLettersPerTopic', 1);
  integer('commandTimeoutMs', 1);
  integer('reconnectMaxDelayMs', 1);
  integer('maxRetriesPerRequest', 0);
  if (problems.length > 0) throw new ValidationError('RedisEventBus options', problems);
  return resolved;
}
