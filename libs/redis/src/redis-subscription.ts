import {
  ErrorCode,
  decodeEnvelope,
  describeEnvelopeRefusal,
  hasErrorCode,
  toErrorInfo,
  type Envelope,
} from '@multiagents/contracts';
import type { DeliveryHandler, ResolvedSubscribeOptions, Subscription } from '@multiagents/core';
import { createConsumerGroup, isNoGroupError } from './consumer-group';
import type { RedisClient } from './redis-backend-options';
import type { RedisConnection } from './redis-connection';
import { RedisDelivery, deliveryId } from './redis-delivery';
import type { TopicStream } from './redis-keys';
import type { ReplyRegistry } from './reply-registry';
import { bulkToString, parseEntryQuads, parseReadGroupReply, type ReceivedEntry } from './stream-replies';
import type { StreamAck, StreamWriter } from './stream-writer';

/** What a subscription needs from its bus. */
export interface SubscriptionHost {
  readonly connection: RedisConnection;
  readonly writer: StreamWriter;
  readonly replies: ReplyRegistry;
  /** Called once the subscription is closed. */
  detach(subscription: RedisSubscription): void;
}

/** An entry this consumer owns (pending under it) and has not handed to a handler yet. */
interface Owned {
  readonly source: TopicStream;
  readonly entryId: string;
  readonly deliveryCount: number;
  readonly data: Buffer | undefined;
  /** When this consumer took it (Date.now()). */
  readonly ownedAt: number;
}

/** One blocking reader: a connection and the streams one XREADGROUP covers. */
interface Lane {
  readonly reader: RedisClient;
  readonly streams: readonly TopicStream[];
  readonly byKey: ReadonlyMap<string, TopicStream>;
  /** This reader's CLIENT ID (for CLIENT UNBLOCK); unknown again after every reconnect. */
  readerId: number | undefined;
  reading: boolean;
  loop: Promise<void>;
}

/** Acknowledgements in one write at most (a script call's arguments stay well below limits). */
const ACKS_PER_WRITE = 500;
/** Backoff of a read loop after an unexpected error (never a hot loop, never long). */
const LOOP_BACKOFF_MIN_MS = 50;
const LOOP_BACKOFF_MAX_MS = 2_000;

/** The pause of a read loop after its `failures`-th error in a row (see LOOP_BACKOFF_*). */
export function loopBackoffMs(failures: number): number {
  return Math.min(LOOP_BACKOFF_MIN_MS * 2 ** (failures - 1), LOOP_BACKOFF_MAX_MS);
}
/** Why an entry whose `group` field is empty (no replay writes one) is dead-lettered. */
export const MALFORMED_REPLAY_ERROR = "malformed replayed dead letter: its 'group' field is empty";
/** CLIENT UNBLOCK may reach Redis before the read it targets: try again this many times. */
const UNBLOCK_ATTEMPTS = 5;
const UNBLOCK_RETRY_MS = 2;

/**
 * One consumer of a group on one topic: every stream of the topic (one per partition for the
 * run's topics) is read by one blocking XREADGROUP per lane — one lane for all partitions on a
 * single server, one per partition on Redis Cluster, where a multi-key read must stay in one slot.
 * Each read takes at most as many entries as there are free handler slots (COUNT per stream), so
 * `concurrency` holds with no lock; entries owned beyond that (a read over several streams, a
 * reclaim) wait in a short local queue.
 *
 * Everything else runs on the shared command connection: reclaiming entries idle past the
 * visibility timeout (XAUTOCLAIM, every `claimIntervalMs` or half the timeout), redelivering a
 * failed entry when its retry delay is over (XCLAIM to itself), dead letters, `extend()`, and
 * acknowledgements, which are batched per event-loop turn by the {@link StreamWriter} and guarded
 * by owner and delivery count, so a superseded delivery settles nothing. The handlers that
 * resolve together (a read's batch) hand their acknowledgements to the writer as one write per
 * slot, not one each: a consumer of the events acknowledges every entry it reads.
 */
