import { decodeEnvelope, toErrorInfo, type EnvelopeCodecOptions } from '@multiagents/contracts';
import { handToTail, type Logger, type Subscription, type TailHandler } from '@multiagents/core';
import type { ConsumerMessages } from '@nats-io/jetstream';
import { replayTarget } from './replay-target';

/** An ordered consumer opened for a tail, and its messages. */
export interface OpenedTail {
  readonly consumer: { delete(): Promise<boolean> };
  /** No acks; recreated by the client after a gap or a reconnect. */
  readonly messages: ConsumerMessages;
}

/** What a {@link NatsTail} needs from its bus. */
export interface NatsTailContext {
  readonly topic: string;
  /** Opens an ordered consumer of the topic's subject from stream sequence `startSeq` on. */
  open(startSeq: number): Promise<OpenedTail>;
  readonly handler: TailHandler;
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly logger: Logger;
  /** Counts a message refused before parsing (unsigned, forged, malformed). */
  refused(): void;
  /** Called once, when the feed has closed. */
  detach(tail: NatsTail): void;
}

/** Pauses before opening a feed again after it ended (never a hot loop, never long). */
const REOPEN_BACKOFF_MIN_MS = 50;
const REOPEN_BACKOFF_MAX_MS = 2_000;

/**
 * A live feed of one topic ({@link EventBus.tail}) on JetStream: an ordered consumer, which the
 * server keeps in memory only, with no acknowledgements, and deletes once the client has stopped
 * pulling for a while (a process killed outright). The client recreates it after the last message
 * seen when the connection drops or a message goes missing; when the client gives up on it (the
 * server refused it, or JetStream stayed away through its retries), the tail opens a new one after
 * the last message it handed over, with a backoff, until closed. Closing deletes the consumer.
 */
export class NatsTail implements Subscription {
  private closed = false;
  private current: OpenedTail;
  /** The stream sequence the next consumer starts at: right after the last message handed over. */
  private nextSeq: number;
  private wake: (() => void) | undefined;
  private readonly loop: Promise<void>;

  constructor(
    private readonly ctx: NatsTailContext,
    first: OpenedTail,
    startSeq: number,
  ) {
    this.current = first;
    this.nextSeq = startSeq;
    this.loop = this.run();
  }

  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.wake?.();
      await this.current.messages.close();
      await this.current.consumer.delete().catch(() => false);
    }
    await this.loop;
    this.ctx.detach(this);
  }

  private async run(): Promise<void> {
    const { ctx } = this;
    for (let failures = 0; !this.closed;) {
      try {
        for await (const msg of this.current.messages) {
          if (this.closed) break;
          this.nextSeq = msg.seq + 1;
          failures = 0;
          // A replayed dead letter is not news: the feed had it when it was published.
          if (replayTarget(msg.headers) !== undefined) continue;
          handToTail(
            () => decodeEnvelope(msg.data, ctx.codec),
            ctx.handler,
            () => ctx.refused(),
            (err) =>
              ctx.logger.warn({ topic: ctx.topic, err: toErrorInfo(err).message }, 'a tail handler threw'),
          );
        }
        if (this.closed) break;
        ctx.logger.warn({ topic: ctx.topic, nextSeq: this.nextSeq }, 'nats tail ended: opening it again');
      } catch (err) {
        if (this.closed) break;
        ctx.logger.warn(
          { topic: ctx.topic, nextSeq: this.nextSeq, err: toErrorInfo(err).message },
          'nats tail failed: opening it again',
        );
      }
      failures += 1;
      void this.current.consumer.delete().catch(() => false);
      await this.pause(failures);
      if (this.closed) break;
      try {
        this.current = await ctx.open(this.nextSeq);
      } catch (err) {
        // The ended feed stays current: the next pass finds it done and tries again, later.
        ctx.logger.warn({ topic: ctx.topic, err: toErrorInfo(err).message }, 'opening a nats tail failed');
      }
      // Closed while it opened: the new consumer goes too.
      if (this.closed) {
        await this.current.messages.close();
        await this.current.consumer.delete().catch(() => false);
      }
    }
  }

  private pause(failures: number): Promise<void> {
    const ms = Math.min(REOPEN_BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 10), REOPEN_BACKOFF_MAX_MS);
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }
}
