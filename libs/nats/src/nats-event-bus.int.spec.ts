import { createConnection } from 'node:net';
import { ErrorCode, PoisonMessageError, encodeEnvelope, type Envelope } from '@multiagents/contracts';
import type { Delivery, LogFields, Logger, Subscription } from '@multiagents/core';
import { makeEnvelope, sleep, startNatsServer, waitFor } from '@multiagents/testing';
import { DiscardPolicy, RetentionPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { createNatsBackend, type NatsBackend } from './nats-backend';
import type { NatsBackendOptions } from './nats-backend-options';
import { MALFORMED_REPLAY_ERROR } from './nats-subscription';
import { REPLAY_GROUP_HEADER } from './replay-target';
import { NatsTestServer, freshPrefix, isOnDisk, TEST_REQUEST_TIMEOUT_MS } from './testing/nats-test-backend';

// Slowness on a loaded machine is not a failure: each test may take a few slow requests.
jest.setTimeout(6 * TEST_REQUEST_TIMEOUT_MS);

// One private nats-server (JetStream, its own store dir) for the whole file; every test gets its
// own prefix, so its own streams, deleted afterwards.
let nats: NatsTestServer;

/** True while something accepts TCP connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
/** Bound of every wait on a condition: a file-store stream on a loaded machine can take seconds. */
const WAIT_MS = 20_000;
let jsm: JetStreamManager;

beforeAll(async () => {
  nats = await NatsTestServer.start();
  jsm = await nats.jsm();
}, 20_000);

afterAll(async () => {
  await nats?.stop();
});

describe('NatsEventBus (JetStream specifics)', () => {
  let cleanups: Array<() => Promise<void>> = [];
  let subscriptions: Subscription[] = [];

  const track = async (options: Partial<NatsBackendOptions> = {}): Promise<NatsBackend> => {
    const backend = await nats.backend(options);
    cleanups.push(async () => {
      await backend.close();
      await nats.destroy(backend.names.prefix);
    });
    return backend;
  };

  afterEach(async () => {
    await Promise.all(subscriptions.map((s) => s.close()));
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups = [];
    subscriptions = [];
  });

  it('creates its streams with limits retention, discard new, and the configured limits', async () => {
    const { names } = await track({ maxAgeMs: 3_600_000, duplicateWindowMs: 60_000, maxMsgs: 1_000 });
    const prefix = names.prefix;
    const topics = (await jsm.streams.info(`${prefix}_BUS`)).config;
    expect(topics).toMatchObject({
      subjects: [`${prefix}.>`],
      retention: 'limits',
      discard: 'new',
      max_age: 3_600_000 * 1e6,
      duplicate_window: 60_000 * 1e6,
      max_msgs: 1_000,
      num_replicas: 1,
    });
    const dead = (await jsm.streams.info(`${prefix}_DLQ`)).config;
    expect(dead).toMatchObject({ subjects: [`${prefix}_dlq.>`], retention: 'limits', discard: 'new' });
    const timers = (await jsm.streams.info(`${prefix}_TIMERS`)).config;
    expect(timers).toMatchObject({ subjects: [`${prefix}_timers`], retention: 'workqueue' });
    // Unlimited on purpose: a future timer waits ack-pending, and any cap would cap how many can wait.
    const consumer = (await jsm.consumers.info(`${prefix}_TIMERS`, 'timers')).config;
    expect(consumer).toMatchObject({ max_ack_pending: -1, max_deliver: -1, ack_policy: 'explicit' });
  });

  it('stores an envelope published twice with the same id once, and counts the refused copy', async () => {
    const { bus, names } = await track();
    const envelope = makeEnvelope();
    const got: string[] = [];
    subscriptions.push(
      await bus.subscribe('dedup', { group: 'g', consumer: 'c1' }, async (d) => {
        got.push(d.envelope.id);
      }),
    );
    await bus.publish('dedup', [envelope]);
    // A command sent again with the same id (the orchestrator's redispatch): a harmless duplicate.
    await bus.publish('dedup', [envelope]);
    expect(bus.counters()['duplicatePublishes']).toBe(1);
    // The stream holds one message, so a second delivery cannot happen.
    expect((await jsm.streams.info(names.stream)).state.messages).toBe(1);
    await waitFor(async () => got.length === 1 && (await bus.pendingCount('dedup', 'g')) === 0, {
      timeoutMs: WAIT_MS,
    });
    expect(got).toEqual([envelope.id]);
  });

  it('shares a group between buses on separate connections (replicas in separate processes)', async () => {
    const { bus: one, names } = await track();
    const second = await createNatsBackend({ servers: nats.url, prefix: names.prefix });
    cleanups.push(() => second.close());
    const two = second.bus;
    const handledBy: Record<string, string[]> = { one: [], two: [] };
    for (const [name, bus] of [
      ['one', one],
      ['two', two],
    ] as const) {
      subscriptions.push(
        await bus.subscribe(
          'shared.work',
          { group: 'workers', consumer: name, concurrency: 2 },
          async (d) => {
            handledBy[name]?.push(d.envelope.id);
            await sleep(2);
          },
        ),
      );
    }
    const sent = Array.from({ length: 60 }, () => makeEnvelope());
    await one.publish('shared.work', sent);
    const all = (): string[] => [...(handledBy['one'] ?? []), ...(handledBy['two'] ?? [])];
    await waitFor(
      async () => all().length >= 60 && (await one.pendingCount('shared.work', 'workers')) === 0,
      {
        timeoutMs: WAIT_MS,
      },
    );
    expect(all().sort()).toEqual(sent.map((e) => e.id).sort());
    expect(handledBy['one']?.length).toBeGreaterThan(0);
    expect(handledBy['two']?.length).toBeGreaterThan(0);
  });

  it('refuses a publish when the stream is full instead of discarding older messages', async () => {
    const { bus } = await track({ maxMsgs: 3 });
    const sent = Array.from({ length: 3 }, () => makeEnvelope());
    await bus.publish('full', sent);
    await expect(bus.publish('full', [makeEnvelope()])).rejects.toMatchObject({
      code: ErrorCode.ResourceExhausted,
    });
    const got: string[] = [];
    subscriptions.push(
      await bus.subscribe('full', { group: 'g', consumer: 'c1', concurrency: 1 }, async (d) => {
        got.push(d.envelope.id);
      }),
    );
    await waitFor(() => got.length >= 3, { timeoutMs: WAIT_MS });
    expect(got).toEqual(sent.map((e) => e.id));
  });

  it("refuses an envelope above the server's max_payload as RESOURCE_EXHAUSTED, not to be retried", async () => {
    await NatsTestServer.withBackend({ config: 'max_payload: 16384' }, async (backend, small) => {
      const large = makeEnvelope({ payload: { blob: 'x'.repeat(20_000) } });
      expect(encodeEnvelope(large).length).toBeGreaterThan((await small.varz()).max_payload);
      await expect(backend.bus.publish('large', [large])).rejects.toMatchObject({
        code: ErrorCode.ResourceExhausted,
        retryable: false,
      });
      // Refused for its size alone: a small envelope goes through on the same connection.
      await backend.bus.publish('large', [makeEnvelope()]);
    });
  });

  it('dead-letters malformed bytes published directly, with the reason, and keeps going', async () => {
    const { bus } = await track();
    const good = makeEnvelope();
    const handled: string[] = [];
    subscriptions.push(
      await bus.subscribe('raw', { group: 'g', consumer: 'c1', concurrency: 1 }, async (d) => {
        handled.push(d.envelope.id);
      }),
    );
    await bus.publishRaw('raw', new TextEncoder().encode('{"not":"protobuf"}'));
    await bus.publish('raw', [good]);
    await waitFor(async () => (await bus.listDeadLetters('raw')).length === 1 && handled.length === 1, {
      timeoutMs: WAIT_MS,
    });
    const [dead] = await bus.listDeadLetters('raw');
    expect(dead).toMatchObject({ topic: 'raw', group: 'g', deliveryCount: 1 });
    expect(dead?.error).toMatch(/^undecodable message \(malformed\): /);
    expect(new TextDecoder().decode(dead?.data)).toBe('{"not":"protobuf"}');
    expect(handled).toEqual([good.id]);
    expect(await bus.pendingCount('raw', 'g')).toBe(0);
  });

  it('dead-letters an unsigned envelope when a signing key is configured (forgery refused before parsing)', async () => {
    const { bus } = await track({ codec: { signingKey: 'k1' } });
    const forged = makeEnvelope();
    const handled: string[] = [];
    subscriptions.push(
      await bus.subscribe('signed', { group: 'g', consumer: 'c1' }, async (d) => {
        handled.push(d.envelope.id);
      }),
    );
    await bus.publishRaw('signed', encodeEnvelope(forged));
    await waitFor(async () => (await bus.listDeadLetters('signed')).length === 1, { timeoutMs: WAIT_MS });
    const [dead] = await bus.listDeadLetters('signed');
    expect(dead?.envelope).toBeUndefined();
    expect(dead?.error).toContain('undecodable message (unsigned)');
    expect(bus.counters().refusedEnvelopes).toBe(1);
    expect(handled).toEqual([]);
  });

  it('dead-letters a message whose last allowed delivery hung past the visibility timeout', async () => {
    const { bus } = await track();
    const counts: number[] = [];
    let release!: () => void;
    const hang = new Promise<void>((resolve) => {
      release = resolve;
    });
    subscriptions.push(
      await bus.subscribe(
        'hang',
        { group: 'g', consumer: 'c1', maxDeliveries: 1, visibilityTimeoutMs: 300, retryDelayMs: 10 },
        async (d) => {
          counts.push(d.deliveryCount);
          await hang;
        },
      ),
    );
    await bus.publish('hang', [makeEnvelope()]);
    try {
      await waitFor(async () => (await bus.listDeadLetters('hang')).length === 1, { timeoutMs: WAIT_MS });
    } finally {
      release();
    }
    const [dead] = await bus.listDeadLetters('hang');
    expect(dead?.error).toContain('not acknowledged within the visibility timeout');
    expect(dead?.deliveryCount).toBe(1);
    expect(counts).toEqual([1]); // the handler never ran a second time
    await waitFor(async () => (await bus.pendingCount('hang', 'g')) === 0, { timeoutMs: WAIT_MS });
  });

  it("updates the group's ack_wait when a later subscriber asks for another visibility timeout", async () => {
    const backend = await track();
    const { bus } = backend;
    const first = await bus.subscribe(
      'ackwait',
      { group: 'g', consumer: 'c1', visibilityTimeoutMs: 30_000 },
      async () => {},
    );
    await first.close();
    subscriptions.push(
      await bus.subscribe(
        'ackwait',
        { group: 'g', consumer: 'c2', visibilityTimeoutMs: 1_500 },
        async () => {},
      ),
    );
    const { names } = backend;
    const info = await jsm.consumers.info(names.stream, names.consumerName('ackwait', 'g'));
    expect(info.config.ack_wait).toBe(1_500 * 1e6);
  });

  it('reports bad input with every problem listed', async () => {
    const { bus } = await track();
    await expect(bus.publish('bad topic', [makeEnvelope()])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    await expect(bus.publish('a..b', [makeEnvelope()])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    await expect(
      bus.subscribe(
        't',
        { group: '', consumer: '', concurrency: 0, visibilityTimeoutMs: -1 },
        async () => {},
      ),
    ).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      problems: [
        'group must be a non-empty string',
        'consumer must be a non-empty string',
        'concurrency must be an integer >= 1',
        'visibilityTimeoutMs must be an integer > 0',
      ],
    });
    expect(await bus.replayDeadLetter('t', 'not-a-sequence')).toBe(false);
    expect(await bus.discardDeadLetter('t', 'not-a-sequence')).toBe(false);
    expect(await bus.pendingCount('t', 'nobody')).toBe(0);
  });

  it("warns at start when the codec's size limit does not fit the server's max_payload", async () => {
    const warnings: LogFields[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (fields) => warnings.push(fields),
      error: () => undefined,
      child: () => logger,
    };
    await track({ logger, codec: { maxBytes: 1024 * 1024 } });
    expect(warnings).toEqual([
      expect.objectContaining({ maxPayload: 1024 * 1024, maxEnvelopeBytes: 1024 * 1024 }),
    ]);
    warnings.length = 0;
    await track({ logger, codec: { maxBytes: 512 * 1024 } });
    expect(warnings).toEqual([]);
  });

  it('deletes the consumer of a tail when the tail closes', async () => {
    const backend = await track();
    const consumers = async (): Promise<number> =>
      (await jsm.consumers.list(backend.names.stream).next()).length;
    const before = await consumers();
    const tail = await backend.bus.tail('tailed', () => undefined);
    expect(await consumers()).toBe(before + 1);
    await tail.close();
    expect(await consumers()).toBe(before);
  });

  it('keeps a shared connection open on close', async () => {
    const prefix = freshPrefix();
    const connection = await connect({ servers: nats.url });
    cleanups.push(async () => {
      await connection.close();
      await nats.destroy(prefix);
    });
    const backend = await createNatsBackend({ connection, prefix });
    await backend.bus.publish('shared', [makeEnvelope()]);
    await backend.close();
    expect(connection.isClosed()).toBe(false);
    await expect(backend.bus.publish('shared', [makeEnvelope()])).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
    });
  });

  it('refuses at start a stream that exists with a retention that could lose work', async () => {
    const prefix = freshPrefix();
    cleanups.push(() => nats.destroy(prefix));
    await jsm.streams.add({
      name: `${prefix}_BUS`,
      subjects: [`${prefix}.>`],
      retention: RetentionPolicy.Interest,
      discard: DiscardPolicy.Old,
    });
    await expect(createNatsBackend({ servers: nats.url, prefix })).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      details: { problems: ['retention is interest, must be limits', 'discard is old, must be new'] },
    });
  });

  it('reports a NATS server without JetStream as a configuration error at start', async () => {
    const plain = await startNatsServer({ jetStream: false });
    try {
      const started = createNatsBackend({
        servers: plain.url,
        prefix: freshPrefix(),
        requestTimeoutMs: 2_000,
      });
      await expect(started).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
      await expect(started).rejects.toThrow(/JetStream is not available.*-js/);
    } finally {
      await plain.stop();
    }
  }, 60_000);

  it('poison messages do not block a group and replays keep the original bytes', async () => {
    const { bus } = await track();
    const [poison, good] = [makeEnvelope(), makeEnvelope()] as [Envelope, Envelope];
    const seen: Delivery[] = [];
    subscriptions.push(
      await bus.subscribe('replay', { group: 'g', consumer: 'c1', concurrency: 1 }, async (d) => {
        seen.push(d);
        if (d.envelope.id === poison.id && seen.length === 1) throw new PoisonMessageError('bad');
      }),
    );
    await bus.publish('replay', [poison, good]);
    await waitFor(async () => seen.length === 2 && (await bus.listDeadLetters('replay')).length === 1, {
      timeoutMs: WAIT_MS,
    });
    const [dead] = await bus.listDeadLetters('replay');
    expect(dead?.data).toEqual(encodeEnvelope(poison));
    expect(await bus.replayDeadLetter('replay', dead?.id ?? '')).toBe(true);
    await waitFor(() => seen.length === 3, { timeoutMs: WAIT_MS });
    expect(seen[2]?.envelope).toEqual(poison);
    expect(await bus.listDeadLetters('replay')).toEqual([]);
  });

  it('publishes a replay with a header naming its group, and honours the header as written', async () => {
    const backend = await track();
    const { bus, names } = backend;
    const topic = 'marked';
    const subject = names.topicSubject(topic);
    const js = jsm.jetstream();
    const [forged, empty, repeated, replayed, last] = Array.from({ length: 5 }, () => makeEnvelope());
    const handled: Record<string, string[]> = { g1: [], g2: [] };
    let poisoned = false;
    for (const group of ['g1', 'g2']) {
      subscriptions.push(
        await bus.subscribe(topic, { group, consumer: 'c1', concurrency: 1 }, async (d) => {
          handled[group]?.push(d.envelope.id);
          if (group === 'g1' && d.envelope.id === replayed?.id && !poisoned) {
            poisoned = true;
            throw new PoisonMessageError('once');
          }
        }),
      );
    }
    const tailed: string[] = [];
    subscriptions.push(await bus.tail(topic, (envelope) => tailed.push(envelope.id)));
    const marked = async (envelope: Envelope | undefined, ...groups: string[]): Promise<void> => {
      const h = headers();
      for (const group of groups) h.append(REPLAY_GROUP_HEADER, group);
      await js.publish(subject, encodeEnvelope(envelope as Envelope), { headers: h });
    };
    await marked(forged, 'g2');
    await marked(empty, '');
    await marked(repeated, 'g1', 'g2');
    await bus.publish(topic, [replayed as Envelope]);
    // Two malformed ones in each group, and the replayed one in g1.
    await waitFor(async () => (await bus.listDeadLetters(topic)).length === 5, { timeoutMs: WAIT_MS });
    const dead = (await bus.listDeadLetters(topic)).find((d) => d.envelope?.id === replayed?.id);
    expect(dead?.group).toBe('g1');
    expect(await bus.replayDeadLetter(topic, dead?.id ?? '')).toBe(true);
    await bus.publish(topic, [last as Envelope]);
    await waitFor(
      () => handled['g1']?.length === 3 && handled['g2']?.length === 3 && tailed.includes(last?.id ?? ''),
      {
        timeoutMs: WAIT_MS,
      },
    );
    for (const group of ['g1', 'g2']) {
      await waitFor(async () => (await bus.pendingCount(topic, group)) === 0, { timeoutMs: WAIT_MS });
    }

    expect(handled).toEqual({
      g1: [replayed?.id, replayed?.id, last?.id],
      g2: [forged?.id, replayed?.id, last?.id],
    });
    expect(tailed).toEqual([replayed?.id, last?.id]);
    const malformed = (await bus.listDeadLetters(topic)).map((d) => [d.group, d.envelope?.id, d.error]);
    expect(malformed.sort()).toEqual(
      [
        ['g1', empty?.id, MALFORMED_REPLAY_ERROR],
        ['g1', repeated?.id, MALFORMED_REPLAY_ERROR],
        ['g2', empty?.id, MALFORMED_REPLAY_ERROR],
        ['g2', repeated?.id, MALFORMED_REPLAY_ERROR],
      ].sort(),
    );
    // The replay in the topic stream: its bytes, and the header naming the group it is for.
    const stored = await jsm.streams.getMessage(names.stream, { last_by_subj: subject });
    expect(stored).not.toBeNull();
    const replay = await jsm.streams.getMessage(names.stream, { seq: (stored?.seq ?? 0) - 1 });
    expect(replay?.header.get(REPLAY_GROUP_HEADER)).toBe('g1');
    expect(replay?.data).toEqual(encodeEnvelope(replayed as Envelope));
  });

  it("acknowledges another group's replay unseen, never dead-lettering it, whatever its delivery count", async () => {
    const { bus, names } = await track();
    const topic = 'marked-redelivered';
    const options = { group: 'g2', consumer: 'c1', maxDeliveries: 1, visibilityTimeoutMs: 200 };
    // Creates the group, then leaves it: the next delivery is taken and never settled (a crash).
    await (await bus.subscribe(topic, options, async () => {})).close();
    const h = headers();
    h.set(REPLAY_GROUP_HEADER, 'g1');
    await jsm.jetstream().publish(names.topicSubject(topic), encodeEnvelope(makeEnvelope()), { headers: h });
    const consumer = await jsm.jetstream().consumers.get(names.stream, names.consumerName(topic, 'g2'));
    expect((await consumer.next({ expires: WAIT_MS }))?.info.deliveryCount).toBe(1);

    const seen: number[] = [];
    subscriptions.push(await bus.subscribe(topic, options, async (d) => void seen.push(d.deliveryCount)));
    // Delivered again past maxDeliveries once ack_wait is over: acknowledged, not a dead letter.
    await waitFor(async () => (await bus.pendingCount(topic, 'g2')) === 0, { timeoutMs: WAIT_MS });
    expect(seen).toEqual([]);
    expect(await bus.listDeadLetters(topic)).toEqual([]);
    expect(bus.counters()['deadLettered']).toBe(0);
  });
});

