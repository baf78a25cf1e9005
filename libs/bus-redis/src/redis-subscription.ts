import { ErrorCode, decodeEnvelope, hasErrorCode, toErrorInfo, type Envelope } from '@multiagents/contracts';
import type { Delivery, DeliveryHandler, Logger, Subscription } from '@multiagents/core';
import type { Redis } from 'ioredis';
import { AckBatcher } from './ack-batcher';
import type { BusScripts } from './bus-scripts';
import { isNoGroupError } from './consumer-group';
import type { ResolvedRedisEventBusOptions } from './redis-event-bus-options';
import type { ResolvedSubscribeOptions } from '@multiagents/core';
import { bulkToString, parseEntryTriples, parseReadGroupReply, type ReceivedEntry } from './stream-replies';

/** What a subscription needs from its bus. */
export interface SubscriptionContext {
  readonly topic: string;
  readonly streamKey: string;
  readonly deadKey: string;
  readonly busOptions: ResolvedRedisEventBusOptions;
  readonly logger: Logger;
  /** Scripts on the bus's command connection (acks, retries, dead letters, extend). */
  readonly commands: BusScripts;
  /** The bus's command connection (CLIENT UNBLOCK of this subscription's blocked read). */
  readonly redis: Redis;
  /** Creates the group when missing (BUSYGROUP is fine). */
  createGroup(connection: Redis, startId: '0' | '$'): Promise<void>;
  /** Called once the subscription is closed. */
  detach(subscription: RedisSubscription): void;
}

/** Backoff of the read loop after an unexpected error (never a hot loop, never long). */
const LOOP_BACKOFF_MIN_MS = 50;
const LOOP_BACKOFF_MAX_MS = 2_000;
/** CLIENT UNBLOCK may reach Redis before the read it targets: try again this many times. */
const UNBLOCK_ATTEMPTS = 3;
const UNBLOCK_RETRY_MS = 2;

class RedisDelivery implements Delivery {
  constructor(
    readonly id: string,
    readonly topic: string,
    readonly envelope: Envelope,
    readonly deliveryCount: number,
    // An arrow property, not a method: handlers pass `delivery.extend` around unbound.
    readonly extend: () => Promise<void>,
  ) {}
}

/**
 * One consumer of a group on one topic. A single loop on its own connection does everything that
 * takes entries, one command at a time, so the concurrency limit needs no locking: redeliver the
 * entries whose retry is due, reclaim entries idle past the visibility timeout (XAUTOCLAIM), and
 * otherwise block in XREADGROUP for new ones (COUNT = free handler slots). Handlers settle on the
 * bus's command connection: acks are batched per event-loop turn; a failure re-arms the entry's
 * idle time so that it is due again after the retry delay (see `touch.lua`); dead letters and
 * ownership checks are atomic Lua. Anything that wants the loop to look again (a due retry,
 * close) wakes it, with CLIENT UNBLOCK when it is blocked in a read.
 */
