import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';

/** What JetStream answers to a stored publish. */
export interface PublishAck {
  readonly stream: string;
  readonly seq: number;
  /** The stream already held a message with this `Nats-Msg-Id`: nothing was stored. */
  readonly duplicate: boolean;
}

/** No PubAck came in time, or the connection dropped with the publish unanswered (retry is safe with a msg id). */
export class PublishTimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/** Nobody listens on the subject: no stream captures it, or JetStream is (re)starting. */
export class NoRespondersError extends Error {
  override readonly name = 'NoRespondersError';
}

interface Pending {
  readonly resolve: (ack: PublishAck) => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
  readonly subject: string;
}

const decoder = new TextDecoder();

/**
 * JetStream publishes with their acks collected on one wildcard inbox subscription, instead of
 * the client's request machinery: the client builds two Error objects (stack traces included)
 * and a timer per request, which measured as a fifth of the CPU of a step. Every publish is a
 * plain `PUB` with a reply subject `<inbox>.<n>`; acks are matched by `n`; one interval expires
 * the unanswered ones (the timeout is the same for all, so they expire in the order they were sent).
 */
export class JetStreamPublisher {
  private readonly inbox = createInbox();
  private readonly pending = new Map<number, Pending>();
  private readonly subscription: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;

  constructor(
    private readonly connection: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    this.subscription = connection.subscribe(`${this.inbox}.*`, {
      callback: (err, msg) => {
        if (err === null) this.answer(msg);
      },
    });
    this.sweeper = setInterval(() => this.expire(), Math.max(10, Math.min(250, timeoutMs / 4)));
    this.sweeper.unref();
  }

  /** Publishes `data` to `subject` and resolves with its PubAck (rejects with the API error, if any). */
  publish(subject: string, data: Uint8Array, headers?: MsgHdrs): Promise<PublishAck> {
    const id = (this.next += 1);
    return new Promise<PublishAck>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + this.timeoutMs, subject });
      try {
        this.connection.publish(subject, data, {
          reply: `${this.inbox}.${id}`,
          ...(headers === undefined ? {} : { headers }),
        });
      } catch (err) {
        this.pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /**
   * Fails every publish still waiting for its ack (the connection dropped: the client discards
   * what it had buffered, and acks in flight are lost). They may or may not have been stored.
   */
  failAll(why: string): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(new PublishTimeoutError(`${why} (publishing to ${p.subject})`));
  }

  close(): void {
    clearInterval(this.sweeper);
    this.failAll('closed');
    try {
      this.subscription.unsubscribe();
    } catch {
      // The connection is already closed.
    }
  }

  private answer(msg: Msg): void {
    const id = Number(msg.subject.slice(this.inbox.length + 1));
    const pending = this.pending.get(id);
    if (pending === undefined) return;
    this.pending.delete(id);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      pending.reject(new NoRespondersError(`no responders on ${pending.subject}`));
      return;
    }
    try {
      const body = JSON.parse(decoder.decode(msg.data)) as {
        stream?: string;
        seq?: number;
        duplicate?: boolean;
        error?: ApiError;
      };
      if (body.error !== undefined) pending.reject(new JetStreamApiError(body.error));
      else
        pending.resolve({
          stream: body.stream ?? '',
          seq: body.seq ?? 0,
          duplicate: body.duplicate === true,
        });
    } catch (err) {
      pending.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, pending] of this.pending) {
      if (pending.deadline > now) break;
      this.pending.delete(id);
      pending.reject(
        new PublishTimeoutError(`no ack within ${this.timeoutMs} ms (publishing to ${pending.subject})`),
      );
    }
  }
}
