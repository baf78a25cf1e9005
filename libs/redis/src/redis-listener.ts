import { decodeEnvelope, toErrorInfo } from '@multiagents/contracts';
import { handToTail, type Subscription, type TailHandler } from '@multiagents/core';
import type { RedisClient } from './redis-backend-options';
import type { RedisConnection } from './redis-connection';

/**
 * A listener of one broadcast channel ({@link EventBus.listen}): Redis pub/sub on a client of its
 * own. Redis keeps nothing for it; after a reconnect ioredis subscribes again, and what was
 * broadcast meanwhile is missed, as the port allows. On Redis Cluster a PUBLISH reaches the
 * subscribers of every node.
 */
export class RedisListener implements Subscription {
  private closed = false;

  private constructor(
    private readonly connection: RedisConnection,
    private readonly channel: string,
    private readonly reader: RedisClient,
    private readonly handler: TailHandler,
    private readonly detach: (listener: RedisListener) => void,
  ) {}

  /** Subscribes; resolves once Redis has confirmed it, so a later broadcast reaches it. */
  static async open(
    connection: RedisConnection,
    channel: string,
    handler: TailHandler,
    detach: (listener: RedisListener) => void,
  ): Promise<RedisListener> {
    const reader = connection.openReader();
    const listener = new RedisListener(connection, channel, reader, handler, detach);
    reader.on('messageBuffer', (_channel: Buffer, data: Buffer) => listener.hand(data));
    try {
      await connection.call(`listen ${channel}`, () => reader.subscribe(connection.keys.channel(channel)));
    } catch (err) {
      connection.closeReader(reader);
      throw err;
    }
    return listener;
  }

  /** Unsubscribes (its connection is closed). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.connection.closeReader(this.reader);
    this.detach(this);
  }

  private hand(data: Buffer): void {
    if (this.closed) return;
    const { counters, options, logger } = this.connection;
    handToTail(
      () => decodeEnvelope(data, options.codec),
      this.handler,
      () => (counters.refusedEnvelopes += 1),
      (err) => logger.warn({ channel: this.channel, err: toErrorInfo(err).message }, 'a listener threw'),
    );
  }
}
