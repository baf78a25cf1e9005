import {
  FailedPreconditionError,
  ValidationError,
  decodeEnvelope,
  encodeEnvelope,
  Topics,
  type Envelope,
} from '@multiagents/contracts';
import {
  resolveSubscribeOptions,
  type DeadLetter,
  type DeliveryHandler,
  type EventBus,
  type SubscribeOptions,
  type Subscription,
  type TailHandler,
  type TopicStats,
} from '@multiagents/core';
import { createConsumerGroup, isNoGroupError } from './consumer-group';
import type { RedisBackendOptions, RedisClient } from './redis-backend-options';
import { RedisConnection, type RedisCounters } from './redis-connection';
import { deliveryId, parseDeliveryId, type RedisDelivery } from './redis-delivery';
import { RedisKeys, type TopicStream } from './redis-keys';
import { RedisSubscription, type SubscriptionHost } from './redis-subscription';
import { RedisListener } from './redis-listener';
import { RedisTail } from './redis-tail';
import { ReplyRegistry } from './reply-registry';
import { bulkToString, fieldValue } from './stream-replies';
import { StreamWriter, type StreamAck, type StreamAppend } from './stream-writer';

/** Backoff while subscribe() waits for Redis to come up. */
const READY_RETRY_MS = 100;

/**
 * The {@link EventBus} on Redis Streams and consumer groups (SPEC §1, §4), with the semantics of
 * the memory bus:
 *
 * - The run's topics (`commands.<worker>`, `results`, `events`) are partitioned: a publish routes
 *   each envelope to the stream of its txId's partition (see {@link RedisKeys}), so a run's
 *   commands, results and events stay in its partition, in order; a subscriber consumes every
 *   partition. Any other topic is one stream. Each envelope is one entry; field `d` holds its
 *   protobuf bytes.
 * - Writes go out once per event-loop turn and slot ({@link StreamWriter}): a publish resolves
 *   once Redis holds every entry; a resolved handler's ack joins the same batch, guarded so a
 *   superseded delivery (reclaimed after its visibility timeout) acknowledges nothing; a
 *   `step.result` published while its `step.command` is being handled here acknowledges that
 *   command in the same script call (the result is the command's outcome).
 * - A thrown error makes the entry due again after `retryDelayMs` (or the error's `retryAfterMs`);
 *   an entry idle past `visibilityTimeoutMs` is reclaimed (XAUTOCLAIM); delivery counts are
 *   Redis' own (first delivery = 1). After `maxDeliveries`, at once for a `POISON_MESSAGE`, for
 *   undecodable bytes or for an entry whose txId belongs to another partition, the entry goes to
 *   the dead letters of its stream (raw bytes, error, group, count, time) and is acknowledged.
 * - Trimming (every `trimIntervalMs`, and {@link RedisEventBus.trim}) never drops an entry a group
 *   has not read or acknowledged; the events streams are also capped (MAXLEN ~ `eventsMaxLen`).
 *
 * @example
 * const { bus } = createRedisBackend({ url: 'redis://127.0.0.1:6379', partitions: 4 });
 * await bus.subscribe('results', { group: 'orchestrators', consumer: 'o1' }, async (d) => {
 *   handle(d.envelope);
 * });
 * await bus.publish('results', [envelope]);
 */
