import { ValidationError, type EnvelopeCodecOptions } from '@multiagents/contracts';
import { silentLogger, systemClock, type Clock, type Logger } from '@multiagents/core';
import type { NatsConnection } from '@nats-io/transport-node';
import { NATS_PREFIX_PATTERN } from './nats-names';

const MINUTE_MS = 60 * 1000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** Defaults of {@link NatsBackendOptions}. */
export const DEFAULT_NATS_BACKEND_OPTIONS = Object.freeze({
  prefix: 'multiagents',
  replicas: 1,
  storage: 'file',
  duplicateWindowMs: 2 * MINUTE_MS,
  maxAgeMs: DAY_MS,
  maxBytes: -1,
  maxMsgs: -1,
  deadLetterMaxAgeMs: 30 * DAY_MS,
  maxAckPending: -1,
  fetchExpiresMs: 5_000,
  maxFetchBatch: 256,
  maxPublishInFlight: 1_024,
  publishRetries: 5,
  requestTimeoutMs: 5_000,
  connectTimeoutMs: 5_000,
  reconnectTimeWaitMs: 250,
  connectionName: 'multiagents',
  listWindowMs: 10 * MINUTE_MS,
  outboxGraceMs: 10_000,
  timerAckWaitMs: 30_000,
  timerHoldMs: 5_000,
  timerDeferMs: 60_000,
  timerPullBatch: 256,
  cachedRuns: 20_000,
  definitionCacheMs: 0,
  memoMaxAgeMs: 7 * DAY_MS,
} as const);

/** Defaults of {@link NatsMaintenanceOptions}. */
export const DEFAULT_NATS_MAINTENANCE_OPTIONS = Object.freeze({ intervalMs: 30_000 });

/**
 * The periodic maintenance of the runs bucket (see `NatsRunStore.maintain`): it repairs what a
 * crashed writer left half done, drops the live index's delete markers, and (with
 * `terminalRunTtlMs`) purges finished runs. It costs JetStream API calls, so it runs only where
 * asked: one or a few orchestrators, never every worker-manager.
 */
export interface NatsMaintenanceOptions {
  /** Time between two passes (default {@link DEFAULT_NATS_MAINTENANCE_OPTIONS}`.intervalMs`). */
  readonly intervalMs?: number;
  /**
   * Finished runs that ended longer ago than this are purged with every key they have. Unset:
   * finished runs are kept for ever (KV on NATS 2.9 has no per-key TTL, and a bucket `max_age`
   * would also expire runs that wait longer than it).
   */
  readonly terminalRunTtlMs?: number;
}

/**
 * Options of `createNatsBackend`. Give `servers` (the backend opens, reconnects for ever and
 * closes its own connection) or `connection` (one the application owns; never closed here).
 */
