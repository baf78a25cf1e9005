import { performance } from 'node:perf_hooks';
import { toErrorInfo } from '@multiagents/contracts';
import { LruMap, parseTimerId, type Timer } from '@multiagents/core';
import { createInbox, type Msg } from '@nats-io/transport-node';
import type { NatsContext } from './nats-context';

const NS_PER_MS = 1_000_000;
/** Timer ids whose latest scheduling or cancelling version this process remembers. */
const REMEMBERED_TIMERS = 100_000;
/** Pull requests one claim makes at most (each takes up to `timerPullBatch` wake-ups). */
const MAX_PULLS_PER_CLAIM = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The body of a wake-up message. */
interface WakeUp {
  /** Timer id (`parseTimerId` tells what it is). */
  readonly i: string;
  /** Due time, ms since the epoch. */
  readonly d: number;
  /** The run version whose transition scheduled it. */
  readonly v: number;
}

/**
 * A timer this process holds: a wake-up it took from the consumer and has not settled yet
 * (`reply` set), or one it deferred (scheduled here, due soon, never published).
 */
interface Held {
  /** `seq:<stream sequence>` for a wake-up, `local:<timer id>` for a deferred timer. */
  readonly key: string;
  reply: string | undefined;
  readonly timer: Timer;
  readonly version: number;
  /** performance.now() of the last time the server's ack timer was (re)started for it. */
  touchedAt: number;
  /** While claimed: the end of the lease, on the caller's clock. */
  claimedUntil: number | undefined;
}

/**
 * Durable timers on a JetStream work-queue stream with one durable pull consumer that every
 * orchestrator shares (server 2.9 has no scheduled messages and no per-message TTL):
 *
 * - **schedule** = a wake-up message `{timer id, due time, version}` published with the
 *   transition's other messages, `Nats-Msg-Id` = `<timer id>@<due time>` (a republish is stored
 *   once). A timer due within `timerDeferMs` is not published at all: the orchestrator that wrote
 *   it keeps it in memory and fires it itself (step timeouts are nearly always cancelled first),
 *   and the run's record lists it, so a reader publishes its wake-up if it is overdue (its
 *   writer died);
 * - **claim** = a `no_wait` pull (one request, never a JetStream API call): wake-ups due now are
 *   returned; ones due within `timerHoldMs` are held in memory and fired on time; later ones are
 *   handed back with `nak(delay)` so the server brings them back just before they are due. The
 *   consumer's `max_ack_pending` and `max_deliver` are unlimited, so any number of future timers
 *   can wait, and a pull batch only bounds one pull;
 * - **lease**: a held or claimed wake-up is invisible to other orchestrators (it is ack-pending);
 *   this process touches it (`+WPI`) every half ack wait while it lives, and the claim's lease
 *   (`leaseMs`, on the caller's clock) decides when it is offered again here. If the process dies,
 *   the server hands it to another orchestrator after `timerAckWaitMs`;
 * - **complete / commit-cancel** = ack. A wake-up whose timer a later transition cancelled or
 *   moved is stale: dropped here when this process wrote that transition (it remembers timer
 *   versions), otherwise claimed, ignored by the engine and completed by the orchestrator.
 *
 * So a timer fires once across orchestrators (a duplicate after a crash is ignored by the
 * engine), survives restarts of the server and of the orchestrators, and claiming costs one pull
 * request per claim, none per step.
 */
