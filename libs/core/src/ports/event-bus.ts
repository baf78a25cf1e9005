import type { Envelope } from '@multiagents/contracts';
import type { TopicStats } from './monitoring';

/**
 * One delivery of one message to one consumer of a group. The handler's outcome decides what
 * happens next: resolving acknowledges the message; throwing makes it visible again after a
 * delay (redelivery, with `deliveryCount` + 1) until `maxDeliveries`, then it is dead-lettered
 * with the last error. Throwing a `PoisonMessageError` dead-letters it at once.
 */
export interface Delivery {
  /** The backend's id for this message (stream entry id, JetStream sequence…). */
  readonly id: string;
  readonly topic: string;
  readonly envelope: Envelope;
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  /** Pushes the visibility timeout out again: long handlers call it so nobody else takes the message. */
  extend(): Promise<void>;
}

/** Handles one delivery; see {@link Delivery} for what resolve and throw mean. */
export type DeliveryHandler = (delivery: Delivery) => Promise<void>;

/** How a group consumes a topic. */
export interface SubscribeOptions {
  /** Consumers in one group compete: each message goes to one of them. */
  readonly group: string;
  /** This consumer's name within the group (unique per process). */
  readonly consumer: string;
  /** Handlers running at once in this consumer. */
  readonly concurrency?: number;
  /** Deliveries before a failing message is dead-lettered. */
  readonly maxDeliveries?: number;
  /** An unacknowledged delivery becomes visible to the group again after this long. */
  readonly visibilityTimeoutMs?: number;
  /** Delay before a message whose handler threw is delivered again. */
  readonly retryDelayMs?: number;
  /**
   * Where a group that does not exist yet starts: `earliest` (everything the topic still holds,
   * the default: nothing published before the first consumer is lost) or `latest`.
   */
  readonly startFrom?: 'earliest' | 'latest';
  /**
   * Latency this consumer trades for bigger batches: after a read in which no stream gave all it
   * was asked for, the next read waits this long (default 0: at once; at most 60,000). For cheap
   * handlers on a busy topic (metrics, monitors) a few tens of ms cut the reads, acknowledgements
   * and wake-ups per message several times over; one read may then take as many messages as the
   * consumer has free slots (`concurrency`), past the Redis bus's own batch size. Honoured by the
   * Redis bus; the NATS bus ignores it (a pull request already waits on the server for up to a
   * batch) and so does the memory bus.
   */
  readonly batchDelayMs?: number;
}

/** Defaults every EventBus adapter applies. */
export const DEFAULT_SUBSCRIBE_OPTIONS = {
  concurrency: 16,
  maxDeliveries: 5,
  visibilityTimeoutMs: 30_000,
  retryDelayMs: 1_000,
  startFrom: 'earliest',
  batchDelayMs: 0,
} as const;

/** Sees one message of a live feed (see {@link EventBus.tail}); one that throws does not stop the feed. */
export type TailHandler = (envelope: Envelope) => void;

/** A running consumer. */
export interface Subscription {
  /** Stops taking new messages and waits for the handlers in flight (their messages are acked or nacked). */
  close(): Promise<void>;
}

/** A message that could not be handled. */
export interface DeadLetter {
  readonly id: string;
  readonly topic: string;
  readonly group: string;
  /** The raw message bytes, exactly as published. */
  readonly data: Uint8Array;
  /** Decoded envelope, when the bytes were a valid one. */
  readonly envelope?: Envelope;
  readonly error: string;
  readonly deliveryCount: number;
  readonly deadAt: number;
}

/**
 * The bus port (SPEC §1, §4): durable topics, consumer groups, at-least-once delivery with
 * acknowledgement, redelivery after a visibility timeout, dead letters. The one feed without
 * acknowledgement, {@link EventBus.tail}, is for watchers, never for commands or results.
 */
export interface EventBus {
  /** Appends envelopes to a topic, in order; resolves once the backend holds them durably. */
  publish(topic: string, envelopes: readonly Envelope[]): Promise<void>;
  /** Starts consuming `topic` as a member of `options.group`. */
  subscribe(topic: string, options: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription>;
  /**
   * Calls `handler` with every message published to the topic from now on, every partition's,
   * in each partition's order, until the returned subscription is closed: a live feed for this
   * process alone (the event-monitor's WatchEvents). No consumer group, no acknowledgement,
   * nothing kept on the broker for it, so a process that dies, even killed outright, leaves
   * nothing behind. A feed whose connection drops goes on after the last message it saw, as far
   * as the topic still holds it; messages that cannot be decoded are skipped and counted.
   */
  tail(topic: string, handler: TailHandler): Promise<Subscription>;
  /**
   * Sends envelopes to every process listening on `channel` at this moment ({@link listen}) and
   * keeps nothing: a process not listening, or cut off from the broker then, misses them, and no
   * order is promised (on Redis Cluster each message may travel through another node). For
   * notices whose loss costs time, never correctness (`step.cancel` on `Topics.control`). Encoded,
   * signed and checked as published messages are.
   */
  broadcast(channel: string, envelopes: readonly Envelope[]): Promise<void>;
  /**
   * Calls `handler` with every envelope broadcast on `channel` from now until the subscription is
   * closed; messages that cannot be decoded (unsigned, forged, malformed) are skipped and counted,
   * and a handler that throws does not stop the feed.
   */
  listen(channel: string, handler: TailHandler): Promise<Subscription>;
  /** Messages delivered to `group` and not acknowledged yet (0 when the group does not exist). */
  pendingCount(topic: string, group: string): Promise<number>;
  /** Dead letters of a topic, oldest first. */
  listDeadLetters(topic: string, limit?: number): Promise<DeadLetter[]>;
  /**
   * Delivers a dead letter again, with a fresh delivery count, to the group that dead-lettered it
   * only (the topic's other groups handled it already; tails saw it), and removes it; false if
   * unknown.
   */
  replayDeadLetter(topic: string, id: string): Promise<boolean>;
  /** Deletes a dead letter for good, without publishing it again; false if unknown. */
  discardDeadLetter(topic: string, id: string): Promise<boolean>;
  /**
   * Backend-specific counters (e.g. publishes a broker dropped as duplicates of an earlier one),
   * for the services' `/stats`. Optional: not every backend has any.
   */
  counters?(): Readonly<Record<string, number>>;
  /**
   * Calls `listener` whenever the connection to the broker comes back after it was lost (a broker
   * restart may have forgotten its last acknowledged writes). Returns an unsubscribe function.
   * Optional: an in-process bus never loses its broker.
   */
  onRestored?(listener: () => void): () => void;
  /**
   * The topic's consumer groups (pending, lag) and dead letters, for metrics and the monitor.
   * Optional: a bus that cannot tell leaves it out.
   */
  topicStats?(topic: string): Promise<TopicStats>;
  close(): Promise<void>;
}
