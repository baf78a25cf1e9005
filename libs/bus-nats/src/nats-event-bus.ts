import {
  ErrorCode,
  FailedPreconditionError,
  MAX_ENVELOPE_BYTES,
  MultiAgentsError,
  ResourceExhaustedError,
  ValidationError,
  decodeEnvelope,
  encodeEnvelope,
  toErrorInfo,
  type Envelope,
} from '@multiagents/contracts';
import type {
  DeadLetter,
  DeliveryHandler,
  EventBus,
  SubscribeOptions,
  Subscription,
} from '@multiagents/core';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  JetStreamError,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamPublishOptions,
  type MsgRequest,
  type StoredMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import {
  resolveNatsEventBusOptions,
  type NatsEventBusOptions,
  type ResolvedNatsEventBusOptions,
} from './nats-event-bus-options';
import { ConnectionState } from './connection-state';
import { NatsNames } from './nats-names';
import { NatsSubscription, type DeadLetterRequest } from './nats-subscription';
import { resolveSubscribeOptions, type ResolvedSubscribeOptions } from '@multiagents/core';

/** Headers of a message in the dead-letter stream (the body is the original bytes, untouched). */
export const DeadLetterHeader = {
  group: 'Multiagents-Group',
  error: 'Multiagents-Error',
  deliveryCount: 'Multiagents-Delivery-Count',
  deadAt: 'Multiagents-Dead-At',
  sourceSequence: 'Multiagents-Source-Seq',
} as const;

const NS_PER_MS = 1_000_000;
// Room for the headers of a published message (Nats-Msg-Id, expected stream, dead-letter fields).
const PUBLISH_HEADER_ALLOWANCE = 4 * 1024;
// Header values cannot hold CR/LF and travel with every dead letter: keep the error readable, bounded.
const MAX_ERROR_HEADER_CHARS = 2_048;
// JetStream API error codes (server/errors.json) the bus tells apart.
const STREAM_NAME_IN_USE = 10058;
// Publish refused for lack of room (discard: new): 10077 is the stream's store refusing the write
// ("maximum messages exceeded", "maximum bytes exceeded", checked on 2.9.10), 10047 the server's
// storage, 10023 the account's resources.
const STREAM_FULL = [10077, 10047, 10023];

/**
 * The {@link EventBus} on NATS JetStream, with the semantics of `MemoryEventBus` (the reference):
 *
 * - Every topic is a subject `<prefix>.<topic>` in one stream `<prefix>_BUS` (see
 *   {@link NatsNames}). Retention is `limits` with `discard: new` and a max age: a full stream
 *   refuses publishes (a publish fails, loudly) instead of dropping old, possibly unconsumed
 *   messages. Not `interest` (a message published before its group's consumer exists would be
 *   dropped at once, and `startFrom: 'earliest'` promises it is kept), and not `workqueue` (it
 *   allows one consumer per subject, while several groups read the same topic, e.g. `events`).
 *   The price: acknowledged messages stay until `maxAgeMs`; size the store for it.
 * - A group is a durable pull consumer per (topic, group), `filter_subject` = the topic's subject,
 *   explicit ack, `ack_wait` = `visibilityTimeoutMs`; competing subscriptions (any process) pull
 *   from the same consumer. `startFrom` maps to `deliver_policy` all/new when the consumer is
 *   created; a later subscriber with another visibility timeout updates `ack_wait` for the whole
 *   group (JetStream 2.9 allows that edit; last subscriber wins).
 * - `publish` sends every envelope at once with `Nats-Msg-Id` = `<topic> <envelope id>`, so a
 *   republish (outbox recovery, retry after a lost ack) inside `duplicateWindowMs` is stored once,
 *   and resolves when JetStream acknowledged each one.
 * - Dead letters go to the stream `<prefix>_DLQ`, subject `<prefix>_dlq.<topic>`, with the original
 *   bytes and the reason in headers; the source message is then terminated. A dead letter's id is
 *   its sequence in that stream.
 * - `pendingCount` is the consumer's `num_ack_pending`: delivered and not acknowledged (messages
 *   waiting out a retry delay included), as for the memory bus; messages never delivered yet are
 *   not counted.
 * - A late settle from a delivery that outlived its visibility timeout is ignored when the newer
 *   delivery is in the same process (as on the memory bus). Across processes JetStream accepts
 *   the late ack: the handler did succeed, so at-least-once still holds.
 * - Publishes of one call are written in order on one connection, so the stream keeps their
 *   order, unless one of them is retried (after a timeout or a reconnect).
 *
 * Works against nats-server 2.9 (no 2.10-only feature is used). Call {@link start} at startup to
 * surface configuration errors (no JetStream, a stream with another retention) at once; every
 * other method also starts the bus on first use.
 *
 * @example
 * const bus = new NatsEventBus({ servers: 'nats://127.0.0.1:4222', prefix: 'multiagents' });
 * await bus.start();
 * await bus.subscribe('results', { group: 'orchestrators', consumer: 'o1' }, async (d) => handle(d.envelope));
 * await bus.publish('results', [envelope]);
 * await bus.close();
 */