export class RedisSubscription implements Subscription {
  private readonly lanes: Lane[] = [];
  private readonly streams: readonly TopicStream[];
  private readonly backlog: Owned[] = [];
  private inFlight = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Settle operations (retry, dead letter, hand-back) not answered yet; close() waits for them. */
  private readonly settling = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  /** Entries of this consumer whose retry delay is over, with the delivery count that failed. */
  private dueRetries: Array<{ source: TopicStream; entryId: string; deliveryCount: number }> = [];
  private redelivering = false;
  private readonly claimCursors = new Map<string, string>();
  private claimTimer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private readonly claimEveryMs: number;
  private roomWaiters: Array<() => void> = [];
  private idleWaiters: Array<() => void> = [];
  private pauses = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  /** Acknowledgements not handed to the writer yet, by slot (see `ack`). */
  private readonly acks = new Map<string, StreamAck[]>();
  private acksQueued = false;
  /** The group's name as a replayed dead letter's `group` field holds it. */
  private readonly groupName: Buffer;

  constructor(
    private readonly host: SubscriptionHost,
    readonly topic: string,
    lanes: readonly (readonly TopicStream[])[],
    readers: readonly RedisClient[],
    readonly options: ResolvedSubscribeOptions,
    private readonly handler: DeliveryHandler,
  ) {
    const busOptions = host.connection.options;
    this.groupName = Buffer.from(options.group);
    // Reclaim often enough that a short visibility timeout is honoured with little lag.
    this.claimEveryMs = Math.max(
      10,
      Math.min(busOptions.claimIntervalMs, Math.floor(options.visibilityTimeoutMs / 2)),
    );
    this.streams = lanes.flat();
    lanes.forEach((streams, i) => {
      const reader = readers[i] as RedisClient;
      const lane: Lane = {
        reader,
        streams,
        byKey: new Map(streams.map((s) => [s.stream, s])),
        readerId: undefined,
        reading: false,
        loop: Promise.resolve(),
      };
      reader.on('ready', () => {
        lane.readerId = undefined;
      });
      lane.loop = this.readLoop(lane);
      this.lanes.push(lane);
    });
    this.scheduleClaim(this.claimEveryMs);
  }

  /** Stops taking entries, waits for the handlers in flight and their acks. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // ---- reading ------------------------------------------------------------------------------

  private room(): number {
    return this.options.concurrency - this.inFlight - this.backlog.length;
  }

  private async readLoop(lane: Lane): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      try {
        if (this.room() <= 0) {
          await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
          continue;
        }
        const full = await this.read(lane);
        failures = 0;
        if (!full && this.options.batchDelayMs > 0) await this.pause(this.options.batchDelayMs);
      } catch (err) {
        if (this.closed) break;
        failures += 1;
        if (isNoGroupError(err)) {
          await this.recreateGroups(lane.reader, lane.streams);
          continue;
        }
        this.logFailure('read', err);
        await this.pause(loopBackoffMs(failures));
      }
    }
  }

  /** One XREADGROUP; true when a stream gave all it was asked for (more is likely waiting). */
  private async read(lane: Lane): Promise<boolean> {
    const { connection } = this.host;
    if (!connection.cluster && lane.readerId === undefined) {
      lane.readerId = Number(await lane.reader.client('ID'));
    }
    if (this.closed) return false;
    // A subscription that trades latency for batches (batchDelayMs) reads as many entries as it
    // has free slots for, past the backend's batchSize: fewer reads, acks and wake-ups per entry.
    const cap =
      this.options.batchDelayMs > 0
        ? Math.max(connection.options.batchSize, this.options.concurrency)
        : connection.options.batchSize;
    const room = Math.min(this.room(), cap);
    // COUNT is per stream: with fewer free slots than streams a read may take a few more entries
    // than the handlers can start at once; they wait in the backlog (see dispatch()).
    const perStream = Math.max(1, Math.floor(room / this.streams.length));
    const keys = lane.streams.map((s) => s.stream);
    lane.reading = true;
    let reply: unknown;
    try {
      reply = await lane.reader.callBuffer(
        'XREADGROUP',
        'GROUP',
        this.options.group,
        this.options.consumer,
        'COUNT',
        perStream,
        'BLOCK',
        connection.options.blockMs,
        'STREAMS',
        ...keys,
        ...keys.map(() => '>'),
      );
    } finally {
      lane.reading = false;
    }
    // Entries read are ours now (pending under this consumer), closing or not.
    const entries = parseReadGroupReply(reply);
    this.own(entries, (entry) => lane.byKey.get(entry.stream));
    const perKey = new Map<string, number>();
    for (const { stream } of entries) perKey.set(stream, (perKey.get(stream) ?? 0) + 1);
    return [...perKey.values()].some((n) => n >= perStream);
  }

