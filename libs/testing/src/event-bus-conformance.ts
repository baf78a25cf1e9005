/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import { PoisonMessageError, Topics, decodeEnvelope, type Envelope } from '@multiagents/contracts';
import type {
  DeadLetter,
  Delivery,
  DeliveryHandler,
  EventBus,
  SubscribeOptions,
  Subscription,
  TopicStats,
} from '@multiagents/core';
import { makeEnvelope } from './make-envelope';
import { sleep } from './sleep';
import { waitFor } from './wait-for';

/** What an adapter's factory hands to {@link eventBusConformance}: a fresh, empty bus per test. */
export interface EventBusFixture {
  readonly bus: EventBus;
  /** Appends bytes to a topic exactly as given (to inject malformed messages). */
  readonly publishRaw?: (topic: string, bytes: Uint8Array) => Promise<void>;
  /** Runs after `bus.close()` (stop a private server, drop a key prefix…). */
  readonly cleanup?: () => Promise<void>;
}

/** Options of {@link eventBusConformance}. */
export interface EventBusConformanceOptions {
  /**
   * Skip the malformed-message test. Without it the fixture must provide `publishRaw`: a missing
   * one fails loudly instead of silently passing.
   */
  readonly skipRawPublish?: boolean;
  /**
   * Skip the topic-stats test (a bus without `topicStats`). Without it a missing `topicStats`
   * fails the test loudly.
   */
  readonly skipTopicStats?: boolean;
  /**
   * The bus cannot count dead letters ever added (`deadLettersAdded` undefined, as the port allows):
   * the test then requires it to be undefined instead of exact.
   */
  readonly noDeadLettersAdded?: boolean;
}

/** Bytes that are neither JSON nor a protobuf message (0xff… is an invalid tag/wire type). */
const MALFORMED_BYTES = Uint8Array.of(
  0xff,
  0xff,
  0xff,
  0xff,
  0x0f,
  ...new TextEncoder().encode('not an envelope'),
);

/** Timings shared by the tests: redelivery after a failure is quick; nothing times out by accident. */
const QUICK = { retryDelayMs: 10, visibilityTimeoutMs: 10_000 } as const;

/**
 * Upper bound for anything the suite waits for: brokers poll and a loaded CI machine stalls, so
 * be generous but bounded (within Jest's 30 s per test).
 */
const WAIT = { timeoutMs: 20_000 } as const;

interface Gate {
  readonly promise: Promise<void>;
  release(): void;
}

function gate(): Gate {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}

/**
 * The EventBus contract (SPEC §4) as Jest tests, run by every adapter against a fresh bus from
 * `factory`. Timings are real (brokers redeliver on real time) but short, and every wait is
 * bounded. Each test uses its own random topic names, so a shared server is fine too.
 *
 * @example
 * eventBusConformance('memory', async () => {
 *   const bus = new MemoryEventBus();
 *   return { bus, publishRaw: (topic, bytes) => bus.publishRaw(topic, bytes) };
 * });
 */
