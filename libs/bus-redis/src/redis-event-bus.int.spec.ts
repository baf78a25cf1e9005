import { ErrorCode, type Envelope } from '@multiagents/contracts';
import {
  eventBusConformance,
  makeEnvelope,
  sleep,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { Redis } from 'ioredis';
import { RedisEventBus } from './redis-event-bus';
import type { RedisEventBusOptions } from './redis-event-bus-options';

const WAIT = { timeoutMs: 4_000 } as const;

let server: ServerProcess;
let prefixSeq = 0;
const freshPrefix = (): string =>
  `t${process.pid}-${(prefixSeq += 1)}-${Math.random().toString(36).slice(2, 8)}`;

beforeAll(async () => {
  server = await startRedisServer();
});

afterAll(async () => {
  await server.stop();
});

eventBusConformance('redis', async () => {
  // Short reclaim interval: the suite's visibility-timeout tests wait on real time.
  const bus = new RedisEventBus({ url: server.url, prefix: freshPrefix(), claimIntervalMs: 100 });
  return { bus, publishRaw: (topic, bytes) => bus.publishRaw(topic, bytes) };
});

describe('RedisEventBus (adapter-specific)', () => {
  const buses: RedisEventBus[] = [];
  const gates: Array<() => void> = [];
  const clients: Redis[] = [];

  const newBus = (options: Partial<RedisEventBusOptions> = {}): RedisEventBus => {
    const bus = new RedisEventBus({
      url: server.url,
      prefix: freshPrefix(),
      claimIntervalMs: 100,
      ...options,
    });
    buses.push(bus);
    return bus;
  };
  const newGate = (): { promise: Promise<void>; release: () => void } => {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => {
      release = resolve;
    });
    gates.push(release);
    return { promise, release };
  };
  const rawClient = (url: string): Redis => {
    const client = new Redis(url);
    clients.push(client);
    return client;
  };
  const topicName = (): string => `t-${Math.random().toString(36).slice(2, 10)}`;

  afterEach(async () => {
    for (const release of gates.splice(0)) release();
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
    for (const client of clients.splice(0)) client.disconnect();
  });

  it('dead-letters entries written directly with ioredis (no d field, garbage d) and goes on', async () => {
    const bus = newBus();
    const topic = topicName();
    const [before, after] = [makeEnvelope(), makeEnvelope()];
    const handled: string[] = [];
    await bus.subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 1 }, async (d) => {
      handled.push(d.envelope.id);
    });
    const redis = rawClient(server.url);
    await bus.publish(topic, [before]);
    await redis.xadd(bus.keys.stream(topic), '*', 'other', 'field');
    await redis.xadd(bus.keys.stream(topic), '*', 'd', Buffer.from([0xff, 0x00, 0x13]));
    await bus.publish(topic, [after]);

    await waitFor(() => handled.length === 2, WAIT);
    await waitFor(async () => (await bus.listDeadLetters(topic)).length === 2, WAIT);
    expect(handled).toEqual([before.id, after.id]);
    const dead = await bus.listDeadLetters(topic);
    expect(dead.map((d) => d.error)).toEqual([
      expect.stringContaining("no 'd' field"),
      expect.stringContaining('undecodable message'),
    ]);
    expect(Array.from(dead[1]?.data ?? [])).toEqual([0xff, 0x00, 0x13]);
    expect(dead.every((d) => d.group === 'g' && d.deliveryCount === 1 && d.envelope === undefined)).toBe(
      true,
    );
    expect(await bus.pendingCount(topic, 'g')).toBe(0);
  });

  it("lets a second consumer reclaim a hung handler's entry and ignores the first one's late ack", async () => {
    const bus = newBus();
    const topic = topicName();
    const hang = newGate();
    const hold = newGate();
    const seen: Array<[string, number]> = [];
    // Concurrency 1 each: a consumer with no free slot reclaims nothing, so c2 is the one that does.
    const options = { group: 'g', concurrency: 1, visibilityTimeoutMs: 300 };
    await bus.subscribe(topic, { ...options, consumer: 'c1' }, async (d) => {
      seen.push(['c1', d.deliveryCount]);
      await hang.promise;
    });
    await bus.publish(topic, [makeEnvelope()]);
    await waitFor(() => seen.length === 1, WAIT);
    await bus.subscribe(topic, { ...options, consumer: 'c2' }, async (d) => {
      seen.push(['c2', d.deliveryCount]);
      await hold.promise;
    });
    await waitFor(() => seen.length === 2, WAIT);
    expect(seen).toEqual([
      ['c1', 1],
      ['c2', 2],
    ]);
    expect(await bus.pendingCount(topic, 'g')).toBe(1);

    hang.release(); // c1 finishes late: its ack must not settle c2's delivery
    await sleep(150);
    expect(await bus.pendingCount(topic, 'g')).toBe(1);

    hold.release();
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
    expect(seen).toHaveLength(2);
  });

  it('dead-letters an entry whose handler hung on its last allowed delivery', async () => {
    const bus = newBus();
    const topic = topicName();
    const counts: number[] = [];
    const never = newGate();
    await bus.subscribe(
      topic,
      { group: 'g', consumer: 'c1', maxDeliveries: 2, visibilityTimeoutMs: 150 },
      async (d) => {
        counts.push(d.deliveryCount);
        await never.promise;
      },
    );
    await bus.publish(topic, [makeEnvelope()]);
    await waitFor(async () => (await bus.listDeadLetters(topic)).length === 1, WAIT);
    const [dead] = await bus.listDeadLetters(topic);
    expect(counts).toEqual([1, 2]);
    expect(dead).toMatchObject({ group: 'g', deliveryCount: 2 });
    expect(dead?.error).toContain('not acknowledged within the visibility timeout after 2 deliveries');
    expect(await bus.pendingCount(topic, 'g')).toBe(0);
  });

  it('keeps a retry delay longer than the visibility timeout', async () => {
    const bus = newBus();
    const topic = topicName();
    const at: Array<[number, number]> = [];
    await bus.subscribe(topic, { group: 'g', consumer: 'c1', visibilityTimeoutMs: 200 }, async (d) => {
      at.push([d.deliveryCount, Date.now()]);
      if (d.deliveryCount === 1) throw Object.assign(new Error('later'), { retryAfterMs: 700 });
    });
    await bus.publish(topic, [makeEnvelope()]);
    await waitFor(() => at.length === 2, WAIT);
    const [[c1, t1], [c2, t2]] = at as [[number, number], [number, number]];
    expect([c1, c2]).toEqual([1, 2]);
    expect(t2 - t1).toBeGreaterThanOrEqual(650);
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
  });

  it('trims what every group acknowledged and never an unacknowledged or unread entry', async () => {
    const bus = newBus({ trimIntervalMs: 0 });
    const topic = topicName();
    const sent = Array.from({ length: 10 }, () => makeEnvelope());
    const stuck = sent[4] as Envelope;
    const hold = newGate();
    const handled = new Set<string>();
    await bus.subscribe(topic, { group: 'slow', consumer: 'c1' }, async (d) => {
      if (d.envelope.id === stuck.id) await hold.promise;
      handled.add(d.envelope.id);
    });
    await bus.subscribe(topic, { group: 'fast', consumer: 'c1' }, async () => undefined);
    await bus.publish(topic, sent);
    await waitFor(() => handled.size === 9, WAIT);
    await waitFor(async () => (await bus.pendingCount(topic, 'fast')) === 0, WAIT);
    await waitFor(async () => (await bus.pendingCount(topic, 'slow')) === 1, WAIT);

    // Entries 1-4 are acknowledged by both groups; entry 5 is pending in `slow`.
    expect(await bus.trim(topic)).toBe(4);
    expect(await bus.retainedCount(topic)).toBe(6);
    const redis = rawClient(server.url);
    const oldest = (await redis.xrange(bus.keys.stream(topic), '-', '+', 'COUNT', 1))[0]?.[0];
    expect(oldest).toBe((await redis.xpending(bus.keys.stream(topic), 'slow'))[1]);

    // A group with no consumer that never read anything holds the whole stream back.
    await redis.xgroup('CREATE', bus.keys.stream(topic), 'idle', '0');
    hold.release();
    await waitFor(async () => (await bus.pendingCount(topic, 'slow')) === 0, WAIT);
    expect(await bus.trim(topic)).toBe(0);
    await redis.xgroup('DESTROY', bus.keys.stream(topic), 'idle');
    // All read and acknowledged: only the last delivered entry is kept (XTRIM MINID keeps it).
    expect(await bus.trim(topic)).toBe(5);
    expect(await bus.retainedCount(topic)).toBe(1);
  });

  it('keeps about maxRetainedPerTopic entries while a topic has no group, for groups created later', async () => {
    const bus = newBus({ trimIntervalMs: 0, maxRetainedPerTopic: 10 });
    const topic = topicName();
    await bus.publish(
      topic,
      Array.from({ length: 250 }, () => makeEnvelope()),
    );
    const removed = await bus.trim(topic);
    const retained = await bus.retainedCount(topic);
    // MAXLEN ~ drops whole stream nodes (100 entries by default): never below the limit.
    expect(removed).toBeGreaterThan(0);
    expect(retained).toBeGreaterThanOrEqual(10);
    expect(retained + removed).toBe(250);
    const got: number[] = [];
    await bus.subscribe(topic, { group: 'late', consumer: 'c1' }, async () => {
      got.push(1);
    });
    await waitFor(() => got.length === retained, WAIT);
  });
});