export class NatsEventBus implements EventBus {
  /** Publishes JetStream refused as duplicates of an id it already held (see `counters`). */
  private duplicatePublishes = 0;

  /** The options in effect. */
  readonly options: ResolvedNatsEventBusOptions;
  /** Every stream, subject and consumer name this bus uses. */
  readonly names: NatsNames;
  private connection: NatsConnection | undefined;
  private jsm: JetStreamManager | undefined;
  private js: JetStreamClient | undefined;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly subscriptions = new Set<NatsSubscription>();
  /** Per consumer: newest delivery count seen per stream sequence (see NatsSubscriptionContext). */
  private readonly latestDeliveries = new Map<string, Map<number, number>>();
  private connectionState: ConnectionState | undefined;

  constructor(options: NatsEventBusOptions) {
    this.options = resolveNatsEventBusOptions(options);
    this.names = new NatsNames(this.options.prefix);
  }

  /**
   * Connects (unless given a connection), checks that JetStream is there, and creates or checks
   * both streams. Idempotent; after a failure the next call tries again.
   */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    this.starting ??= this.connectAndPrepare().catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  async publish(topic: string, envelopes: readonly Envelope[]): Promise<void> {
    const subject = this.names.topicSubject(topic);
    this.assertOpen();
    if (envelopes.length === 0) return;
    // Encode everything first: an envelope that cannot be encoded fails the call before anything is sent.
    const encoded = envelopes.map((envelope) => encodeEnvelope(envelope, this.options.codec));
    await this.start();
    const step = this.options.maxPublishInFlight;
    for (let from = 0; from < encoded.length; from += step) {
      // Sent back to back on one connection, so the stream stores them in this order; awaited
      // together so one round trip covers the batch. allSettled: when this rejects, nothing of
      // this call is still in flight.
      const results = await Promise.allSettled(
        encoded
          .slice(from, from + step)
          .map((data, i) =>
            this.publishBytes(
              topic,
              subject,
              data,
              this.names.publishId(topic, envelopes[from + i]?.id ?? ''),
            ),
          ),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    }
  }

  /**
   * Publishes bytes exactly as given, bypassing the encoder (no message id: never de-duplicated):
   * for tests that inject malformed messages. Not part of the port.
   */
  async publishRaw(topic: string, bytes: Uint8Array): Promise<void> {
    const subject = this.names.topicSubject(topic);
    this.assertOpen();
    await this.start();
    await this.publishBytes(topic, subject, bytes, undefined);
  }

  async subscribe(topic: string, options: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    this.names.assertTopic(topic);
    const resolved = resolveSubscribeOptions(options);
    if (typeof handler !== 'function') throw new ValidationError('subscribe', ['handler must be a function']);
    this.assertOpen();
    await this.start();
    const name = this.names.consumerName(topic, resolved.group);
    await this.ensureConsumer(topic, name, resolved);
    const consumer = await this.jetstream().consumers.get(this.names.stream, name);
    this.assertOpen();
    let latest = this.latestDeliveries.get(name);
    if (latest === undefined) {
      latest = new Map();
      this.latestDeliveries.set(name, latest);
    }
    const logger = this.options.logger.child({
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
      fetchExpiresMs: this.options.fetchExpiresMs,
      maxFetchBatch: this.options.maxFetchBatch,
      codec: this.options.codec,
      logger,
      latest,
      deadLetter: (request) => this.deadLetter(topic, resolved, name, request),
      flush: () => this.flushQuietly(),
      detach: (s) => this.subscriptions.delete(s),
    });
    this.subscriptions.add(subscription);
    subscription.start();
    return subscription;
  }

  async pendingCount(topic: string, group: string): Promise<number> {
    const name = this.names.consumerName(topic, group);
    this.assertOpen();
    await this.start();
    try {
      const info = await this.manager().consumers.info(this.names.stream, name);
      return info.num_ack_pending;
    } catch (err) {
      if (isApiError(err, JetStreamApiCodes.ConsumerNotFound, JetStreamApiCodes.StreamNotFound)) return 0;
      throw err;
    }
  }

  /**
   * Reads the topic's dead letters oldest first, one `next_by_subj` lookup per letter (the
   * dead-letter stream is for operators: its size is what failed, not the traffic).
   */
  async listDeadLetters(topic: string, limit?: number): Promise<DeadLetter[]> {
    const subject = this.names.deadLetterSubject(topic);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
      throw new ValidationError('listDeadLetters', ['limit must be an integer >= 0']);
    }
    this.assertOpen();
    await this.start();
    const max = limit ?? Number.POSITIVE_INFINITY;
    const out: DeadLetter[] = [];
    let seq = 1;
    while (out.length < max) {
      // `next_by_subj` on STREAM.MSG.GET exists since server 2.9 (checked against 2.9.10); the
      // client's typings only list it for direct gets, which the stream does not enable.
      const request = { next_by_subj: subject, seq } as unknown as MsgRequest;
      const stored = await this.manager().streams.getMessage(this.names.deadLetterStream, request);
      if (stored === null) break;
      out.push(this.toDeadLetter(topic, stored));
      seq = stored.seq + 1;
    }
    return out;
  }

