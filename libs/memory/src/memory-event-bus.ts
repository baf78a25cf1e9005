import {
  ErrorCode,
  ValidationError,
  decodeEnvelope,
  describeEnvelopeRefusal,
  encodeEnvelope,
  hasErrorCode,
  toErrorInfo,
  type Envelope,
  type EnvelopeCodecOptions,
} from '@multiagents/contracts';
import {
  deepFreeze,
  handToTail,
  systemClock,
  type Clock,
  type DeadLetter,
  type Delivery,
  type DeliveryHandler,
  type EventBus,
  type SubscribeOptions,
  type Subscription,
  type TailHandler,
  type TopicStats,
  resolveSubscribeOptions,
  type ResolvedSubscribeOptions,
  MinHeap,
} from '@multiagents/core';
import { FifoQueue } from './fifo-queue';
import { TopicLog, type LogEntry } from './topic-log';

/** Default of {@link MemoryEventBusOptions.maxRetainedPerTopic}. */
export const DEFAULT_MAX_RETAINED_PER_TOPIC = 100_000;
/** Default of {@link MemoryEventBusOptions.maxDeadLettersPerTopic}. */
export const DEFAULT_MAX_DEAD_LETTERS_PER_TOPIC = 10_000;

/** Options of {@link MemoryEventBus}. */
export interface MemoryEventBusOptions {
  /**
   * Messages a topic keeps while it has no consumer group at all, so that a group created later
   * (with `startFrom: 'earliest'`) still receives them; beyond this the oldest are dropped. Once a
   * topic has groups, an entry is dropped as soon as every group has read past it, and never
   * before: an entry some group has not read yet is kept whatever this limit says.
   */
  readonly maxRetainedPerTopic?: number;
  /** Dead letters kept per topic; beyond this the oldest are dropped. */
  readonly maxDeadLettersPerTopic?: number;
  /**
   * Stamps dead letters (`deadAt`). Redelivery and visibility timeouts run on real time, like a
   * broker's, so tests of those wait (briefly) rather than move a manual clock.
   */
  readonly clock?: Clock;
  /**
   * Passed to `encodeEnvelope`/`decodeEnvelope` (signing key, size limit), as the production
   * buses do: a message that fails verification is dead-lettered as undecodable.
   */
  readonly codec?: EnvelopeCodecOptions;
}

/** {@link MemoryEventBusOptions} after defaults. */
export interface ResolvedMemoryEventBusOptions {
  readonly maxRetainedPerTopic: number;
  readonly maxDeadLettersPerTopic: number;
  readonly clock: Clock;
  readonly codec: EnvelopeCodecOptions | undefined;
}

// Where a delivered, unacknowledged message is (Redis Streams' pending entries list, plus a
// due time, which Redis expresses as idle time).
const INFLIGHT = 0; // a handler has it; visible again at `deadline` (visibility timeout)
const WAITING = 1; // its handler threw; visible again at `deadline` (retry delay)
const READY = 2; // visible again, queued for the next free consumer of the group
const DONE = 3; // acknowledged or dead-lettered: no longer pending

type PendingStatus = typeof INFLIGHT | typeof WAITING | typeof READY | typeof DONE;

interface PendingMessage {
  readonly entry: LogEntry;
  /** Also the delivery token: only the delivery whose count is current may settle the message. */
  deliveryCount: number;
  consumer: string;
  status: PendingStatus;
  deadline: number;
  /** Bumped on every deadline change, so older heap entries for this message read as stale. */
  gen: number;
  /** From the subscription that holds it now (subscriptions of one group may differ). */
  maxDeliveries: number;
  envelope: Envelope | undefined;
}

interface DeadlineEntry {
  readonly at: number;
  readonly gen: number;
  readonly message: PendingMessage;
}

/** A dead letter as held: the message exactly as stored (JSON text or bytes), replayed as is. */
type HeldDeadLetter = Omit<DeadLetter, 'data'> & { readonly data: Uint8Array | Envelope };

class TopicState {
  readonly log = new TopicLog();
  readonly groups = new Map<string, GroupState>();
  /** Live feeds of the topic (see MemoryEventBus.tail). */
  readonly tails = new Set<MemoryTail>();
  /** Insertion order is death order, so listing oldest first needs no sort. */
  readonly deadLetters = new Map<string, HeldDeadLetter>();
  deadLetterSeq = 0;

