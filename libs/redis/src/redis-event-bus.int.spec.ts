import { ErrorCode, EventType, Topics, encodeEnvelope, type Envelope } from '@multiagents/contracts';
import { makeEnvelope, sleep, startRedisServer, waitFor } from '@multiagents/testing';
import { Redis } from 'ioredis';
import { createRedisBackend } from './redis-backend';
import type { RedisDelivery } from './redis-delivery';
import type { RedisEventBus } from './redis-event-bus';
import { MALFORMED_REPLAY_ERROR } from './redis-subscription';
import { RedisKeys, type TopicStream } from './redis-keys';
import type { StreamWriter } from './stream-writer';
import { freshPrefix, useRedisServer } from './test/redis-test-server';

const WAIT = { timeoutMs: 20_000 } as const;

/** A txId that lands in partition `p` of `bus`. */
function txIdIn(bus: RedisEventBus, p: number | undefined, tag: string): string {
  for (let i = 0; ; i += 1) {
    const txId = `tx-${tag}-${i}`;
    if (bus.keys.partitionOf(txId) === p) return txId;
  }
}

describe('RedisEventBus (adapter-specific)', () => {
  const gates: Array<() => void> = [];
  const clients: Redis[] = [];
  // Declared before the server's hooks, so it runs first: parked handlers let close() finish.
  afterEach(async () => {
    for (const release of gates.splice(0)) release();
    for (const client of clients.splice(0)) client.disconnect();
  });
  const redis = useRedisServer();

  const newBus = (options: Parameters<typeof redis.backend>[0] = {}): RedisEventBus =>
    redis.backend(options).bus;
  const newGate = (): { promise: Promise<void>; release: () => void } => {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => {
      release = resolve;
    });
    gates.push(release);
    return { promise, release };
  };
  const rawClient = (): Redis => {
    const client = new Redis(redis.server().url);
    clients.push(client);
    return client;
  };
  const topicName = (): string => `t-${Math.random().toString(36).slice(2, 10)}`;
  const streamOf = (bus: RedisEventBus, topic: string, partition = 0): string =>
    (bus.keys.topicStreams(topic)[partition] ?? bus.keys.topicStreams(topic)[0])?.stream ?? '';

  it('sums topic stats over the partitions of a partitioned topic', async () => {
    const bus = newBus({ partitions: 3 });
    const txIds = Array.from({ length: 12 }, (_, i) => `tx-${i}`);
    expect(new Set(txIds.map((txId) => bus.keys.partitionOf(txId))).size).toBe(3);
    // A group that read nothing (created, then closed) and one that handled everything.
    await (await bus.subscribe(Topics.events, { group: 'idle', consumer: 'c1' }, async () => {})).close();
    let handled = 0;
    await bus.subscribe(Topics.events, { group: 'all', consumer: 'c1' }, async () => {
      handled += 1;
    });
    await bus.publish(
      Topics.events,
      txIds.map((txId) => makeEnvelope({ txId })),
    );
    await waitFor(() => handled === 12, { ...WAIT, description: '12 events handled' });
    await waitFor(async () => (await bus.pendingCount(Topics.events, 'all')) === 0, WAIT);
    expect(await bus.topicStats(Topics.events)).toEqual({
      topic: Topics.events,
      groups: [
        { group: 'all', pending: 0, lag: 0 },
        { group: 'idle', pending: 0, lag: 12 },
      ],
      deadLetters: 0,
      deadLettersAdded: 0,
    });
  });

  it('dead-letters a forged or malformed entry on every stream and goes on with the valid ones', async () => {
    const bus = newBus({ partitions: 3 });
    const raw = rawClient();
    // A txId of each partition, so that every partitioned stream gets traffic.
    const txIds = [0, 1, 2].map((p) => {
      for (let i = 0; ; i += 1) if (bus.keys.partitionOf(`tx-${i}`) === p) return `tx-${i}`;
    });
    for (const topic of [Topics.command('inventory.reserve'), Topics.results, Topics.events, topicName()]) {
      const handled: string[] = [];
      await bus.subscribe(topic, { group: 'g', consumer: 'c1', concurrency: 1 }, async (d) => {
        handled.push(d.envelope.id);
      });
      const streams = bus.keys.topicStreams(topic);
      const valid: Envelope[] = [];
      for (const [i, source] of streams.entries()) {
        const txId = source.partition === undefined ? 'tx-any' : (txIds[source.partition] as string);
        const [before, after] = [makeEnvelope({ txId }), makeEnvelope({ txId })];
        valid.push(before, after);
        await bus.publish(topic, [before]);
        await raw.xadd(source.stream, '*', 'other', 'field'); // no d field
        await raw.xadd(source.stream, '*', 'd', Buffer.from([0xff, 0x00, 0x13])); // not an envelope
        if (source.partition !== undefined) {
          // A valid envelope on the wrong partition's stream (forged or misrouted).
          const wrong = txIds[(i + 1) % streams.length] as string;
          await raw.xadd(source.stream, '*', 'd', Buffer.from(encodeEnvelope(makeEnvelope({ txId: wrong }))));
        }
        await bus.publish(topic, [after]);
      }
      const perStream = streams[0]?.partition === undefined ? 2 : 3;
      await waitFor(() => handled.length === valid.length, {
        ...WAIT,
        description: `valid messages of ${topic}`,
      });
      await waitFor(async () => (await bus.listDeadLetters(topic)).length === perStream * streams.length, {
        ...WAIT,
        description: `dead letters of ${topic}`,
      });
      expect([...handled].sort()).toEqual(valid.map((e) => e.id).sort());
      const dead = await bus.listDeadLetters(topic);
      const errors = dead.map((d) => d.error);
      expect(errors.filter((e) => e.includes("no 'd' field"))).toHaveLength(streams.length);
      expect(errors.filter((e) => e.includes('not a protobuf Envelope'))).toHaveLength(streams.length);
      if (perStream === 3) expect(errors.filter((e) => e.includes('misrouted message'))).toHaveLength(3);
      expect(dead.every((d) => d.group === 'g' && d.deliveryCount === 1)).toBe(true);
      expect(await bus.pendingCount(topic, 'g')).toBe(0);
    }
    expect(bus.counters()['misrouted']).toBe(3 * 3);
  });

  it("lets a second consumer reclaim a hung handler's entry and ignores the first one's late ack", async () => {
    const bus = newBus();
    const topic = topicName();
    const hang = newGate();
    const hold = newGate();
    const seen: Array<[string, number]> = [];
    // Concurrency 1 each: a consumer with no free slot reclaims nothing, so c2 is the one that does.
    // A consumer reclaims what has been idle for its own visibility timeout: c2 takes c1's entry
    // after 300 ms, while c1 (its slot free again once released) could take c2's only after a
    // minute, however long the test is held up between the steps below.
    const options = { group: 'g', concurrency: 1 };
    await bus.subscribe(topic, { ...options, consumer: 'c1', visibilityTimeoutMs: 60_000 }, async (d) => {
      seen.push(['c1', d.deliveryCount]);
      await hang.promise;
    });
    await bus.publish(topic, [makeEnvelope()]);
    await waitFor(() => seen.length === 1, WAIT);
    await bus.subscribe(topic, { ...options, consumer: 'c2', visibilityTimeoutMs: 300 }, async (d) => {
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
    await waitFor(() => (bus.counters()['supersededSettles'] ?? 0) === 1, WAIT);
    expect(await bus.pendingCount(topic, 'g')).toBe(1);

    hold.release();
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
    expect(seen).toHaveLength(2);
  });

  it('acknowledges with flush.lua only the deliveries still current, whatever range the caller gives', async () => {
    const bus = newBus();
    const raw = rawClient();
    const stream = streamOf(bus, topicName());
    await raw.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
    for (let i = 0; i < 5; i++) await raw.xadd(stream, '*', 'd', `e${i}`);
    const read = (await raw.xreadgroup('GROUP', 'g', 'c1', 'COUNT', 5, 'STREAMS', stream, '>')) as Array<
      [string, Array<[string, string[]]>]
    >;
    const ids = (read[0]?.[1] ?? []).map(([id]) => id);
    expect(ids).toHaveLength(5);
    // ids[1] was reclaimed by c2 (its delivery count is now 2): c1's ack must leave it alone.
    await raw.xclaim(stream, 'g', 'c2', 0, ids[1] as string);
    const flush = (low: string, high: string, pairs: Array<string | number>): Promise<number> =>
      bus.connection.scripts.flush([stream], [0, 1, 1, 'g', 'c1', low, high, pairs.length / 2, ...pairs]);
    // A range covering only ids[0]: the others are looked up one by one, not skipped.
    const acked = await flush(ids[0] as string, ids[0] as string, [
      ids[0] as string,
      1,
      ids[1] as string,
      1,
      ids[2] as string,
      1,
      ids[3] as string,
      2,
      'not-an-id',
      1,
    ]);
    expect(acked).toBe(2); // ids[0] and ids[2]; ids[1] is c2's, ids[3] was asked with a stale count
    const pending = (await raw.xpending(stream, 'g', '-', '+', 10)) as Array<
      [string, string, number, number]
    >;
    expect(pending.map(([id, consumer, , count]) => [id, consumer, count])).toEqual([
      [ids[1], 'c2', 2],
      [ids[3], 'c1', 1],
      [ids[4], 'c1', 1],
    ]);
    // A range that is not two stream ids is refused before anything is written.
    const before = await raw.xlen(stream);
    await expect(
      bus.connection.scripts.flush(
        [stream],
        [1, 1, '', 'x', 1, 1, 'g', 'c1', 'low', ids[4] as string, 1, ids[4] as string, 1],
      ),
    ).rejects.toThrow('bad ack group');
    expect(await raw.xlen(stream)).toBe(before);
    expect(await flush(ids[4] as string, ids[4] as string, [ids[4] as string, 1])).toBe(1);
  });

  it('does not handle an entry that waited in its backlog while another consumer reclaimed it', async () => {
    const bus = newBus({ partitions: 3 });
    const topic = Topics.command('slow.work');
    // One entry per partition: a consumer with one slot still reads all three at once (COUNT is
    // per stream), handles one and keeps two waiting.
    const sent = [0, 1, 2].map((p) => {
      for (let i = 0; ; i += 1) {
        const txId = `tx-backlog-${i}`;
        if (bus.keys.partitionOf(txId) === p) return makeEnvelope({ txId });
      }
    });
    await bus.publish(topic, sent);
    const handled: Array<[string, string]> = [];
    const options = { group: 'g', visibilityTimeoutMs: 1_000 };
    await bus.subscribe(topic, { ...options, consumer: 'c1', concurrency: 1 }, async (d) => {
      handled.push(['c1', d.envelope.id]);
      // Kept alive (extended 20 times per visibility timeout) until c2 has taken the two waiting
      // behind it: only those go idle, however slow the machine. Bounded, in case it never does.
      const until = Date.now() + 30_000;
      while (handled.length < 3 && Date.now() < until) {
        await sleep(50);
        await d.extend();
      }
    });
    await waitFor(() => handled.length === 1, WAIT);
    await bus.subscribe(topic, { ...options, consumer: 'c2', concurrency: 5 }, async (d) => {
      handled.push(['c2', d.envelope.id]);
    });
    await waitFor(() => handled.length === 3, { timeoutMs: 20_000 });
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
    // c1 found the two it had kept reclaimed by c2, and let them go.
    await waitFor(() => (bus.counters()['supersededSettles'] ?? 0) === 2, WAIT);
    expect(handled.map(([, id]) => id).sort()).toEqual(sent.map((e) => e.id).sort());
    expect(handled.filter(([consumer]) => consumer === 'c2')).toHaveLength(2);
  });

  it("hands over what one partition's reclaim took while another partition's reclaim fails", async () => {
    const backend = redis.backend({ partitions: 3 });
    const { bus } = backend;
    const raw = rawClient();
    const topic = Topics.command('reclaim.split');
    const [broken, idle] = bus.keys.topicStreams(topic) as [TopicStream, TopicStream];
    const sent = makeEnvelope({ txId: txIdIn(bus, idle.partition, 'split') });
    await bus.publish(topic, [sent]);
    // c1 (a consumer that died) took the entry and never settles it: it goes idle, pending.
    await raw.xgroup('CREATE', idle.stream, 'g', '0', 'MKSTREAM');
    expect(await raw.xreadgroup('GROUP', 'g', 'c1', 'COUNT', 1, 'STREAMS', idle.stream, '>')).not.toBeNull();
    // Partition 0's reclaim fails every time (a failover, a timeout), the others' work.
    const { scripts } = backend.connection;
    const claim = scripts.claim.bind(scripts);
    let refused = 0;
    const spy = jest.spyOn(scripts, 'claim').mockImplementation((keys, args) => {
      if (keys[0] !== broken.stream) return claim(keys, args);
      refused += 1;
      return Promise.reject(new Error("READONLY You can't write against a read only replica."));
    });
    const seen: Array<[string, number]> = [];
    await bus.subscribe(topic, { group: 'g', consumer: 'c2', visibilityTimeoutMs: 200 }, async (d) => {
      seen.push([d.envelope.id, d.deliveryCount]);
    });
    await waitFor(() => seen.length === 1, { ...WAIT, description: 'the idle entry reclaimed and handled' });
    // The pass that took it also had partition 0's reclaim refused.
    expect(refused).toBeGreaterThan(0);
    expect(seen).toEqual([[sent.id, 2]]);
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
    spy.mockRestore();
  });

  it('deletes its consumer from the group on close, but not where entries are pending under it', async () => {
    const bus = newBus({ partitions: 2 });
    const raw = rawClient();
    const topic = Topics.command('forget.me');
    const streams = bus.keys.topicStreams(topic);
    const consumersOn = async (stream: string): Promise<string[]> =>
      ((await raw.xinfo('CONSUMERS', stream, 'g')) as unknown[][]).map((fields) => String(fields[1]));
    const sent = [0, 1].map((p) => makeEnvelope({ txId: txIdIn(bus, p, 'forget') }));

    // c1 handles one entry of each partition, then closes: nothing is pending under it.
    const handled: string[] = [];
    const c1 = await bus.subscribe(topic, { group: 'g', consumer: 'c1' }, async (d) => {
      handled.push(d.envelope.id);
    });
    await bus.publish(topic, sent);
    await waitFor(() => handled.length === 2, WAIT);
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
    for (const { stream } of streams) expect(await consumersOn(stream)).toEqual(['c1']);
    await c1.close();
    for (const { stream } of streams) expect(await consumersOn(stream)).toEqual([]);

    // c2's handler fails on partition 1's entry (its retry waits a minute): it stays pending
    // under c2 after close, so c2 stays in that group, and goes from the other partition's.
    const failed: string[] = [];
    const c2 = await bus.subscribe(topic, { group: 'g', consumer: 'c2', retryDelayMs: 60_000 }, async (d) => {
      if (d.envelope.txId === sent[1]?.txId) {
        failed.push(d.envelope.id);
        throw new Error('not now');
      }
    });
    const again = [0, 1].map((p) => makeEnvelope({ txId: txIdIn(bus, p, 'forget') }));
    await bus.publish(topic, again);
    await waitFor(() => failed.length === 1, WAIT);
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 1, WAIT);
    const [first, second] = streams as [TopicStream, TopicStream];
    expect(await consumersOn(first.stream)).toEqual(['c2']);
    await c2.close();
    expect(await consumersOn(first.stream)).toEqual([]);
    expect(await consumersOn(second.stream)).toEqual(['c2']);
    expect(await raw.xpending(second.stream, 'g', '-', '+', 10, 'c2')).toHaveLength(1);
  });

  it('acknowledges a command in the same round trip as the step.result that answers it', async () => {
    const bus = newBus({ partitions: 3 });
    const topic = Topics.command('payment.charge');
    const commands = Array.from({ length: 6 }, (_, i) =>
      makeEnvelope({
        txId: `tx-reply-${i}`,
        type: EventType.StepCommand,
        payload: { commandId: `tx-reply-${i}:charge:1`, worker: 'payment.charge', input: {} },
      }),
    );
    const pendingAfterResult: number[] = [];
    const raw = rawClient();
    await bus.subscribe(topic, { group: 'workers', consumer: 'w1', concurrency: 1 }, async (d) => {
      const { source, entryId } = d as RedisDelivery;
      expect(await raw.xpending(source.stream, 'workers', entryId, entryId, 1)).toHaveLength(1);
      const commandId = (d.envelope.payload as { commandId: string }).commandId;
      await bus.publish(Topics.results, [
        makeEnvelope({
          id: `${commandId}:result`,
          txId: d.envelope.txId,
          type: EventType.StepResult,
          payload: { commandId, worker: 'payment.charge', ok: true, output: {} },
        }),
      ]);
      // The result is written and the command acknowledged before this handler even returns.
      pendingAfterResult.push((await raw.xpending(source.stream, 'workers', entryId, entryId, 1)).length);
    });
    await bus.publish(topic, commands);
    await waitFor(() => pendingAfterResult.length === commands.length, WAIT);
    expect(pendingAfterResult.every((n) => n === 0)).toBe(true);
    expect(bus.counters()['ackedWithResult']).toBe(commands.length);
    // Each result went to its run's partition, where the command came from.
    for (const command of commands) {
      const p = bus.keys.partitionOf(command.txId);
      expect(await rawClient().xlen(bus.keys.stream(p, Topics.results))).toBeGreaterThan(0);
    }
    expect(await bus.retainedCount(Topics.results)).toBe(commands.length);
  });

  it('hands the acknowledgements of handlers that finish together to the writer in one write', async () => {
    const bus = newBus();
    const topic = topicName();
    const write = jest.spyOn((bus as unknown as { writer: StreamWriter }).writer, 'write');
    const gate = newGate();
    const n = 600;
    let started = 0;
    await bus.subscribe(topic, { group: 'g', consumer: 'c1', concurrency: n }, async () => {
      started += 1;
      await gate.promise;
    });
    await bus.publish(
      topic,
      Array.from({ length: n }, (_, i) => makeEnvelope({ txId: `tx-ack-${i}` })),
    );
    await waitFor(() => started === n, WAIT);
    expect(await bus.pendingCount(topic, 'g')).toBe(n);
    write.mockClear();
    gate.release();
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
    // 600 handlers resolved together: two writes of acknowledgements (at most 500 each), not 600.
    expect(write.mock.calls.map(([, appends, acks]) => [appends.length, acks.length])).toEqual([
      [0, 500],
      [0, 100],
    ]);
    write.mockRestore();
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

  it('replays a dead letter of a partitioned topic into the partition it came from', async () => {
    const bus = newBus({ partitions: 3 });
    const envelope = makeEnvelope({ txId: 'tx-replay' });
    const seen: number[] = [];
    await bus.subscribe(Topics.results, { group: 'g', consumer: 'c1', retryDelayMs: 10 }, async (d) => {
      seen.push(d.deliveryCount);
      if (seen.length === 1) throw Object.assign(new Error('poison'), { code: ErrorCode.PoisonMessage });
    });
    await bus.publish(Topics.results, [envelope]);
    await waitFor(async () => (await bus.listDeadLetters(Topics.results)).length === 1, WAIT);
    const [dead] = await bus.listDeadLetters(Topics.results);
    const p = bus.keys.partitionOf('tx-replay');
    expect(dead?.id.startsWith(`${p}:`)).toBe(true);
    expect(await bus.replayDeadLetter(Topics.results, dead?.id ?? '')).toBe(true);
    await waitFor(() => seen.length === 2, WAIT);
    expect(await rawClient().xlen(bus.keys.deadLetters(p, Topics.results))).toBe(0);
    // The replay's entry names the group it is for, next to the bytes.
    const [[, fields] = ['', []]] = await rawClient().xrevrange(streamOf(bus, Topics.results, p), '+', '-');
    expect(fields.filter((_, i) => i % 2 === 0)).toEqual(['d', 'group']);
    expect(fields[3]).toBe('g');
    expect(await bus.replayDeadLetter(Topics.results, `${(p + 1) % 3}:1-1`)).toBe(false);
    expect(await bus.replayDeadLetter(Topics.results, 'nonsense')).toBe(false);
  });

  it("honours an entry's group field as written: a forged one only narrows delivery, an empty one is dead-lettered", async () => {
    const bus = newBus();
    const raw = rawClient();
    const topic = topicName();
    const stream = streamOf(bus, topic);
    const [forged, malformed, nobodys, last] = Array.from({ length: 4 }, () => makeEnvelope());
    const handled: Record<string, string[]> = { g1: [], g2: [] };
    for (const group of ['g1', 'g2']) {
      await bus.subscribe(topic, { group, consumer: 'c1', concurrency: 1 }, async (d) => {
        handled[group]?.push(d.envelope.id);
      });
    }
    const tailed: string[] = [];
    const tail = await bus.tail(topic, (envelope) => tailed.push(envelope.id));
    const bytes = (envelope: Envelope | undefined): Buffer =>
      Buffer.from(encodeEnvelope(envelope as Envelope));
    await raw.xadd(stream, '*', 'd', bytes(forged), 'group', 'g2');
    await raw.xadd(stream, '*', 'd', bytes(malformed), 'group', '');
    await raw.xadd(stream, '*', 'd', bytes(nobodys), 'group', 'no-such-group');
    await bus.publish(topic, [last as Envelope]);
    await waitFor(() => handled['g1']?.length === 1 && handled['g2']?.length === 2 && tailed.length === 1, {
      ...WAIT,
      description: 'both groups and the tail handled the last message',
    });
    await waitFor(async () => (await bus.listDeadLetters(topic)).length === 2, WAIT);
    await waitFor(
      async () => (await bus.pendingCount(topic, 'g1')) + (await bus.pendingCount(topic, 'g2')) === 0,
      WAIT,
    );
    await tail.close();

    expect(handled).toEqual({ g1: [last?.id], g2: [forged?.id, last?.id] });
    expect(tailed).toEqual([last?.id]);
    const dead = await bus.listDeadLetters(topic);
    expect(dead.map((d) => d.group).sort()).toEqual(['g1', 'g2']);
    for (const d of dead) {
      expect(d).toMatchObject({ error: MALFORMED_REPLAY_ERROR, deliveryCount: 1, envelope: malformed });
    }
    // Passing over another group's entry is no delivery: nothing redelivered or reclaimed.
    expect(bus.counters()).toMatchObject({ deadLettered: 2, redelivered: 0, reclaimed: 0 });
  });

  it("acknowledges another group's replay on reclaim, never handling nor dead-lettering it, whatever its count", async () => {
    const bus = newBus();
    const raw = rawClient();
    const topic = topicName();
    const stream = streamOf(bus, topic);
    const [theirs, empty, ours] = [makeEnvelope(), makeEnvelope(), makeEnvelope()];
    const bytes = (envelope: Envelope): Buffer => Buffer.from(encodeEnvelope(envelope));
    // Read by a consumer of g2 that then died: pending under it, `theirs` past maxDeliveries.
    await raw.xgroup('CREATE', stream, 'g2', '0', 'MKSTREAM');
    const theirsId = await raw.xadd(stream, '*', 'd', bytes(theirs), 'group', 'g1');
    await raw.xadd(stream, '*', 'd', bytes(empty), 'group', '');
    await raw.xadd(stream, '*', 'd', bytes(ours), 'group', 'g2');
    await raw.xreadgroup('GROUP', 'g2', 'gone', 'COUNT', 10, 'STREAMS', stream, '>');
    await raw.xclaim(stream, 'g2', 'gone', 0, theirsId as string, 'RETRYCOUNT', 5);
    expect(await bus.pendingCount(topic, 'g2')).toBe(3);

    const seen: Array<[string, number]> = [];
    await bus.subscribe(
      topic,
      { group: 'g2', consumer: 'c1', maxDeliveries: 2, visibilityTimeoutMs: 100 },
      async (d) => {
        seen.push([d.envelope.id, d.deliveryCount]);
      },
    );
    await waitFor(async () => (await bus.pendingCount(topic, 'g2')) === 0, {
      ...WAIT,
      description: 'every entry reclaimed and settled',
    });
    await waitFor(async () => (await bus.listDeadLetters(topic)).length === 1, WAIT);

    // Ours is handled (a second delivery); theirs is acknowledged unseen; the empty one is malformed.
    expect(seen).toEqual([[ours.id, 2]]);
    const [dead] = await bus.listDeadLetters(topic);
    expect(dead).toMatchObject({ group: 'g2', error: MALFORMED_REPLAY_ERROR, envelope: empty });
    expect(bus.counters()).toMatchObject({ reclaimed: 2, deadLettered: 1 });
  });

  it("discards a dead letter of a partitioned topic from its partition's dead-letter stream", async () => {
    const bus = newBus({ partitions: 3 });
    await bus.subscribe(Topics.results, { group: 'g', consumer: 'c1', retryDelayMs: 10 }, async () => {
      throw Object.assign(new Error('poison'), { code: ErrorCode.PoisonMessage });
    });
    await bus.publish(Topics.results, [makeEnvelope({ txId: 'tx-discard' })]);
    await waitFor(async () => (await bus.listDeadLetters(Topics.results)).length === 1, WAIT);
    const [dead] = await bus.listDeadLetters(Topics.results);
    const p = bus.keys.partitionOf('tx-discard');
    const entryId = dead?.id.slice(`${p}:`.length) ?? '';
    expect(await bus.discardDeadLetter(Topics.results, `${(p + 1) % 3}:${entryId}`)).toBe(false);
    expect(await bus.discardDeadLetter(Topics.results, entryId)).toBe(false);
    expect(await bus.discardDeadLetter(Topics.results, 'nonsense')).toBe(false);
    expect(await rawClient().xlen(bus.keys.deadLetters(p, Topics.results))).toBe(1);
    expect(await bus.discardDeadLetter(Topics.results, dead?.id ?? '')).toBe(true);
    expect(await rawClient().xlen(bus.keys.deadLetters(p, Topics.results))).toBe(0);
    expect(await bus.listDeadLetters(Topics.results)).toEqual([]);
  });

  it('trims what every group acknowledged and never an unacknowledged or unread entry', async () => {
    const bus = newBus({ trimIntervalMs: 0 });
    const topic = topicName();
    const stream = streamOf(bus, topic);
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
    const raw = rawClient();
    const oldest = (await raw.xrange(stream, '-', '+', 'COUNT', 1))[0]?.[0];
    expect(oldest).toBe((await raw.xpending(stream, 'slow'))[1]);

    // A group with no consumer that never read anything holds the whole stream back.
    await raw.xgroup('CREATE', stream, 'idle', '0');
    hold.release();
    await waitFor(async () => (await bus.pendingCount(topic, 'slow')) === 0, WAIT);
    expect(await bus.trim(topic)).toBe(0);
    await raw.xgroup('DESTROY', stream, 'idle');
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

  it('caps each partition’s events stream at about eventsMaxLen', async () => {
    const bus = newBus({ eventsMaxLen: 10 });
    await bus.publish(
      Topics.events,
      Array.from({ length: 400 }, () => makeEnvelope({ txId: 'tx-events' })),
    );
    const retained = await bus.retainedCount(Topics.events);
    expect(retained).toBeGreaterThanOrEqual(10);
    expect(retained).toBeLessThan(400);
  });

  it('refuses a process configured with another partition count for the same prefix', async () => {
    const prefix = freshPrefix();
    const first = redis.backend({ prefix, partitions: 3 });
    await first.bus.publish(Topics.results, [makeEnvelope()]);
    const second = redis.backend({ prefix, partitions: 4 });
    await expect(second.bus.publish(Topics.results, [makeEnvelope()])).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringContaining(`prefix ${prefix} is laid out in 3 partitions`),
    });
    await expect(second.runs.get('tx-1')).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
    await expect(
      second.bus.subscribe(Topics.results, { group: 'g', consumer: 'c' }, async () => undefined),
    ).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
    expect(new RedisKeys(prefix, 3).partitionOf('x')).toBe(first.connection.keys.partitionOf('x'));
  });

  it('waits batchDelayMs after a read that was not full, and reads full batches back to back', async () => {
    const bus = newBus();
    const topic = topicName();
    const seen: string[] = [];
    // 25 waiting, 10 free slots: reads of 10, 10 (full: no delay) and 5 (not full: the delay).
    await bus.publish(
      topic,
      Array.from({ length: 25 }, () => makeEnvelope()),
    );
    const subscription = await bus.subscribe(
      topic,
      { group: 'g', consumer: 'c', concurrency: 10, batchDelayMs: 60_000 },
      async (d) => {
        seen.push(d.envelope.id);
      },
    );
    await waitFor(() => seen.length === 25, WAIT);
    // Now in its 60 s delay: a new message stays unread (lag 1, nothing pending once the 25 are
    // acknowledged, whenever the machine gets to it)…
    await bus.publish(topic, [makeEnvelope()]);
    await waitFor(async () => (await bus.pendingCount(topic, 'g')) === 0, WAIT);
    await sleep(300);
    expect(seen).toHaveLength(25);
    const stats = await bus.topicStats(topic);
    expect(stats.groups.find((g) => g.group === 'g')).toMatchObject({ pending: 0, lag: 1 });
    // …and close() does not wait the delay out.
    await subscription.close();
  });

  it('lets a batching consumer read as many entries as it has free slots, past batchSize', async () => {
    const sizes = async (options: { concurrency: number; batchDelayMs: number }): Promise<number[]> => {
      const bus = newBus({ batchSize: 64 });
      const topic = topicName();
      await bus.publish(
        topic,
        Array.from({ length: 150 }, () => makeEnvelope()),
      );
      // The handlers of one read start in one synchronous pass: a tick closes each read's count.
      const reads: number[] = [];
      let current = 0;
      let handled = 0;
      const subscription = await bus.subscribe(topic, { group: 'g', consumer: 'c', ...options }, async () => {
        if (current === 0) {
          process.nextTick(() => {
            reads.push(current);
            current = 0;
          });
        }
        current += 1;
        handled += 1;
      });
      await waitFor(() => handled === 150, WAIT);
      await subscription.close();
      return reads;
    };
    expect(await sizes({ concurrency: 200, batchDelayMs: 50 })).toEqual([150]);
    // Without batchDelayMs a read takes at most batchSize, whatever the free slots.
    expect(await sizes({ concurrency: 200, batchDelayMs: 0 })).toEqual([64, 64, 22]);
  });

  it('refuses a negative, fractional or too long batchDelayMs', async () => {
    const bus = newBus();
    for (const batchDelayMs of [-1, 1.5, 60_001]) {
      await expect(
        bus.subscribe(topicName(), { group: 'g', consumer: 'c', batchDelayMs }, async () => undefined),
      ).rejects.toThrow(/batchDelayMs must be an integer from 0 to 60000/);
    }
  });
});

describe('RedisEventBus and Redis restarts', () => {
  it('resumes blocked reads after kill -9 and restart, redelivers what was unacknowledged, and says so', async () => {
    const redis = await startRedisServer({ appendOnly: true, appendFsync: 'always' });
    const backend = createRedisBackend({ url: redis.url, prefix: freshPrefix(), claimIntervalMs: 100 });
    const bus = backend.bus;
    let releaseHung!: () => void;
    const hung = new Promise<void>((resolve) => {
      releaseHung = resolve;
    });
    let restored = 0;
    bus.onRestored(() => {
      restored += 1;
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

      redis.kill('SIGKILL');
      await redis.restart();
      await waitFor(() => restored >= 1, { timeoutMs: 10_000, description: 'onRestored' });
      await bus.publish(topic, [b]);

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
      expect(bus.counters()['restored']).toBeGreaterThanOrEqual(1);
    } finally {
      releaseHung();
      await backend.close();
      await redis.stop();
    }
  });

  it('goes on with a tail after kill -9 and restart, from the last entry it saw', async () => {
    const redis = await startRedisServer({ appendOnly: true, appendFsync: 'always' });
    const backend = createRedisBackend({ url: redis.url, prefix: freshPrefix() });
    const bus = backend.bus;
    let restored = 0;
    bus.onRestored(() => {
      restored += 1;
    });
    try {
      const seen: string[] = [];
      await bus.tail(Topics.events, (envelope) => seen.push(envelope.id));
      const [a, b, c] = [makeEnvelope(), makeEnvelope(), makeEnvelope()];
      await bus.publish(Topics.events, [a]);
      await waitFor(() => seen.length === 1, WAIT);

      redis.kill('SIGKILL');
      await redis.restart();
      await waitFor(() => restored >= 1, { timeoutMs: 10_000, description: 'onRestored' });
      await bus.publish(Topics.events, [b, c]);
      await waitFor(() => seen.length >= 3, { timeoutMs: 10_000, description: 'entries after the restart' });
      expect(seen).toEqual([a.id, b.id, c.id]);
    } finally {
      await backend.close();
      await redis.stop();
    }
  });

  it('starts while Redis is down: publish rejects within the bound, subscribe works once Redis is up', async () => {
    const redis = await startRedisServer();
    redis.kill('SIGKILL');
    await redis.exited();
    const backend = createRedisBackend({ url: redis.url, prefix: freshPrefix(), commandTimeoutMs: 300 });
    const bus = backend.bus;
    try {
      const topic = 'late-redis';
      const started = Date.now();
      await expect(bus.publish(topic, [makeEnvelope()])).rejects.toMatchObject({
        code: ErrorCode.Timeout,
        message: expect.stringContaining('Redis did not answer within 300 ms'),
      });
      // Bounded by the command timeout, not by ioredis' reconnect loop (generous for a loaded machine).
      expect(Date.now() - started).toBeLessThan(15_000);

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
      await waitFor(() => got.includes(fresh.id), WAIT);
    } finally {
      await backend.close();
      await redis.stop();
    }
  });
});