  private own(
    entries: readonly ReceivedEntry[],
    sourceOf: (entry: ReceivedEntry) => TopicStream | undefined,
  ): void {
    const ownedAt = Date.now();
    for (const entry of entries) {
      const source = sourceOf(entry);
      if (source === undefined) continue;
      const owned: Owned = {
        source,
        entryId: entry.id,
        deliveryCount: entry.deliveryCount,
        data: entry.data,
        ownedAt,
      };
      // Only a replayed dead letter has a group: handled by that group alone.
      if (entry.group === undefined || entry.group.equals(this.groupName)) this.backlog.push(owned);
      else this.passOver(owned, entry.group);
    }
    this.pump();
  }

  /**
   * A replayed dead letter of another group (see `replay.lua`): this group handled the message
   * when it was published, so it is acknowledged without reaching the handler, counted as no
   * delivery, and never dead-lettered here. One whose `group` field is empty names no group at
   * all: it is dead-lettered as malformed, as undecodable bytes are, for an operator to look at.
   */
  private passOver(entry: Owned, target: Buffer): void {
    if (target.length === 0) {
      this.deadLetter(entry, MALFORMED_REPLAY_ERROR);
      return;
    }
    const { client } = this.host.connection;
    this.track(
      client.xack(entry.source.stream, this.options.group, entry.entryId).then(
        () => undefined,
        // Still pending: the group's next reclaim of it acknowledges it (claim.lua).
        (err: unknown) => this.logFailure('pass over a replay', err),
      ),
    );
  }

  private async recreateGroups(reader: RedisClient, streams: readonly TopicStream[]): Promise<void> {
    // The group vanished (Redis lost its data, or someone destroyed it): recreate it from the
    // earliest retained entry — duplicates are acceptable, losing messages is not.
    this.host.connection.logger.warn(
      { topic: this.topic, group: this.options.group },
      'consumer group missing: recreating it',
    );
    try {
      for (const source of streams) await createConsumerGroup(reader, source.stream, this.options.group, '0');
    } catch (err) {
      this.logFailure('create group', err);
      await this.pause(LOOP_BACKOFF_MIN_MS);
    }
  }

  // ---- reclaiming and redelivering (command connection) -------------------------------------

  private scheduleClaim(delayMs: number): void {
    if (this.closed) return;
    this.claimTimer = setTimeout(() => {
      this.claimTimer = undefined;
      this.claiming = this.claimPass().finally(() => (this.claiming = undefined));
    }, delayMs);
    this.claimTimer.unref();
  }

  /**
   * Takes entries of the group idle past the visibility timeout (their consumer died or hung).
   * Each stream's call is answered on its own: the entries a call claimed are pending under this
   * consumer with their delivery count raised, whatever happened to the other streams' calls, so
   * they must reach a handler; dropped, later passes would raise their counts again until they
   * were dead-lettered unseen.
   */
  private async claimPass(): Promise<void> {
    let again = false;
    const room = Math.min(this.room(), this.host.connection.options.batchSize);
    if (room > 0 && !this.closed) {
      const perStream = Math.max(1, Math.floor(room / this.streams.length));
      const outcomes = await Promise.all(this.streams.map((source) => this.claimStream(source, perStream)));
      again = outcomes.includes('more');
      const missing = new Set(this.streams.filter((_, i) => outcomes[i] === 'no-group'));
      if (missing.size > 0 && !this.closed) {
        for (const lane of this.lanes) {
          const streams = lane.streams.filter((source) => missing.has(source));
          if (streams.length > 0) await this.recreateGroups(lane.reader, streams);
        }
      }
    }
    this.scheduleClaim(again ? 0 : this.claimEveryMs);
  }

  /**
   * One `claim.lua` call on `source`: owns what it claimed and moves the stream's cursor. Says
   * whether the stream may hold more to claim now, lost its group, or failed otherwise (logged).
   */
  private async claimStream(
    source: TopicStream,
    count: number,
  ): Promise<'more' | 'done' | 'no-group' | 'failed'> {
    const { connection } = this.host;
    const { options } = connection;
    let next: string;
    let claimed: ReceivedEntry[];
    let deadCount: number;
    try {
      const [cursor, entries, dead] = await connection.scripts.claim(
        [source.stream, source.dead],
        [
          this.options.group,
          this.options.consumer,
          this.options.visibilityTimeoutMs,
          this.claimCursors.get(source.stream) ?? '0-0',
          count,
          this.options.maxDeliveries,
          options.clock.now(),
          options.maxDeadLettersPerTopic,
        ],
      );
      next = bulkToString(cursor);
      claimed = parseEntryQuads(entries);
      deadCount = Number(dead);
    } catch (err) {
      if (isNoGroupError(err)) return 'no-group';
      if (!this.closed) this.logFailure('reclaim', err);
      return 'failed';
    }
    this.claimCursors.set(source.stream, next);
    connection.counters.reclaimed += claimed.length;
    connection.counters.deadLettered += deadCount;
    this.own(claimed, () => source);
    // Keep scanning a pending list while it yields entries; pause once it is done or dry.
    return next !== '0-0' && claimed.length > 0 ? 'more' : 'done';
  }

