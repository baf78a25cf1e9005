import {
  ErrorCode,
  FailedPreconditionError,
  MultiAgentsError,
  ResourceExhaustedError,
  ValidationError,
  decodeEnvelope,
  encodeEnvelope,
  toErrorInfo,
  type Envelope,
} from '@multiagents/contracts';
import {
  handToTail,
  resolveSubscribeOptions,
  type DeadLetter,
  type DeliveryHandler,
  type EventBus,
  type ResolvedSubscribeOptions,
  type GroupStats,
  type SubscribeOptions,
  type Subscription,
  type TailHandler,
  type TopicStats,
} from '@multiagents/core';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  ReplayPolicy,
  type ConsumerConfig,
  type MsgRequest,
  type StoredMsg,
} from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import {
  STREAM_FULL_CODES,
  isApiError,
  isTooLarge,
  withinMs,
  type NatsContext,
  type PublishOptions,
} from './nats-context';
import { NatsSubscription, type DeadLetterRequest } from './nats-subscription';
import { NatsTail, type OpenedTail } from './nats-tail';
import { REPLAY_GROUP_HEADER } from './replay-target';

/** Headers of a message in the dead-letter stream (the body is the original bytes, untouched). */
export const DeadLetterHeader = {
  group: 'Multiagents-Group',
  error: 'Multiagents-Error',
  deliveryCount: 'Multiagents-Delivery-Count',
  deadAt: 'Multiagents-Dead-At',
  sourceSequence: 'Multiagents-Source-Seq',
} as const;

const NS_PER_MS = 1_000_000;
/** How long the server keeps a live feed's consumer after its process stopped pulling. */
const TAIL_INACTIVE_THRESHOLD_MS = 60_000;
// Header values cannot hold CR/LF and travel with every dead letter: keep the error readable, bounded.
const MAX_ERROR_HEADER_CHARS = 2_048;

/**
 * The {@link EventBus} on NATS JetStream, with the semantics of `MemoryEventBus` (the reference;
 * one conformance suite):
 *
 * - Every topic is a subject `<prefix>.<topic>` in one stream `<prefix>_BUS` (see NatsNames):
 *   limits retention with `discard: new` and a max age, so a full stream refuses publishes
 *   instead of dropping unconsumed messages.
 * - A group is a durable pull consumer per (topic, group), `filter_subject` = the topic's subject,
 *   explicit ack, `ack_wait` = `visibilityTimeoutMs`; competing subscriptions (any process) pull
 *   from the same consumer in batches. `startFrom` maps to `deliver_policy` all/new when the
 *   consumer is created; a later subscriber with another visibility timeout updates `ack_wait`
 *   for the whole group (last subscriber wins). Consumers are created or checked at subscribe
 *   time: no JetStream API call per message.
 * - Handlers' outcomes settle the message without waiting for the server: resolve → ack, throw →
 *   `nak(delay)`, `extend()` → `working`; `POISON_MESSAGE`, undecodable or forged bytes (a
 *   signing key is configured and the signature is missing or wrong), or the last allowed
 *   failure → a dead letter in `<prefix>_DLQ` (original bytes, reason in headers), then `term`.
 * - `publish` sends every envelope at once with `Nats-Msg-Id` = the envelope id, so a republish
 *   inside the duplicate window is stored once (counted as `duplicatePublishes`), and resolves
 *   when JetStream acknowledged each one.
 * - `onRestored` fires after every reconnect: a broker that restarted may have forgotten its last
 *   acknowledged writes, so the orchestrator checks at once every command it waits on.
 *
 * Built by `createNatsBackend`, which shares one connection between the bus and the stores.
 */
