import { toErrorInfo } from '@multiagents/contracts';
import type { Logger } from '@multiagents/core';
import type { NatsConnection } from '@nats-io/transport-node';

/**
 * Follows a connection's status events, so publishers can wait out a reconnect instead of a
 * request timeout. The client drops whatever it buffered while disconnected (its outbound buffer
 * is reset on every dial), so a request sent around a disconnect is never answered: without this,
 * each publish caught by a broker restart would wait its whole timeout before retrying.
 */
export class ConnectionState {
  private connected = true;
  private readonly restoredListeners = new Set<() => void>();
  private readonly disconnectListeners = new Set<() => void>();
  private watching = true;
  private reconnectWaiters: Array<() => void> = [];
  private disconnectWaiters: Array<() => void> = [];
  private readonly stopIterator: () => void;

  constructor(connection: NatsConnection, logger: Logger) {
    const status = connection.status();
    // Typed as AsyncIterable; the object is a QueuedIterator with stop(), which ends the loop now
    // rather than at the next event (a shared connection outlives the bus).
    this.stopIterator = () => (status as { stop?: () => void }).stop?.();
    void (async () => {
      for await (const event of status) {
        if (!this.watching) break;
        if (event.type === 'disconnect') {
          this.connected = false;
          wakeAll(this.disconnectWaiters.splice(0));
          for (const listener of [...this.disconnectListeners]) listener();
          logger.warn({ server: event.server }, 'disconnected from NATS');
        } else if (event.type === 'reconnect') {
          this.connected = true;
          wakeAll(this.reconnectWaiters.splice(0));
          logger.info({ server: event.server }, 'reconnected to NATS');
          for (const listener of [...this.restoredListeners]) {
            try {
              listener();
            } catch (err) {
              logger.error({ err: toErrorInfo(err).message }, 'a reconnect listener failed');
            }
          }
        } else if (event.type === 'error') {
          logger.error({ err: toErrorInfo(event.error).message }, 'NATS error');
        }
      }
    })().catch(() => undefined);
  }

  /** True while the connection is up (as far as the client knows). */
  get isConnected(): boolean {
    return this.connected;
  }

  /**
   * Calls `listener` after every reconnect (the server may have restarted and forgotten its last
   * acknowledged writes). Returns an unsubscribe function.
   */
  onRestored(listener: () => void): () => void {
    this.restoredListeners.add(listener);
    return () => this.restoredListeners.delete(listener);
  }

  /** Calls `listener` at every disconnect. Returns an unsubscribe function. */
  onDisconnect(listener: () => void): () => void {
    this.disconnectListeners.add(listener);
    return () => this.disconnectListeners.delete(listener);
  }

  /** True at once when connected; otherwise waits for the reconnect, at most `timeoutMs`. */
  async whenConnected(timeoutMs: number): Promise<boolean> {
    if (this.connected) return true;
    let timer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    const reconnected = new Promise<boolean>((resolve) => {
      wake = () => resolve(true);
      this.reconnectWaiters.push(wake);
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await reconnected;
    } finally {
      clearTimeout(timer);
      this.reconnectWaiters = this.reconnectWaiters.filter((w) => w !== wake);
    }
  }

  /**
   * Resolves at the next disconnect; `cancel` forgets the waiter (call it once the awaited work
   * is done, or waiters pile up).
   */
  nextDisconnect(): { readonly promise: Promise<void>; cancel(): void } {
    let wake: (() => void) | undefined;
    const promise = new Promise<void>((resolve) => {
      wake = resolve;
      this.disconnectWaiters.push(resolve);
    });
    return {
      promise,
      cancel: () => {
        this.disconnectWaiters = this.disconnectWaiters.filter((w) => w !== wake);
      },
    };
  }

  /** Stops following the connection and releases every waiter. */
  stop(): void {
    this.watching = false;
    this.stopIterator();
    this.connected = true;
    wakeAll(this.reconnectWaiters.splice(0));
    this.disconnectWaiters = [];
    this.restoredListeners.clear();
    this.disconnectListeners.clear();
  }
}

function wakeAll(waiters: Array<() => void>): void {
  for (const wake of waiters) wake();
}