  async replayDeadLetter(topic: string, id: string): Promise<boolean> {
    const deadSubject = this.names.deadLetterSubject(topic);
    const subject = this.names.topicSubject(topic);
    this.assertOpen();
    if (typeof id !== 'string' || !/^[1-9][0-9]{0,15}$/.test(id)) return false;
    await this.start();
    const seq = Number(id);
    const stream = this.names.deadLetterStream;
    let stored: StoredMsg | null;
    try {
      stored = await this.manager().streams.getMessage(stream, { seq });
    } catch (err) {
      if (isApiError(err, JetStreamApiCodes.NoMessageFound)) return false;
      throw err;
    }
    if (stored === null || stored.subject !== deadSubject) return false;
    // A new message in the topic: every group sees it again with a fresh delivery count.
    await this.publishBytes(topic, subject, stored.data, this.names.replayId(seq, stored.timestamp));
    try {
      return await this.manager().streams.deleteMessage(stream, seq, false);
    } catch (err) {
      // Replayed concurrently by someone else, who deleted it first: the message went out once.
      if (isApiError(err, JetStreamApiCodes.NoMessageFound)) return false;
      throw err;
    }
  }

  /**
   * Stops every subscription (their handlers in flight settle first), then drains and closes the
   * connection if the bus opened it. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    await this.starting?.catch(() => undefined);
    this.connectionState?.stop();
    const connection = this.connection;
    if (connection !== undefined && this.options.connection === undefined && !connection.isClosed()) {
      // Drain flushes the acks written so far; while the server is unreachable it would wait for
      // a reconnect that may never come, so it gets a bound (unflushed acks mean redeliveries).
      const drained = await withinMs(connection.drain(), this.options.requestTimeoutMs);
      if (!drained || !connection.isClosed()) await connection.close().catch(() => undefined);
    }
  }

  private async connectAndPrepare(): Promise<void> {
    const { options } = this;
    const owned = options.connection === undefined;
    let connection: NatsConnection;
    if (options.connection !== undefined) {
      connection = options.connection;
    } else {
      try {
        connection = await connect({
          servers: [...options.servers],
          name: options.connectionName,
          timeout: options.connectTimeoutMs,
          // Reconnect for ever: a broker restart must not end the service (SPEC §4).
          maxReconnectAttempts: -1,
          reconnectTimeWait: options.reconnectTimeWaitMs,
          waitOnFirstConnect: false,
        });
      } catch (err) {
        throw new MultiAgentsError(
          ErrorCode.FailedPrecondition,
          `cannot connect to NATS at ${options.servers.join(', ')}: ${toErrorInfo(err).message}`,
          { cause: err, details: { servers: [...options.servers] } },
        );
      }
    }
    try {
      let jsm: JetStreamManager;
      try {
        jsm = await jetstreamManager(connection, { timeout: options.requestTimeoutMs });
      } catch (err) {
        throw new FailedPreconditionError(
          `JetStream is not available on the NATS server (${toErrorInfo(err).message}): ` +
            'start nats-server with -js (or a jetstream {} block in its configuration)',
          { servers: [...options.servers], reason: 'jetstream_unavailable' },
        );
      }
      await this.ensureStream(jsm, this.topicStreamConfig());
      await this.ensureStream(jsm, this.deadLetterStreamConfig());
      this.connection = connection;
      this.jsm = jsm;
      this.js = jetstream(connection, { timeout: options.requestTimeoutMs });
      this.connectionState = new ConnectionState(
        connection,
        this.options.logger.child({ component: 'nats-event-bus' }),
      );
      this.checkMaxPayload(connection);
    } catch (err) {
      if (owned) await connection.close().catch(() => undefined);
      throw err;
    }
  }

  /**
   * The codec accepts envelopes up to `maxBytes`; the server refuses messages (headers included)
   * above its `max_payload` (1 MiB by default, the codec's default limit too). Said once at start
   * rather than discovered on the first large envelope.
   */
  private checkMaxPayload(connection: NatsConnection): void {
    const maxPayload = connection.info?.max_payload;
    const maxEnvelope = this.options.codec?.maxBytes ?? MAX_ENVELOPE_BYTES;
    if (maxPayload !== undefined && maxEnvelope + PUBLISH_HEADER_ALLOWANCE > maxPayload) {
      this.options.logger.warn(
        { component: 'nats-event-bus', maxPayload, maxEnvelopeBytes: maxEnvelope },
        "envelopes near the codec's size limit exceed the server's max_payload and will be refused; " +
          'lower codec.maxBytes or raise max_payload',
      );
    }
  }

