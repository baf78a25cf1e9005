import { ErrorCode, FailedPreconditionError, MultiAgentsError } from '@multiagents/contracts';
import type { Logger } from '@multiagents/core';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import {
  resolveRedisBackendOptions,
  type RedisBackendOptions,
  type RedisClient,
  type RedisClientRole,
  type ResolvedRedisBackendOptions,
} from './redis-backend-options';
import { RedisKeys } from './redis-keys';
import { defineScripts, type RedisScripts } from './scripts';

/** Log at most one connection error per client in this window (reconnects retry every ≤ 2 s). */
const ERROR_LOG_INTERVAL_MS = 10_000;
/** How long `close()` lets QUIT wait for replies still due before dropping the socket. */
const QUIT_TIMEOUT_MS = 2_000;
/** How long a socket being closed may stay half-open before it is destroyed (ioredis: 2 s). */
const DISCONNECT_TIMEOUT_MS = 300;

/**
 * Replies of a Redis that cannot serve the command now but will soon: a failover under way
 * (READONLY from a demoted master, MASTERDOWN from a replica that lost its master), a restart still
 * loading its data (LOADING), cluster slots moving or unserved (TRYAGAIN, CLUSTERDOWN), a script
 * running long (BUSY), too few replicas for a write (NOREPLICAS). The code starts the reply, or
 * follows `: -` where a script's error wraps it (Redis 6). BUSYGROUP, BUSYKEY and OOM are not here.
 */
const TRANSIENT_REPLY = /(?:^|: -)(?:READONLY|MASTERDOWN|LOADING|TRYAGAIN|CLUSTERDOWN|BUSY|NOREPLICAS)\b/;
/**
 * Credentials Redis refuses: a wrong password or user (WRONGPASS), none given where one is needed
 * (NOAUTH), or an ACL that does not grant the command or key (NOPERM). Waiting does not help: a
 * service stops at start with them (exit code 78), listed with its other configuration problems.
 */
const REFUSED_CREDENTIALS = /(?:^|: -)(?:WRONGPASS|NOAUTH)\b/;
const NOT_PERMITTED = /(?:^|: -)NOPERM\b/;
/** What ioredis rejects a command with when its connection went away, or a Cluster has no node. */
const CONNECTION_LOST = [
  'Connection is closed.',
  "Stream isn't writeable",
  'None of startup nodes is available',
  'Failed to refresh slots cache',
  'Too many Cluster redirections',
];
/** Socket errors that a reconnect may cure. */
const SOCKET_ERRORS = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ENOTCONN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
]);

/**
 * How a failure of Redis reads to a caller: `timeout` (no answer in time), `unavailable` (Redis or
 * the way to it cannot serve now: a failover, a restart, a lost connection; trying again later
 * works), `unauthenticated` or `denied` (credentials or an ACL Redis refuses: a setting to fix),
 * or `failed` (anything else: a refused command, out of memory, a bug).
 */
export function classifyRedisFailure(
  err: unknown,
): 'timeout' | 'unavailable' | 'unauthenticated' | 'denied' | 'failed' {
  if (!(err instanceof Error)) return 'failed';
  const { message, name } = err;
  if (message === 'Command timed out' || name === 'MaxRetriesPerRequestError') return 'timeout';
  if (REFUSED_CREDENTIALS.test(message)) return 'unauthenticated';
  if (NOT_PERMITTED.test(message)) return 'denied';
  const code = (err as { code?: unknown }).code;
  if (
    TRANSIENT_REPLY.test(message) ||
    CONNECTION_LOST.some((text) => message.startsWith(text)) ||
    name === 'ClusterAllFailedError' ||
    (typeof code === 'string' && SOCKET_ERRORS.has(code))
  ) {
    return 'unavailable';
  }
  return 'failed';
}

/** Counters shared by the bus and the stores of one connection, for `EventBus.counters()`. */
export interface RedisCounters {
  /** Envelopes appended by publish (commit's commands and events are counted apart). */
  published: number;
  /** Transitions committed (create included) and refused by a stale revision. */
  commits: number;
  staleCommits: number;
  /** Deliveries acknowledged: by a handler, inside a commit, or with the result that answers them. */
  acked: number;
  ackedInCommit: number;
  ackedWithResult: number;
  /** Acks and retries of a delivery that had been reclaimed since (the newer delivery owns it). */
  supersededSettles: number;
  /** Deliveries again: after a handler threw (retry) or its visibility timeout (reclaim). */
  redelivered: number;
  reclaimed: number;
  deadLettered: number;
  /** Entries refused before parsing (unsigned, forged, unknown key, malformed), dead-lettered. */
  refusedEnvelopes: number;
  /** Entries on a partition's stream whose txId belongs to another partition (dead-lettered). */
  misrouted: number;
  /** Entries removed by safe trimming. */
  trimmed: number;
  /** Index entries of expired runs dropped by list() and by pruning. */
  expiredIndexEntries: number;
  /** Stored records read back in a shape this backend never writes (forged or damaged), skipped. */
  refusedRecords: number;
  /** Times the command connection came back after it was lost. */
  restored: number;
}