export class RedisSubscription implements Subscription {
  private inFlight = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly loop: Promise<void>;
  private readonly acks: AckBatcher;
  /** Settle operations (retry, dead letter) not answered yet; close() waits for them. */
  private readonly settling = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  /** Entries of this consumer whose retry delay is over: [id, delivery count that failed]. */
  private dueRetries: Array<[string, number]> = [];
  private claimCursor = '0-0';
  private nextClaimAt = 0;
  private readonly claimEveryMs: number;
  /** This reader's CLIENT ID; unknown again after every reconnect. */
  private readerId: number | undefined;
  private reading = false;
  private readGeneration = 0;
  private sleeper: { wake: () => void; timer: NodeJS.Timeout } | undefined;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly context: SubscriptionContext,
    private readonly reader: Redis,
    private readonly readerScripts: BusScripts,
    readonly options: ResolvedSubscribeOptions,
    private readonly handler: DeliveryHandler,
  ) {
    // Reclaim often enough that a short visibility timeout is honoured with little lag.
    this.claimEveryMs = Math.max(
      10,
      Math.min(context.busOptions.claimIntervalMs, Math.floor(options.visibilityTimeoutMs / 2)),
    );
    this.acks = new AckBatcher(
      (pairs) => context.commands.ack(context.streamKey, options.group, options.consumer, ...pairs),
      (err) => this.logFailure('ack', err),
    );
    reader.on('ready', this.onReaderReady);
    this.loop = this.run();
  }

  /** Stops taking entries, waits for the handlers in flight and their acks. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    // Their entries stay pending with a due idle time: any consumer of the group reclaims them.
    this.dueRetries = [];
    this.wake(true);
    // A read blocked on an unreachable Redis would never return: bound the wait, then cut it off
    // (entries it had taken are reclaimed by the group after the visibility timeout).
    const grace = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.context.busOptions.blockMs + 500);
      void this.loop.finally(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await grace;
    this.reader.disconnect();
    await this.loop;
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.acks.drain();
    while (this.settling.size > 0) await Promise.allSettled([...this.settling]);
    this.reader.off('ready', this.onReaderReady);
    this.context.detach(this);
  }

  private readonly onReaderReady = (): void => {
    this.readerId = undefined;
  };

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      try {
        await this.step();
        failures = 0;
      } catch (err) {
        if (this.closed) break;
        failures += 1;
        if (isNoGroupError(err)) {
          // The group vanished (Redis lost its data, or someone destroyed it): recreate it from
          // the earliest retained entry — duplicates are acceptable, losing messages is not.
          this.context.logger.warn(
            { topic: this.context.topic, group: this.options.group },
            'consumer group missing: recreating it',
          );
          try {
            await this.context.createGroup(this.reader, '0');
            continue;
          } catch (createErr) {
            this.logFailure('create group', createErr);
          }
        } else {
          this.logFailure('read', err);
        }
        await this.sleep(Math.min(LOOP_BACKOFF_MIN_MS * 2 ** (failures - 1), LOOP_BACKOFF_MAX_MS));
      }
    }
  }

  /** One command's worth of work: redeliver due retries, or reclaim, or read new entries. */
  private async step(): Promise<void> {
    const { streamKey, deadKey, busOptions } = this.context;
    const { group, consumer } = this.options;
    const free = Math.min(this.options.concurrency - this.inFlight, busOptions.batchSize);
    if (free <= 0) {
      await this.sleep(busOptions.blockMs); // a handler settling wakes us
      return;
    }

    if (this.dueRetries.length > 0) {
      const due = this.dueRetries.splice(0, free);
      const pairs: Array<string | number> = [];
      for (const [id, count] of due) pairs.push(id, count);
      const reply = await this.readerScripts.redeliver(streamKey, group, consumer, ...pairs);
      this.dispatchAll(parseEntryTriples(reply));
      return;
    }

    if (Date.now() >= this.nextClaimAt) {
      const [cursor, entries] = await this.readerScripts.claim(
        streamKey,
        deadKey,
        group,
        consumer,
        this.options.visibilityTimeoutMs,
        this.claimCursor,
        free,
        this.options.maxDeliveries,
        busOptions.clock.now(),
        busOptions.maxDeadLettersPerTopic,
      );
      this.claimCursor = bulkToString(cursor);
      const claimed = parseEntryTriples(entries);
      // Keep scanning the pending list while it yields entries; pause once it is done or dry.
      if (this.claimCursor === '0-0' || claimed.length === 0)
        this.nextClaimAt = Date.now() + this.claimEveryMs;
      this.dispatchAll(claimed);
      return;
    }

    if (this.readerId === undefined) this.readerId = Number(await this.reader.client('ID'));
    if (this.closed || this.dueRetries.length > 0) return;
    const blockMs = Math.max(1, Math.min(busOptions.blockMs, this.nextClaimAt - Date.now()));
    this.reading = true;
    this.readGeneration += 1;
    let reply: unknown;
    try {
      reply = await this.reader.callBuffer(
        'XREADGROUP',
        'GROUP',
        group,
        consumer,
        'COUNT',
        free,
        'BLOCK',
        blockMs,
        'STREAMS',
        streamKey,
        '>',
      );
    } finally {
      this.reading = false;
    }
    // Entries read are ours now (pending under this consumer): handle them even if closing.
    this.dispatchAll(parseReadGroupReply(reply));
  }

  private dispatchAll(entries: readonly ReceivedEntry[]): void {
    for (const entry of entries) this.dispatch(entry);
  }

  private dispatch(entry: ReceivedEntry): void {
    const { id, deliveryCount, data } = entry;
    if (data === undefined) {
      this.deadLetter(id, deliveryCount, "undecodable message: stream entry has no 'd' field");
      return;
    }
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(data, this.context.busOptions.codec);
    } catch (err) {
      // Undecodable (or forged) bytes never reach a handler and never block the entries behind.
      this.deadLetter(id, deliveryCount, `undecodable message: ${toErrorInfo(err).message}`);
      return;
    }
    this.inFlight += 1;
    const delivery = new RedisDelivery(id, this.context.topic, envelope, deliveryCount, () =>
      this.extend(id, deliveryCount),
    );
    let result: Promise<void>;
    try {
      result = Promise.resolve(this.handler(delivery));
    } catch (err) {
      // A handler that throws before returning its promise fails like one that rejects.
      this.settled(id, deliveryCount, false, err);
      return;
    }
    result.then(
      () => this.settled(id, deliveryCount, true, undefined),
      (err: unknown) => this.settled(id, deliveryCount, false, err),
    );
  }

  private settled(id: string, deliveryCount: number, ok: boolean, err: unknown): void {
    this.inFlight -= 1;
    if (ok) this.acks.add(id, deliveryCount);
    else this.track(this.fail(id, deliveryCount, err));
    if (this.closed) {
      if (this.inFlight === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const wake of waiters) wake();
      }
    } else {
      this.wake(false);
    }
  }

  private async fail(id: string, deliveryCount: number, err: unknown): Promise<void> {
    const error = toErrorInfo(err).message;
    if (hasErrorCode(err, ErrorCode.PoisonMessage) || deliveryCount >= this.options.maxDeliveries) {
      await this.deadLetterNow(id, deliveryCount, error);
      return;
    }
    const delayMs = retryAfterMs(err) ?? this.options.retryDelayMs;
    await this.scheduleRetry(id, deliveryCount, Date.now() + delayMs);
  }

  /**
   * Keeps a failed entry pending under this consumer and redelivers it at `dueAt`. Its idle time
   * is set so the group's reclaimers find it due at the same moment (durable if we die); a delay
   * longer than the visibility timeout is bridged by resetting the idle time every half timeout.
   */
  private async scheduleRetry(id: string, deliveryCount: number, dueAt: number): Promise<void> {
    const { streamKey } = this.context;
    const { group, consumer, visibilityTimeoutMs } = this.options;
    const remaining = dueAt - Date.now();
    const bridging = remaining > visibilityTimeoutMs;
    const idleMs = bridging ? 0 : Math.max(0, Math.floor(visibilityTimeoutMs - remaining));
    let owned: number;
    try {
      owned = await this.context.commands.touch(streamKey, group, consumer, id, deliveryCount, idleMs);
    } catch (err) {
      // Not re-armed: the entry is reclaimed once its visibility timeout runs out.
      this.logFailure('retry', err);
      return;
    }
    if (owned !== 1 || this.closed) return;
    const waitMs = bridging
      ? Math.min(remaining - visibilityTimeoutMs, visibilityTimeoutMs / 2)
      : dueAt - Date.now();
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(timer);
        if (this.closed) return;
        if (bridging) {
          this.track(this.scheduleRetry(id, deliveryCount, dueAt));
        } else {
          this.dueRetries.push([id, deliveryCount]);
          this.wake(true);
        }
      },
      Math.max(0, waitMs),
    );
    timer.unref();
    this.retryTimers.add(timer);
  }

  private async extend(id: string, deliveryCount: number): Promise<void> {
    const { streamKey } = this.context;
    // A superseded delivery's extend changes nothing (the script checks owner and count).
    await this.context.commands.touch(
      streamKey,
      this.options.group,
      this.options.consumer,
      id,
      deliveryCount,
      0,
    );
  }

  private deadLetter(id: string, deliveryCount: number, error: string): void {
    this.track(this.deadLetterNow(id, deliveryCount, error));
  }

  private async deadLetterNow(id: string, deliveryCount: number, error: string): Promise<void> {
    const { streamKey, deadKey, busOptions } = this.context;
    try {
      await this.context.commands.deadLetter(
        streamKey,
        deadKey,
        this.options.group,
        this.options.consumer,
        id,
        deliveryCount,
        error,
        busOptions.clock.now(),
        busOptions.maxDeadLettersPerTopic,
      );
    } catch (err) {
      // Still pending: reclaimed after the visibility timeout and dead-lettered then.
      this.logFailure('dead-letter', err);
    }
  }

  private track(operation: Promise<void>): void {
    this.settling.add(operation);
    void operation.finally(() => this.settling.delete(operation));
  }

  /** Wakes the loop if it sleeps; with `unblock`, also interrupts a blocked read. */
  private wake(unblock: boolean): void {
    const sleeper = this.sleeper;
    if (sleeper !== undefined) {
      this.sleeper = undefined;
      clearTimeout(sleeper.timer);
      sleeper.wake();
    }
    if (unblock && this.reading) this.unblock(this.readGeneration, 1);
  }

  private unblock(generation: number, attempt: number): void {
    const id = this.readerId;
    if (id === undefined) return; // the read ends by itself within blockMs
    this.context.redis.client('UNBLOCK', id).then(
      (unblocked) => {
        // 0: the read had not reached Redis yet (the two connections race) or just finished.
        if (Number(unblocked) !== 0 || attempt >= UNBLOCK_ATTEMPTS) return;
        if (!this.reading || this.readGeneration !== generation) return;
        setTimeout(() => this.unblock(generation, attempt + 1), UNBLOCK_RETRY_MS).unref();
      },
      () => undefined, // best effort: the read ends by itself within blockMs
    );
  }

  private sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeper = undefined;
        resolve();
      }, ms);
      timer.unref();
      this.sleeper = { wake: resolve, timer };
    });
  }

  private logFailure(what: string, err: unknown): void {
    this.context.logger.warn(
      {
        topic: this.context.topic,
        group: this.options.group,
        consumer: this.options.consumer,
        err: toErrorInfo(err).message,
      },
      `redis bus ${what} failed`,
    );
  }
}

function retryAfterMs(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const value = (err as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}