  constructor(readonly name: string) {}
}

class GroupState {
  /** By log sequence. */
  readonly pending = new Map<number, PendingMessage>();
  /** Visible again, delivered before any new message (like XAUTOCLAIM before XREADGROUP >). */
  readonly ready = new FifoQueue<PendingMessage>();
  /** Visibility and retry deadlines; entries go stale lazily (see `gen`) and are compacted. */
  readonly deadlines = new MinHeap<DeadlineEntry>((a, b) => a.at < b.at);
  readonly consumers: MemorySubscription[] = [];
  /** Round-robin start, so competing consumers share the load. */
  nextConsumer = 0;
  timer: NodeJS.Timeout | undefined;
  timerAt = Number.POSITIVE_INFINITY;
  /** Already queued for the next pump. */
  scheduled = false;

  constructor(
    readonly topic: TopicState,
    readonly name: string,
    /** The group's read position: the next log sequence it has never been given. */
    public nextSeq: number,
  ) {}
}

/** What a subscription and a delivery need from the bus, without exposing its internals. */
interface BusInternals {
  detach(subscription: MemorySubscription): void;
  extend(group: GroupState, message: PendingMessage, token: number, subscription: MemorySubscription): void;
  /** Acks a message for its current delivery `token`; false if the token is stale or it is done. */
  ack(group: GroupState, message: PendingMessage, token: number): boolean;
}

class MemorySubscription implements Subscription {
  inFlight = 0;
  closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    readonly group: GroupState,
    readonly options: ResolvedSubscribeOptions,
    readonly handler: DeliveryHandler,
    private readonly internals: BusInternals,
  ) {}

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.internals.detach(this);
    }
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Called after each handler settles: wakes `close()` once the last one is done. */
  settled(): void {
    if (!this.closed || this.inFlight > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}

class MemoryDelivery implements Delivery {
  constructor(
    readonly id: string,
    readonly topic: string,
    readonly envelope: Envelope,
    readonly deliveryCount: number,
    /** The bus this delivery belongs to (compared by the store's acknowledge). */
    readonly bus: BusInternals,
    private readonly group: GroupState,
    private readonly message: PendingMessage,
    private readonly subscription: MemorySubscription,
  ) {}

  /** Acks the message if this is still its current delivery (see MemoryEventBus.acknowledge). */
  acknowledgeNow(): boolean {
    return this.bus.ack(this.group, this.message, this.deliveryCount);
  }

  // An arrow property, not a method: handlers pass `delivery.extend` around unbound (setInterval).
  readonly extend = (): Promise<void> => {
    this.bus.extend(this.group, this.message, this.deliveryCount, this.subscription);
    return Promise.resolve();
  };
}

const ignore = (): void => undefined;

/**
 * A live feed of one topic: every message appended after it opened, handed over in order on a
 * later turn of the event loop (never inside the publisher's call), decoded as a consumer would.
 */
class MemoryTail implements Subscription {
  private queue: (Uint8Array | Envelope)[] = [];
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly topic: TopicState,
    private readonly decode: (data: Uint8Array | Envelope) => Envelope,
    private readonly handler: TailHandler,
  ) {}

  push(data: Uint8Array | Envelope): void {
    this.queue.push(data);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const queue = this.queue;
    this.queue = [];
    for (const data of queue) {
      if (this.closed) return;
      // Undecodable bytes (publishRaw) are skipped, as the brokers' feeds skip them; one watcher's
      // failure is its own.
      handToTail(() => this.decode(data), this.handler, ignore, ignore);
    }
  };

  close(): Promise<void> {
    this.closed = true;
    this.queue = [];
    this.topic.tails.delete(this);
    return Promise.resolve();
  }
}

/** Above this many heap entries per live pending message, the deadline heap is rebuilt. */
const DEADLINE_COMPACT_FACTOR = 4;
const DEADLINE_COMPACT_MIN = 1024;