/**
 * Opens one ioredis client from `url` (+ `redis` options) for `role`. Both roles reconnect
 * forever with capped exponential backoff (no crash loop while Redis is down or restarting).
 *
 * - `commands` (scripts, publishes, queries): a command Redis has not answered within
 *   `commandTimeoutMs` is rejected, and commands queued offline are rejected after
 *   `maxRetriesPerRequest` reconnect attempts, so callers get a clear error, not a hang.
 * - `reader` (one per blocking XREADGROUP): waits for Redis as long as it takes; ioredis resends
 *   the blocked read after a reconnect.
 */
export function createRedisClient(
  options: Pick<
    ResolvedRedisBackendOptions,
    'url' | 'redis' | 'commandTimeoutMs' | 'reconnectMaxDelayMs' | 'maxRetriesPerRequest'
  >,
  role: RedisClientRole,
): Redis {
  const maxDelay = options.reconnectMaxDelayMs;
  const redisOptions: RedisOptions = {
    ...options.redis,
    retryStrategy:
      options.redis?.retryStrategy ??
      ((times: number) =>
        Math.min(50 * 2 ** Math.min(times - 1, 20), maxDelay) + Math.floor(Math.random() * 50)),
    disconnectTimeout: options.redis?.disconnectTimeout ?? DISCONNECT_TIMEOUT_MS,
    ...(role === 'commands'
      ? { commandTimeout: options.commandTimeoutMs, maxRetriesPerRequest: options.maxRetriesPerRequest }
      : // One blocking read at a time: nothing to pipeline, and it must wait as long as it takes.
        { commandTimeout: undefined, maxRetriesPerRequest: null, enableAutoPipelining: false }),
  };
  return options.url === undefined ? new Redis(redisOptions) : new Redis(options.url, redisOptions);
}

/**
 * The one connection setup of the Redis backend, shared by its bus and stores: the command client
 * (with every Lua script defined on it), blocking reader clients on demand, the key builder, the
 * layout check (the prefix's partition count, recorded in Redis at first use), broker-restore
 * notifications, shared counters, and the mapping of what Redis throws to errors with stable codes.
 *
 * @example
 * const connection = RedisConnection.open({ url: 'redis://127.0.0.1:6379', partitions: 4 });
 * await connection.ready(); // refuses a prefix laid out with another partition count
 */
export class RedisConnection {
  readonly options: ResolvedRedisBackendOptions;
  readonly keys: RedisKeys;
  readonly client: RedisClient;
  readonly scripts: RedisScripts;
  readonly logger: Logger;
  /** True when the clients are Redis Cluster clients (one blocking reader per partition). */
  readonly cluster: boolean;
  readonly counters: RedisCounters = {
    published: 0,
    commits: 0,
    staleCommits: 0,
    acked: 0,
    ackedInCommit: 0,
    ackedWithResult: 0,
    supersededSettles: 0,
    redelivered: 0,
    reclaimed: 0,
    deadLettered: 0,
    refusedEnvelopes: 0,
    misrouted: 0,
    trimmed: 0,
    expiredIndexEntries: 0,
    refusedRecords: 0,
    restored: 0,
  };
  /** Topics written or consumed through this connection: the ones the bus trims. */
  readonly touchedTopics = new Set<string>();
  private readonly restoreListeners = new Set<() => void>();
  private readonly readers = new Set<RedisClient>();
  private layout: Promise<void> | undefined;
  private closed = false;

  private constructor(options: ResolvedRedisBackendOptions) {
    this.options = options;
    this.keys = new RedisKeys(options.prefix, options.partitions);
    this.logger = options.logger;
    this.client = this.open('commands');
    this.cluster = this.client instanceof Cluster;
    this.scripts = defineScripts(this.client);
    this.watchRestores(this.client);
  }

  /** Validates `options` (every problem at once) and opens the command client. */
  static open(options: RedisBackendOptions): RedisConnection {
    return new RedisConnection(resolveRedisBackendOptions(options));
  }

  /**
   * Resolves once the prefix's layout is known to match this process: the partition count is
   * recorded at first use (HSETNX) and compared afterwards. Rejects with FAILED_PRECONDITION when
   * another count is recorded. Checked once per connection (and again after a broker restart);
   * every store and bus operation awaits it, so nothing on the per-step path touches the key.
   */
  ready(): Promise<void> {
    this.assertOpen();
    if (this.layout === undefined) {
      const attempt = this.checkLayout();
      this.layout = attempt;
      // A failed check (Redis down) is tried again by the next call.
      attempt.catch(() => {
        if (this.layout === attempt) this.layout = undefined;
      });
    }
    return this.layout;
  }

  /** A new blocking reader client; closed by {@link closeReader} or {@link close}. */
  openReader(): RedisClient {
    this.assertOpen();
    const reader = this.open('reader');
    this.readers.add(reader);
    return reader;
  }

  /** Disconnects a reader at once (a blocked read on it ends with an error). */
  closeReader(reader: RedisClient): void {
    this.readers.delete(reader);
    reader.disconnect();
  }