export class NatsTimerQueue {
  private readonly held = new Map<string, Held>();
  private readonly byId = new Map<string, Set<string>>();
  /** Timer id → the latest run version this process wrote that scheduled or cancelled it. */
  private readonly versions = new LruMap<string, number>(REMEMBERED_TIMERS);
  private serial: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly ctx: NatsContext) {}

  /** The wake-up of `timer`, as the transition that scheduled it at `version` publishes it. */
  wakeUp(
    timerId: string,
    dueAt: number,
    version: number,
  ): { subject: string; data: Uint8Array; msgID: string } {
    const body: WakeUp = { i: timerId, d: dueAt, v: version };
    return {
      subject: this.ctx.names.timerSubject,
      data: encoder.encode(JSON.stringify(body)),
      msgID: this.ctx.names.timerMessageId(timerId, dueAt),
    };
  }

  /** A transition at `version` scheduled these timers: older wake-ups of the same ids are stale. */
  noteScheduled(timerIds: readonly string[], version: number): void {
    for (const id of timerIds) this.noteVersion(id, version);
  }

  /** A transition at `version` cancelled these timers: their wake-ups are stale. */
  noteCancelled(timerIds: readonly string[], version: number): void {
    for (const id of timerIds) this.noteVersion(id, version);
  }

  /**
   * Keeps timers due soon (within `timerDeferMs`) in memory instead of publishing their wake-ups:
   * this process fires them itself; if it dies, they are in the run's record, and a reader
   * publishes the wake-up of one that is overdue (see NatsRunStore). Returns the others, to publish.
   */
  defer(timers: readonly Timer[], version: number, now: number): Timer[] {
    const deferMs = this.ctx.options.timerDeferMs;
    const publish: Timer[] = [];
    for (const timer of timers) {
      if (this.closed || deferMs <= 0 || timer.dueAt - now > deferMs) {
        publish.push(timer);
        continue;
      }
      this.add({
        key: `local:${timer.id}`,
        reply: undefined,
        timer,
        version,
        touchedAt: 0,
        claimedUntil: undefined,
      });
    }
    return publish;
  }

  /** True while this process holds a wake-up or a deferred copy of the timer (it will fire it). */
  holds(timerId: string): boolean {
    return (this.byId.get(timerId)?.size ?? 0) > 0;
  }

  /**
   * Acknowledges the claimed wake-ups of these timers (they fired and changed nothing). Only the
   * claimed copies: an unclaimed copy of the same id is a later scheduling of the timer (a
   * heartbeat that moved its timeout while the old one was firing, which is why the firing
   * changed nothing), held or deferred here; acknowledging it would lose the timer.
   */
  complete(timerIds: readonly string[]): void {
    for (const id of timerIds) {
      for (const key of [...(this.byId.get(id) ?? [])]) {
        const held = this.held.get(key);
        if (held?.claimedUntil !== undefined) this.settle(held, '+ACK');
      }
    }
  }

  /** Due timers, earliest first; see the class comment. Claims run one at a time. */
  claim(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    const run = this.serial.then(() => this.claimNow(now, limit, leaseMs));
    this.serial = run.catch(() => undefined);
    return run;
  }

  /**
   * Hands every held wake-up back to the server and publishes the deferred timers' wake-ups, so
   * another orchestrator fires them on time.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.serial;
    const now = this.ctx.clock.now();
    const deferred: Promise<unknown>[] = [];
    for (const held of [...this.held.values()]) {
      if (held.reply === undefined) {
        const wakeUp = this.wakeUp(held.timer.id, held.timer.dueAt, held.version);
        deferred.push(this.ctx.publish(wakeUp.subject, wakeUp.data, { msgID: wakeUp.msgID }));
      }
      const until = held.claimedUntil ?? held.timer.dueAt;
      this.settle(held, nak(Math.max(0, until - now)));
    }
    const failed = (await Promise.allSettled(deferred)).filter((o) => o.status === 'rejected').length;
    if (failed > 0) {
      this.ctx.logger.warn(
        { failed },
        'deferred timers not handed over; readers of their runs publish them once overdue',
      );
    }
  }

  // ---- internals ----------------------------------------------------------------------------

  private noteVersion(id: string, version: number): void {
    if ((this.versions.get(id) ?? 0) < version) this.versions.set(id, version);
    for (const key of [...(this.byId.get(id) ?? [])]) {
      const held = this.held.get(key);
      if (held !== undefined && held.version < version) {
        // A claimed timer is cancelled by the transition it caused (it fired); an unclaimed one is stale.
        if (held.claimedUntil === undefined) this.ctx.counters.staleTimers += 1;
        this.settle(held, '+ACK');
      }
    }
  }

  private async claimNow(now: number, limit: number, leaseMs: number): Promise<Timer[]> {
    if (this.closed) return [];
    const { timerHoldMs, timerAckWaitMs, timerPullBatch } = this.ctx.options;
    for (let pulls = 0; pulls < MAX_PULLS_PER_CLAIM; pulls += 1) {
      const messages = await this.pull(timerPullBatch);
      for (const msg of messages) this.accept(msg);
      if (messages.length < timerPullBatch) break;
    }
    const realNow = performance.now();
    const due: Held[] = [];
    for (const held of [...this.held.values()]) {
      if (
        held.reply !== undefined &&
        held.claimedUntil === undefined &&
        held.timer.dueAt - now > timerHoldMs
      ) {
        // Back to the server, to come back half a hold before it is due.
        this.settle(held, nak(Math.max(1, held.timer.dueAt - now - Math.floor(timerHoldMs / 2))));
        continue;
      }
      if (held.reply !== undefined && realNow - held.touchedAt >= timerAckWaitMs / 2)
        this.touch(held, realNow);
      if (held.timer.dueAt <= now && (held.claimedUntil === undefined || held.claimedUntil <= now)) {
        due.push(held);
      }
    }
    due.sort((a, b) => a.timer.dueAt - b.timer.dueAt || (a.timer.id < b.timer.id ? -1 : 1));
    const claimed = due.slice(0, limit);
    for (const held of claimed) {
      // Offered again after its lease ran out here: give the server a fresh ack wait too.
      if (held.claimedUntil !== undefined) this.touch(held, realNow);
      held.claimedUntil = now + leaseMs;
    }
    return claimed.map((held) => held.timer);
  }

  /** Takes a delivered wake-up in, or settles it at once when it is malformed or known stale. */
  private accept(msg: Msg): void {
    const seq = ackSequence(msg.reply);
    if (seq === undefined || msg.reply === undefined) return;
    let body: WakeUp | undefined;
    try {
      const parsed = JSON.parse(decoder.decode(msg.data)) as Partial<WakeUp>;
      if (typeof parsed.i === 'string' && typeof parsed.d === 'number' && typeof parsed.v === 'number') {
        body = parsed as WakeUp;
      }
    } catch {
      body = undefined;
    }
    const timer = body === undefined ? undefined : parseTimerId(body.i, body.d);
    if (body === undefined || timer === undefined) {
      this.ctx.logger.warn({ seq }, 'malformed timer wake-up: terminated');
      msg.respond('+TERM');
      return;
    }
    const key = `seq:${seq}`;
    const existing = this.held.get(key);
    if (existing !== undefined) {
      // Delivered again (its ack wait passed before a touch arrived): the same wake-up, still ours.
      existing.reply = msg.reply;
      existing.touchedAt = performance.now();
      return;
    }
    if ((this.versions.get(timer.id) ?? 0) > body.v) {
      this.ctx.counters.staleTimers += 1;
      msg.respond('+ACK');
      return;
    }
    // Two copies of one timer (a republish, a deferred copy here): keep one, the newest.
    for (const other of [...(this.byId.get(timer.id) ?? [])].map((k) => this.held.get(k))) {
      if (other === undefined) continue;
      if (other.version >= body.v && other.timer.dueAt === timer.dueAt) {
        msg.respond('+ACK');
        return;
      }
      if (other.version < body.v && other.claimedUntil === undefined) this.settle(other, '+ACK');
    }
    this.add({
      key,
      reply: msg.reply,
      timer,
      version: body.v,
      touchedAt: performance.now(),
      claimedUntil: undefined,
    });
  }

  private add(held: Held): void {
    const existing = this.held.get(held.key);
    if (existing !== undefined) this.settle(existing, '+ACK');
    this.held.set(held.key, held);
    let keys = this.byId.get(held.timer.id);
    if (keys === undefined) {
      keys = new Set();
      this.byId.set(held.timer.id, keys);
    }
    keys.add(held.key);
  }

  private touch(held: Held, realNow: number): void {
    held.touchedAt = realNow;
    if (held.reply !== undefined) this.respond(held.reply, '+WPI');
  }

  /** Acks, naks or terminates a held wake-up (a deferred timer is just dropped) and forgets it. */
  private settle(held: Held, payload: string): void {
    this.held.delete(held.key);
    const keys = this.byId.get(held.timer.id);
    keys?.delete(held.key);
    if (keys?.size === 0) this.byId.delete(held.timer.id);
    if (held.reply !== undefined) this.respond(held.reply, payload);
  }

  private respond(reply: string, payload: string): void {
    try {
      // Fire and forget: a lost settle only means the server hands the wake-up out again.
      this.ctx.connection.publish(reply, payload);
    } catch {
      // Connection closed: the ack wait brings the wake-up back to someone.
    }
  }

  /**
   * One `no_wait` pull request on the timer consumer: whatever is available now, up to `batch`,
   * ended by the server's 404/408 status. Bounded by the request timeout (a request lost in a
   * disconnect must not hang the claim loop).
   */
  private async pull(batch: number): Promise<Msg[]> {
    const { connection, names, options } = this.ctx;
    if (connection.isClosed() || !this.ctx.state.isConnected) return [];
    const inbox = createInbox();
    const subscription = connection.subscribe(inbox, { max: batch + 1 });
    const watchdog = setTimeout(() => subscription.unsubscribe(), options.requestTimeoutMs);
    watchdog.unref();
    const messages: Msg[] = [];
    try {
      connection.publish(
        `$JS.API.CONSUMER.MSG.NEXT.${names.timerStream}.${names.timerConsumer}`,
        JSON.stringify({ batch, no_wait: true }),
        { reply: inbox },
      );
      for await (const msg of subscription) {
        const status = msg.headers?.code ?? 0;
        if (status !== 0 && msg.data.length === 0) break;
        messages.push(msg);
        if (messages.length >= batch) break;
      }
    } catch (err) {
      this.ctx.logger.warn(
        { err: toErrorInfo(err).message },
        'timer pull failed; retrying at the next claim',
      );
    } finally {
      clearTimeout(watchdog);
      subscription.unsubscribe();
    }
    return messages;
  }
}

/** `-NAK` with a redelivery delay. */
function nak(delayMs: number): string {
  return delayMs > 0 ? `-NAK ${JSON.stringify({ delay: Math.ceil(delayMs) * NS_PER_MS })}` : '-NAK';
}

/**
 * The stream sequence in a JetStream ack subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.…`
 * (9 tokens), or with a domain and account hash (12 tokens) since server 2.9.
 */
function ackSequence(reply: string | undefined): number | undefined {
  if (reply === undefined || !reply.startsWith('$JS.ACK.')) return undefined;
  const tokens = reply.split('.');
  const offset = tokens.length === 9 ? 2 : tokens.length >= 11 ? 4 : -1;
  if (offset < 0) return undefined;
  const seq = Number(tokens[offset + 3]);
  return Number.isSafeInteger(seq) && seq > 0 ? seq : undefined;
}