/**
 * An in-process {@link EventBus} with the semantics of Redis Streams consumer groups, so the
 * embedded mode behaves like production: messages are stored encoded in a per-topic log; each
 * group has a read position and a pending-entries list; consumers of a group compete, groups
 * fan out; a handler that resolves acknowledges, one that throws gets the message again after
 * `retryDelayMs` (or the error's numeric `retryAfterMs`) until `maxDeliveries`, then it is
 * dead-lettered; a `PoisonMessageError` (by `code`) or undecodable bytes are dead-lettered at
 * once; an unacknowledged delivery is visible again after `visibilityTimeoutMs` and the newest
 * delivery owns the message (a late settle of an older one is ignored).
 *
 * Retention: see {@link MemoryEventBusOptions.maxRetainedPerTopic}; a group with no consumer keeps
 * its backlog (and so the log) until a consumer of it catches up, as a durable group should.
 *
 * Built for throughput: deliveries are dispatched in batches from one pump scheduled with
 * `setImmediate` (it yields to I/O between batches, unlike a microtask loop), the hot path is
 * O(1) or O(log n), and one unref'd timer per group serves all its deadlines.
 *
 * @example
 * const bus = new MemoryEventBus();
 * await bus.subscribe('results', { group: 'orchestrators', consumer: 'o1' }, async (d) => {
 *   handle(d.envelope);
 * });
 * await bus.publish('results', [envelope]);
 */
export class MemoryEventBus implements EventBus {
  /** The options in effect. */
  readonly options: ResolvedMemoryEventBusOptions;
  private readonly topics = new Map<string, TopicState>();
  /** Broadcast channels: only their listeners (`tails`) are used; nothing is kept. */
  private readonly channels = new Map<string, TopicState>();
  private readonly subscriptions = new Set<MemorySubscription>();
  private dirty: GroupState[] = [];
  private pumpScheduled = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly internals: BusInternals = {
    detach: (subscription) => this.detach(subscription),
    extend: (group, message, token, subscription) => this.extend(group, message, token, subscription),
    ack: (group, message, token) => {
      if (message.deliveryCount !== token || message.status === DONE) return false;
      this.ack(group, message);
      return true;
    },
  };

  constructor(options: MemoryEventBusOptions = {}) {
    this.options = resolveBusOptions(options);
  }

  async publish(topic: string, envelopes: readonly Envelope[]): Promise<void> {
    this.prepare([[topic, envelopes]])();
  }

  /**
   * Encodes messages for several topics now (throwing if any is refused, so nothing is appended)
   * and returns the function that appends them all, synchronously. The memory run store commits a
   * transition's messages with it, in the same tick as the run. Not part of the port.
   */
  prepare(batches: readonly (readonly [topic: string, envelopes: readonly Envelope[]])[]): () => void {
    const encoded: [TopicState, (Uint8Array | Envelope)[]][] = [];
    for (const [topic, envelopes] of batches) {
      this.assertOpen(topic);
      if (envelopes.length === 0) continue;
      encoded.push([this.topicState(topic), envelopes.map((envelope) => this.encode(envelope))]);
    }
    return () => {
      for (const [state, messages] of encoded) {
        for (const data of messages) state.log.append(data);
        this.afterAppend(state, messages);
      }
    };
  }

  /**
   * Without a signing key, a message is kept as the envelope object itself, deep-frozen: no
   * handler can change what another sees (or what the publisher still holds), at a fraction of
   * the cost of serialising every message in one process. With a signing key it is a signed
   * protobuf envelope, verified on delivery as a broker's consumer would.
   */
  private encode(envelope: Envelope): Uint8Array | Envelope {
    const codec = this.options.codec;
    if (codec?.signingKey !== undefined || codec?.keys !== undefined || codec?.payloadKeys !== undefined)
      return encodeEnvelope(envelope, codec);
    return deepFreeze(envelope);
  }

  private decode(data: Uint8Array | Envelope): Envelope {
    return data instanceof Uint8Array ? decodeEnvelope(data, this.options.codec) : data;
  }

  /**
   * Acknowledges a delivery of this bus now, as if its handler had resolved; the handler's own
   * settling later changes nothing. False when the delivery is not this bus's, or no longer the
   * current delivery of its message (a superseded one cannot settle it). Not part of the port.
   */
  acknowledge(delivery: Delivery): boolean {
    if (!(delivery instanceof MemoryDelivery) || delivery.bus !== this.internals) return false;
    return delivery.acknowledgeNow();
  }