describe('RedisEventBus and Redis restarts', () => {
  it('resumes blocked reads after kill -9 and restart, and redelivers what was unacknowledged', async () => {
    const redis = await startRedisServer({ appendOnly: true });
    const bus = new RedisEventBus({ url: redis.url, prefix: freshPrefix(), claimIntervalMs: 100 });
    let releaseHung!: () => void;
    const hung = new Promise<void>((resolve) => {
      releaseHung = resolve;
    });
    try {
      const topic = 'restart';
      const [a, b] = [makeEnvelope(), makeEnvelope()];
      const seen: Array<[string, number]> = [];
      await bus.subscribe(topic, { group: 'g', consumer: 'c1', visibilityTimeoutMs: 500 }, async (d) => {
        seen.push([d.envelope.id, d.deliveryCount]);
        if (d.envelope.id === a.id && d.deliveryCount === 1) await hung; // never acked before the crash
      });
      await bus.publish(topic, [a]);
      await waitFor(() => seen.length === 1, WAIT);
      await sleep(50); // the AOF write happens before Redis' next event-loop turn; let it pass

      redis.kill('SIGKILL');
      await redis.restart();
      await bus.publish(topic, [b]); // queued until the command connection is back

      await waitFor(() => seen.some(([id]) => id === b.id), {
        timeoutMs: 10_000,
        description: 'new message',
      });
      await waitFor(() => seen.some(([id, n]) => id === a.id && n === 2), {
        timeoutMs: 10_000,
        description: 'unacknowledged message redelivered',
      });
      await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
      releaseHung();
      await sleep(100);
      expect(await bus.pendingCount(topic, 'g')).toBe(0);
    } finally {
      releaseHung();
      await bus.close();
      await redis.stop();
    }
  });

  it('starts while Redis is down: publish rejects within the bound, subscribe works once Redis is up', async () => {
    const redis = await startRedisServer();
    redis.kill('SIGKILL');
    await sleep(100);
    const bus = new RedisEventBus({ url: redis.url, prefix: freshPrefix(), commandTimeoutMs: 300 });
    try {
      const topic = 'late-redis';
      const started = Date.now();
      await expect(bus.publish(topic, [makeEnvelope()])).rejects.toMatchObject({
        code: ErrorCode.Timeout,
        message: expect.stringContaining('Redis did not answer within 300 ms'),
      });
      expect(Date.now() - started).toBeLessThan(4_000);
      // Several envelopes go through one pipeline: bounded the same way.
      await expect(bus.publish(topic, [makeEnvelope(), makeEnvelope()])).rejects.toMatchObject({
        code: ErrorCode.Timeout,
      });
      expect(Date.now() - started).toBeLessThan(4_500);

      const got: string[] = [];
      let subscribed = false;
      const subscribing = bus
        .subscribe(topic, { group: 'g', consumer: 'c1' }, async (d) => {
          got.push(d.envelope.id);
        })
        .then(() => {
          subscribed = true;
        });
      await sleep(300);
      expect(subscribed).toBe(false);

      await redis.restart();
      await waitFor(() => subscribed, { timeoutMs: 10_000, description: 'subscribe after Redis is up' });
      await subscribing;
      const fresh = makeEnvelope();
      // The command connection may still be in its reconnect backoff (≤ reconnectMaxDelayMs), longer
      // than this test's 300 ms command timeout: publish until it gets through.
      await waitFor(
        () =>
          bus.publish(topic, [fresh]).then(
            () => true,
            () => false,
          ),
        { timeoutMs: 10_000, description: 'publish after Redis is up' },
      );
      // The rejected publish may still land (its outcome was unknown): only `fresh` is required.
      await waitFor(() => got.includes(fresh.id), WAIT);
    } finally {
      await bus.close();
      await redis.stop();
    }
  });
});