export function eventBusConformance(
  name: string,
  factory: () => Promise<EventBusFixture>,
  options: EventBusConformanceOptions = {},
): void {
  describe(`EventBus conformance: ${name}`, () => {
    let fixture: EventBusFixture;
    let bus: EventBus;
    let subscriptions: Subscription[] = [];
    // Handlers parked on a gate are released before teardown, or close() would wait for them forever.
    let gates: Gate[] = [];

    beforeEach(async () => {
      fixture = await factory();
      bus = fixture.bus;
      subscriptions = [];
      gates = [];
    });

    afterEach(async () => {
      for (const g of gates) g.release();
      await Promise.all(subscriptions.map((s) => s.close()));
      await bus.close();
      await fixture.cleanup?.();
    });

    const newTopic = (): string => `conf-${Math.random().toString(36).slice(2, 10)}`;
    const newGate = (): Gate => {
      const g = gate();
      gates.push(g);
      return g;
    };
    const subscribe = async (
      topic: string,
      subscribeOptions: SubscribeOptions,
      handler: DeliveryHandler,
    ): Promise<Subscription> => {
      const subscription = await bus.subscribe(topic, subscribeOptions, handler);
      subscriptions.push(subscription);
      return subscription;
    };
    const envelopes = (n: number): Envelope[] =>
      Array.from({ length: n }, (_, i) => makeEnvelope({ payload: { i } }));
    const pendingIs = (topic: string, group: string, n: number): Promise<void> =>
      waitFor(async () => (await bus.pendingCount(topic, group)) === n, {
        ...WAIT,
        description: `pendingCount(${topic}, ${group}) === ${n}`,
      });

    it('delivers the messages of a topic in publish order to a single consumer, envelopes intact', async () => {
      const topic = newTopic();
      const sent = envelopes(30);
      await bus.publish(topic, sent.slice(0, 10));
      const got: Delivery[] = [];
      await subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 1, ...QUICK }, async (d) => {
        got.push(d);
      });
      await bus.publish(topic, sent.slice(10, 20));
      await bus.publish(topic, sent.slice(20));
      await waitFor(() => got.length >= 30, { ...WAIT, description: '30 deliveries' });

      expect(got.map((d) => d.envelope)).toEqual(sent);
      expect(got.every((d) => d.deliveryCount === 1 && d.topic === topic)).toBe(true);
      expect(new Set(got.map((d) => d.id)).size).toBe(30);
      await pendingIs(topic, 'g', 0);
    });

    it('gives every group every message (fan-out across groups)', async () => {
      const topic = newTopic();
      const sent = envelopes(20);
      const byGroup: Record<string, string[]> = { a: [], b: [] };
      for (const group of ['a', 'b']) {
        await subscribe(topic, { group, consumer: 'c1', ...QUICK }, async (d) => {
          byGroup[group]?.push(d.envelope.id);
        });
      }
      await bus.publish(topic, sent);
      await waitFor(() => byGroup['a']?.length === 20 && byGroup['b']?.length === 20, WAIT);

      const ids = sent.map((e) => e.id).sort();
      expect([...(byGroup['a'] ?? [])].sort()).toEqual(ids);
      expect([...(byGroup['b'] ?? [])].sort()).toEqual(ids);
    });

    it('shares a group between competing consumers: each message is handled by exactly one', async () => {
      const topic = newTopic();
      const sent = envelopes(40);
      const handledBy: Record<string, string[]> = { c1: [], c2: [] };
      for (const consumer of ['c1', 'c2']) {
        await subscribe(topic, { group: 'g', consumer, concurrency: 1, ...QUICK }, async (d) => {
          handledBy[consumer]?.push(d.envelope.id);
          await sleep(2);
        });
      }
      await bus.publish(topic, sent);
      const all = (): string[] => [...(handledBy['c1'] ?? []), ...(handledBy['c2'] ?? [])];
      await waitFor(() => all().length >= 40, WAIT);
      await pendingIs(topic, 'g', 0);

      expect(all().sort()).toEqual(sent.map((e) => e.id).sort());
      // Both took a share: a busy consumer (concurrency 1) must not hoard the group's messages.
      expect(handledBy['c1']?.length).toBeGreaterThan(0);
      expect(handledBy['c2']?.length).toBeGreaterThan(0);
    });

    it('redelivers a message whose handler threw, with deliveryCount 2 (at-least-once)', async () => {
      const topic = newTopic();
      const [sent] = envelopes(1) as [Envelope];
      const seen: Array<[string, number]> = [];
      await subscribe(topic, { group: 'g', consumer: 'c1', ...QUICK }, async (d) => {
        seen.push([d.envelope.id, d.deliveryCount]);
        if (d.deliveryCount === 1) throw new Error('transient failure');
      });
      await bus.publish(topic, [sent]);
      await waitFor(() => seen.length >= 2, WAIT);
      await pendingIs(topic, 'g', 0);

      expect(seen).toEqual([
        [sent.id, 1],
        [sent.id, 2],
      ]);
      expect(await bus.listDeadLetters(topic)).toEqual([]);
    });

    it("lets a thrown error's retryAfterMs override retryDelayMs", async () => {
      const topic = newTopic();
      const counts: number[] = [];
      await subscribe(topic, { group: 'g', consumer: 'c1', retryDelayMs: 60_000 }, async (d) => {
        counts.push(d.deliveryCount);
        if (d.deliveryCount === 1) throw Object.assign(new Error('rate limited'), { retryAfterMs: 20 });
      });
      await bus.publish(topic, envelopes(1));
      await waitFor(() => counts.length >= 2, { ...WAIT, description: 'redelivery after retryAfterMs' });
      expect(counts).toEqual([1, 2]);
    });

    it('redelivers a message whose handler hangs past the visibility timeout, and ignores the late ack', async () => {
      const topic = newTopic();
      const hang = newGate();
      const deliveries: Array<{ count: number; at: number }> = [];
      await subscribe(
        topic,
        { group: 'g', consumer: 'c1', visibilityTimeoutMs: 200, retryDelayMs: 10 },
        async (d) => {
          deliveries.push({ count: d.deliveryCount, at: Date.now() });
          if (d.deliveryCount === 1) await hang.promise;
        },
      );
      await bus.publish(topic, envelopes(1));
      await waitFor(() => deliveries.length >= 2, {
        ...WAIT,
        description: 'redelivery after visibility timeout',
      });
      await pendingIs(topic, 'g', 0);
      hang.release(); // the first handler finishes late: its ack must change nothing
      await sleep(300);

      expect(deliveries.map((d) => d.count)).toEqual([1, 2]);
      const [first, second] = deliveries as [{ count: number; at: number }, { count: number; at: number }];
      expect(second.at - first.at).toBeGreaterThanOrEqual(150);
      expect(await bus.pendingCount(topic, 'g')).toBe(0);
      expect(await bus.listDeadLetters(topic)).toEqual([]);
    });

    it('does not redeliver while the handler keeps calling extend()', async () => {
      const topic = newTopic();
      const counts: number[] = [];
      let done = false;
      await subscribe(
        topic,
        { group: 'g', consumer: 'c1', visibilityTimeoutMs: 1_000, retryDelayMs: 10 },
        async (d) => {
          counts.push(d.deliveryCount);
          // 1.5 s in all, past the 1 s timeout; extending every 50 ms, only a stall of 950 ms
          // (not a slow CI's) could let the message go.
          for (let i = 0; i < 30; i += 1) {
            await sleep(50);
            await d.extend();
          }
          done = true;
        },
      );
      await bus.publish(topic, envelopes(1));
      await waitFor(() => done, { ...WAIT, description: 'long handler to finish' });
      await pendingIs(topic, 'g', 0);
      // Past another visibility timeout: a lease that had lapsed on the way would show by now.
      await sleep(1_100);
      expect(counts).toEqual([1]);
    });

    it('dead-letters a message that failed maxDeliveries times, with the last error', async () => {
      const topic = newTopic();
      const [sent] = envelopes(1) as [Envelope];
      let calls = 0;
      await subscribe(topic, { group: 'g', consumer: 'c1', maxDeliveries: 3, ...QUICK }, async (d) => {
        calls += 1;
        throw new Error(`boom on delivery ${d.deliveryCount}`);
      });
      await bus.publish(topic, [sent]);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 1, {
        ...WAIT,
        description: 'a dead letter',
      });
      await pendingIs(topic, 'g', 0);
      await sleep(50);

      const [dead] = (await bus.listDeadLetters(topic)) as [DeadLetter];
      expect(calls).toBe(3);
      expect(dead).toMatchObject({ topic, group: 'g', deliveryCount: 3 });
      expect(dead.error).toContain('boom on delivery 3');
      expect(dead.envelope).toEqual(sent);
      expect(decodeEnvelope(dead.data)).toEqual(sent);
      expect(typeof dead.id).toBe('string');
      expect(dead.deadAt).toBeGreaterThan(0);
    });

    it('dead-letters a PoisonMessageError at once, without blocking the messages behind it', async () => {
      const topic = newTopic();
      const [poison, good] = envelopes(2) as [Envelope, Envelope];
      const handled: Array<[string, number]> = [];
      await subscribe(
        topic,
        { group: 'g', consumer: 'c1', concurrency: 1, maxDeliveries: 5, ...QUICK },
        async (d) => {
          handled.push([d.envelope.id, d.deliveryCount]);
          if (d.envelope.id === poison.id) throw new PoisonMessageError('cannot parse order');
        },
      );
      await bus.publish(topic, [poison, good]);
      await waitFor(() => handled.some(([id]) => id === good.id), WAIT);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 1, WAIT);
      await sleep(50);

      expect(handled).toEqual([
        [poison.id, 1],
        [good.id, 1],
      ]);
      const dead = await bus.listDeadLetters(topic);
      expect(dead[0]).toMatchObject({ topic, group: 'g', deliveryCount: 1 });
      expect(dead[0]?.error).toContain('cannot parse order');
      await pendingIs(topic, 'g', 0);
    });

    it('dead-letters an undecodable message with a reason and still handles the valid ones behind it', async () => {
      if (options.skipRawPublish) return;
      const publishRaw = fixture.publishRaw;
      if (!publishRaw) throw new Error('fixture.publishRaw is required unless skipRawPublish is set');
      const topic = newTopic();
      const [before, after] = envelopes(2) as [Envelope, Envelope];
      const handled: string[] = [];
      await subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 1, ...QUICK }, async (d) => {
        handled.push(d.envelope.id);
      });
      await bus.publish(topic, [before]);
      await publishRaw(topic, MALFORMED_BYTES);
      await bus.publish(topic, [after]);
      await waitFor(() => handled.length >= 2, WAIT);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 1, WAIT);
      await pendingIs(topic, 'g', 0);

      expect(handled).toEqual([before.id, after.id]);
      const [dead] = await bus.listDeadLetters(topic);
      expect(dead?.group).toBe('g');
      expect(dead?.envelope).toBeUndefined();
      expect(Array.from(dead?.data ?? [])).toEqual(Array.from(MALFORMED_BYTES));
      expect(dead?.error.length).toBeGreaterThan(0);
    });

    it('replays a dead letter: handled again with a fresh delivery count, and removed from the list', async () => {
      const topic = newTopic();
      const [sent] = envelopes(1) as [Envelope];
      const seen: number[] = [];
      await subscribe(topic, { group: 'g', consumer: 'c1', ...QUICK }, async (d) => {
        seen.push(d.deliveryCount);
        if (seen.length === 1) throw new PoisonMessageError('not yet');
      });
      await bus.publish(topic, [sent]);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 1, WAIT);
      const [dead] = await bus.listDeadLetters(topic);

      expect(await bus.replayDeadLetter(topic, dead?.id ?? '')).toBe(true);
      await waitFor(() => seen.length >= 2, WAIT);
      await pendingIs(topic, 'g', 0);

      expect(seen).toEqual([1, 1]);
      expect(await bus.listDeadLetters(topic)).toEqual([]);
      expect(await bus.replayDeadLetter(topic, dead?.id ?? '')).toBe(false);
      expect(await bus.replayDeadLetter(topic, 'no-such-dead-letter')).toBe(false);
    });

    it('replays a dead letter to the group that dead-lettered it only, not to other groups nor to tails', async () => {
      // The events topic, as the monitor and the metrics collector share it (partitioned where the
      // bus partitions): one run, so every message below is in one partition, in publish order.
      const topic = Topics.events;
      const [sent, later] = [makeEnvelope({ txId: 'replay-run' }), makeEnvelope({ txId: 'replay-run' })];
      const g1: Array<[string, number]> = [];
      const g2: Array<[string, number]> = [];
      await subscribe(topic, { group: 'g1', consumer: 'c1', concurrency: 1, ...QUICK }, async (d) => {
        g1.push([d.envelope.id, d.deliveryCount]);
        if (g1.length === 1) throw new PoisonMessageError('not yet');
      });
      await subscribe(topic, { group: 'g2', consumer: 'c1', concurrency: 1, ...QUICK }, async (d) => {
        g2.push([d.envelope.id, d.deliveryCount]);
      });
      await bus.publish(topic, [sent]);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 1, WAIT);
      await waitFor(() => g2.length === 1, { ...WAIT, description: 'g2 handled the message' });
      const [dead] = await bus.listDeadLetters(topic);
      expect(dead?.group).toBe('g1');
      const tailed: string[] = [];
      subscriptions.push(await bus.tail(topic, (envelope) => tailed.push(envelope.id)));

      expect(await bus.replayDeadLetter(topic, dead?.id ?? '')).toBe(true);
      await waitFor(() => g1.length === 2, { ...WAIT, description: 'g1 handled the replay' });
      // A later message marks the end: g2 and the tail are given the topic's messages in order, so
      // once they have this one, they have been given the replay too, if it was theirs.
      await bus.publish(topic, [later]);
      await waitFor(() => g1.length === 3 && g2.length >= 2 && tailed.includes(later.id), {
        ...WAIT,
        description: 'every group and the tail handled the later message',
      });
      await pendingIs(topic, 'g1', 0);
      await pendingIs(topic, 'g2', 0);

      // One assertion, so a failure shows every consumer that got the replay.
      expect({ g1, g2, tailed }).toEqual({
        g1: [
          [sent.id, 1],
          [sent.id, 1],
          [later.id, 1],
        ],
        g2: [
          [sent.id, 1],
          [later.id, 1],
        ],
        tailed: [later.id],
      });
      expect(await bus.listDeadLetters(topic)).toEqual([]);
    });

    it('discards exactly one dead letter for good: off the list, the others kept, not replayable', async () => {
      const topic = newTopic();
      const sent = envelopes(3);
      const handled: string[] = [];
      await subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 1, ...QUICK }, async (d) => {
        handled.push(d.envelope.id);
        throw new PoisonMessageError(`poison ${d.envelope.id}`);
      });
      await bus.publish(topic, sent);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 3, WAIT);
      const [first, middle, last] = (await bus.listDeadLetters(topic)) as [
        DeadLetter,
        DeadLetter,
        DeadLetter,
      ];

      expect(await bus.discardDeadLetter(topic, middle.id)).toBe(true);
      expect((await bus.listDeadLetters(topic)).map((d) => d.id)).toEqual([first.id, last.id]);
      expect(await bus.discardDeadLetter(topic, middle.id)).toBe(false);
      expect(await bus.replayDeadLetter(topic, middle.id)).toBe(false);
      expect(await bus.discardDeadLetter(topic, 'no-such-dead-letter')).toBe(false);
      // A letter is discarded through its own topic only.
      expect(await bus.discardDeadLetter(newTopic(), first.id)).toBe(false);
      expect((await bus.listDeadLetters(topic)).map((d) => d.id)).toEqual([first.id, last.id]);
      // The others are still whole: one replays (handled again, dead again), the last discards.
      expect(await bus.replayDeadLetter(topic, first.id)).toBe(true);
      await waitFor(() => handled.length === 4, WAIT);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 2, WAIT);
      expect(handled[3]).toBe(first.envelope?.id);
      expect(await bus.discardDeadLetter(topic, last.id)).toBe(true);
      const left = await bus.listDeadLetters(topic);
      expect(left.map((d) => d.envelope?.id)).toEqual([first.envelope?.id]);
      expect(handled.filter((id) => id === middle.envelope?.id)).toHaveLength(1);
      await pendingIs(topic, 'g', 0);
    });

    it('lists dead letters oldest first, up to the limit', async () => {
      const topic = newTopic();
      const sent = envelopes(3);
      const order: string[] = [];
      await subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 1, ...QUICK }, async (d) => {
        order.push(d.envelope.id);
        throw new PoisonMessageError(`poison ${d.envelope.id}`);
      });
      await bus.publish(topic, sent);
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === 3, WAIT);

      expect((await bus.listDeadLetters(topic)).map((d) => d.envelope?.id)).toEqual(order);
      expect((await bus.listDeadLetters(topic, 2)).map((d) => d.envelope?.id)).toEqual(order.slice(0, 2));
    });

    it('counts delivered-but-unacknowledged messages as pending, and 0 once all are acked', async () => {
      const topic = newTopic();
      const hold = newGate();
      let started = 0;
      await subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 3, ...QUICK }, async () => {
        started += 1;
        await hold.promise;
      });
      await bus.publish(topic, envelopes(3));
      await waitFor(() => started === 3, WAIT);

      expect(await bus.pendingCount(topic, 'g')).toBe(3);
      expect(await bus.pendingCount(topic, 'no-such-group')).toBe(0);
      hold.release();
      await pendingIs(topic, 'g', 0);
    });

    it('reports topic stats: pending and lag per group, dead letters held and ever added', async () => {
      if (options.skipTopicStats) return;
      if (!bus.topicStats) throw new Error('bus.topicStats is required unless skipTopicStats is set');
      const stats = async (topic: string): Promise<TopicStats> => {
        const got = (await bus.topicStats?.(topic)) as TopicStats;
        return { ...got, groups: [...got.groups].sort((a, b) => (a.group < b.group ? -1 : 1)) };
      };
      const statsAre = async (topic: string, expected: TopicStats): Promise<void> => {
        let last: TopicStats | undefined;
        await waitFor(
          async () => {
            last = await stats(topic);
            return JSON.stringify(last) === JSON.stringify(expected);
          },
          { ...WAIT, description: `topicStats(${topic})` },
        ).catch(() => undefined);
        expect(last).toEqual(expected);
      };
      const topic = newTopic();
      expect((await stats(topic)).deadLetters).toBe(0);
      // 'idle' exists but reads nothing: everything published after is its lag.
      await (await subscribe(topic, { group: 'idle', consumer: 'c1', ...QUICK }, async () => {})).close();
      const hold = newGate();
      const [poison, ...rest] = envelopes(4) as [Envelope, ...Envelope[]];
      let poisoned = false;
      // 'busy' dead-letters the poison once, then holds two messages: pending 2, and one not delivered.
      await subscribe(topic, { group: 'busy', consumer: 'c1', concurrency: 2, ...QUICK }, async (d) => {
        if (d.envelope.id === poison.id && !poisoned) {
          poisoned = true;
          throw new PoisonMessageError('bad');
        }
        await hold.promise;
      });
      await bus.publish(topic, [poison, ...rest]);
      await statsAre(topic, {
        topic,
        groups: [
          { group: 'busy', pending: 2, lag: 1 },
          { group: 'idle', pending: 0, lag: 4 },
        ],
        deadLetters: 1,
        ...(options.noDeadLettersAdded ? {} : { deadLettersAdded: 1 }),
      });
      hold.release();
      const [dead] = await bus.listDeadLetters(topic);
      expect(await bus.replayDeadLetter(topic, dead?.id ?? '')).toBe(true);
      // The replay is one more message of the topic: handled by 'busy', the group it is for, and
      // lag for 'idle' until it reads (and passes over) it. The dead letter is gone, added once.
      await statsAre(topic, {
        topic,
        groups: [
          { group: 'busy', pending: 0, lag: 0 },
          { group: 'idle', pending: 0, lag: 5 },
        ],
        deadLetters: 0,
        ...(options.noDeadLettersAdded ? {} : { deadLettersAdded: 1 }),
      });
    });

    it('never runs more handlers at once than the concurrency option allows', async () => {
      const topic = newTopic();
      let inFlight = 0;
      let maxInFlight = 0;
      let handled = 0;
      await subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 2, ...QUICK }, async () => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await sleep(10);
        inFlight -= 1;
        handled += 1;
      });
      await bus.publish(topic, envelopes(10));
      await waitFor(() => handled === 10, WAIT);
      expect(maxInFlight).toBe(2);
    });

    it('subscription.close() waits for handlers in flight, then delivers nothing more; the group resumes later', async () => {
      const topic = newTopic();
      const [first, second] = envelopes(2) as [Envelope, Envelope];
      let started = false;
      let finished = false;
      const handled: string[] = [];
      const subscription = await subscribe(topic, { group: 'g', consumer: 'c1', ...QUICK }, async (d) => {
        started = true;
        await sleep(150);
        handled.push(d.envelope.id);
        finished = true;
      });
      await bus.publish(topic, [first]);
      await waitFor(() => started, WAIT);
      await subscription.close();
      expect(finished).toBe(true);
      await subscription.close(); // closing twice is harmless

      await bus.publish(topic, [second]);
      await sleep(150);
      expect(handled).toEqual([first.id]);
      expect(await bus.pendingCount(topic, 'g')).toBe(0);

      // The group is durable: a new consumer picks up exactly what arrived while nobody listened.
      const later: string[] = [];
      await subscribe(topic, { group: 'g', consumer: 'c2', ...QUICK }, async (d) => {
        later.push(d.envelope.id);
      });
      await waitFor(() => later.length >= 1, WAIT);
      await sleep(50);
      expect(later).toEqual([second.id]);
    });

    it('bus.close() waits for handlers in flight and can be called twice', async () => {
      const topic = newTopic();
      let started = false;
      let finished = false;
      await subscribe(topic, { group: 'g', consumer: 'c1', ...QUICK }, async () => {
        started = true;
        await sleep(100);
        finished = true;
      });
      await bus.publish(topic, envelopes(1));
      await waitFor(() => started, WAIT);
      await bus.close();
      expect(finished).toBe(true);
      await bus.close();
    });

    it('tails a topic: every message after it opened, of every partition, in order per run, with no group left', async () => {
      // The events topic: partitioned where the bus partitions (runs spread over its streams).
      const topic = Topics.events;
      const groupsOf = async (): Promise<string[]> =>
        bus.topicStats ? (await bus.topicStats(topic)).groups.map((g) => g.group) : [];
      const before = envelopes(2);
      await bus.publish(topic, before);
      const groups = await groupsOf();
      const seen: Envelope[] = [];
      const alsoSeen: string[] = [];
      const first = await bus.tail(topic, (envelope) => {
        seen.push(envelope);
        if (envelope.payload === 'throw') throw new Error('a watcher that fails');
      });
      const second = await bus.tail(topic, (envelope) => alsoSeen.push(envelope.id));
      const runs = ['tail-a', 'tail-b', 'tail-c', 'tail-d', 'tail-e'];
      const sent = runs.flatMap((txId) =>
        Array.from({ length: 4 }, (_, i) => makeEnvelope({ txId, payload: i === 1 ? 'throw' : { i } })),
      );
      await bus.publish(topic, sent);
      if (fixture.publishRaw) await fixture.publishRaw(topic, MALFORMED_BYTES);
      const last = makeEnvelope({ txId: 'tail-a' });
      await bus.publish(topic, [last]);
      const all = [...sent, last].map((e) => e.id);
      await waitFor(() => all.every((id) => alsoSeen.includes(id)), WAIT);
      await waitFor(() => seen.length >= all.length, WAIT);
      // Each tail saw exactly what was published after it opened (not what came before, not the
      // undecodable entry), a run's messages in their order, whole; a handler that threw went on.
      expect(seen.map((e) => e.id).sort()).toEqual([...all].sort());
      expect([...alsoSeen].sort()).toEqual([...all].sort());
      for (const txId of runs) {
        const order = (ids: string[]): string[] =>
          ids.filter((id) => [...sent, last].find((e) => e.id === id)?.txId === txId);
        expect(order(seen.map((e) => e.id))).toEqual(order(all));
      }
      expect(seen.find((e) => e.id === sent[0]?.id)).toEqual(sent[0]);
      // Nothing on the broker for it: the groups are what they were.
      expect(await groupsOf()).toEqual(groups);
      // Closed, it sees nothing more; the other goes on.
      await first.close();
      const after = makeEnvelope({ txId: 'tail-b' });
      await bus.publish(topic, [after]);
      await waitFor(() => alsoSeen.includes(after.id), WAIT);
      expect(seen.some((e) => e.id === after.id)).toBe(false);
      await second.close();
      await first.close(); // idempotent
    });

    it('starts a new group from the earliest retained message by default', async () => {
      const topic = newTopic();
      const sent = envelopes(5);
      await bus.publish(topic, sent);
      const got: string[] = [];
      await subscribe(topic, { group: 'late', consumer: 'c1', concurrency: 1, ...QUICK }, async (d) => {
        got.push(d.envelope.id);
      });
      await waitFor(() => got.length >= 5, WAIT);
      expect(got).toEqual(sent.map((e) => e.id));
    });

    it('broadcasts to every listener of the channel at that moment, keeps nothing, and stops at close', async () => {
      const channel = newTopic();
      const [a, b, c, d] = envelopes(4) as [Envelope, Envelope, Envelope, Envelope];
      const first: string[] = [];
      const second: string[] = [];
      const late: string[] = [];
      subscriptions.push(
        await bus.listen(channel, (envelope) => {
          first.push(envelope.id);
          // A listener that throws is logged; its feed goes on.
          if (envelope.id === a.id) throw new Error('listener failure');
        }),
      );
      const closing = await bus.listen(channel, (envelope) => second.push(envelope.id));
      subscriptions.push(closing);
      // Another channel's broadcasts are not this one's.
      subscriptions.push(await bus.listen(newTopic(), (envelope) => late.push(`other:${envelope.id}`)));

      await bus.broadcast(channel, [a, b]);
      await waitFor(() => first.length === 2 && second.length === 2, {
        ...WAIT,
        description: 'both listeners heard the broadcast',
      });
      subscriptions.push(await bus.listen(channel, (envelope) => late.push(envelope.id)));
      await closing.close();
      await bus.broadcast(channel, [c]);
      await bus.broadcast(channel, [d]);
      await waitFor(() => first.length === 4 && late.length === 2, {
        ...WAIT,
        description: 'the first and the late listener heard the later broadcasts',
      });

      // No order is promised (on Redis Cluster each PUBLISH may reach the listeners through another node).
      const sorted = (ids: string[]): string[] => [...ids].sort();
      expect({ first: sorted(first), second: sorted(second), late: sorted(late) }).toEqual({
        first: sorted([a.id, b.id, c.id, d.id]),
        second: sorted([a.id, b.id]),
        late: sorted([c.id, d.id]),
      });
    });

    it("starts a new group after the topic's current end with startFrom: 'latest'", async () => {
      const topic = newTopic();
      const [old, fresh] = envelopes(2) as [Envelope, Envelope];
      await bus.publish(topic, [old]);
      const got: string[] = [];
      await subscribe(topic, { group: 'tail', consumer: 'c1', startFrom: 'latest', ...QUICK }, async (d) => {
        got.push(d.envelope.id);
      });
      await bus.publish(topic, [fresh]);
      await waitFor(() => got.length >= 1, WAIT);
      await sleep(50);
      expect(got).toEqual([fresh.id]);
    });
  });
}