  /**
   * Appends bytes exactly as given (copied), bypassing the encoder: for tests that inject
   * malformed messages. Not part of the port.
   */
  async publishRaw(topic: string, bytes: Uint8Array): Promise<void> {
    this.assertOpen(topic);
    const state = this.topicState(topic);
    const data = bytes.slice();
    state.log.append(data);
    this.afterAppend(state, [data]);
  }

  async tail(topic: string, handler: TailHandler): Promise<Subscription> {
    this.assertOpen(topic);
    const state = this.topicState(topic);
    const tail = new MemoryTail(state, (data) => this.decode(data), handler);
    state.tails.add(tail);
    return tail;
  }

  /** Hands the envelopes to the channel's listeners of this moment, on a later turn; keeps nothing. */
  async broadcast(channel: string, envelopes: readonly Envelope[]): Promise<void> {
    this.assertOpen(channel);
    const encoded = envelopes.map((envelope) => this.encode(envelope));
    const listeners = this.channels.get(channel)?.tails;
    if (listeners === undefined) return;
    for (const listener of listeners) for (const data of encoded) listener.push(data);
  }

  async listen(channel: string, handler: TailHandler): Promise<Subscription> {
    this.assertOpen(channel);
    let state = this.channels.get(channel);
    if (state === undefined) {
      state = new TopicState(channel);
      this.channels.set(channel, state);
    }
    const listener = new MemoryTail(state, (data) => this.decode(data), handler);
    state.tails.add(listener);
    return listener;
  }

  async subscribe(topic: string, options: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    this.assertOpen(topic);
    const resolved = resolveSubscribeOptions(options);
    const state = this.topicState(topic);
    let group = state.groups.get(resolved.group);
    if (group === undefined) {
      // startFrom only matters when the group is created; an existing group resumes where it is.
      const start = resolved.startFrom === 'latest' ? state.log.nextSeq : state.log.firstSeq;
      group = new GroupState(state, resolved.group, start);
      state.groups.set(resolved.group, group);
    }
    const subscription = new MemorySubscription(group, resolved, handler, this.internals);
    group.consumers.push(subscription);
    this.subscriptions.add(subscription);
    this.schedule(group);
    return subscription;
  }

  async pendingCount(topic: string, group: string): Promise<number> {
    return this.topics.get(topic)?.groups.get(group)?.pending.size ?? 0;
  }

  async listDeadLetters(topic: string, limit?: number): Promise<DeadLetter[]> {
    const state = this.topics.get(topic);
    if (state === undefined) return [];
    const max = limit ?? Number.POSITIVE_INFINITY;
    const out: DeadLetter[] = [];
    for (const dead of state.deadLetters.values()) {
      if (out.length >= max) break;
      // A copy of the bytes (the caller must not change what a replay publishes); a message kept
      // as JSON text is handed out as the protobuf envelope any other bus would have stored.
      const data = dead.data;
      const bytes = data instanceof Uint8Array ? data.slice() : encodeEnvelope(data, { maxBytes: Infinity });
      out.push({ ...dead, data: bytes });
    }
    return out;
  }

  async replayDeadLetter(topic: string, id: string): Promise<boolean> {
    this.assertOpen(topic);
    const state = this.topics.get(topic);
    const dead = state?.deadLetters.get(id);
    if (state === undefined || dead === undefined) return false;
    state.deadLetters.delete(id);
    // A new log entry for the group that dead-lettered it: handled again there with a fresh
    // delivery count; the other groups, which handled it already, pass over it (see takeNext).
    // Not handed to tails either: they saw it when it was published.
    state.log.append(dead.data, dead.group);
    this.afterAppend(state, []);
    return true;
  }

  async discardDeadLetter(topic: string, id: string): Promise<boolean> {
    this.assertOpen(topic);
    // Gone for good: nothing is published; the count of dead letters ever added stays as it is.
    return this.topics.get(topic)?.deadLetters.delete(id) ?? false;
  }

  /**
   * Per group: messages delivered and not acknowledged (`pending`) and messages not delivered yet
   * (`lag`), in group-name order; dead letters held and ever added.
   */
  async topicStats(topic: string): Promise<TopicStats> {
    const state = this.topics.get(topic);
    if (state === undefined) return { topic, groups: [], deadLetters: 0, deadLettersAdded: 0 };
    const groups = [...state.groups.values()]
      .map((group) => ({
        group: group.name,
        pending: group.pending.size,
        lag: state.log.nextSeq - group.nextSeq,
      }))
      .sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
    return {
      topic,
      groups,
      deadLetters: state.deadLetters.size,
      deadLettersAdded: state.deadLetterSeq,
    };
  }