  private redeliverDue(): void {
    if (this.redelivering || this.closed || this.dueRetries.length === 0) return;
    const room = this.room();
    if (room <= 0) return;
    const due = this.dueRetries.splice(0, room);
    const bySource = new Map<TopicStream, Array<string | number>>();
    for (const { source, entryId, deliveryCount } of due) {
      const pairs = bySource.get(source) ?? [];
      pairs.push(entryId, deliveryCount);
      bySource.set(source, pairs);
    }
    this.redelivering = true;
    const { connection } = this.host;
    const work = Promise.all(
      [...bySource].map(async ([source, pairs]) => {
        try {
          const reply = await connection.scripts.redeliver(source.stream, [
            this.options.group,
            this.options.consumer,
            ...pairs,
          ]);
          const entries = parseEntryQuads(reply);
          connection.counters.redelivered += entries.length;
          this.own(entries, () => source);
        } catch (err) {
          // Still pending with a due idle time: the next reclaim pass takes it.
          this.logFailure('redeliver', err);
        }
      }),
    ).then(() => {
      this.redelivering = false;
      this.redeliverDue();
    });
    this.track(work);
  }

  // ---- handling -----------------------------------------------------------------------------

  private pump(): void {
    while (!this.closed && this.inFlight < this.options.concurrency && this.backlog.length > 0) {
      this.dispatch(this.backlog.shift() as Owned);
    }
  }

  private dispatch(entry: Owned): void {
    if (Date.now() - entry.ownedAt <= this.options.visibilityTimeoutMs / 2) {
      this.start(entry);
      return;
    }
    // It waited in the backlog for a while: another consumer may have reclaimed it meanwhile.
    // Make sure it is still this delivery (and restart its visibility timeout) before handling it.
    this.inFlight += 1;
    this.track(
      this.touch(entry, 0).then(
        (owned) => {
          this.inFlight -= 1;
          if (owned === 1 && !this.closed) this.start({ ...entry, ownedAt: Date.now() });
          else if (owned !== 1) this.host.connection.counters.supersededSettles += 1;
          this.released();
        },
        (err: unknown) => {
          // Unknown: leave it pending; the group reclaims it after the visibility timeout.
          this.inFlight -= 1;
          this.logFailure('check ownership', err);
          this.released();
        },
      ),
    );
  }