export class RedisEventBus implements EventBus {
  /** The connection this bus shares with its backend's stores. */
  readonly connection: RedisConnection;
  /** Key names (prefix, partitions, hash tags). */
  readonly keys: RedisKeys;
  private readonly owned: boolean;
  private readonly writer: StreamWriter;
  private readonly replies = new ReplyRegistry();
  private readonly subscriptions = new Set<RedisSubscription>();
  private readonly tails = new Set<RedisTail>();
  private readonly listeners = new Set<RedisListener>();
  /** Readers of subscribe() calls still creating their groups. */
  private readonly opening = new Set<RedisClient>();
  private readonly host: SubscriptionHost;
  private readonly trimTimer: NodeJS.Timeout | undefined;
  private trimming = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  /** Uses `connection` (shared with the stores; not closed by this bus) or opens its own from options. */
  constructor(connection: RedisConnection | RedisBackendOptions) {
    this.owned = !(connection instanceof RedisConnection);
    this.connection = connection instanceof RedisConnection ? connection : RedisConnection.open(connection);
    this.keys = this.connection.keys;
    this.writer = new StreamWriter(this.connection);
    this.host = {
      connection: this.connection,
      writer: this.writer,
      replies: this.replies,
      detach: (subscription) => this.subscriptions.delete(subscription),
    };
    const interval = this.connection.options.trimIntervalMs;
    if (interval > 0) {
      this.trimTimer = setInterval(() => void this.trimInBackground(), interval);
      this.trimTimer.unref();
    }
  }

  async publish(topic: string, envelopes: readonly Envelope[]): Promise<void> {
    this.assertOpen();
    if (envelopes.length === 0) {
      this.keys.topicStreams(topic);
      return;
    }
    const { options, counters } = this.connection;
    // Encode everything first: an envelope that cannot be encoded appends nothing.
    const encoded = envelopes.map((envelope) => asBuffer(encodeEnvelope(envelope, options.codec)));
    await this.connection.ready();
    this.connection.touchedTopics.add(topic);
    const maxLen = topic === Topics.events ? options.eventsMaxLen : undefined;
    const bySlot = new Map<string, { appends: StreamAppend[]; acks: StreamAck[] }>();
    const answered: RedisDelivery[] = [];
    envelopes.forEach((envelope, i) => {
      const target = this.keys.topicStreamFor(topic, envelope.txId);
      let batch = bySlot.get(target.slot);
      if (batch === undefined) {
        batch = { appends: [], acks: [] };
        bySlot.set(target.slot, batch);
      }
      batch.appends.push({ stream: target.stream, maxLen, data: encoded[i] as Buffer });
      const command = topic === Topics.results ? this.replies.answeredBy(envelope) : undefined;
      if (command !== undefined && command.source.slot === target.slot) {
        batch.acks.push({
          stream: command.source.stream,
          group: command.group,
          consumer: command.consumer,
          entryId: command.entryId,
          deliveryCount: command.deliveryCount,
        });
        answered.push(command);
      }
    });
    await Promise.all([...bySlot].map(([slot, { appends, acks }]) => this.writer.write(slot, appends, acks)));
    counters.published += envelopes.length;
    for (const command of answered) {
      if (command.settled) continue;
      command.settled = true;
      counters.ackedWithResult += 1;
    }
  }

  /**
   * Appends bytes exactly as given, bypassing the encoder (and, for a partitioned topic, to
   * `partition`'s stream): for tests that inject malformed or misrouted messages. Not part of the port.
   */
  async publishRaw(topic: string, bytes: Uint8Array, partition = 0): Promise<void> {
    this.assertOpen();
    const streams = this.keys.topicStreams(topic);
    const target = streams.length === 1 ? streams[0] : streams[partition];
    if (target === undefined) throw new ValidationError('publishRaw', [`no partition ${partition}`]);
    this.connection.touchedTopics.add(topic);
    await this.connection.call(`publish to ${topic}`, () =>
      this.connection.client.xadd(target.stream, '*', 'd', Buffer.from(bytes)),
    );
  }

  async subscribe(topic: string, options: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    this.assertOpen();
    const resolved = resolveSubscribeOptions(options);
    const streams = this.keys.topicStreams(topic);
    this.connection.touchedTopics.add(topic);
    // One blocking read covers every partition on one server; on Redis Cluster a multi-key read
    // must stay in one slot, so each partition gets its own reader.
    const lanes = this.connection.cluster ? streams.map((s) => [s]) : [streams];
    const readers: RedisClient[] = [];
    try {
      for (const lane of lanes) {
        const reader = this.connection.openReader();
        readers.push(reader);
        this.opening.add(reader);
        // On the reader: no command timeout, so this waits for a Redis that is down or restarting.
        for (const source of lane) {
          await createConsumerGroup(
            reader,
            source.stream,
            resolved.group,
            resolved.startFrom === 'latest' ? '$' : '0',
          );
        }
      }
      await this.waitReady();
    } catch (err) {
      for (const reader of readers) this.connection.closeReader(reader);
      this.assertOpen();
      throw this.connection.redisError(`subscribe to ${topic}`, err);
    } finally {
      for (const reader of readers) this.opening.delete(reader);
    }
    if (this.closed) {
      for (const reader of readers) this.connection.closeReader(reader);
      this.assertOpen();
    }
    const subscription = new RedisSubscription(this.host, topic, lanes, readers, resolved, handler);
    this.subscriptions.add(subscription);
    return subscription;
  }