  private topicStreamConfig(): Partial<StreamConfig> & { name: string } {
    const o = this.options;
    return {
      name: this.names.stream,
      subjects: [...this.names.streamSubjects],
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      storage: o.storage === 'memory' ? StorageType.Memory : StorageType.File,
      num_replicas: o.streamReplicas,
      max_age: o.maxAgeMs * NS_PER_MS,
      max_bytes: o.maxBytes,
      max_msgs: o.maxMsgs,
      duplicate_window: o.duplicateWindowMs * NS_PER_MS,
    };
  }

  private deadLetterStreamConfig(): Partial<StreamConfig> & { name: string } {
    const o = this.options;
    const window =
      o.deadLetterMaxAgeMs > 0 ? Math.min(o.duplicateWindowMs, o.deadLetterMaxAgeMs) : o.duplicateWindowMs;
    return {
      name: this.names.deadLetterStream,
      subjects: [...this.names.deadLetterSubjects],
      retention: RetentionPolicy.Limits,
      // Full: dead-lettering fails and the message stays pending (retried), never an old one dropped.
      discard: DiscardPolicy.New,
      storage: o.storage === 'memory' ? StorageType.Memory : StorageType.File,
      num_replicas: o.streamReplicas,
      max_age: o.deadLetterMaxAgeMs * NS_PER_MS,
      duplicate_window: window * NS_PER_MS,
    };
  }

