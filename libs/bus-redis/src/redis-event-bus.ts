import {
  ErrorCode,
  FailedPreconditionError,
  MultiAgentsError,
  ValidationError,
  decodeEnvelope,
  encodeEnvelope,
  type Envelope,
} from '@multiagents/contracts';
import type {
  DeadLetter,
  DeliveryHandler,
  EventBus,
  SubscribeOptions,
  Subscription,
} from '@multiagents/core';
import type { Redis } from 'ioredis';
import { defineBusScripts, type BusScripts } from './bus-scripts';
import { createConsumerGroup, isNoGroupError } from './consumer-group';
import { createRedisConnection } from './redis-connection';
import {
  resolveRedisEventBusOptions,
  type RedisEventBusOptions,
  type ResolvedRedisEventBusOptions,
} from './redis-event-bus-options';
import { RedisKeys } from './redis-keys';
import { RedisSubscription, type SubscriptionContext } from './redis-subscription';
import { resolveSubscribeOptions } from '@multiagents/core';
import { bulkToString, fieldValue } from './stream-replies';

const STREAM_ID = /^\d+-\d+$/;

/**
 * The {@link EventBus} on Redis Streams and consumer groups (SPEC §1, §4), with the semantics of
 * `MemoryEventBus`:
 *
 * - one stream per topic (`<prefix>:{<topic>}:stream`, see {@link RedisKeys}); each envelope is one
 *   entry whose field `d` holds its protobuf bytes; a publish is one pipeline and resolves once
 *   Redis holds every entry;
 * - a group is a Redis consumer group (created with MKSTREAM from `0` or `$`); each subscription
 *   reads with XREADGROUP on its own blocking connection, at most `concurrency` handlers at once;
 * - a resolved handler acks (batched per event-loop turn, one Lua call); a thrown error makes the
 *   entry due again after `retryDelayMs` (or the error's `retryAfterMs`): the entry stays pending
 *   and its idle time is set to `visibilityTimeoutMs - delay`, so the consumer redelivers it
 *   itself when the delay is over or, if it died, any consumer's XAUTOCLAIM pass takes it then;
 * - an entry idle past `visibilityTimeoutMs` (its consumer died or hung) is reclaimed by XAUTOCLAIM,
 *   which raises its delivery count; delivery counts are Redis' own (XPENDING), first delivery = 1;
 * - after `maxDeliveries`, or at once for a `POISON_MESSAGE` error or undecodable bytes, the entry
 *   goes to the topic's dead-letter stream (raw bytes, error, group, count, time) and is acked;
 * - only the current delivery may settle an entry: ack, retry, extend and dead-letter check the
 *   pending entry's owner and delivery count atomically in Lua, so a late ack is ignored;
 * - trimming (every `trimIntervalMs`, and {@link RedisEventBus.trim}) never drops an entry some group
 *   has not read or acknowledged; a stream without groups keeps about `maxRetainedPerTopic`.
 *
 * Connections: one for commands, plus one per subscription. Both reconnect forever with capped
 * backoff; a blocked read resumes after a Redis restart; a command Redis does not answer within
 * `commandTimeoutMs` (Redis down) rejects with a `TIMEOUT` error. `subscribe` waits for Redis.
 * A retry delay longer than the visibility timeout is kept by re-arming the entry every half
 * timeout while the subscription lives; if it closes or dies, the entry is reclaimed earlier,
 * after at most one visibility timeout.
 *
 * @example
 * const bus = new RedisEventBus({ url: 'redis://127.0.0.1:6379', prefix: 'multiagents' });
 * await bus.subscribe('results', { group: 'orchestrators', consumer: 'o1' }, async (d) => {
 *   handle(d.envelope);
 * });
 * await bus.publish('results', [envelope]);
 */
