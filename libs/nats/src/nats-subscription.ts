import {
  ErrorCode,
  decodeEnvelope,
  describeEnvelopeRefusal,
  hasErrorCode,
  toErrorInfo,
  type Envelope,
  type EnvelopeCodecOptions,
} from '@multiagents/contracts';
import type { Delivery, DeliveryHandler, Logger, Subscription } from '@multiagents/core';
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { ResolvedSubscribeOptions } from '@multiagents/core';
import { replayGroupOf, replayTarget } from './replay-target';
import type { TurnWrites } from './turn-writes';

/** Why a replayed dead letter whose group header is empty or repeated is dead-lettered. */
export const MALFORMED_REPLAY_ERROR =
  'malformed replayed dead letter: its Multiagents-Replay-Group header is empty or repeated';

/** Why a message is dead-lettered, as {@link NatsSubscriptionContext.deadLetter} records it. */
export interface DeadLetterRequest {
  readonly msg: JsMsg;
  readonly error: string;
  readonly deliveryCount: number;
}

/** What a {@link NatsSubscription} needs from its bus. */
export interface NatsSubscriptionContext {
  readonly topic: string;
  readonly options: ResolvedSubscribeOptions;
  readonly handler: DeliveryHandler;
  /** The group's durable pull consumer. */
  readonly consumer: Consumer;
  readonly fetchExpiresMs: number;
  readonly maxFetchBatch: number;
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly logger: Logger;
  /**
   * The newest delivery count this process has seen per stream sequence, shared by every
   * subscription of the same consumer in this process: a delivery whose count is no longer the
   * newest was superseded (its visibility timeout passed) and settles nothing.
   */
  readonly latest: Map<number, number>;
  /** Copies the message into the dead-letter stream, then terminates it (or naks it on failure). */
  deadLetter(request: DeadLetterRequest): Promise<void>;
  /** Counts a message refused before parsing (unsigned, forged, malformed). */
  refused(): void;
  /** The connection's writes of this turn: acks and naks leave with them. */
  readonly writes: TurnWrites;
  /** Makes sure acks written so far reached the server (a no-op when the connection is gone). */
  flush(): Promise<void>;
  /** Called once, when the subscription has closed. */
  detach(subscription: NatsSubscription): void;
}

/** Deliveries of this process that can still be acknowledged early (see {@link acknowledgeEarly}). */
const earlyAcks = new WeakMap<Delivery, () => boolean>();

/**
 * Acknowledges a delivery now, before its handler returns: the run store calls it right after the
 * write of the transition the delivery caused, in the same flush as that transition's messages
 * (one write to the socket instead of two, and the message leaves the pending list sooner). The
 * subscription then settles it no more: neither the ack nor a nak if the handler throws later
 * (its transition is committed; a redelivery would only be ignored). False when the delivery is
 * not one of this bus's, was settled already, or was superseded by a newer delivery.
 */
export function acknowledgeEarly(delivery: Delivery): boolean {
  return earlyAcks.get(delivery)?.() ?? false;
}

// A pull request that has not ended this long after its `expires` is assumed lost (the server
// restarted, the connection dropped mid-request) and is stopped, so the loop can never hang.
const FETCH_WATCHDOG_MARGIN_MS = 5_000;
const ERROR_BACKOFF_MIN_MS = 100;
const ERROR_BACKOFF_MAX_MS = 2_000;

/**
 * One consumer of a group: a loop of pull requests on the group's durable consumer that never
 * asks for more messages than it has free handler slots, so competing subscriptions (in this
 * process or others) share the group's messages, and a buffered message never waits out its
 * visibility timeout in a queue. Messages that arrive beyond the free slots anyway (the client
 * re-issues a pull after a reconnect) wait in a small overflow queue.
 *
 * Settling a delivery: resolve → `ack`; throw → `nak(delay)` with the error's numeric
 * `retryAfterMs` or `retryDelayMs`; `POISON_MESSAGE`, undecodable bytes, or a failure on delivery
 * `maxDeliveries` → dead letter + `term`; `extend()` → `working` (AckWait starts again).
 * The consumer's `max_deliver` is unlimited on purpose: the server silently stops delivering a
 * message at that cap (only an advisory says so), which would strand a message whose last
 * delivery hung or whose dead-lettering was cut short by a crash. Instead a delivery that arrives
 * with a count above `maxDeliveries` (the previous one was never settled) is dead-lettered at once.
 */
export class NatsSubscription implements Subscription {
  private inFlight = 0;
  private readonly overflow: JsMsg[] = [];
  private closed = false;
  private closing: Promise<void> | undefined;
  private current: ConsumerMessages | undefined;
  private loop: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly refillAt: number;
  /** This group as a replayed dead letter names it (see {@link replayTarget}). */
  private readonly replayGroup: string;

  constructor(private readonly ctx: NatsSubscriptionContext) {
    this.replayGroup = replayGroupOf(ctx.options.group);
    // Ask again once a quarter of the slots are free: one pull per message would cost a request
    // each, and waiting for more would leave handlers idle while messages wait.
    this.refillAt = Math.max(1, Math.floor(ctx.options.concurrency / 4));
  }

  /** Starts the pull loop. */
  start(): void {
    this.loop = this.run();
  }