  /**
   * Messages the topic's log still holds (unread by some group, or kept for groups to come).
   * Diagnostics and retention tests; not part of the port.
   */
  retainedCount(topic: string): number {
    return this.topics.get(topic)?.log.size ?? 0;
  }

  /** Stops every subscription, waits for the handlers in flight, and clears all timers. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    for (const channel of this.channels.values())
      for (const listener of [...channel.tails]) await listener.close();
    for (const topic of this.topics.values()) {
      for (const tail of [...topic.tails]) await tail.close();
      for (const group of topic.groups.values()) this.disarm(group);
    }
  }

  private assertOpen(topic: string): void {
    if (this.closed) throw new Error('MemoryEventBus is closed');
    if (typeof topic !== 'string' || topic.length === 0) {
      throw new ValidationError('topic', ['must be a non-empty string']);
    }
  }

  private topicState(topic: string): TopicState {
    let state = this.topics.get(topic);
    if (state === undefined) {
      state = new TopicState(topic);
      this.topics.set(topic, state);
    }
    return state;
  }

  /** Hands `appended` to the topic's tails, then wakes its groups (or trims a topic with none). */
  private afterAppend(state: TopicState, appended: readonly (Uint8Array | Envelope)[]): void {
    for (const tail of state.tails) for (const data of appended) tail.push(data);
    if (state.groups.size === 0) {
      this.trim(state);
      return;
    }
    for (const group of state.groups.values()) {
      if (group.consumers.length > 0) this.schedule(group);
    }
  }