export interface NatsBackendOptions {
  /** `nats://host:port`, or several for a cluster. */
  readonly servers?: string | readonly string[];
  /** An open connection to use instead of `servers`; closing the backend leaves it open. */
  readonly connection?: NatsConnection;
  /** Connection name shown by the server's monitoring (`/connz`). */
  readonly connectionName?: string;
  /**
   * How the connection authenticates and encrypts (with `servers`): one of user and password, a
   * token, an NKey seed or a credentials file (JWT + seed), and TLS files. Credentials in the
   * server URLs work too; giving both is refused.
   */
  readonly credentials?: NatsCredentials;
  /** Namespace of every stream, subject, consumer and bucket (default `multiagents`). */
  readonly prefix?: string;
  /** Replicas of every stream and bucket: 1 on a single server, 3 on a 3-node cluster (1 to 5). */
  readonly replicas?: number;
  /** Where JetStream keeps the streams and buckets: `file` (survives restarts) or `memory`. */
  readonly storage?: 'file' | 'memory';
  /**
   * A message published again with the same id within this window is stored once: a command sent
   * again, an outbox or a timer wake-up republished after a crash (every stream).
   */
  readonly duplicateWindowMs?: number;
  /** Passed to `encodeEnvelope`/`decodeEnvelope` (signing key, size limit). */
  readonly codec?: EnvelopeCodecOptions;
  /**
   * Age after which the topic stream drops a message, acknowledged or not (0: never). Messages
   * stay after every group acknowledged them until this age: size the store for throughput ×
   * maxAge, and keep it well above any consumer's expected downtime.
   */
  readonly maxAgeMs?: number;
  /** Size limit of the topic stream in bytes (-1: none). When reached, publishes are refused. */
  readonly maxBytes?: number;
  /** Message-count limit of the topic stream (-1: none). When reached, publishes are refused. */
  readonly maxMsgs?: number;
  /** Age after which a dead letter is dropped (0: never). */
  readonly deadLetterMaxAgeMs?: number;
  /**
   * `max_ack_pending` of new bus consumers (-1: no limit). Messages waiting out a retry delay count
   * as ack-pending, so a low limit lets failing messages stall a group.
   */
  readonly maxAckPending?: number;
  /** How long one pull request of a subscription waits at the server for messages (>= 1000). */
  readonly fetchExpiresMs?: number;
  /** Most messages one pull request asks for (a subscription never asks for more than it can run). */
  readonly maxFetchBatch?: number;
  /** Most publishes of one `publish` call awaiting their JetStream ack at once. */
  readonly maxPublishInFlight?: number;
  /**
   * Attempts of one publish while the failure is transient (no answer, no responders while
   * JetStream restarts, a disconnect with the request out); each attempt first waits up to
   * `requestTimeoutMs` for a reconnect. Safe: the message id de-duplicates a retry of a publish
   * that did land. Compare-and-set writes are never retried (their outcome decides).
   */
  readonly publishRetries?: number;
  /** Timeout of JetStream API calls, KV operations and publish acks. */
  readonly requestTimeoutMs?: number;
  /** How long the first connection attempt may take. */
  readonly connectTimeoutMs?: number;
  /** Wait between reconnection attempts (the connection retries for ever). */
  readonly reconnectTimeWaitMs?: number;
  /**
   * Width of the time windows the done index is cut into (a listing page reads whole windows):
   * size it to hold a few thousand runs at the usual start rate. Never change it for a prefix.
   */
  readonly listWindowMs?: number;
  /**
   * A record whose outbox (lifecycle event, timer wake-ups) is still in it this long after it was
   * written, and younger than the duplicate window, has its outbox published again when it is
   * read (de-duplicated by message id): its writer died before publishing, or its publishes
   * failed. Keep it well above the time a publish takes.
   */
  readonly outboxGraceMs?: number;
  /**
   * The timer consumer's ack wait: a timer held or claimed by an orchestrator that died is handed
   * to another one after this long. A live orchestrator keeps its timers by touching them.
   */
  readonly timerAckWaitMs?: number;
  /**
   * A timer fetched this close to its due time is held in memory and fired on time; a later one is
   * handed back with a delay (nak) that brings it back just before it is due.
   */
  readonly timerHoldMs?: number;
  /**
   * A timer due within this long of the transition that schedules it is kept in the memory of the
   * orchestrator that wrote it, which fires it itself, instead of being published as a wake-up
   * (most such timers — step timeouts — are cancelled long before they are due). The run's record
   * lists it: if that orchestrator dies, whoever reads the record publishes the wake-up once the
   * timer is overdue by `outboxGraceMs`, so it fires late by at most the readers' sweep interval,
   * and not before the run is the orchestrator's `redispatchAfterMs` old (its sweep reads only runs
   * that old). 0: publish every wake-up at once.
   */
  readonly timerDeferMs?: number;
  /** Most timer wake-ups one pull request takes. */
  readonly timerPullBatch?: number;
  /** Runs whose latest revision, state and meta this process remembers (saves reads). */
  readonly cachedRuns?: number;
  /**
   * How long the latest version of a definition is served from memory (every start asks for it);
   * a version registered by another process is then seen at most this late. 0 (the default): the
   * starts of one event-loop turn share one read, and each sees every version put before it began.
   */
  readonly definitionCacheMs?: number;
  /**
   * Age after which the memo bucket (`backend.memo`: agents' recorded answers) drops a record (its
   * `max_age`; 0: never). Default 7 days; never shorter than `maintenance.terminalRunTtlMs`, so a
   * record outlives every delivery of its command. Every process of a prefix should use the same
   * value: the first one creates the bucket, the others use it as it is.
   */
  readonly memoMaxAgeMs?: number;
  /** Start the periodic maintenance of the runs bucket (absent: none; see NatsMaintenanceOptions). */
  readonly maintenance?: NatsMaintenanceOptions;
  /** Ages records and stamps dead letters (default: the system clock). */
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/** See {@link NatsBackendOptions}`.credentials`; secrets are never logged nor put in errors. */
export interface NatsCredentials {
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
  /** An NKey user seed (`SU…`): the client signs the server's nonce with it. */
  readonly nkeySeed?: string;
  /** A `.creds` file (a user JWT and its NKey seed), read when the connection opens. */
  readonly credsFile?: string;
  /** TLS: the CA that signs the server's certificate, and a client certificate for mutual TLS. */
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
}

/** {@link NatsBackendOptions} after defaults. */
export interface ResolvedNatsBackendOptions {
  /** The servers without credentials. */
  readonly servers: readonly string[];
  /** The credentials the server URLs carried: user and password, or a token. */
  readonly auth: NatsUrlCredentials | undefined;
  readonly credentials: NatsCredentials | undefined;
  readonly connection: NatsConnection | undefined;
  readonly connectionName: string;
  readonly prefix: string;
  readonly replicas: number;
  readonly storage: 'file' | 'memory';
  readonly duplicateWindowMs: number;
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly maxMsgs: number;
  readonly deadLetterMaxAgeMs: number;
  readonly maxAckPending: number;
  readonly fetchExpiresMs: number;
  readonly maxFetchBatch: number;
  readonly maxPublishInFlight: number;
  readonly publishRetries: number;
  readonly requestTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly reconnectTimeWaitMs: number;
  readonly listWindowMs: number;
  readonly outboxGraceMs: number;
  readonly timerAckWaitMs: number;
  readonly timerHoldMs: number;
  readonly timerDeferMs: number;
  readonly timerPullBatch: number;
  readonly cachedRuns: number;
  readonly definitionCacheMs: number;
  readonly memoMaxAgeMs: number;
  readonly maintenance:
    { readonly intervalMs: number; readonly terminalRunTtlMs: number | undefined } | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
}

const KNOWN_KEYS: ReadonlySet<string> = new Set([
  'servers',
  'connection',
  'connectionName',
  'credentials',
  ...Object.keys(DEFAULT_NATS_BACKEND_OPTIONS),
  'codec',
  'maintenance',
  'clock',
  'logger',
]);

const isInt = (value: unknown, min: number): boolean =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min;
const isLimit = (value: unknown): boolean => value === -1 || isInt(value, 1);

/**
 * Applies the defaults and checks everything, throwing one ValidationError that lists every
 * problem (unknown option names included: a misspelt option would otherwise be ignored).
 */
export function resolveNatsBackendOptions(options: NatsBackendOptions): ResolvedNatsBackendOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValidationError('NATS backend options', ['options must be an object']);
  }
  const d = DEFAULT_NATS_BACKEND_OPTIONS;
  const problems: string[] = [];
  for (const key of Object.keys(options)) {
    if (!KNOWN_KEYS.has(key)) problems.push(`unknown option "${key}"`);
  }
  const given: unknown = options.servers;
  let servers: string[] = [];
  if (given !== undefined) {
    const list: unknown[] = typeof given === 'string' ? given.split(',') : Array.isArray(given) ? given : [];
    if (list.length === 0 || !list.every((s) => typeof s === 'string' && s.trim() !== '')) {
      problems.push('servers must be a URL or a non-empty list of URLs');
    } else {
      servers = list.map((s) => (s as string).trim());
    }
  }
  if (options.connection === undefined && given === undefined) {
    problems.push('servers or connection is required');
  }
  if (options.connection !== undefined && given !== undefined) {
    problems.push('give servers or connection, not both');
  }
  const m = options.maintenance;
  const { bare, auth } = splitCredentials(servers, problems);
  const resolved: ResolvedNatsBackendOptions = {
    servers: bare,
    auth,
    credentials: options.credentials,
    connection: options.connection,
    connectionName: options.connectionName ?? d.connectionName,
    prefix: options.prefix ?? d.prefix,
    replicas: options.replicas ?? d.replicas,
    storage: options.storage ?? d.storage,
    duplicateWindowMs: options.duplicateWindowMs ?? d.duplicateWindowMs,
    codec: options.codec,
    maxAgeMs: options.maxAgeMs ?? d.maxAgeMs,
    maxBytes: options.maxBytes ?? d.maxBytes,
    maxMsgs: options.maxMsgs ?? d.maxMsgs,
    deadLetterMaxAgeMs: options.deadLetterMaxAgeMs ?? d.deadLetterMaxAgeMs,
    maxAckPending: options.maxAckPending ?? d.maxAckPending,
    fetchExpiresMs: options.fetchExpiresMs ?? d.fetchExpiresMs,
    maxFetchBatch: options.maxFetchBatch ?? d.maxFetchBatch,
    maxPublishInFlight: options.maxPublishInFlight ?? d.maxPublishInFlight,
    publishRetries: options.publishRetries ?? d.publishRetries,
    requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs ?? d.connectTimeoutMs,
    reconnectTimeWaitMs: options.reconnectTimeWaitMs ?? d.reconnectTimeWaitMs,
    listWindowMs: options.listWindowMs ?? d.listWindowMs,
    outboxGraceMs: options.outboxGraceMs ?? d.outboxGraceMs,
    timerAckWaitMs: options.timerAckWaitMs ?? d.timerAckWaitMs,
    timerHoldMs: options.timerHoldMs ?? d.timerHoldMs,
    timerDeferMs: options.timerDeferMs ?? d.timerDeferMs,
    timerPullBatch: options.timerPullBatch ?? d.timerPullBatch,
    cachedRuns: options.cachedRuns ?? d.cachedRuns,
    definitionCacheMs: options.definitionCacheMs ?? d.definitionCacheMs,
    memoMaxAgeMs: options.memoMaxAgeMs ?? d.memoMaxAgeMs,
    maintenance:
      m === undefined
        ? undefined
        : {
            intervalMs: m?.intervalMs ?? DEFAULT_NATS_MAINTENANCE_OPTIONS.intervalMs,
            terminalRunTtlMs: m?.terminalRunTtlMs,
          },
    clock: options.clock ?? systemClock,
    logger: options.logger ?? silentLogger,
  };
  const r = resolved;
  if (typeof r.connectionName !== 'string') problems.push('connectionName must be a string');
  if (typeof r.prefix !== 'string' || !NATS_PREFIX_PATTERN.test(r.prefix)) {
    problems.push(`prefix must match ${NATS_PREFIX_PATTERN.source}`);
  }
  if (!isInt(r.replicas, 1) || r.replicas > 5) problems.push('replicas must be an integer from 1 to 5');
  if (r.storage !== 'file' && r.storage !== 'memory') problems.push("storage must be 'file' or 'memory'");
  // JetStream takes durations in nanoseconds; whole milliseconds keep them exact integers.
  if (!isInt(r.duplicateWindowMs, 1)) {
    problems.push('duplicateWindowMs must be an integer >= 1');
  } else if (isInt(r.maxAgeMs, 1) && r.duplicateWindowMs > r.maxAgeMs) {
    problems.push('duplicateWindowMs must not exceed maxAgeMs');
  }
  if (!isInt(r.maxAgeMs, 0)) problems.push('maxAgeMs must be an integer >= 0 (0: no age limit)');
  if (!isLimit(r.maxBytes)) problems.push('maxBytes must be -1 (no limit) or an integer >= 1');
  if (!isLimit(r.maxMsgs)) problems.push('maxMsgs must be -1 (no limit) or an integer >= 1');
  if (!isInt(r.deadLetterMaxAgeMs, 0)) problems.push('deadLetterMaxAgeMs must be an integer >= 0 (0: never)');
  if (!isLimit(r.maxAckPending)) problems.push('maxAckPending must be -1 (no limit) or an integer >= 1');
  if (!isInt(r.fetchExpiresMs, 1_000)) problems.push('fetchExpiresMs must be an integer >= 1000');
  if (!isInt(r.maxFetchBatch, 1)) problems.push('maxFetchBatch must be an integer >= 1');
  if (!isInt(r.maxPublishInFlight, 1)) problems.push('maxPublishInFlight must be an integer >= 1');
  if (!isInt(r.publishRetries, 1)) problems.push('publishRetries must be an integer >= 1');
  if (!isInt(r.requestTimeoutMs, 1)) problems.push('requestTimeoutMs must be an integer >= 1');
  if (!isInt(r.connectTimeoutMs, 1)) problems.push('connectTimeoutMs must be an integer >= 1');
  if (!isInt(r.reconnectTimeWaitMs, 0)) problems.push('reconnectTimeWaitMs must be an integer >= 0');
  if (!isInt(r.listWindowMs, 1_000)) problems.push('listWindowMs must be an integer >= 1000');
  if (!isInt(r.outboxGraceMs, 1)) {
    problems.push('outboxGraceMs must be an integer >= 1');
  } else if (isInt(r.duplicateWindowMs, 1) && r.outboxGraceMs >= r.duplicateWindowMs) {
    // A recovered outbox is republished only inside the window, where the server drops copies.
    problems.push('outboxGraceMs must be shorter than duplicateWindowMs');
  }
  if (!isInt(r.timerAckWaitMs, 1_000)) problems.push('timerAckWaitMs must be an integer >= 1000');
  if (!isInt(r.timerHoldMs, 0)) {
    problems.push('timerHoldMs must be an integer >= 0');
  } else if (isInt(r.timerAckWaitMs, 1_000) && r.timerHoldMs * 2 > r.timerAckWaitMs) {
    // A held timer is touched every half ack wait; one held longer would be handed out again.
    problems.push('timerHoldMs must be at most half of timerAckWaitMs');
  }
  if (!isInt(r.timerDeferMs, 0)) problems.push('timerDeferMs must be an integer >= 0');
  if (!isInt(r.timerPullBatch, 1)) problems.push('timerPullBatch must be an integer >= 1');
  if (!isInt(r.cachedRuns, 0)) problems.push('cachedRuns must be an integer >= 0');
  if (!isInt(r.definitionCacheMs, 0)) problems.push('definitionCacheMs must be an integer >= 0');
  if (!isInt(r.memoMaxAgeMs, 0)) problems.push('memoMaxAgeMs must be an integer >= 0 (0: never)');
  if (m !== undefined) {
    if (typeof m !== 'object' || m === null) {
      problems.push('maintenance must be an object');
    } else {
      if (!isInt(r.maintenance?.intervalMs, 1))
        problems.push('maintenance.intervalMs must be an integer >= 1');
      const ttl = r.maintenance?.terminalRunTtlMs;
      if (ttl !== undefined && !isInt(ttl, 1)) {
        problems.push('maintenance.terminalRunTtlMs must be an integer >= 1');
      } else if (ttl !== undefined && isInt(r.memoMaxAgeMs, 1) && r.memoMaxAgeMs < ttl) {
        problems.push(
          `memoMaxAgeMs (${r.memoMaxAgeMs}) must not be shorter than maintenance.terminalRunTtlMs ` +
            `(${ttl}): a memo record must outlive its run's commands`,
        );
      }
    }
  }
  problems.push(...credentialProblems(r.credentials, r.auth));
  const maxBytes = r.codec?.maxBytes;
  if (maxBytes !== undefined && !isInt(maxBytes, 1)) problems.push('codec.maxBytes must be an integer >= 1');
  if (typeof r.clock?.now !== 'function') problems.push('clock must have a now() method');
  if (problems.length > 0) throw new ValidationError('NATS backend options', problems);
  return resolved;
}