  /** Stops pulling, then waits for the handlers of every message already received. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.current?.stop();
    this.signal();
    await this.loop;
    // Messages the server delivered before the pull stopped are handled, not handed back: a nak
    // would count as a delivery and bring a message closer to its dead letter without its
    // handler having run. There are at most a batch of them.
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.ctx.flush();
    this.ctx.detach(this);
  }

  private async run(): Promise<void> {
    const { consumer, options, fetchExpiresMs, maxFetchBatch, logger } = this.ctx;
    let failures = 0;
    while (!this.closed) {
      const free = options.concurrency - this.inFlight - this.overflow.length;
      if (free < this.refillAt) {
        await this.nextWake();
        continue;
      }
      let messages: ConsumerMessages;
      try {
        messages = await consumer.fetch({
          max_messages: Math.min(free, maxFetchBatch),
          expires: fetchExpiresMs,
        });
      } catch (err) {
        failures += 1;
        logger.warn({ err: toErrorInfo(err).message, failures }, 'pull request failed; retrying');
        await this.pause(failures);
        continue;
      }
      this.current = messages;
      if (this.closed) messages.stop();
      const watchdog = setTimeout(() => messages.stop(), fetchExpiresMs + FETCH_WATCHDOG_MARGIN_MS);
      watchdog.unref();
      try {
        for await (const msg of messages) {
          failures = 0;
          this.accept(msg);
        }
      } catch (err) {
        // Heartbeats missed, consumer deleted, no responders while a server restarts…
        failures += 1;
        logger.warn(
          { err: toErrorInfo(err).message, failures },
          'pull request ended with an error; retrying',
        );
        await this.pause(failures);
      } finally {
        clearTimeout(watchdog);
        this.current = undefined;
      }
    }
  }

  private accept(msg: JsMsg): void {
    if (this.inFlight < this.ctx.options.concurrency) this.begin(msg);
    else this.overflow.push(msg);
  }

  private begin(msg: JsMsg): void {
    this.inFlight += 1;
    void this.process(msg).then(this.finished, this.finished);
  }

  private readonly finished = (): void => {
    this.inFlight -= 1;
    const next = this.overflow.shift();
    if (next !== undefined) this.begin(next);
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
    this.signal();
  };

  private async process(msg: JsMsg): Promise<void> {
    const { options, latest, handler, codec, topic, logger } = this.ctx;
    const seq = msg.seq;
    const count = msg.info.deliveryCount;
    latest.set(seq, count);
    const isCurrent = (): boolean => latest.get(seq) === count;
    try {
      const target = replayTarget(msg.headers);
      if (target !== undefined && target !== this.replayGroup) {
        if (target === '') {
          await this.ctx.deadLetter({ msg, error: MALFORMED_REPLAY_ERROR, deliveryCount: count });
          return;
        }
        // A replayed dead letter of another group: this group handled the message when it was
        // published, so it is acknowledged unseen, whatever its count (no delivery, no dead letter).
        this.ctx.writes.add(() => settleQuietly(() => msg.ack()));
        return;
      }
      if (count > options.maxDeliveries) {
        // The previous delivery was never settled: it hung past AckWait or its consumer died.
        await this.ctx.deadLetter({
          msg,
          error: `not acknowledged within the visibility timeout after ${count - 1} deliveries`,
          deliveryCount: count - 1,
        });
        return;
      }
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(msg.data, codec);
      } catch (err) {
        this.ctx.refused();
        await this.ctx.deadLetter({
          msg,
          error: describeEnvelopeRefusal(err),
          deliveryCount: count,
        });
        return;
      }
      let settled = false;
      const delivery: Delivery = {
        id: String(seq),
        topic,
        envelope,
        deliveryCount: count,
        // An arrow property: handlers pass `delivery.extend` around unbound (setInterval).
        extend: () => {
          if (!settled && isCurrent()) settleQuietly(() => msg.working());
          return Promise.resolve();
        },
      };
      earlyAcks.set(delivery, () => {
        if (settled || !isCurrent()) return false;
        settled = true;
        this.ctx.writes.add(() => settleQuietly(() => msg.ack()));
        return true;
      });
      let failure: unknown;
      let ok = true;
      try {
        await handler(delivery);
      } catch (err) {
        ok = false;
        failure = err;
      }
      earlyAcks.delete(delivery);
      // Acknowledged early by the store, with the write of the transition it caused.
      if (settled) return;
      settled = true;
      // Superseded: a newer delivery owns the message now, and its outcome decides.
      if (!isCurrent()) return;
      if (ok) {
        this.ctx.writes.add(() => settleQuietly(() => msg.ack()));
        return;
      }
      if (hasErrorCode(failure, ErrorCode.PoisonMessage) || count >= options.maxDeliveries) {
        await this.ctx.deadLetter({ msg, error: toErrorInfo(failure).message, deliveryCount: count });
        return;
      }
      const delayMs = retryAfterMs(failure) ?? options.retryDelayMs;
      this.ctx.writes.add(() => settleQuietly(() => (delayMs > 0 ? msg.nak(delayMs) : msg.nak())));
    } catch (err) {
      // Only the bus's own steps can land here (the handler's errors are caught above); the
      // message stays unacknowledged and comes back after AckWait.
      logger.error({ err: toErrorInfo(err).message, seq }, 'settling a delivery failed');
    } finally {
      if (isCurrent()) latest.delete(seq);
    }
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private nextWake(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  /** Waits before retrying after an error, with bounded exponential backoff; close() cuts it short. */
  private async pause(failures: number): Promise<void> {
    if (this.closed) return;
    const delayMs = Math.min(ERROR_BACKOFF_MAX_MS, ERROR_BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 10));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      timer.unref();
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** Acks and naks are fire-and-forget; on a closed connection they throw, and AckWait covers that. */
function settleQuietly(action: () => void): void {
  try {
    action();
  } catch {
    // The server redelivers after AckWait: nothing is lost by dropping the settle here.
  }
}

function retryAfterMs(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const value = (err as { retryAfterMs?: unknown }).retryAfterMs;
  // Whole milliseconds: the server takes the delay in nanoseconds, as an integer.
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.ceil(value) : undefined;
}