export class NatsEventBus implements EventBus {
  private readonly subscriptions = new Set<NatsSubscription>();
  private readonly tails = new Set<NatsTail>();
  private readonly listeners = new Set<Subscription>();
  /** Per consumer: newest delivery count seen per stream sequence (see NatsSubscriptionContext). */
  private readonly latestDeliveries = new Map<string, Map<number, number>>();
  private closing: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly ctx: NatsContext) {}

  async publish(topic: string, envelopes: readonly Envelope[]): Promise<void> {
    const { ctx } = this;
    const subject = ctx.names.topicSubject(topic);
    this.assertOpen();
    if (envelopes.length === 0) return;
    // Encode everything first: an envelope that cannot be encoded fails the call before anything is sent.
    const encoded = envelopes.map((envelope) => encodeEnvelope(envelope, ctx.options.codec));
    const step = ctx.options.maxPublishInFlight;
    for (let from = 0; from < encoded.length; from += step) {
      // Sent back to back on one connection, so the stream stores them in this order; awaited
      // together so one round trip covers the batch. allSettled: when this rejects, nothing of
      // this call is still in flight.
      const results = await Promise.allSettled(
        encoded.slice(from, from + step).map((data, i) =>
          this.publishBytes(topic, subject, data, {
            msgID: ctx.names.publishId(envelopes[from + i]?.id ?? ''),
          }),
        ),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    }
  }

  /**
   * Publishes bytes exactly as given, bypassing the encoder (no message id: never de-duplicated):
   * for tests that inject malformed or forged messages. Not part of the port.
   */
  async publishRaw(topic: string, bytes: Uint8Array): Promise<void> {
    const subject = this.ctx.names.topicSubject(topic);
    this.assertOpen();
    await this.publishBytes(topic, subject, bytes, {});
  }

  /** A core NATS publish of each envelope (no stream holds it), flushed: one round trip. */
  async broadcast(channel: string, envelopes: readonly Envelope[]): Promise<void> {
    const { ctx } = this;
    const subject = ctx.names.broadcastSubject(channel);
    this.assertOpen();
    const encoded = envelopes.map((envelope) => encodeEnvelope(envelope, ctx.options.codec));
    if (encoded.length === 0) return;
    for (const data of encoded) ctx.connection.publish(subject, data);
    await ctx.connection.flush();
  }

  /** A core NATS subscription of the channel's subject, confirmed by the server before it resolves. */
  async listen(channel: string, handler: TailHandler): Promise<Subscription> {
    const { ctx } = this;
    const subject = ctx.names.broadcastSubject(channel);
    if (typeof handler !== 'function') throw new ValidationError('listen', ['handler must be a function']);
    this.assertOpen();
    const logger = ctx.logger.child({ component: 'nats-event-bus', channel });
    const sub = ctx.connection.subscribe(subject, {
      callback: (err, msg) => {
        if (err !== null) {
          logger.warn({ err: err.message }, 'broadcast listener failed');
          return;
        }
        handToTail(
          () => decodeEnvelope(msg.data, ctx.options.codec),
          handler,
          () => (ctx.counters.refusedEnvelopes += 1),
          (thrown) => logger.warn({ err: toErrorInfo(thrown).message }, 'a listener threw'),
        );
      },
    });
    await ctx.connection.flush();
    const listener: Subscription = {
      close: async () => {
        if (!this.listeners.delete(listener)) return;
        sub.unsubscribe();
      },
    };
    this.listeners.add(listener);
    if (this.closed) await listener.close();
    return listener;
  }

  async subscribe(topic: string, options: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    const { ctx } = this;
    ctx.names.assertTopic(topic);
    const resolved = resolveSubscribeOptions(options);
    if (typeof handler !== 'function') throw new ValidationError('subscribe', ['handler must be a function']);
    this.assertOpen();
    const name = ctx.names.consumerName(topic, resolved.group);
    await this.ensureConsumer(topic, name, resolved);
    const consumer = await ctx.js.consumers.get(ctx.names.stream, name);
    this.assertOpen();
    let latest = this.latestDeliveries.get(name);
    if (latest === undefined) {
      latest = new Map();
      this.latestDeliveries.set(name, latest);
    }
    const logger = ctx.logger.child({
      component: 'nats-event-bus',
      topic,
      group: resolved.group,
      consumer: resolved.consumer,
    });
    const subscription = new NatsSubscription({
      topic,
      options: resolved,
      handler,
      consumer,
      fetchExpiresMs: ctx.options.fetchExpiresMs,
      maxFetchBatch: ctx.options.maxFetchBatch,
      codec: ctx.options.codec,
      logger,
      latest,
      deadLetter: (request) => this.deadLetter(topic, resolved, name, request),
      refused: () => (this.ctx.counters.refusedEnvelopes += 1),
      writes: ctx.writes,
      flush: () => this.flushQuietly(),
      detach: (s) => this.subscriptions.delete(s),
    });
    this.subscriptions.add(subscription);
    subscription.start();
    return subscription;
  }

  /**
   * An ordered consumer of the topic's subject starting after the stream's last message (see
   * {@link NatsTail}): nothing durable on the server, deleted when the tail closes, and gone
   * from the server a minute after a killed process stopped pulling (five minutes once the client
   * has recreated it: the client sets that threshold itself).
   */
  async tail(topic: string, handler: TailHandler): Promise<Subscription> {
    const { ctx } = this;
    ctx.names.assertTopic(topic);
    if (typeof handler !== 'function') throw new ValidationError('tail', ['handler must be a function']);
    this.assertOpen();
    const info = await ctx.jsm.streams.info(ctx.names.stream);
    const open = async (startSeq: number): Promise<OpenedTail> => {
      const consumer = await ctx.js.consumers.get(ctx.names.stream, {
        filter_subjects: ctx.names.topicSubject(topic),
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: startSeq,
        inactive_threshold: TAIL_INACTIVE_THRESHOLD_MS,
      });
      return { consumer, messages: await consumer.consume() };
    };
    const startSeq = info.state.last_seq + 1;
    const tail = new NatsTail(
      {
        topic,
        open,
        handler,
        codec: ctx.options.codec,
        logger: ctx.logger.child({ component: 'nats-event-bus', topic, tail: true }),
        refused: () => (this.ctx.counters.refusedEnvelopes += 1),
        detach: (t) => this.tails.delete(t),
      },
      await open(startSeq),
      startSeq,
    );
    this.tails.add(tail);
    if (this.closed) await tail.close();
    this.assertOpen();
    return tail;
  }

  async pendingCount(topic: string, group: string): Promise<number> {
    const name = this.ctx.names.consumerName(topic, group);
    this.assertOpen();
    try {
      const info = await this.ctx.jsm.consumers.info(this.ctx.names.stream, name);
      return info.num_ack_pending;
    } catch (err) {
      if (isApiError(err, JetStreamApiCodes.ConsumerNotFound, JetStreamApiCodes.StreamNotFound)) return 0;
      throw err;
    }
  }

  /**
   * Pending (delivered, not acknowledged) and lag (not delivered yet) of every group of the topic,
   * from its consumers' info, and the dead letters it holds. JetStream API calls: for scrapes and
   * operators, never the per-step path. `deadLettersAdded` is left out: the dead-letter stream
   * forgets a letter once it is replayed or discarded, and keeps no count per subject.
   */
  async topicStats(topic: string): Promise<TopicStats> {
    const { ctx } = this;
    this.assertOpen();
    const filter = ctx.names.topicSubject(topic);
    const groups: GroupStats[] = [];
    try {
      for await (const info of ctx.jsm.consumers.list(ctx.names.stream)) {
        // Groups are durable consumers; a live feed's ordered consumer (see tail) is none.
        if (info.config.filter_subject !== filter || info.config.durable_name === undefined) continue;
        groups.push({
          group: info.config.description ?? ctx.names.groupOfConsumer(info.name),
          pending: info.num_ack_pending,
          lag: info.num_pending,
        });
      }
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
    }
    const deadSubject = ctx.names.deadLetterSubject(topic);
    let deadLetters = 0;
    try {
      const info = await ctx.jsm.streams.info(ctx.names.deadLetterStream, { subjects_filter: deadSubject });
      deadLetters = info.state.subjects?.[deadSubject] ?? 0;
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
    }
    return { topic, groups: groups.sort((a, b) => (a.group < b.group ? -1 : 1)), deadLetters };
  }

  /**
   * Reads the topic's dead letters oldest first, one `next_by_subj` lookup per letter (the
   * dead-letter stream is for operators: its size is what failed, not the traffic).
   */
  async listDeadLetters(topic: string, limit?: number): Promise<DeadLetter[]> {
    const { ctx } = this;
    const subject = ctx.names.deadLetterSubject(topic);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
      throw new ValidationError('listDeadLetters', ['limit must be an integer >= 0']);
    }
    this.assertOpen();
    const max = limit ?? Number.POSITIVE_INFINITY;
    const out: DeadLetter[] = [];
    let seq = 1;
    while (out.length < max) {
      // `next_by_subj` on STREAM.MSG.GET exists since server 2.9 (checked against 2.9.10); the
      // client's typings only list it for direct gets, which the stream does not enable.
      const request = { next_by_subj: subject, seq } as unknown as MsgRequest;
      const stored = await ctx.jsm.streams.getMessage(ctx.names.deadLetterStream, request);
      if (stored === null) break;
      out.push(this.toDeadLetter(topic, stored));
      seq = stored.seq + 1;
    }
    return out;
  }

  async replayDeadLetter(topic: string, id: string): Promise<boolean> {
    const stored = await this.findDeadLetter(topic, id);
    if (stored === undefined) return false;
    // A new message in the topic for the group that dead-lettered it: handled again there with a
    // fresh delivery count; the other groups acknowledge it unseen and tails skip it (see
    // replayTarget). A dead letter with no group (written by something else) goes to every group.
    const { names } = this.ctx;
    const msgID = names.replayId(stored.seq, stored.timestamp);
    const group = stored.header.get(DeadLetterHeader.group);
    let options: PublishOptions = { msgID };
    if (group !== '') {
      const h = headers();
      h.set(REPLAY_GROUP_HEADER, group);
      options = { msgID, headers: h };
    }
    await this.publishBytes(topic, names.topicSubject(topic), stored.data, options);
    return this.deleteDeadLetter(stored.seq);
  }

  /**
   * Deletes one message of the dead-letter stream, after checking it is a dead letter of `topic`
   * (sequences are shared by every topic's dead letters).
   */
  async discardDeadLetter(topic: string, id: string): Promise<boolean> {
    const stored = await this.findDeadLetter(topic, id);
    return stored === undefined ? false : this.deleteDeadLetter(stored.seq);
  }

  /** The dead letter `id` (its sequence in the dead-letter stream) of `topic`, if there is one. */
  private async findDeadLetter(topic: string, id: string): Promise<StoredMsg | undefined> {
    const { ctx } = this;
    this.assertOpen();
    if (typeof id !== 'string' || !/^[1-9][0-9]{0,15}$/.test(id)) return undefined;
    let stored: StoredMsg | null;
    try {
      stored = await ctx.jsm.streams.getMessage(ctx.names.deadLetterStream, { seq: Number(id) });
    } catch (err) {
      if (isApiError(err, JetStreamApiCodes.NoMessageFound)) return undefined;
      throw err;
    }
    return stored === null || stored.subject !== ctx.names.deadLetterSubject(topic) ? undefined : stored;
  }

  /** Deletes a dead letter; false when someone else (a concurrent replay or discard) did first. */
  private async deleteDeadLetter(seq: number): Promise<boolean> {
    try {
      return await this.ctx.jsm.streams.deleteMessage(this.ctx.names.deadLetterStream, seq, false);
    } catch (err) {
      if (isApiError(err, JetStreamApiCodes.NoMessageFound)) return false;
      throw err;
    }
  }

  /**
   * What the backend counted: `duplicatePublishes` (publishes JetStream refused because the
   * stream already held their id), `deadLettered`, `outboxesRepublished`,
   * `outboxPublishFailures`, `casConflicts`, `staleTimers`, `indexRepairs`.
   */
  counters(): Readonly<Record<string, number>> {
    return { ...this.ctx.counters };
  }

  onRestored(listener: () => void): () => void {
    return this.ctx.state.onRestored(listener);
  }

  /** Stops every subscription (their handlers in flight settle first). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await Promise.all(
        [...this.subscriptions, ...this.tails, ...this.listeners].map((subscription) => subscription.close()),
      );
    })();
    return this.closing;
  }

  private async ensureConsumer(
    topic: string,
    name: string,
    options: ResolvedSubscribeOptions,
  ): Promise<void> {
    const { jsm, names } = this.ctx;
    const stream = names.stream;
    const ackWait = options.visibilityTimeoutMs * NS_PER_MS;
    const filter = names.topicSubject(topic);
    let existing: ConsumerConfig;
    try {
      existing = (await jsm.consumers.info(stream, name)).config;
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      const config: Partial<ConsumerConfig> = {
        durable_name: name,
        // The group's name as given: consumer names are encoded (and hashed when long).
        description: options.group,
        filter_subject: filter,
        ack_policy: AckPolicy.Explicit,
        ack_wait: ackWait,
        // Unlimited on purpose: the bus dead-letters by delivery count (see NatsSubscription).
        max_deliver: -1,
        // Only when the consumer is created, as for every backend: an existing group resumes.
        deliver_policy: options.startFrom === 'latest' ? DeliverPolicy.New : DeliverPolicy.All,
        replay_policy: ReplayPolicy.Instant,
        max_ack_pending: this.ctx.options.maxAckPending,
      };
      try {
        await jsm.consumers.add(stream, config);
        return;
      } catch (addErr) {
        // Lost a race with another subscriber creating the same group (2.9 answers 10012 "deliver
        // policy can not be updated" when their startFrom differs): theirs wins, as the first
        // creator of a group decides on every backend. Anything else: the create error.
        try {
          existing = (await jsm.consumers.info(stream, name)).config;
        } catch {
          throw addErr;
        }
      }
    }
    if (existing.filter_subject !== filter) {
      throw new FailedPreconditionError(
        `consumer ${name} on ${stream} filters ${String(existing.filter_subject)}, expected ${filter}`,
        { stream, consumer: name },
      );
    }
    if (existing.ack_wait !== ackWait) {
      await jsm.consumers.update(stream, name, { ack_wait: ackWait });
      this.ctx.logger.info(
        { component: 'nats-event-bus', consumer: name, ackWaitMs: options.visibilityTimeoutMs },
        "updated the group's visibility timeout (ack_wait)",
      );
    }
  }

  private async publishBytes(
    topic: string,
    subject: string,
    data: Uint8Array,
    options: PublishOptions,
  ): Promise<void> {
    try {
      // No `Nats-Expected-Stream`: the topic stream owns `<prefix>.>`, and the server refuses a
      // stream with overlapping subjects, so no other stream can capture a topic's subject.
      await this.ctx.publish(subject, data, options);
    } catch (err) {
      throw publishError(topic, this.ctx.names.stream, err);
    }
  }

  private async deadLetter(
    topic: string,
    options: ResolvedSubscribeOptions,
    consumer: string,
    request: DeadLetterRequest,
  ): Promise<void> {
    const { ctx } = this;
    const { msg, error, deliveryCount } = request;
    const h = headers();
    h.set(DeadLetterHeader.group, options.group);
    h.set(DeadLetterHeader.error, headerSafe(error));
    h.set(DeadLetterHeader.deliveryCount, String(deliveryCount));
    h.set(DeadLetterHeader.deadAt, String(ctx.clock.now()));
    h.set(DeadLetterHeader.sourceSequence, String(msg.seq));
    try {
      await ctx.publish(ctx.names.deadLetterSubject(topic), msg.data, {
        headers: h,
        msgID: ctx.names.deadLetterId(consumer, msg.seq),
        expectStream: ctx.names.deadLetterStream,
      });
      ctx.counters.deadLettered += 1;
    } catch (err) {
      // Not stored: keep the message (it comes back, and is dead-lettered again) rather than lose it.
      ctx.logger.error(
        {
          component: 'nats-event-bus',
          topic,
          group: options.group,
          seq: msg.seq,
          err: toErrorInfo(err).message,
        },
        'dead-lettering failed; the message stays pending',
      );
      try {
        msg.nak(Math.max(options.retryDelayMs, 1));
      } catch {
        // Connection gone: AckWait brings it back.
      }
      return;
    }
    try {
      msg.term();
    } catch {
      // Connection gone: it is redelivered, and the dead letter's message id keeps it single.
    }
  }

  private toDeadLetter(topic: string, stored: StoredMsg): DeadLetter {
    const data = stored.data.slice();
    const header = (key: string): string => stored.header.get(key);
    let envelope: Envelope | undefined;
    try {
      envelope = decodeEnvelope(data, this.ctx.options.codec);
    } catch {
      envelope = undefined;
    }
    return {
      id: String(stored.seq),
      topic,
      group: header(DeadLetterHeader.group),
      data,
      ...(envelope === undefined ? {} : { envelope }),
      error: header(DeadLetterHeader.error),
      deliveryCount: Number(header(DeadLetterHeader.deliveryCount)) || 0,
      deadAt: Number(header(DeadLetterHeader.deadAt)) || stored.time.getTime(),
    };
  }

  private async flushQuietly(): Promise<void> {
    const connection = this.ctx.connection;
    if (connection.isClosed()) return;
    this.ctx.writes.flush();
    // Bounded: while disconnected a flush waits for the reconnect. Unflushed acks are not lost
    // work: the server redelivers after AckWait.
    await withinMs(connection.flush(), this.ctx.options.requestTimeoutMs);
  }

  private assertOpen(): void {
    if (this.closed || this.ctx.isClosed) throw new FailedPreconditionError('NatsEventBus is closed');
  }
}

function publishError(topic: string, stream: string, err: unknown): Error {
  if (isTooLarge(err)) {
    return new ResourceExhaustedError(
      `publish to ${topic} refused, the message is too large: ${toErrorInfo(err).message}`,
      { topic, stream, reason: 'too_large' },
    );
  }
  if (isApiError(err, ...STREAM_FULL_CODES)) {
    return new ResourceExhaustedError(
      `stream ${stream} is full; publish to ${topic} refused: ${toErrorInfo(err).message}`,
      {
        topic,
        stream,
      },
    );
  }
  return new MultiAgentsError(ErrorCode.Internal, `publish to ${topic} failed: ${toErrorInfo(err).message}`, {
    cause: err,
    details: { topic, stream },
  });
}

function headerSafe(value: string): string {
  const flat = value.replace(/[\r\n]+/g, ' ').trim();
  return (
    (flat.length > MAX_ERROR_HEADER_CHARS ? `${flat.slice(0, MAX_ERROR_HEADER_CHARS)}…` : flat) ||
    '(no message)'
  );
}