  private schedule(group: GroupState): void {
    if (group.scheduled || this.closed) return;
    group.scheduled = true;
    this.dirty.push(group);
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(this.pump);
    }
  }

  private readonly pump = (): void => {
    this.pumpScheduled = false;
    const groups = this.dirty;
    this.dirty = [];
    for (const group of groups) {
      group.scheduled = false;
      this.pumpGroup(group);
    }
    for (const group of groups) this.trim(group.topic);
  };

  private pumpGroup(group: GroupState): void {
    for (;;) {
      // Re-read each round: a handler may close its subscription or the bus synchronously.
      if (this.closed) return;
      const subscription = this.pickConsumer(group);
      if (subscription === undefined) return;
      const message = this.takeNext(group);
      if (message === undefined) return;
      this.deliver(group, subscription, message);
    }
  }

  private pickConsumer(group: GroupState): MemorySubscription | undefined {
    const consumers = group.consumers;
    const n = consumers.length;
    for (let i = 0; i < n; i += 1) {
      const index = (group.nextConsumer + i) % n;
      const candidate = consumers[index] as MemorySubscription;
      if (candidate.inFlight < candidate.options.concurrency) {
        group.nextConsumer = (index + 1) % n;
        return candidate;
      }
    }
    return undefined;
  }

  private takeNext(group: GroupState): PendingMessage | undefined {
    while (group.ready.size > 0) {
      const message = group.ready.shift() as PendingMessage;
      // Acked or re-failed by its previous handler after it was queued: skip.
      if (message.status === READY) return message;
    }
    const log = group.topic.log;
    if (group.nextSeq < log.firstSeq) group.nextSeq = log.firstSeq; // defensive: never trimmed past a group
    while (group.nextSeq < log.nextSeq) {
      const entry = log.at(group.nextSeq);
      group.nextSeq += 1;
      if (entry === undefined) continue;
      // A replayed dead letter of another group: passed over, never delivered nor pending here.
      if (entry.group !== undefined && entry.group !== group.name) continue;
      const message: PendingMessage = {
        entry,
        deliveryCount: 0,
        consumer: '',
        status: READY,
        deadline: Number.POSITIVE_INFINITY,
        gen: 0,
        maxDeliveries: 1,
        envelope: undefined,
      };
      group.pending.set(entry.seq, message);
      return message;
    }
    return undefined;
  }

  private deliver(group: GroupState, subscription: MemorySubscription, message: PendingMessage): void {
    const options = subscription.options;
    message.deliveryCount += 1;
    const token = message.deliveryCount;
    message.consumer = options.consumer;
    message.maxDeliveries = options.maxDeliveries;

    let envelope: Envelope;
    try {
      // Decoded per delivery, as a remote consumer would: no handler sees another's objects.
      envelope = this.decode(message.entry.data);
    } catch (err) {
      this.deadLetter(group, message, describeEnvelopeRefusal(err));
      return;
    }
    message.envelope = envelope;
    message.status = INFLIGHT;
    this.setDeadline(group, message, Date.now() + options.visibilityTimeoutMs);
    subscription.inFlight += 1;

    const delivery = new MemoryDelivery(
      message.entry.id,
      group.topic.name,
      envelope,
      token,
      this.internals,
      group,
      message,
      subscription,
    );
    let result: Promise<void>;
    try {
      result = Promise.resolve(subscription.handler(delivery));
    } catch (err) {
      // A handler that throws before returning its promise fails the same way as one that rejects.
      this.settle(group, subscription, message, token, false, err);
      return;
    }
    result.then(
      () => this.settle(group, subscription, message, token, true, undefined),
      (err: unknown) => this.settle(group, subscription, message, token, false, err),
    );
  }

  private settle(
    group: GroupState,
    subscription: MemorySubscription,
    message: PendingMessage,
    token: number,
    ok: boolean,
    err: unknown,
  ): void {
    subscription.inFlight -= 1;
    // Only the newest delivery owns the message: a handler that outlived its visibility timeout
    // and was superseded settles nothing.
    if (message.deliveryCount === token && message.status !== DONE) {
      if (ok) this.ack(group, message);
      else this.fail(group, subscription, message, err);
    }
    if (subscription.closed) subscription.settled();
    else this.schedule(group);
  }

  private ack(group: GroupState, message: PendingMessage): void {
    message.status = DONE;
    message.envelope = undefined;
    group.pending.delete(message.entry.seq);
  }

  private fail(
    group: GroupState,
    subscription: MemorySubscription,
    message: PendingMessage,
    err: unknown,
  ): void {
    const error = toErrorInfo(err).message;
    if (hasErrorCode(err, ErrorCode.PoisonMessage) || message.deliveryCount >= message.maxDeliveries) {
      this.deadLetter(group, message, error);
      return;
    }
    message.status = WAITING;
    const delay = retryAfterMs(err) ?? subscription.options.retryDelayMs;
    if (delay <= 0) this.makeReady(group, message);
    else this.setDeadline(group, message, Date.now() + delay);
  }

  private extend(
    group: GroupState,
    message: PendingMessage,
    token: number,
    subscription: MemorySubscription,
  ): void {
    // A superseded delivery cannot take the message back (its extend is a no-op, not an error).
    if (message.deliveryCount !== token || message.status !== INFLIGHT) return;
    this.setDeadline(group, message, Date.now() + subscription.options.visibilityTimeoutMs);
  }

  private makeReady(group: GroupState, message: PendingMessage): void {
    message.status = READY;
    message.deadline = Number.POSITIVE_INFINITY;
    message.gen += 1;
    group.ready.push(message);
    this.schedule(group);
  }

  private deadLetter(group: GroupState, message: PendingMessage, error: string): void {
    const envelope = message.envelope;
    message.status = DONE;
    message.gen += 1;
    message.envelope = undefined;
    group.pending.delete(message.entry.seq);

    const topic = group.topic;
    topic.deadLetterSeq += 1;
    const id = `dl-${topic.deadLetterSeq}`;
    topic.deadLetters.set(id, {
      id,
      topic: topic.name,
      group: group.name,
      data: message.entry.data,
      ...(envelope === undefined ? {} : { envelope }),
      error,
      deliveryCount: message.deliveryCount,
      deadAt: this.options.clock.now(),
    });
    if (topic.deadLetters.size > this.options.maxDeadLettersPerTopic) {
      const oldest = topic.deadLetters.keys().next();
      if (oldest.done !== true) topic.deadLetters.delete(oldest.value);
    }
  }

  private setDeadline(group: GroupState, message: PendingMessage, at: number): void {
    message.deadline = at;
    message.gen += 1;
    const heap = group.deadlines;
    heap.push({ at, gen: message.gen, message });
    // Acked messages leave their entries behind; rebuild when they dominate, so the heap stays
    // proportional to what is really pending (amortised O(1) per delivery).
    if (heap.size > DEADLINE_COMPACT_MIN && heap.size > DEADLINE_COMPACT_FACTOR * group.pending.size) {
      const live: DeadlineEntry[] = [];
      for (const m of group.pending.values()) {
        if (m.status === INFLIGHT || m.status === WAITING)
          live.push({ at: m.deadline, gen: m.gen, message: m });
      }
      heap.reset(live);
    }
    if (at < group.timerAt) this.arm(group, at);
  }

  private arm(group: GroupState, at: number): void {
    if (this.closed) return;
    if (group.timer !== undefined) clearTimeout(group.timer);
    group.timerAt = at;
    group.timer = setTimeout(this.onDeadline, Math.max(0, at - Date.now()), group);
    // A pending redelivery must not keep a finished process alive.
    group.timer.unref();
  }

  private disarm(group: GroupState): void {
    if (group.timer !== undefined) clearTimeout(group.timer);
    group.timer = undefined;
    group.timerAt = Number.POSITIVE_INFINITY;
  }

  private readonly onDeadline = (group: GroupState): void => {
    group.timer = undefined;
    group.timerAt = Number.POSITIVE_INFINITY;
    if (this.closed) return;
    const now = Date.now();
    const heap = group.deadlines;
    for (;;) {
      const top = heap.peek();
      if (top === undefined) return;
      const message = top.message;
      if (top.gen !== message.gen || (message.status !== INFLIGHT && message.status !== WAITING)) {
        heap.pop();
        continue;
      }
      if (top.at > now) {
        this.arm(group, top.at);
        return;
      }
      heap.pop();
      if (message.status === WAITING) {
        this.makeReady(group, message);
      } else if (message.deliveryCount >= message.maxDeliveries) {
        // Its handler hung every time: the message may be what kills consumers, so stop here.
        this.deadLetter(
          group,
          message,
          `not acknowledged within the visibility timeout after ${message.deliveryCount} deliveries`,
        );
      } else {
        this.makeReady(group, message);
      }
    }
  };

  /** Drops what no group will read: before the slowest read position, or past the retained count with no group. */
  private trim(topic: TopicState): void {
    if (topic.groups.size === 0) {
      const excess = topic.log.size - this.options.maxRetainedPerTopic;
      if (excess > 0) topic.log.trimBefore(topic.log.firstSeq + excess);
      return;
    }
    let min = Number.POSITIVE_INFINITY;
    for (const group of topic.groups.values()) min = Math.min(min, group.nextSeq);
    // Pending messages hold their own entry, so only the slowest read position bounds the log.
    topic.log.trimBefore(min);
  }

  private detach(subscription: MemorySubscription): void {
    this.subscriptions.delete(subscription);
    const group = subscription.group;
    const index = group.consumers.indexOf(subscription);
    if (index < 0) return;
    group.consumers.splice(index, 1);
    if (group.nextConsumer > index) group.nextConsumer -= 1;
    if (group.nextConsumer >= group.consumers.length) group.nextConsumer = 0;
  }
}

function retryAfterMs(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const value = (err as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

function resolveBusOptions(options: MemoryEventBusOptions): ResolvedMemoryEventBusOptions {
  const resolved = {
    maxRetainedPerTopic: options.maxRetainedPerTopic ?? DEFAULT_MAX_RETAINED_PER_TOPIC,
    maxDeadLettersPerTopic: options.maxDeadLettersPerTopic ?? DEFAULT_MAX_DEAD_LETTERS_PER_TOPIC,
    clock: options.clock ?? systemClock,
    codec: options.codec,
  };
  const problems: string[] = [];
  if (!Number.isInteger(resolved.maxRetainedPerTopic) || resolved.maxRetainedPerTopic < 0) {
    problems.push('maxRetainedPerTopic must be an integer >= 0');
  }
  if (!Number.isInteger(resolved.maxDeadLettersPerTopic) || resolved.maxDeadLettersPerTopic < 1) {
    problems.push('maxDeadLettersPerTopic must be an integer >= 1');
  }
  if (problems.length > 0) throw new ValidationError('MemoryEventBus options', problems);
  return resolved;
}
