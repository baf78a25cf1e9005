import { ValidationError, type EnvelopeCodecOptions } from '@multiagents/contracts';
import { silentLogger, systemClock, type Clock, type Logger } from '@multiagents/core';
import type { NatsConnection } from '@nats-io/transport-node';
import { NATS_PREFIX_PATTERN } from './nats-names';

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

/** Defaults of {@link NatsEventBusOptions}. */
export const DEFAULT_NATS_BUS_OPTIONS = {
  prefix: 'multiagents',
  streamReplicas: 1,
  storage: 'file',
  /** How long the topic stream keeps a message, acknowledged or not (see `maxAgeMs`). */
  maxAgeMs: DAY_MS,
  maxBytes: -1,
  maxMsgs: -1,
  duplicateWindowMs: 2 * 60 * 1000,
  deadLetterMaxAgeMs: 30 * DAY_MS,
  maxAckPending: -1,
  fetchExpiresMs: 5_000,
  maxFetchBatch: 256,
  maxPublishInFlight: 1_024,
  publishRetries: 5,
  requestTimeoutMs: 5_000,
  connectTimeoutMs: 5_000,
  reconnectTimeWaitMs: 250,
  connectionName: 'multiagents-bus',
} as const;

/**
 * Options of {@link NatsEventBus}. Give `servers` (the bus opens and owns a connection) or
 * `connection` (shared with, say, the NATS KV stores; the bus never closes it).
 */