  /** XREAD of every partition's stream, no group (see {@link RedisTail}). */
  async tail(topic: string, handler: TailHandler): Promise<Subscription> {
    this.assertOpen();
    const tail = await RedisTail.open(this.connection, topic, this.keys.topicStreams(topic), handler, (t) =>
      this.tails.delete(t),
    );
    return this.keep(this.tails, tail);
  }

  /** PUBLISH of each envelope on the channel (pub/sub: Redis keeps nothing). */
  async broadcast(channel: string, envelopes: readonly Envelope[]): Promise<void> {
    this.assertOpen();
    const name = this.keys.channel(channel);
    const encoded = envelopes.map((envelope) =>
      asBuffer(encodeEnvelope(envelope, this.connection.options.codec)),
    );
    if (encoded.length === 0) return;
    await this.connection.call(`broadcast on ${channel}`, () =>
      Promise.all(encoded.map((data) => this.connection.client.publish(name, data))),
    );
  }

  async listen(channel: string, handler: TailHandler): Promise<Subscription> {
    this.assertOpen();
    if (typeof handler !== 'function') throw new ValidationError('listen', ['handler must be a function']);
    const listener = await RedisListener.open(this.connection, channel, handler, (l) =>
      this.listeners.delete(l),
    );
    return this.keep(this.listeners, listener);
  }

  /** Keeps a feed just opened for close(), or closes it and throws when the bus closed meanwhile. */
  private async keep<T extends Subscription>(feeds: Set<T>, opened: T): Promise<T> {
    if (this.closed) {
      await opened.close();
      this.assertOpen();
    }
    feeds.add(opened);
    return opened;
  }

  async pendingCount(topic: string, group: string): Promise<number> {
    const streams = this.keys.topicStreams(topic);
    const counts = await this.connection.call(`pendingCount of ${topic}`, () =>
      Promise.all(
        streams.map((source) =>
          this.connection.client.xpending(source.stream, group).then(
            (summary) => Number(summary[0] ?? 0),
            (err: unknown) => {
              if (isNoGroupError(err)) return 0;
              throw err;
            },
          ),
        ),
      ),
    );
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /**
   * The topic's consumer groups, each summed over the partitions' streams (XINFO GROUPS: `pending`,
   * and Redis 7's `lag`, undefined when Redis cannot tell for some partition), in group-name order;
   * dead letters held and ever added (XINFO STREAM of the dead-letter streams: `length` and
   * `entries-added`). A few commands per partition, for scrapes, never on the per-step path.
   */
  async topicStats(topic: string): Promise<TopicStats> {
    const streams = this.keys.topicStreams(topic);
    const { client } = this.connection;
    const [groupReplies, deadReplies] = await this.connection.call(`topicStats of ${topic}`, () =>
      Promise.all([
        Promise.all(streams.map((source) => client.xinfo('GROUPS', source.stream).catch(orEmpty))),
        Promise.all(streams.map((source) => client.xinfo('STREAM', source.dead).catch(orEmpty))),
      ]),
    );
    const groups = new Map<string, { pending: number; lag: number | undefined }>();
    for (const reply of groupReplies) {
      for (const info of Array.isArray(reply) ? (reply as unknown[]) : []) {
        const name = flatField(info, 'name');
        if (typeof name !== 'string' && !Buffer.isBuffer(name)) continue;
        const group = name.toString();
        const sum = groups.get(group) ?? { pending: 0, lag: 0 };
        sum.pending += Number(flatField(info, 'pending') ?? 0);
        const lag = flatField(info, 'lag');
        sum.lag =
          sum.lag === undefined || lag === null || lag === undefined ? undefined : sum.lag + Number(lag);
        groups.set(group, sum);
      }
    }
    let deadLetters = 0;
    let deadLettersAdded = 0;
    for (const reply of deadReplies) {
      deadLetters += Number(flatField(reply, 'length') ?? 0);
      deadLettersAdded += Number(flatField(reply, 'entries-added') ?? 0);
    }
    return {
      topic,
      groups: [...groups]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([group, { pending, lag }]) => ({ group, pending, ...(lag === undefined ? {} : { lag }) })),
      deadLetters,
      deadLettersAdded,
    };
  }

