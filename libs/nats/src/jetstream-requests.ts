import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import type { TurnWrites } from './turn-writes';

/** What JetStream answers to a stored publish. */
export interface PublishAck {
  readonly stream: string;
  readonly seq: number;
  /** The stream already held a message with this `Nats-Msg-Id`: nothing was stored. */
  readonly duplicate: boolean;
}

/** A message of a stream, as a direct get answers it. */
export interface DirectMessage {
  readonly seq: number;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
  /** When the server stored it (ms since the epoch). */
  readonly storedAt: number;
}

/** What a direct get asks for: the last message of a subject, or the first at or after `seq`. */
export type DirectQuery =
  { readonly last_by_subj: string } | { readonly seq: number; readonly next_by_subj: string };

/** No answer came in time, or the connection dropped with the request unanswered (retry is safe with a msg id). */
export class RequestTimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/** Nobody listens on the subject: no stream captures it, or JetStream is (re)starting. */
export class NoRespondersError extends Error {
  override readonly name = 'NoRespondersError';
}

/** A direct get the server answered with an error status (not a "no message" 404). */
export class DirectGetError extends Error {
  override readonly name = 'DirectGetError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

interface Pending {
  readonly resolve: (msg: Msg) => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
  readonly subject: string;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
/** The status of a direct get that found no message. */
const NOT_FOUND = 404;

/**
 * JetStream publishes and direct gets with their answers collected on one wildcard inbox
 * subscription, instead of the client's request machinery: the client builds two Error objects
 * (stack traces included) and a timer per request, which measured as a fifth of the CPU of a
 * step. Every request is a plain `PUB` with a reply subject `<inbox>.<n>`; answers are matched by
 * `n`; one interval expires the unanswered ones (the timeout is the same for all, so they expire
 * in the order they were sent). Requests leave with the turn's other writes ({@link TurnWrites}).
 */
export class JetStreamRequests {
  private readonly inbox = createInbox();
  private readonly pending = new Map<number, Pending>();
  private readonly subscription: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;

  constructor(
    private readonly connection: NatsConnection,
    private readonly timeoutMs: number,
    private readonly writes: TurnWrites,
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
  async publish(subject: string, data: Uint8Array, headers?: MsgHdrs): Promise<PublishAck> {
    const msg = await this.request(subject, data, headers);
    const body = JSON.parse(decoder.decode(msg.data)) as {
      stream?: string;
      seq?: number;
      duplicate?: boolean;
      error?: ApiError;
    };
    if (body.error !== undefined) throw new JetStreamApiError(body.error);
    return { stream: body.stream ?? '', seq: body.seq ?? 0, duplicate: body.duplicate === true };
  }

  /**
   * One message of `stream` by a direct get (any replica may answer it), or null when there is
   * none. The stream must allow direct gets (`allow_direct`).
   */
  async directGet(stream: string, query: DirectQuery): Promise<DirectMessage | null> {
    // By the subject in the request's own subject, as the client does: permissions can then
    // limit which keys a user reads.
    const msg =
      'last_by_subj' in query
        ? await this.request(`$JS.API.DIRECT.GET.${stream}.${query.last_by_subj}`, EMPTY)
        : await this.request(`$JS.API.DIRECT.GET.${stream}`, encoder.encode(JSON.stringify(query)));
    const headers = msg.headers;
    const status = headers?.code ?? 0;
    if (status === NOT_FOUND) return null;
    if (headers === undefined || status !== 0) {
      throw new DirectGetError(
        `direct get from ${stream} refused: ${status} ${headers?.description ?? 'no headers'}`,
        status,
      );
    }
    return {
      seq: Number(headers.last('Nats-Sequence')),
      data: msg.data,
      headers,
      storedAt: Date.parse(headers.last('Nats-Time-Stamp')),
    };
  }

  /**
   * Fails every request still waiting for its answer (the connection dropped: the client
   * discards what it had buffered, and answers in flight are lost). Publishes among them may or
   * may not have been stored.
   */
  failAll(why: string): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(new RequestTimeoutError(`${why} (request to ${p.subject})`));
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

  private request(subject: string, data: Uint8Array, headers?: MsgHdrs): Promise<Msg> {
    const id = (this.next += 1);
    return new Promise<Msg>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + this.timeoutMs, subject });
      // Sent with the rest of this turn's writes; not at all if it failed or expired meanwhile.
      this.writes.add(() => {
        if (!this.pending.has(id)) return;
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
    });
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
    pending.resolve(msg);
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, pending] of this.pending) {
      if (pending.deadline > now) break;
      this.pending.delete(id);
      pending.reject(
        new RequestTimeoutError(`no answer within ${this.timeoutMs} ms (request to ${pending.subject})`),
      );
    }
  }
}