export interface NatsEventBusOptions {
  /** `nats://host:port`, or several for a cluster. */
  readonly servers?: string | readonly string[];
  /** An open connection to use instead of `servers`; closing the bus leaves it open. */
  readonly connection?: NatsConnection;
  /** Namespace of every stream, subject and consumer (default `multiagents`). */
  readonly prefix?: string;
  /** Passed to `encodeEnvelope`/`decodeEnvelope` (signing key, size limit). */
  readonly codec?: EnvelopeCodecOptions;
  /** Replicas of both streams (1 on a single server, 3 on a 3-node cluster). */
  readonly streamReplicas?: number;
  /** Where JetStream keeps the streams: `file` (survives restarts) or `memory`. */
  readonly storage?: 'file' | 'memory';
  /**
   * Age after which the topic stream drops a message, acknowledged or not (0: never). The stream
   * uses `limits` retention: messages stay after every group acknowledged them until this age, so
   * size the store for throughput × maxAge. A message older than this that no consumer took is
   * lost, so keep it well above any consumer's expected downtime.
   */
  readonly maxAgeMs?: number;
  /** Size limit of the topic stream in bytes (-1: none). When reached, publishes are refused. */
  readonly maxBytes?: number;
  /** Message-count limit of the topic stream (-1: none). When reached, publishes are refused. */
  readonly maxMsgs?: number;
  /** A message published again with the same envelope id within this window is stored once. */
  readonly duplicateWindowMs?: number;
  /** Age after which a dead letter is dropped (0: never). */
  readonly deadLetterMaxAgeMs?: number;
  /**
   * `max_ack_pending` of new consumers (-1: no limit). Messages waiting out a retry delay count
   * as ack-pending, so a low limit lets failing messages stall a group.
   */
  readonly maxAckPending?: number;
  /** How long one pull request waits at the server for messages (JetStream needs >= 1000). */
  readonly fetchExpiresMs?: number;
  /** Most messages one pull request asks for (a subscription never asks for more than it can run). */
  readonly maxFetchBatch?: number;
  /** Most publishes of one `publish` call awaiting their JetStream ack at once. */
  readonly maxPublishInFlight?: number;
  /**
   * Attempts of one publish while the failure is transient (no answer within `requestTimeoutMs`,
   * no responders while JetStream restarts, a disconnect with the request out); each attempt
   * first waits up to `requestTimeoutMs` for a reconnect. Safe: the message id de-duplicates a
   * retry of a publish that did land. Worst case a publish takes about
   * `2 × publishRetries × requestTimeoutMs` before it fails.
   */
  readonly publishRetries?: number;
  /** Timeout of JetStream API calls and publish acks. */
  readonly requestTimeoutMs?: number;
  /** How long the first connection attempt may take. */
  readonly connectTimeoutMs?: number;
  /** Wait between reconnection attempts (the bus retries for ever). */
  readonly reconnectTimeWaitMs?: number;
  /** Connection name shown by the server's monitoring. */
  readonly connectionName?: string;
  /** Stamps dead letters (`deadAt`). */
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/** {@link NatsEventBusOptions} after defaults. */
export interface ResolvedNatsEventBusOptions {
  readonly servers: readonly string[];
  readonly connection: NatsConnection | undefined;
  readonly prefix: string;
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly streamReplicas: number;
  readonly storage: 'file' | 'memory';
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly maxMsgs: number;
  readonly duplicateWindowMs: number;
  readonly deadLetterMaxAgeMs: number;
  readonly maxAckPending: number;
  readonly fetchExpiresMs: number;
  readonly maxFetchBatch: number;
  readonly maxPublishInFlight: number;
  readonly publishRetries: number;
  readonly requestTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly reconnectTimeWaitMs: number;
  readonly connectionName: string;
  readonly clock: Clock;
  readonly logger: Logger;
}

const isInt = (value: number, min: number): boolean => Number.isInteger(value) && value >= min;
const isLimit = (value: number): boolean => value === -1 || isInt(value, 1);

/**
 * Applies the defaults and checks everything, throwing one ValidationError that lists every
 * problem.
 */
export function resolveNatsEventBusOptions(options: NatsEventBusOptions): ResolvedNatsEventBusOptions {
  const d = DEFAULT_NATS_BUS_OPTIONS;
  const problems: string[] = [];
  const servers =
    options.servers === undefined
      ? []
      : typeof options.servers === 'string'
        ? [options.servers]
        : [...options.servers];
  if (options.connection === undefined && servers.length === 0) {
    problems.push('servers or connection is required');
  }
  if (options.connection !== undefined && options.servers !== undefined) {
    problems.push('give servers or connection, not both');
  }
  if (servers.some((s) => typeof s !== 'string' || s.trim().length === 0)) {
    problems.push('servers must be non-empty strings');
  }
  const resolved: ResolvedNatsEventBusOptions = {
    servers,
    connection: options.connection,
    prefix: options.prefix ?? d.prefix,
    codec: options.codec,
    streamReplicas: options.streamReplicas ?? d.streamReplicas,
    storage: options.storage ?? d.storage,
    maxAgeMs: options.maxAgeMs ?? d.maxAgeMs,
    maxBytes: options.maxBytes ?? d.maxBytes,
    maxMsgs: options.maxMsgs ?? d.maxMsgs,
    duplicateWindowMs: options.duplicateWindowMs ?? d.duplicateWindowMs,
    deadLetterMaxAgeMs: options.deadLetterMaxAgeMs ?? d.deadLetterMaxAgeMs,
    maxAckPending: options.maxAckPending ?? d.maxAckPending,
    fetchExpiresMs: options.fetchExpiresMs ?? d.fetchExpiresMs,
    maxFetchBatch: options.maxFetchBatch ?? d.maxFetchBatch,
    maxPublishInFlight: options.maxPublishInFlight ?? d.maxPublishInFlight,
    publishRetries: options.publishRetries ?? d.publishRetries,
    requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs ?? d.connectTimeoutMs,
    reconnectTimeWaitMs: options.reconnectTimeWaitMs ?? d.reconnectTimeWaitMs,
    connectionName: options.connectionName ?? d.connectionName,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? silentLogger,
  };
  const r = resolved;
  if (typeof r.prefix !== 'string' || !NATS_PREFIX_PATTERN.test(r.prefix)) {
    problems.push(`prefix must match ${NATS_PREFIX_PATTERN.source}`);
  }
  if (!isInt(r.streamReplicas, 1) || r.streamReplicas > 5) {
    problems.push('streamReplicas must be an integer from 1 to 5');
  }
  if (r.storage !== 'file' && r.storage !== 'memory') problems.push("storage must be 'file' or 'memory'");
  // JetStream takes durations in nanoseconds; whole milliseconds keep them exact integers.
  if (!isInt(r.maxAgeMs, 0)) problems.push('maxAgeMs must be an integer >= 0 (0: no age limit)');
  if (!isLimit(r.maxBytes)) problems.push('maxBytes must be -1 (no limit) or an integer >= 1');
  if (!isLimit(r.maxMsgs)) problems.push('maxMsgs must be -1 (no limit) or an integer >= 1');
  if (!isInt(r.duplicateWindowMs, 1)) {
    problems.push('duplicateWindowMs must be an integer >= 1');
  } else if (r.maxAgeMs > 0 && r.duplicateWindowMs > r.maxAgeMs) {
    problems.push('duplicateWindowMs must not exceed maxAgeMs');
  }
  if (!isInt(r.deadLetterMaxAgeMs, 0)) problems.push('deadLetterMaxAgeMs must be an integer >= 0 (0: never)');
  if (!isLimit(r.maxAckPending)) problems.push('maxAckPending must be -1 (no limit) or an integer >= 1');
  if (!isInt(r.fetchExpiresMs, 1_000)) problems.push('fetchExpiresMs must be an integer >= 1000');
  if (!isInt(r.maxFetchBatch, 1)) problems.push('maxFetchBatch must be an integer >= 1');
  if (!isInt(r.maxPublishInFlight, 1)) problems.push('maxPublishInFlight must be an integer >= 1');
  if (!isInt(r.publishRetries, 1)) problems.push('publishRetries must be an integer >= 1');
  if (!isInt(r.requestTimeoutMs, 1)) problems.push('requestTimeoutMs must be an integer >= 1');
  if (!isInt(r.connectTimeoutMs, 1)) problems.push('connectTimeoutMs must be an integer >= 1');
  if (!isInt(r.reconnectTimeWaitMs, 0)) problems.push('reconnectTimeWaitMs must be an integer >= 0');
  if (typeof r.connectionName !== 'string') problems.push('connectionName must be a string');
  const maxBytes = r.codec?.maxBytes;
  if (maxBytes !== undefined && !isInt(maxBytes, 1)) problems.push('codec.maxBytes must be an integer >= 1');
  if (problems.length > 0) throw new ValidationError('NatsEventBus options', problems);
  return resolved;
}
