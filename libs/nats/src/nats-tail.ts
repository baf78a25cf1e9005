import { decodeEnvelope, toErrorInfo, type EnvelopeCodecOptions } from '@multiagents/contracts';
import { handToTail, type Logger, type Subscription, type TailHandler } from '@multiagents/core';
import type { ConsumerMessages } from '@nats-io/jetstream';

/** What a {@link NatsTail} needs from its bus. */
export interface NatsTailContext {
  readonly topic: string;
  /** An ordered consumer's messages (no acks; recreated by the client after a gap). */
  readonly messages: ConsumerMessages;
  readonly handler: TailHandler;
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly logger: Logger;
  /** Counts a message refused before parsing (unsigned, forged, malformed). */
  refused(): void;
  /** Called once, when the feed has closed. */
  detach(tail: NatsTail): void;
}

/**
 * A live feed of one topic ({@link EventBus.tail}) on JetStream: an ordered consumer, which the
 * server keeps in memory only, with no acknowledgements, deletes once the client has stopped
 * pulling for a while, and which the client recreates after the last message it saw when the
 * connection drops or a message goes missing.
 */
export class NatsTail implements Subscription {
  private closed = false;
  private readonly loop: Promise<void>;

  constructor(private readonly ctx: NatsTailContext) {
    this.loop = this.run();
  }

  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.ctx.messages.close();
    }
    await this.loop;
    this.ctx.detach(this);
  }

  private async run(): Promise<void> {
    const { ctx } = this;
    try {
      for await (const msg of ctx.messages) {
        if (this.closed) break;
        handToTail(
          () => decodeEnvelope(msg.data, ctx.codec),
          ctx.handler,
          () => ctx.refused(),
          (err) =>
            ctx.logger.warn({ topic: ctx.topic, err: toErrorInfo(err).message }, 'a tail handler threw'),
        );
      }
    } catch (err) {
      if (!this.closed)
        ctx.logger.warn({ topic: ctx.topic, err: toErrorInfo(err).message }, 'nats tail stopped');
    }
  }
}