  /**
   * Creates the stream, or checks an existing one. Retention, discard policy and subjects decide
   * correctness and are required; differing limits are only logged (changing them is an
   * operator's decision, and two processes with different options must not flip them back and forth).
   */
  private async ensureStream(
    jsm: JetStreamManager,
    config: Partial<StreamConfig> & { name: string },
  ): Promise<void> {
    let existing: StreamConfig;
    try {
      existing = (await jsm.streams.info(config.name)).config;
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
      try {
        await jsm.streams.add(config);
        return;
      } catch (addErr) {
        if (!isApiError(addErr, STREAM_NAME_IN_USE)) {
          throw new FailedPreconditionError(
            `cannot create stream ${config.name} (subjects ${String(config.subjects)}): ${toErrorInfo(addErr).message}`,
            { stream: config.name },
          );
        }
        // Another process created it first: check theirs.
        existing = (await jsm.streams.info(config.name)).config;
      }
    }
    const problems: string[] = [];
    if (existing.retention !== RetentionPolicy.Limits) {
      problems.push(`retention is ${existing.retention}, must be limits`);
    }
    if (existing.discard !== DiscardPolicy.New) problems.push(`discard is ${existing.discard}, must be new`);
    for (const subject of config.subjects ?? []) {
      if (!existing.subjects.includes(subject)) problems.push(`subjects must include ${subject}`);
    }
    if (problems.length > 0) {
      throw new FailedPreconditionError(
        `stream ${config.name} exists with another configuration: ${problems.join('; ')}`,
        {
          stream: config.name,
          problems,
        },
      );
    }
    const differing = (
      ['max_age', 'max_bytes', 'max_msgs', 'duplicate_window', 'num_replicas'] as const
    ).filter((key) => config[key] !== undefined && existing[key] !== config[key]);
    if (differing.length > 0) {
      this.options.logger.warn(
        {
          component: 'nats-event-bus',
          stream: config.name,
          differing: Object.fromEntries(
            differing.map((k) => [k, { existing: existing[k], wanted: config[k] }]),
          ),
        },
        'stream exists with other limits; keeping them',
      );
    }
  }

