import { ErrorCode, MultiAgentsError } from '@multiagents/contracts';
import type { Logger } from '@multiagents/core';
import { Redis } from 'ioredis';
import { RedisKeys } from './redis-keys';
import type { ResolvedRedisStoreOptions } from './redis-store-options';
import { defineStoreScripts, type StoreScripts } from './store-scripts';

/** Log at most one connection error in this window (reconnects retry every few seconds). */
const ERROR_LOG_INTERVAL_MS = 10_000;
/** How long `close()` lets QUIT wait for replies still due before dropping the socket. */
const QUIT_TIMEOUT_MS = 2_000;
/** How long a socket being closed may stay half-open before it is destroyed. */
const DISCONNECT_TIMEOUT_MS = 300;

/**
 * One store's Redis connection: opens (or borrows) the ioredis client, registers the scripts,
 * bounds every store call in time and turns what Redis throws into errors with stable codes.
 *
 * A Redis that is down at start, or goes away, does not crash the process: ioredis reconnects
 * forever with capped exponential backoff and queues commands meanwhile; a call still without an
 * answer after `commandTimeoutMs` rejects with `TIMEOUT` (retryable), naming the connection state.
 */
export class RedisConnection {
  readonly client: Redis;
  readonly keys: RedisKeys;
  readonly scripts: StoreScripts;
  readonly logger: Logger;
  private readonly owned: boolean;
  private readonly background = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly options: ResolvedRedisStoreOptions,
    private readonly component: string,
  ) {
    this.keys = new RedisKeys(options.prefix);
    this.logger = options.logger.child({ component });
    this.owned = options.client === undefined;
    this.client = options.client ?? this.open();
    this.scripts = defineStoreScripts(this.client);
  }

  /**
   * Runs one store operation: refused after `close()`, rejected with `TIMEOUT` after
   * `commandTimeoutMs` (+ `extraMs` for operations that wait on purpose), and with `INTERNAL`
   * for a Redis error. Errors with a code (validation, not found…) pass through unchanged.
   */
  async call<T>(operation: string, work: () => Promise<T>, extraMs = 0): Promise<T> {
    if (this.closed) {
      throw new MultiAgentsError(ErrorCode.FailedPrecondition, `${this.component} is closed`, {
        retryable: false,
      });
    }
    const limitMs = this.options.commandTimeoutMs + extraMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new MultiAgentsError(
            ErrorCode.Timeout,
            `${this.component}.${operation}: Redis did not answer within ${limitMs} ms ` +
              `(connection ${this.client.status})`,
            { retryable: true, details: { operation, status: this.client.status, timeoutMs: limitMs } },
          ),
        );
      }, limitMs);
    });
    const attempt = work();
    // After the deadline the work may still settle: its outcome is no longer anyone's concern.
    attempt.catch(() => undefined);
    try {
      return await Promise.race([attempt, deadline]);
    } catch (err) {
      if (err instanceof MultiAgentsError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new MultiAgentsError(ErrorCode.Internal, `${this.component}.${operation}: ${message}`, {
        cause: err,
        retryable: true,
        details: { operation },
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs follow-up work the caller does not wait for (index moves after a write): failures are
   * logged, since every such write is also repaired when list() meets what it left behind.
   */
  detach(what: string, work: Promise<unknown>): void {
    const tracked = work.then(
      () => undefined,
      (err: unknown) => {
        this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, `${what} failed`);
      },
    );
    this.background.add(tracked);
    void tracked.finally(() => this.background.delete(tracked));
  }

  /** Waits for detached work, then closes the connection if this store opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.background);
    if (!this.owned || this.client.status === 'end') return;
    if (this.client.status !== 'ready') {
      // Not connected: nothing to flush, and QUIT would only wait in the offline queue.
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

  private open(): Redis {
    const { url, redis, commandTimeoutMs, reconnectMaxDelayMs } = this.options;
    const options = {
      ...redis,
      retryStrategy:
        redis?.retryStrategy ??
        ((times: number) =>
          Math.min(50 * 2 ** Math.min(times - 1, 20), reconnectMaxDelayMs) + Math.floor(Math.random() * 50)),
      // Commands queued while Redis is away are dropped at the same bound the store call has.
      commandTimeout: redis?.commandTimeout ?? commandTimeoutMs,
      // How long a closing socket may take to close before it is destroyed (ioredis: 2 s).
      disconnectTimeout: redis?.disconnectTimeout ?? DISCONNECT_TIMEOUT_MS,
    };
    const client = url === undefined ? new Redis(options) : new Redis(url, options);
    let lastLoggedAt = 0;
    // Without a listener ioredis prints every failed reconnect to stderr.
    client.on('error', (err: Error) => {
      const now = Date.now();
      if (now - lastLoggedAt < ERROR_LOG_INTERVAL_MS) return;
      lastLoggedAt = now;
      this.logger.warn({ err: err.message }, 'redis connection error (reconnecting)');
    });
    client.on('ready', () => {
      if (lastLoggedAt !== 0) this.logger.info({}, 'redis connection ready again');
      lastLoggedAt = 0;
    });
    return client;
  }
}