/** Credentials given in a server URL: `nats://user:password@host` or `nats://token@host`. */
export type NatsUrlCredentials =
  { readonly user: string; readonly pass: string } | { readonly token: string };

/**
 * Takes the credentials out of the server URLs (the client sends them as connect options); every
 * URL that carries some must carry the same.
 */
function splitCredentials(
  servers: readonly string[],
  problems: string[],
): { bare: string[]; auth: NatsUrlCredentials | undefined } {
  let auth: NatsUrlCredentials | undefined;
  let authKey: string | undefined;
  const bare = servers.map((server) => {
    let url: URL;
    try {
      url = new URL(server.includes('://') ? server : `nats://${server}`);
    } catch {
      return server;
    }
    if (url.username === '' && url.password === '') return server;
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    const found: NatsUrlCredentials = url.password === '' ? { token: user } : { user, pass };
    const key = JSON.stringify(found);
    if (authKey !== undefined && authKey !== key) {
      problems.push(
        'servers carry different credentials: give the same user and password (or token) in each',
      );
    }
    authKey = key;
    auth = found;
    url.username = '';
    url.password = '';
    return url.toString().replace(/\/$/, '');
  });
  return { bare, auth };
}

function credentialProblems(
  credentials: NatsCredentials | undefined,
  urlAuth: NatsUrlCredentials | undefined,
): string[] {
  if (credentials === undefined) return [];
  const problems: string[] = [];
  const kinds = [
    credentials.user !== undefined || credentials.pass !== undefined ? 'user and password' : undefined,
    credentials.token !== undefined ? 'token' : undefined,
    credentials.nkeySeed !== undefined ? 'NKey seed' : undefined,
    credentials.credsFile !== undefined ? 'credentials file' : undefined,
  ].filter((kind): kind is string => kind !== undefined);
  if (kinds.length > 1) problems.push(`credentials: give one of ${kinds.join(', ')}, not several`);
  if (kinds.length > 0 && urlAuth !== undefined) {
    problems.push('credentials: the server URLs carry credentials too; give them in one place');
  }
  if ((credentials.user === undefined) !== (credentials.pass === undefined)) {
    problems.push('credentials: user and pass go together');
  }
  if (credentials.nkeySeed !== undefined && !/^SU[A-Z2-7]{50,}$/.test(credentials.nkeySeed.trim())) {
    // Never quote the seed: it is the secret.
    problems.push('credentials: nkeySeed is not an NKey user seed (it starts with SU)');
  }
  const tls = credentials.tls;
  if (tls !== undefined && (tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    problems.push('credentials: tls.certFile and tls.keyFile go together');
  }
  return problems;
}