  private async ensureConsumer(
    topic: string,
    name: string,
    options: ResolvedSubscribeOptions,
  ): Promise<void> {
    const jsm = this.manager();
    const stream = this.names.stream;
    const ackWait = options.visibilityTimeoutMs * NS_PER_MS;
    const filter = this.names.topicSubject(topic);
    let existing: ConsumerConfig;
    try {
      existing = (await jsm.consumers.info(stream, name)).config;
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      const config: Partial<ConsumerConfig> = {
        durable_name: name,
        filter_subject: filter,
        ack_policy: AckPolicy.Explicit,
        ack_wait: ackWait,
        // Unlimited on purpose: the bus dead-letters by delivery count (see NatsSubscription).
        max_deliver: -1,
        // Only when the consumer is created, as for every backend: an existing group resumes.
        deliver_policy: options.startFrom === 'latest' ? DeliverPolicy.New : DeliverPolicy.All,
        replay_policy: ReplayPolicy.Instant,
        max_ack_pending: this.options.maxAckPending,
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
      this.options.logger.info(
        { component: 'nats-event-bus', consumer: name, ackWaitMs: options.visibilityTimeoutMs },
        "updated the group's visibility timeout (ack_wait)",
      );
    }
  }

  private async publishBytes(
    topic: string,
    subject: string,
    data: Uint8Array,
    msgID: string | undefined,
  ): Promise<void> {
    try {
      // The ack must come from our stream, not from another stream that captured the subject.
      await this.sendWithRetry(subject, data, {
        ...(msgID === undefined ? {} : { msgID }),
        expect: { streamName: this.names.stream },
      });
    } catch (err) {
      throw publishError(topic, this.names.stream, err);
    }
  }

  /**
   * One JetStream publish, tried up to `publishRetries` times while the failure is transient: no
   * answer (timeout), no responders (JetStream still recovering after a restart), or a disconnect
   * while the request was out (the client drops what it had buffered, see ConnectionState).
   * Each attempt first waits for a reconnect. Retrying is safe for anything with a message id.
   */
  private async sendWithRetry(
    subject: string,
    data: Uint8Array,
    options: Partial<JetStreamPublishOptions>,
  ): Promise<void> {
    const { publishRetries, requestTimeoutMs } = this.options;
    for (let attempt = 1; ; attempt += 1) {
      const state = this.connectionState;
      if (state !== undefined && !(await state.whenConnected(requestTimeoutMs))) {
        if (attempt >= publishRetries) throw new Error('not connected to NATS');
        continue;
      }
      const disconnect = state?.nextDisconnect();
      const ack = this.jetstream().publish(subject, data, {
        ...options,
        timeout: requestTimeoutMs,
        retries: 1,
      });
      const outcome = await Promise.race([
        ack.then(
          (pubAck) => {
            // The stream already held this id: a repeated publish (a stale replica's late result,
            // an outbox republished) that JetStream refused. Counted, as SPEC §9.4 asks.
            if (pubAck.duplicate) this.duplicatePublishes++;
            return { kind: 'ok' as const };
          },
          (err: unknown) => ({ kind: 'failed' as const, err }),
        ),
        ...(disconnect === undefined
          ? []
          : [disconnect.promise.then(() => ({ kind: 'disconnected' as const }))]),
      ]);
      disconnect?.cancel();
      if (outcome.kind === 'ok') return;
      if (outcome.kind === 'disconnected') {
        // The request may or may not have landed; its own timeout settles it later, unobserved.
        ack.catch(() => undefined);
        if (attempt >= publishRetries) throw new Error('disconnected from NATS while publishing');
        continue;
      }
      if (attempt >= publishRetries || !isTransient(outcome.err)) throw outcome.err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 50 * 2 ** attempt)));
    }
  }

  /** `duplicatePublishes`: publishes JetStream refused because the stream already held their id. */
  counters(): Readonly<Record<string, number>> {
    return { duplicatePublishes: this.duplicatePublishes };
  }

  private async deadLetter(
    topic: string,
    options: ResolvedSubscribeOptions,
    consumer: string,
    request: DeadLetterRequest,
  ): Promise<void> {
    const { msg, error, deliveryCount } = request;
    const h = headers();
    h.set(DeadLetterHeader.group, options.group);
    h.set(DeadLetterHeader.error, headerSafe(error));
    h.set(DeadLetterHeader.deliveryCount, String(deliveryCount));
    h.set(DeadLetterHeader.deadAt, String(this.options.clock.now()));
    h.set(DeadLetterHeader.sourceSequence, String(msg.seq));
    try {
      await this.sendWithRetry(this.names.deadLetterSubject(topic), msg.data, {
        headers: h,
        msgID: this.names.deadLetterId(consumer, msg.seq),
        expect: { streamName: this.names.deadLetterStream },
      });
    } catch (err) {
      // Not stored: keep the message (it comes back, and is dead-lettered again) rather than lose it.
      this.options.logger.error(
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
      envelope = decodeEnvelope(data, this.options.codec);
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
    const connection = this.connection;
    if (connection === undefined || connection.isClosed()) return;
    // Bounded: while disconnected a flush waits for the reconnect. Unflushed acks are not lost
    // work: the server redelivers after AckWait.
    await withinMs(connection.flush(), this.options.requestTimeoutMs);
  }

  private manager(): JetStreamManager {
    if (this.jsm === undefined) throw closedError();
    return this.jsm;
  }

  private jetstream(): JetStreamClient {
    if (this.js === undefined) throw closedError();
    return this.js;
  }

  private assertOpen(): void {
    if (this.closed) throw closedError();
  }
}

/** True when `promise` settled (either way) within `ms`; never rejects. */
async function withinMs(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A failure that retrying can cure: no answer in time, or nobody answering yet (JetStream starting). */
function isTransient(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return false;
  // JetStreamNotEnabled (no responders) extends Error, not JetStreamError; match it by name.
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'JetStreamNotEnabled'))
    return true;
  return err instanceof JetStreamError && /timeout|no responders/i.test(err.message);
}

function closedError(): FailedPreconditionError {
  return new FailedPreconditionError('NatsEventBus is closed');
}

function isApiError(err: unknown, ...codes: number[]): boolean {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

function publishError(topic: string, stream: string, err: unknown): Error {
  if (isApiError(err, ...STREAM_FULL)) {
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