  /** Calls `listener` each time the command connection comes back after it was lost. */
  onRestored(listener: () => void): () => void {
    this.restoreListeners.add(listener);
    return () => this.restoreListeners.delete(listener);
  }

  /**
   * Runs one operation against Redis: refused after close, and anything Redis throws becomes a
   * MultiAgentsError, retryable — TIMEOUT when Redis did not answer in time, UNAVAILABLE when it
   * cannot serve now (a failover, a restart, a lost connection: see {@link classifyRedisFailure}),
   * INTERNAL otherwise. Errors that already carry a code pass through.
   */
  async call<T>(what: string, work: () => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      return await work();
    } catch (err) {
      throw this.redisError(what, err);
    }
  }

  /** The error `call` would throw for `err`. */
  redisError(what: string, err: unknown): MultiAgentsError {
    if (err instanceof MultiAgentsError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const status = this.client.status;
    const options = { cause: err, retryable: true, details: { operation: what, connection: status } };
    switch (classifyRedisFailure(err)) {
      case 'timeout':
        return new MultiAgentsError(
          ErrorCode.Timeout,
          `${what}: Redis did not answer within ${this.options.commandTimeoutMs} ms (connection ${status}): ${message}`,
          options,
        );
      case 'unavailable':
        // Clients retry UNAVAILABLE (a start with an idempotency key, say), not INTERNAL.
        return new MultiAgentsError(
          ErrorCode.Unavailable,
          `${what}: Redis is unavailable for now (connection ${status}): ${message}`,
          options,
        );
      case 'unauthenticated':
        return new MultiAgentsError(
          ErrorCode.Unauthenticated,
          `${what}: Redis refused the credentials (REDIS_USERNAME, REDIS_PASSWORD or the URL's): ${message}`,
          { ...options, retryable: false },
        );
      case 'denied':
        return new MultiAgentsError(
          ErrorCode.PermissionDenied,
          `${what}: Redis's ACL does not grant this user what the service needs (see the README's least-privilege grants): ${message}`,
          { ...options, retryable: false },
        );
      default:
        return new MultiAgentsError(ErrorCode.Internal, `${what}: Redis failed: ${message}`, options);
    }
  }

  /** Open, and its command connection up and ready (not connecting or reconnecting). */
  get isConnected(): boolean {
    return !this.closed && this.client.status === 'ready';
  }

  /** True once {@link close} was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Throws FAILED_PRECONDITION after close. */
  assertOpen(): void {
    if (this.closed) throw new FailedPreconditionError('the Redis backend is closed');
  }

  /** Closes the readers, then the command client (QUIT, bounded). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.restoreListeners.clear();
    for (const reader of this.readers) reader.disconnect();
    this.readers.clear();
    if (this.client.status !== 'ready') {
      this.client.disconnect();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const quit = this.client.quit().then(
      () => true,
      () => false,
    );
    const cut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), QUIT_TIMEOUT_MS);
    });
    const quitted = await Promise.race([quit, cut]);
    clearTimeout(timer);
    if (!quitted) this.client.disconnect();
  }

  private async checkLayout(): Promise<void> {
    const key = this.keys.config();
    const wanted = this.options.partitions;
    const recorded = await this.call('layout check', async () => {
      await this.client.hsetnx(key, 'partitions', wanted);
      return this.client.hget(key, 'partitions');
    });
    if (Number(recorded) !== wanted) {
      throw new MultiAgentsError(
        ErrorCode.FailedPrecondition,
        `prefix ${this.options.prefix} is laid out in ${String(recorded)} partitions (${key}), but this ` +
          `process is configured with ${wanted}: every process of a prefix must use the same ` +
          `partitions (changing it needs a migration)`,
        { retryable: false, details: { prefix: this.options.prefix, recorded, configured: wanted } },
      );
    }
  }

  private open(role: RedisClientRole): RedisClient {
    const client = this.options.connect?.(role) ?? createRedisClient(this.options, role);
    let lastLoggedAt = 0;
    // Without a listener ioredis prints every failed reconnect to stderr.
    client.on('error', (err: Error) => {
      const now = Date.now();
      if (now - lastLoggedAt < ERROR_LOG_INTERVAL_MS) return;
      lastLoggedAt = now;
      this.logger.warn({ role, err: err.message }, 'redis connection error (reconnecting)');
    });
    client.on('ready', () => {
      if (lastLoggedAt !== 0) this.logger.info({ role }, 'redis connection ready again');
      lastLoggedAt = 0;
    });
    return client;
  }

  private watchRestores(client: RedisClient): void {
    let wasReady = false;
    let lost = false;
    client.on('ready', () => {
      if (lost && !this.closed) {
        lost = false;
        this.counters.restored += 1;
        // A restarted broker may have lost data: check the layout again before the next operation.
        this.layout = undefined;
        for (const listener of [...this.restoreListeners]) {
          try {
            listener();
          } catch (err) {
            this.logger.warn({ err: String(err) }, 'onRestored listener failed');
          }
        }
      }
      wasReady = true;
    });
    client.on('close', () => {
      if (wasReady && !this.closed) lost = true;
    });
  }
}
