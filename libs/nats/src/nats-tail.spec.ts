import { encodeEnvelope } from '@multiagents/contracts';
import { silentLogger } from '@multiagents/core';
import { makeEnvelope } from '@multiagents/testing';
import type { ConsumerMessages } from '@nats-io/jetstream';
import { NatsTail, type NatsTailContext, type OpenedTail } from './nats-tail';

/** A consumer's feed the test drives: `push` hands a message over, `end` ends the feed as the client does when it gives up. */
class FakeFeed implements OpenedTail {
  readonly deleted: boolean[] = [];
  closed = false;
  private readonly queue: { seq: number; data: Uint8Array }[] = [];
  private ended = false;
  private wake: (() => void) | undefined;
  readonly consumer = {
    delete: async (): Promise<boolean> => {
      this.deleted.push(true);
      return true;
    },
  };
  readonly messages: ConsumerMessages;

  constructor(readonly startSeq: number) {
    this.messages = messagesOf(this);
  }

  /** The next message, or undefined once the feed has ended or closed. */
  async next(): Promise<{ seq: number; data: Uint8Array } | undefined> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) return next;
      if (this.ended || this.closed) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
  }

  push(seq: number): void {
    this.queue.push({ seq, data: encodeEnvelope(makeEnvelope({ payload: { n: seq } })) });
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }
}

function messagesOf(feed: FakeFeed): ConsumerMessages {
  return {
    async *[Symbol.asyncIterator]() {
      for (let msg = await feed.next(); msg !== undefined; msg = await feed.next()) yield msg;
    },
    close: () => feed.close(),
  } as unknown as ConsumerMessages;
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}

describe('NatsTail', () => {
  it('opens a new consumer after the last message it handed over when the client gives up on one', async () => {
    const feeds: FakeFeed[] = [new FakeFeed(5)];
    const seen: number[] = [];
    const ctx: NatsTailContext = {
      topic: 'events',
      open: async (startSeq) => {
        const feed = new FakeFeed(startSeq);
        feeds.push(feed);
        return feed;
      },
      handler: (e) => seen.push((e.payload as { n: number }).n),
      codec: undefined,
      logger: silentLogger,
      refused: () => undefined,
      detach: () => undefined,
    };
    const tail = new NatsTail(ctx, feeds[0] as FakeFeed, 5);
    (feeds[0] as FakeFeed).push(5);
    (feeds[0] as FakeFeed).push(6);
    await until(() => seen.length === 2);
    (feeds[0] as FakeFeed).end();
    await until(() => feeds.length === 2);
    expect((feeds[1] as FakeFeed).startSeq).toBe(7);
    expect((feeds[0] as FakeFeed).deleted.length).toBeGreaterThan(0);
    (feeds[1] as FakeFeed).push(7);
    await until(() => seen.length === 3);
    expect(seen).toEqual([5, 6, 7]);

    await tail.close();
    expect((feeds[1] as FakeFeed).closed).toBe(true);
    expect((feeds[1] as FakeFeed).deleted.length).toBeGreaterThan(0);
    expect(feeds).toHaveLength(2);
  });

  it('keeps trying to open a feed that fails, and stops when closed', async () => {
    const first = new FakeFeed(1);
    let opens = 0;
    const ctx: NatsTailContext = {
      topic: 'events',
      open: async () => {
        opens += 1;
        throw new Error('no JetStream');
      },
      handler: () => undefined,
      codec: undefined,
      logger: silentLogger,
      refused: () => undefined,
      detach: () => undefined,
    };
    const tail = new NatsTail(ctx, first, 1);
    first.end();
    await until(() => opens >= 2);
    // close() waits for the loop to end: nothing opens a feed after it.
    await tail.close();
    const after = opens;
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(opens).toBe(after);
  });
});