  private start(entry: Owned): void {
    const { connection } = this.host;
    const { source, entryId, deliveryCount, data } = entry;
    if (data === undefined) {
      this.deadLetter(entry, "undecodable message: stream entry has no 'd' field");
      return;
    }
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(data, connection.options.codec);
    } catch (err) {
      // Undecodable (or forged) bytes never reach a handler and never block the entries behind.
      connection.counters.refusedEnvelopes += 1;
      this.deadLetter(entry, describeEnvelopeRefusal(err));
      return;
    }
    if (source.partition !== undefined) {
      const home = connection.keys.partitionOf(envelope.txId);
      if (home !== source.partition) {
        connection.counters.misrouted += 1;
        this.deadLetter(
          entry,
          `misrouted message: run ${envelope.txId} belongs to partition ${home}, not ${source.partition}`,
        );
        return;
      }
    }
    this.inFlight += 1;
    const delivery: RedisDelivery = new RedisDelivery(
      deliveryId(source, entryId),
      this.topic,
      envelope,
      deliveryCount,
      source,
      entryId,
      this.options.group,
      this.options.consumer,
      connection,
      () => this.extend(delivery),
    );
    this.host.replies.register(delivery);
    let result: Promise<void>;
    try {
      result = Promise.resolve(this.handler(delivery));
    } catch (err) {
      // A handler that throws before returning its promise fails like one that rejects.
      this.settled(delivery, false, err);
      return;
    }
    result.then(
      () => this.settled(delivery, true, undefined),
      (err: unknown) => this.settled(delivery, false, err),
    );
  }

  private settled(delivery: RedisDelivery, ok: boolean, err: unknown): void {
    this.inFlight -= 1;
    this.host.replies.unregister(delivery);
    // Settled already: acknowledged inside a commit, or together with the result it answered.
    if (!delivery.settled) {
      delivery.settled = true;
      if (ok) this.ack(delivery);
      else this.track(this.fail(delivery, err));
    }
    this.released();
  }

  /** A handler slot came free: start what waits, or let close() finish. */
  private released(): void {
    if (this.closed) {
      if (this.inFlight === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const wake of waiters) wake();
      }
      return;
    }
    this.pump();
    this.redeliverDue();
    if (this.room() > 0 && this.roomWaiters.length > 0) {
      const waiters = this.roomWaiters;
      this.roomWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /**
   * Queues the delivery's acknowledgement; the ones queued by the handlers that resolve before the
   * next microtask checkpoint go to the writer together, which sends them with this turn's writes.
   */
  private ack(delivery: RedisDelivery): void {
    const { source, entryId, deliveryCount, group, consumer } = delivery;
    let queued = this.acks.get(source.slot);
    if (queued === undefined) {
      queued = [];
      this.acks.set(source.slot, queued);
    }
    queued.push({ stream: source.stream, group, consumer, entryId, deliveryCount });
    if (this.acksQueued) return;
    this.acksQueued = true;
    queueMicrotask(this.writeAcks);
  }

  private readonly writeAcks = (): void => {
    this.acksQueued = false;
    for (const [slot, acks] of this.acks) {
      for (let i = 0; i < acks.length; i += ACKS_PER_WRITE) {
        const chunk = acks.length <= ACKS_PER_WRITE ? acks : acks.slice(i, i + ACKS_PER_WRITE);
        this.track(
          this.host.writer.write(slot, [], chunk).catch((err: unknown) => {
            // Not acknowledged: delivered again after the visibility timeout (at-least-once).
            this.logFailure('ack', err);
          }),
        );
      }
    }
    this.acks.clear();
  };

  private async fail(delivery: RedisDelivery, err: unknown): Promise<void> {
    const error = toErrorInfo(err).message;
    const entry: Owned = {
      source: delivery.source,
      entryId: delivery.entryId,
      deliveryCount: delivery.deliveryCount,
      data: undefined,
      ownedAt: Date.now(),
    };
    if (hasErrorCode(err, ErrorCode.PoisonMessage) || delivery.deliveryCount >= this.options.maxDeliveries) {
      await this.deadLetterNow(entry, error);
      return;
    }
    const delayMs = retryAfterMs(err) ?? this.options.retryDelayMs;
    await this.scheduleRetry(entry, Date.now() + delayMs);
  }

  /**
   * Keeps a failed entry pending under this consumer and redelivers it at `dueAt`. Its idle time
   * is set so the group's reclaimers find it due at the same moment (durable if we die); a delay
   * longer than the visibility timeout is bridged by resetting the idle time every half timeout.
   */
  private async scheduleRetry(entry: Owned, dueAt: number): Promise<void> {
    const { visibilityTimeoutMs } = this.options;
    const remaining = dueAt - Date.now();
    const bridging = remaining > visibilityTimeoutMs;
    const idleMs = bridging ? 0 : Math.max(0, Math.floor(visibilityTimeoutMs - remaining));
    let owned: number;
    try {
      owned = await this.touch(entry, idleMs);
    } catch (err) {
      // Not re-armed: the entry is reclaimed once its visibility timeout runs out.
      this.logFailure('retry', err);
      return;
    }
    if (owned !== 1) {
      this.host.connection.counters.supersededSettles += 1;
      return;
    }
    if (this.closed) return;
    const waitMs = bridging
      ? Math.min(remaining - visibilityTimeoutMs, visibilityTimeoutMs / 2)
      : dueAt - Date.now();
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(timer);
        if (this.closed) return;
        if (bridging) {
          this.track(this.scheduleRetry(entry, dueAt));
        } else {
          this.dueRetries.push(entry);
          this.redeliverDue();
        }
      },
      Math.max(0, waitMs),
    );
    timer.unref();
    this.retryTimers.add(timer);
  }

  private async extend(delivery: RedisDelivery): Promise<void> {
    // A superseded delivery's extend changes nothing (the script checks owner and count).
    await this.host.connection.call('extend', () => this.touch(delivery, 0));
  }

  private touch(entry: Pick<Owned, 'source' | 'entryId' | 'deliveryCount'>, idleMs: number): Promise<number> {
    return this.host.connection.scripts.touch(entry.source.stream, [
      this.options.group,
      this.options.consumer,
      entry.entryId,
      entry.deliveryCount,
      idleMs,
    ]);
  }

  private deadLetter(entry: Owned, error: string): void {
    this.track(this.deadLetterNow(entry, error));
  }

  private async deadLetterNow(entry: Owned, error: string): Promise<void> {
    const { connection } = this.host;
    try {
      const id = await connection.scripts.deadLetter(
        [entry.source.stream, entry.source.dead],
        [
          this.options.group,
          this.options.consumer,
          entry.entryId,
          entry.deliveryCount,
          error,
          connection.options.clock.now(),
          connection.options.maxDeadLettersPerTopic,
        ],
      );
      if (id === null) connection.counters.supersededSettles += 1;
      else connection.counters.deadLettered += 1;
    } catch (err) {
      // Still pending: reclaimed after the visibility timeout and dead-lettered then.
      this.logFailure('dead-letter', err);
    }
  }

  // ---- closing ------------------------------------------------------------------------------

  private async shutdown(): Promise<void> {
    this.closed = true;
    const { connection } = this.host;
    if (this.claimTimer !== undefined) clearTimeout(this.claimTimer);
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    // Their entries stay pending with a due idle time: any consumer of the group reclaims them.
    this.dueRetries = [];
    for (const pause of this.pauses) {
      clearTimeout(pause.timer);
      pause.wake();
    }
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of waiters) wake();
    for (const lane of this.lanes) if (lane.reading) this.unblock(lane, 1);
    // A read blocked on an unreachable Redis would never return: bound the wait, then cut it off
    // (entries it had taken are reclaimed by the group after the visibility timeout).
    await Promise.all(
      this.lanes.map(async (lane) => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          lane.loop,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, connection.options.blockMs + 500);
          }),
        ]);
        clearTimeout(timer);
        connection.closeReader(lane.reader);
        await lane.loop;
      }),
    );
    await this.claiming;
    // Entries owned but not handled: made due for reclaim at once, so the group does not wait a
    // whole visibility timeout for them.
    for (const entry of this.backlog.splice(0)) {
      this.track(
        this.touch(entry, this.options.visibilityTimeoutMs).then(
          () => undefined,
          (err: unknown) => this.logFailure('hand back', err),
        ),
      );
    }
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    while (this.settling.size > 0) await Promise.allSettled([...this.settling]);
    await this.host.writer.drain();
    await this.forgetConsumer();
    this.host.detach(this);
  }

  /**
   * Deletes this consumer from its group on every stream where nothing is pending under it any
   * more (`forget-consumer.lua`), so restarts do not pile consumer names up in the groups. Where
   * entries are still pending (handed back, waiting for a retry, an ack that failed) it stays:
   * deleting it would drop them. Best effort: skipped while Redis is away.
   */
  private async forgetConsumer(): Promise<void> {
    const { connection } = this.host;
    if (!connection.isConnected) return;
    await Promise.all(
      this.streams.map((source) =>
        connection.scripts
          .forgetConsumer(source.stream, this.options.group, this.options.consumer)
          .catch((err: unknown) => this.logFailure('forget consumer', err)),
      ),
    );
  }

  private unblock(lane: Lane, attempt: number): void {
    const id = lane.readerId;
    if (id === undefined) return; // bounded by the grace period in shutdown()
    this.host.connection.client.client('UNBLOCK', id).then(
      (unblocked) => {
        // 0: the read had not reached Redis yet (the two connections race) or just finished.
        if (Number(unblocked) !== 0 || attempt >= UNBLOCK_ATTEMPTS || !lane.reading) return;
        setTimeout(() => this.unblock(lane, attempt + 1), UNBLOCK_RETRY_MS).unref();
      },
      () => undefined, // best effort: the read ends by itself within blockMs
    );
  }

  private track(operation: Promise<void>): void {
    this.settling.add(operation);
    void operation.finally(() => this.settling.delete(operation));
  }

  private pause(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.pauses.delete(entry);
          resolve();
        }, ms),
        wake: resolve,
      };
      entry.timer.unref();
      this.pauses.add(entry);
    });
  }

  private logFailure(what: string, err: unknown): void {
    this.host.connection.logger.warn(
      {
        topic: this.topic,
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