describe('NatsEventBus across a nats-server crash', () => {
  it('reconnects after kill -9 and a restart on the same store: no acked publish lost, unacked work redelivered', async () => {
    const crashing = await startNatsServer();
    const backend = await createNatsBackend({
      servers: crashing.url,
      prefix: freshPrefix(),
      reconnectTimeWaitMs: 100,
      fetchExpiresMs: 1_000,
      requestTimeoutMs: 2_000,
    });
    const bus = backend.bus;
    let restored = 0;
    bus.onRestored(() => (restored += 1));
    let release!: () => void;
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const [held, beforeCrash, afterRestart] = [makeEnvelope(), makeEnvelope(), makeEnvelope()] as [
        Envelope,
        Envelope,
        Envelope,
      ];
      const seen: Array<[string, number]> = [];
      const subscription = await bus.subscribe(
        'crash',
        { group: 'g', consumer: 'c1', visibilityTimeoutMs: 1_000 },
        async (d) => {
          seen.push([d.envelope.id, d.deliveryCount]);
          if (d.envelope.id === held.id && d.deliveryCount === 1) await hold;
        },
      );
      await bus.publish('crash', [held]);
      await waitFor(() => seen.length === 1, { timeoutMs: WAIT_MS });
      // Acked by JetStream before the crash; the subscriber may or may not get it before the kill.
      await bus.publish('crash', [beforeCrash]);
      // JetStream's file store writes to the OS asynchronously after acking: wait until it did,
      // so the kill tests the bus's reconnect rather than the broker's flush window.
      await waitFor(() => isOnDisk(crashing.dir, beforeCrash.id), { timeoutMs: WAIT_MS });
      crashing.kill('SIGKILL');
      await crashing.restart();

      // One call, no retry loop here: the bus waits for the reconnect itself (the client drops
      // what it buffered while disconnected, so a naive publish would wait out its timeout).
      const restartedAt = Date.now();
      await bus.publish('crash', [afterRestart]);
      // It resolved (a publish lost in the client's buffer would have rejected on its timeout);
      // the bound only catches a hang.
      expect(Date.now() - restartedAt).toBeLessThan(20_000);
      const ids = (): string[] => seen.map(([id]) => id);
      await waitFor(
        () =>
          ids().includes(beforeCrash.id) &&
          ids().includes(afterRestart.id) &&
          seen.some(([id, count]) => id === held.id && count >= 2),
        { timeoutMs: WAIT_MS, intervalMs: 50, description: 'redelivery and new messages after restart' },
      );
      release();
      await waitFor(async () => (await bus.pendingCount('crash', 'g')) === 0, { timeoutMs: WAIT_MS });
      await subscription.close();
      expect(await bus.listDeadLetters('crash')).toEqual([]);
      // The orchestrator re-checks every command it waits on when told the broker came back.
      expect(restored).toBeGreaterThanOrEqual(1);
    } finally {
      release();
      await backend.close();
      await crashing.stop();
    }
  }, 120_000);

  it('closes within its request timeout while the server is down', async () => {
    const doomed = await startNatsServer();
    const backend = await createNatsBackend({
      servers: doomed.url,
      prefix: freshPrefix(),
      requestTimeoutMs: 1_000,
    });
    const bus = backend.bus;
    try {
      const handled: string[] = [];
      await bus.subscribe('down', { group: 'g', consumer: 'c1' }, async (d) => {
        handled.push(d.envelope.id);
      });
      await bus.publish('down', [makeEnvelope()]);
      await waitFor(() => handled.length === 1, { timeoutMs: WAIT_MS });
      doomed.kill('SIGKILL');
      await waitFor(async () => !(await listening(doomed.port)), { timeoutMs: WAIT_MS });
      const started = Date.now();
      await backend.close();
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await backend.close();
      await doomed.stop();
    }
  }, 60_000);
});