export class RedisEventBus implements EventBus {
  /** The options in effect. */
  readonly options: ResolvedRedisEventBusOptions;
  /** Key names of this bus (prefix and hash tags). */
  readonly keys: RedisKeys;
  private readonly redis: Redis;
  private readonly scripts: BusScripts;
  private readonly subscriptions = new Set<RedisSubscription>();
  /** Reader connections of subscribe() calls still creating their group. */
  private readonly opening = new Set<Redis>();
  /** Topics published to or consumed here: the ones this bus trims. */
  private readonly topics = new Set<string>();
  private readonly trimTimer: NodeJS.Timeout | undefined;
  private trimming = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: RedisEventBusOptions) {
    this.options = resolveRedisEventBusOptions(options);
    this.keys = new RedisKeys(this.options.prefix);
    this.redis = createRedisConnection(this.options, 'commands', this.options.logger);
    this.scripts = defineBusScripts(this.redis);
    if (this.options.trimIntervalMs > 0) {
      this.trimTimer = setInterval(() => void this.trimKnownTopics(), this.options.trimIntervalMs);
      this.trimTimer.unref();
    }
  }

  async publish(topic: string, envelopes: readonly Envelope[]): Promise<void> {
    const key = this.streamKey(topic);
    if (envelopes.length === 0) return;
    // Encode everything first: an envelope that cannot be encoded appends nothing.
    const encoded = envelopes.map((envelope) => asBuffer(encodeEnvelope(envelope, this.options.codec)));
    this.topics.add(topic);
    if (encoded.length === 1) {
      await this.command(`publish to ${topic}`, () => this.redis.xadd(key, '*', 'd', encoded[0] as Buffer));
      return;
    }
    const pipeline = this.redis.pipeline();
    for (const data of encoded) pipeline.xadd(key, '*', 'd', data);
    const results = await this.command(`publish to ${topic}`, () => pipeline.exec());
    for (const [err] of results ?? []) {
      if (err) throw this.redisError(`publish to ${topic}`, err);
    }
  }

  /**
   * Appends bytes exactly as given, bypassing the encoder: for tests that inject malformed
   * messages. Not part of the port.
   */
  async publishRaw(topic: string, bytes: Uint8Array): Promise<void> {
    const key = this.streamKey(topic);
    this.topics.add(topic);
    await this.command(`publish to ${topic}`, () => this.redis.xadd(key, '*', 'd', Buffer.from(bytes)));
  }

  async subscribe(topic: string, options: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    const streamKey = this.streamKey(topic);
    const resolved = resolveSubscribeOptions(options);
    this.topics.add(topic);
    const reader = createRedisConnection(this.options, 'reader', this.options.logger);
    this.opening.add(reader);
    try {
      // On the reader: no command timeout, so this waits for a Redis that is down or restarting.
      await createConsumerGroup(
        reader,
        streamKey,
        resolved.group,
        resolved.startFrom === 'latest' ? '$' : '0',
      );
    } catch (err) {
      reader.disconnect();
      if (this.closed) throw closedError();
      throw this.redisError(`subscribe to ${topic}`, err);
    } finally {
      this.opening.delete(reader);
    }
    if (this.closed) {
      reader.disconnect();
      throw closedError();
    }
    const context: SubscriptionContext = {
      topic,
      streamKey,
      deadKey: this.keys.deadLetters(topic),
      busOptions: this.options,
      logger: this.options.logger,
      commands: this.scripts,
      redis: this.redis,
      createGroup: (connection, startId) =>
        createConsumerGroup(connection, streamKey, resolved.group, startId),
      detach: (subscription) => this.subscriptions.delete(subscription),
    };
    const subscription = new RedisSubscription(context, reader, defineBusScripts(reader), resolved, handler);
    this.subscriptions.add(subscription);
    return subscription;
  }

  async pendingCount(topic: string, group: string): Promise<number> {
    const key = this.streamKey(topic, false);
    try {
      const summary = await this.redis.xpending(key, group);
      return Number(summary[0] ?? 0);
    } catch (err) {
      if (isNoGroupError(err)) return 0;
      throw this.redisError(`pendingCount of ${topic}`, err);
    }
  }

  async listDeadLetters(topic: string, limit?: number): Promise<DeadLetter[]> {
    const key = this.keys.deadLetters(topic);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
      throw new ValidationError('listDeadLetters', ['limit must be an integer >= 0']);
    }
    if (limit === 0) return [];
    const args: Array<string | number> = [key, '-', '+'];
    if (limit !== undefined) args.push('COUNT', limit);
    const reply = await this.command(`listDeadLetters of ${topic}`, () =>
      this.redis.callBuffer('XRANGE', ...args),
    );
    const out: DeadLetter[] = [];
    for (const entry of Array.isArray(reply) ? (reply as unknown[]) : []) {
      if (!Array.isArray(entry)) continue;
      const fields: unknown = entry[1];
      // A copy in a plain Uint8Array: the caller must not be able to change what a replay publishes.
      const data = new Uint8Array(fieldValue(fields, 'd') ?? Buffer.alloc(0));
      out.push({
        id: bulkToString(entry[0]),
        topic,
        group: fieldValue(fields, 'group')?.toString() ?? '',
        data,
        ...this.tryDecode(data),
        error: fieldValue(fields, 'error')?.toString() ?? '',
        deliveryCount: Number(fieldValue(fields, 'count')?.toString() ?? 0),
        deadAt: Number(fieldValue(fields, 'at')?.toString() ?? 0),
      });
    }
    return out;
  }

  async replayDeadLetter(topic: string, id: string): Promise<boolean> {
    const streamKey = this.streamKey(topic);
    if (typeof id !== 'string' || !STREAM_ID.test(id)) return false; // not an id this bus hands out
    this.topics.add(topic);
    const replayed = await this.command(`replayDeadLetter on ${topic}`, () =>
      this.scripts.replay(streamKey, this.keys.deadLetters(topic), id),
    );
    return replayed !== null;
  }

  /**
   * Trims `topic`'s stream now (or every topic this bus touched), never dropping an entry a group
   * has not read or acknowledged; returns the entries removed. Runs every `trimIntervalMs` on its
   * own; exposed for operations and tests. Not part of the port.
   */
  async trim(topic?: string): Promise<number> {
    const topics = topic === undefined ? [...this.topics] : [topic];
    if (topics.length === 0) return 0;
    // Sent back to back on one connection: Redis receives them as one pipeline.
    const counts = await this.command('trim', () =>
      Promise.all(
        topics.map((name) => this.scripts.trim(this.keys.stream(name), this.options.maxRetainedPerTopic)),
      ),
    );
    let removed = 0;
    for (const count of counts) removed += Number(count);
    return removed;
  }

  /**
   * Entries `topic`'s stream holds now (unread by some group, or kept for groups to come).
   * Diagnostics and retention tests; not part of the port.
   */
  async retainedCount(topic: string): Promise<number> {
    const key = this.streamKey(topic, false);
    return this.command(`retainedCount of ${topic}`, () => this.redis.xlen(key));
  }

  /** Stops every subscription, waits for the handlers in flight and their acks, then disconnects. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    if (this.trimTimer !== undefined) clearInterval(this.trimTimer);
    for (const reader of this.opening) reader.disconnect();
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    // QUIT lets Redis answer what is queued; an unreachable Redis gets a bounded wait.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.redis.quit().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.commandTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.redis.disconnect();
  }

  private async trimKnownTopics(): Promise<void> {
    if (this.trimming || this.closed) return;
    this.trimming = true;
    try {
      await this.trim();
    } catch (err) {
      this.options.logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'redis bus trim failed',
      );
    } finally {
      this.trimming = false;
    }
  }

  /** The topic's stream key; throws if the bus is closed (unless `mustBeOpen` is false) or the topic is bad. */
  private streamKey(topic: string, mustBeOpen = true): string {
    if (mustBeOpen && this.closed) throw closedError();
    return this.keys.stream(topic);
  }

  private tryDecode(data: Uint8Array): { envelope?: Envelope } {
    try {
      return { envelope: decodeEnvelope(data, this.options.codec) };
    } catch {
      return {};
    }
  }

  private async command<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.redisError(what, err);
    }
  }

  private redisError(what: string, err: unknown): MultiAgentsError {
    if (err instanceof MultiAgentsError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const name = err instanceof Error ? err.name : '';
    const unreachable = message === 'Command timed out' || name === 'MaxRetriesPerRequestError';
    return new MultiAgentsError(
      unreachable ? ErrorCode.Timeout : ErrorCode.Internal,
      unreachable
        ? `${what}: Redis did not answer within ${this.options.commandTimeoutMs} ms (connection ${this.redis.status}): ${message}`
        : `${what}: Redis failed: ${message}`,
      { cause: err, retryable: true, details: { connection: this.redis.status } },
    );
  }
}

function closedError(): FailedPreconditionError {
  return new FailedPreconditionError('RedisEventBus is closed');
}

/** The same bytes as a Buffer, without copying (ioredis sends Buffers as binary-safe bulk strings). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