  /** Dead letters of every partition of `topic`, oldest first (by the time their entry was written). */
  async listDeadLetters(topic: string, limit?: number): Promise<DeadLetter[]> {
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
      throw new ValidationError('listDeadLetters', ['limit must be an integer >= 0']);
    }
    if (limit === 0) return [];
    const streams = this.keys.topicStreams(topic);
    const replies = await this.connection.call(`listDeadLetters of ${topic}`, () =>
      Promise.all(
        streams.map((source) => {
          const args: Array<string | number> = [source.dead, '-', '+'];
          if (limit !== undefined) args.push('COUNT', limit);
          return this.connection.client.callBuffer('XRANGE', ...args);
        }),
      ),
    );
    const out: Array<DeadLetter & { order: [number, number, number] }> = [];
    replies.forEach((reply, i) => {
      const source = streams[i] as TopicStream;
      for (const entry of Array.isArray(reply) ? (reply as unknown[]) : []) {
        if (!Array.isArray(entry)) continue;
        const entryId = bulkToString(entry[0]);
        const fields: unknown = entry[1];
        // A copy in a plain Uint8Array: the caller must not be able to change what a replay publishes.
        const data = new Uint8Array(fieldValue(fields, 'd') ?? Buffer.alloc(0));
        const [ms, seq] = entryId.split('-').map(Number) as [number, number];
        out.push({
          order: [ms, seq, source.partition ?? 0],
          id: deliveryId(source, entryId),
          topic,
          group: fieldValue(fields, 'group')?.toString() ?? '',
          data,
          ...this.tryDecode(data),
          error: fieldValue(fields, 'error')?.toString() ?? '',
          deliveryCount: Number(fieldValue(fields, 'count')?.toString() ?? 0),
          deadAt: Number(fieldValue(fields, 'at')?.toString() ?? 0),
        });
      }
    });
    out.sort((a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1] || a.order[2] - b.order[2]);
    return out.slice(0, limit ?? out.length).map(({ order: _order, ...dead }) => dead);
  }

  /**
   * Appends the dead letter to its partition's stream again, for its group only (`replay.lua`:
   * the entry names the group; the other groups acknowledge it unseen, tails skip it), and
   * deletes it, in one script call.
   */
  async replayDeadLetter(topic: string, id: string): Promise<boolean> {
    this.assertOpen();
    const streams = this.keys.topicStreams(topic);
    const parsed = typeof id === 'string' ? parseDeliveryId(id) : undefined;
    if (parsed === undefined) return false; // not an id this bus hands out
    const source = streams.find((s) => s.partition === parsed.partition);
    if (source === undefined) return false;
    this.connection.touchedTopics.add(topic);
    const replayed = await this.connection.call(`replayDeadLetter on ${topic}`, () =>
      this.connection.scripts.replay([source.stream, source.dead], parsed.entryId),
    );
    return replayed !== null;
  }

  /** Deletes the dead letter's entry from its partition's dead-letter stream (XDEL). */
  async discardDeadLetter(topic: string, id: string): Promise<boolean> {
    this.assertOpen();
    const parsed = typeof id === 'string' ? parseDeliveryId(id) : undefined;
    if (parsed === undefined) return false; // not an id this bus hands out
    const source = this.keys.topicStreams(topic).find((s) => s.partition === parsed.partition);
    if (source === undefined) return false;
    const deleted = await this.connection.call(`discardDeadLetter on ${topic}`, () =>
      this.connection.client.xdel(source.dead, parsed.entryId),
    );
    return deleted > 0;
  }

  /** Counters of this backend (bus and stores): acks, redeliveries, dead letters, commits, … */
  counters(): Readonly<Record<string, number>> {
    const counters: RedisCounters = this.connection.counters;
    return Object.fromEntries(Object.entries(counters));
  }

  onRestored(listener: () => void): () => void {
    return this.connection.onRestored(listener);
  }

  /**
   * Trims the streams of `topic` now (or of every topic this process touched), never dropping an
   * entry a group has not read or acknowledged; returns the entries removed. Runs every
   * `trimIntervalMs` on its own; exposed for operations and tests. Not part of the port.
   */
  async trim(topic?: string): Promise<number> {
    const topics = topic === undefined ? [...this.connection.touchedTopics] : [topic];
    const streams = topics.flatMap((name) => this.keys.topicStreams(name));
    if (streams.length === 0) return 0;
    const maxRetained = this.connection.options.maxRetainedPerTopic;
    const counts = await this.connection.call('trim', () =>
      Promise.all(streams.map((source) => this.connection.scripts.trim(source.stream, maxRetained))),
    );
    const removed = counts.reduce((sum, n) => sum + Number(n), 0);
    this.connection.counters.trimmed += removed;
    return removed;
  }

  /** Entries the streams of `topic` hold now (all partitions). Diagnostics and tests; not part of the port. */
  async retainedCount(topic: string): Promise<number> {
    const streams = this.keys.topicStreams(topic);
    const counts = await this.connection.call(`retainedCount of ${topic}`, () =>
      Promise.all(streams.map((source) => this.connection.client.xlen(source.stream))),
    );
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /** Stops every subscription, waits for the handlers in flight and their acks. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    if (this.trimTimer !== undefined) clearInterval(this.trimTimer);
    for (const reader of this.opening) this.connection.closeReader(reader);
    await Promise.all(
      [...this.subscriptions, ...this.tails, ...this.listeners].map((subscription) => subscription.close()),
    );
    await this.writer.drain();
    if (this.owned) await this.connection.close();
  }

  private async waitReady(): Promise<void> {
    for (;;) {
      try {
        await this.connection.ready();
        return;
      } catch (err) {
        if (this.closed || (err as { retryable?: unknown }).retryable === false) throw err;
        await new Promise((resolve) => setTimeout(resolve, READY_RETRY_MS));
      }
    }
  }

  private async trimInBackground(): Promise<void> {
    if (this.trimming || this.closed) return;
    this.trimming = true;
    try {
      await this.trim();
    } catch (err) {
      this.connection.logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'redis bus trim failed',
      );
    } finally {
      this.trimming = false;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new FailedPreconditionError('RedisEventBus is closed');
  }

  private tryDecode(data: Uint8Array): { envelope?: Envelope } {
    try {
      return { envelope: decodeEnvelope(data, this.connection.options.codec) };
    } catch {
      return {};
    }
  }
}

/** A stream or group Redis does not have yet reads as empty (a topic nobody used). */
function orEmpty(err: unknown): unknown[] {
  if (err instanceof Error && (err.message.includes('no such key') || isNoGroupError(err))) return [];
  throw err;
}

/** The value after `field` in a flat `[field, value, …]` reply (strings or Buffers as field names). */
function flatField(reply: unknown, field: string): unknown {
  if (!Array.isArray(reply)) return undefined;
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const name: unknown = reply[i];
    if ((typeof name === 'string' || Buffer.isBuffer(name)) && name.toString() === field) return reply[i + 1];
  }
  return undefined;
}

/** The same bytes as a Buffer, without copying (ioredis sends Buffers as binary-safe bulk strings). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
