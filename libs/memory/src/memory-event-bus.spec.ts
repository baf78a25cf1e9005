import { ErrorCode, PoisonMessageError, encodeEnvelope, type Envelope } from '@multiagents/contracts';
import type { Delivery } from '@multiagents/core';
import { eventBusConformance, makeEnvelope, sleep, waitFor } from '@multiagents/testing';
import { MemoryEventBus } from './memory-event-bus';

eventBusConformance('MemoryEventBus', async () => {
  const bus = new MemoryEventBus();
  return { bus, publishRaw: (topic, bytes) => bus.publishRaw(topic, bytes) };
});

describe('MemoryEventBus specifics', () => {
  let bus: MemoryEventBus;
  const releases: Array<() => void> = [];

  beforeEach(() => {
    bus = new MemoryEventBus();
  });

  afterEach(async () => {
    for (const release of releases.splice(0)) release();
    await bus.close();
  });

  const envelopes = (n: number): Envelope[] =>
    Array.from({ length: n }, (_, i) => makeEnvelope({ payload: { i } }));
  const parked = (): Promise<void> => new Promise((resolve) => releases.push(resolve));
  /**
   * Visibility timeout of the ownership tests: the delivery that must keep the message extends it
   * every tenth of this, so only a stall of nine tenths of it could take the message away.
   */
  const VISIBILITY_MS = 500;
  /** Keeps `delivery`'s lease until `released` settles. */
  const extendUntil = async (delivery: Delivery, released: Promise<void>): Promise<void> => {
    const timer = setInterval(() => void delivery.extend(), VISIBILITY_MS / 10);
    try {
      await released;
    } finally {
      clearInterval(timer);
    }
  };

  describe('retention', () => {
    it('keeps at most maxRetainedPerTopic messages for groups that do not exist yet, dropping the oldest', async () => {
      bus = new MemoryEventBus({ maxRetainedPerTopic: 3 });
      const sent = envelopes(5);
      await bus.publish('t', sent);
      expect(bus.retainedCount('t')).toBe(3);

      const got: string[] = [];
      await bus.subscribe('t', { group: 'g', consumer: 'c' }, async (d) => {
        got.push(d.envelope.id);
      });
      await waitFor(() => got.length === 3);
      expect(got).toEqual(sent.slice(2).map((e) => e.id));
    });

    it('trims what every group has read, and keeps what the slowest group has not', async () => {
      const handled = { fast: 0, slow: 0 };
      await bus.subscribe('t', { group: 'fast', consumer: 'c' }, async () => {
        handled.fast += 1;
      });
      const slow = await bus.subscribe('t', { group: 'slow', consumer: 'c' }, async () => {
        handled.slow += 1;
      });
      await slow.close();
      await bus.publish('t', envelopes(50));
      await waitFor(() => handled.fast === 50);
      await sleep(5);
      expect(bus.retainedCount('t')).toBe(50); // the slow group has not read them

      await bus.subscribe('t', { group: 'slow', consumer: 'c2' }, async () => {
        handled.slow += 1;
      });
      await waitFor(() => handled.slow === 50);
      await waitFor(() => bus.retainedCount('t') === 0, { description: 'log trimmed' });
    });

    it('keeps a replayed dead letter until another group, reading later, has passed over it', async () => {
      const handled: Record<string, number> = { poisoned: 0, other: 0 };
      await bus.subscribe('t', { group: 'poisoned', consumer: 'c' }, async () => {
        handled['poisoned'] = (handled['poisoned'] ?? 0) + 1;
        if (handled['poisoned'] === 1) throw new PoisonMessageError('once');
      });
      const other = await bus.subscribe('t', { group: 'other', consumer: 'c' }, async () => {
        handled['other'] = (handled['other'] ?? 0) + 1;
      });
      await bus.publish('t', envelopes(1));
      await waitFor(async () => handled['other'] === 1 && (await bus.listDeadLetters('t')).length === 1);
      await other.close();
      const [dead] = await bus.listDeadLetters('t');
      expect(await bus.replayDeadLetter('t', dead?.id ?? '')).toBe(true);
      await waitFor(() => handled['poisoned'] === 2);
      await sleep(5);
      expect(bus.retainedCount('t')).toBe(1); // 'other' has not read past it yet

      await bus.subscribe('t', { group: 'other', consumer: 'c2' }, async () => {
        handled['other'] = (handled['other'] ?? 0) + 1;
      });
      await waitFor(() => bus.retainedCount('t') === 0, { description: 'log trimmed' });
      expect(handled).toEqual({ poisoned: 2, other: 1 });
      expect((await bus.topicStats('t')).groups).toEqual([
        { group: 'other', pending: 0, lag: 0 },
        { group: 'poisoned', pending: 0, lag: 0 },
      ]);
    });

    it('caps dead letters per topic, dropping the oldest', async () => {
      bus = new MemoryEventBus({ maxDeadLettersPerTopic: 2 });
      const sent = envelopes(3);
      await bus.subscribe('t', { group: 'g', consumer: 'c', concurrency: 1 }, async () => {
        throw new PoisonMessageError('never');
      });
      await bus.publish('t', sent);
      await waitFor(async () => (await bus.pendingCount('t', 'g')) === 0 && bus.retainedCount('t') === 0);
      await waitFor(async () => (await bus.listDeadLetters('t')).at(-1)?.envelope?.id === sent[2]?.id);
      expect((await bus.listDeadLetters('t')).map((d) => d.envelope?.id)).toEqual([sent[1]?.id, sent[2]?.id]);
    });
  });

  describe('ownership of a message after a visibility timeout', () => {
    it('ignores the ack of a superseded delivery while the newest one still runs', async () => {
      const seen: number[] = [];
      const gates: Array<() => void> = [];
      await bus.subscribe(
        't',
        { group: 'g', consumer: 'c', visibilityTimeoutMs: VISIBILITY_MS },
        async (d) => {
          seen.push(d.deliveryCount);
          // Delivery 1 hangs until superseded; delivery 2 keeps its lease until the test lets it go.
          if (d.deliveryCount === 1) await new Promise<void>((resolve) => gates.push(resolve));
          else if (d.deliveryCount === 2)
            await extendUntil(d, new Promise<void>((resolve) => gates.push(resolve)));
        },
      );
      await bus.publish('t', envelopes(1));
      await waitFor(() => seen.length >= 2);

      gates[0]?.(); // delivery 1 finishes late: delivery 2 owns the message now
      await sleep(10);
      expect(await bus.pendingCount('t', 'g')).toBe(1);
      gates[1]?.();
      await waitFor(async () => (await bus.pendingCount('t', 'g')) === 0);
      expect(seen).toEqual([1, 2]);
    });

    it('ignores a failure of a superseded delivery (no retry, no dead letter)', async () => {
      const seen: number[] = [];
      let failFirst: (() => void) | undefined;
      let finishSecond: (() => void) | undefined;
      await bus.subscribe(
        't',
        { group: 'g', consumer: 'c', visibilityTimeoutMs: VISIBILITY_MS, maxDeliveries: 2, retryDelayMs: 0 },
        async (d) => {
          seen.push(d.deliveryCount);
          if (d.deliveryCount === 1) {
            await new Promise<void>((resolve) => (failFirst = resolve));
            throw new PoisonMessageError('late poison');
          }
          await extendUntil(d, new Promise<void>((resolve) => (finishSecond = resolve)));
        },
      );
      await bus.publish('t', envelopes(1));
      await waitFor(() => seen.length >= 2);
      failFirst?.();
      await sleep(20);
      expect(await bus.listDeadLetters('t')).toEqual([]);
      expect(await bus.pendingCount('t', 'g')).toBe(1);
      finishSecond?.();
      await waitFor(async () => (await bus.pendingCount('t', 'g')) === 0);
      expect(seen).toEqual([1, 2]);
    });

    it('dead-letters a message whose handler hangs on every one of maxDeliveries deliveries', async () => {
      const seen: number[] = [];
      await bus.subscribe(
        't',
        { group: 'g', consumer: 'c', visibilityTimeoutMs: 30, maxDeliveries: 2 },
        async (d) => {
          seen.push(d.deliveryCount);
          await parked();
        },
      );
      await bus.publish('t', envelopes(1));
      await waitFor(async () => (await bus.listDeadLetters('t')).length === 1);
      const [dead] = await bus.listDeadLetters('t');
      expect(seen).toEqual([1, 2]);
      expect(dead?.deliveryCount).toBe(2);
      expect(dead?.error).toContain('visibility timeout');
      expect(await bus.pendingCount('t', 'g')).toBe(0);
    });

    it('ignores extend() from a superseded delivery', async () => {
      const deliveries: Delivery[] = [];
      await bus.subscribe(
        't',
        { group: 'g', consumer: 'c', visibilityTimeoutMs: 40, maxDeliveries: 100 },
        async (d) => {
          deliveries.push(d);
          await parked();
        },
      );
      await bus.publish('t', envelopes(1));
      await waitFor(() => deliveries.length >= 2);
      // However many deliveries came by now, the first one cannot hold the message back: the
      // next delivery still comes (with the extends obeyed, none would come again).
      const before = deliveries.length;
      const extendFirst = setInterval(() => void deliveries[0]?.extend(), 5);
      try {
        await waitFor(() => deliveries.length > before, { description: 'the next delivery' });
      } finally {
        clearInterval(extendFirst);
      }
      expect(deliveries.map((d) => d.deliveryCount)).toEqual(deliveries.map((_, i) => i + 1));
    });
  });

  describe('publishing', () => {
    it('publishes all envelopes of a call or none', async () => {
      const circular: Record<string, unknown> = {};
      circular['self'] = circular;
      await expect(bus.publish('t', [makeEnvelope(), makeEnvelope({ payload: circular })])).rejects.toThrow();
      expect(bus.retainedCount('t')).toBe(0);
    });

    it('copies raw bytes, so changing them after publishRaw changes nothing', async () => {
      const bytes = Uint8Array.of(0xff, 0xfe, 0xfd);
      await bus.subscribe('t', { group: 'g', consumer: 'c' }, async () => undefined);
      await bus.publishRaw('t', bytes);
      bytes.fill(0);
      await waitFor(async () => (await bus.listDeadLetters('t')).length === 1);
      const [dead] = await bus.listDeadLetters('t');
      expect(Array.from(dead?.data ?? [])).toEqual([0xff, 0xfe, 0xfd]);
      expect(dead?.error).toMatch(/^undecodable message \(malformed\): /);
      expect(dead?.deliveryCount).toBe(1);
    });

    it('signs with the codec options and dead-letters a message signed with another key', async () => {
      bus = new MemoryEventBus({ codec: { signingKey: 'embedded-secret' } });
      const [forged, genuine] = envelopes(2) as [Envelope, Envelope];
      const handled: string[] = [];
      await bus.subscribe('t', { group: 'g', consumer: 'c', concurrency: 1 }, async (d) => {
        handled.push(d.envelope.id);
      });
      await bus.publishRaw('t', encodeEnvelope(forged, { signingKey: 'someone-else' }));
      await bus.publish('t', [genuine]);
      await waitFor(() => handled.length === 1);
      await waitFor(async () => (await bus.listDeadLetters('t')).length === 1);

      expect(handled).toEqual([genuine.id]);
      const [dead] = await bus.listDeadLetters('t');
      expect(dead?.error).toMatch(/^undecodable message \(bad_signature\): /);
      expect(dead?.envelope).toBeUndefined();
    });

    it('refuses to publish or subscribe after close', async () => {
      await bus.close();
      await expect(bus.publish('t', envelopes(1))).rejects.toThrow('closed');
      await expect(bus.subscribe('t', { group: 'g', consumer: 'c' }, async () => undefined)).rejects.toThrow(
        'closed',
      );
    });
  });

  describe('options', () => {
    it('reports every invalid subscribe option at once', async () => {
      await expect(
        bus.subscribe(
          't',
          {
            group: '',
            consumer: 'c',
            concurrency: 0,
            maxDeliveries: 1.5,
            visibilityTimeoutMs: 0,
            retryDelayMs: -1,
          },
          async () => undefined,
        ),
      ).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
        problems: [
          'group must be a non-empty string',
          'concurrency must be an integer >= 1',
          'maxDeliveries must be an integer >= 1',
          'visibilityTimeoutMs must be an integer > 0',
          'retryDelayMs must be an integer >= 0',
        ],
      });
    });

    it('reports invalid bus options', () => {
      expect(() => new MemoryEventBus({ maxRetainedPerTopic: -1, maxDeadLettersPerTopic: 0 })).toThrow(
        /maxRetainedPerTopic.*maxDeadLettersPerTopic/,
      );
    });
  });

  describe('timers', () => {
    it('never keeps the process alive with a pending redelivery, and clears its timer on close', async () => {
      const setSpy = jest.spyOn(global, 'setTimeout');
      const clearSpy = jest.spyOn(global, 'clearTimeout');
      try {
        let calls = 0;
        await bus.subscribe('t', { group: 'g', consumer: 'c', retryDelayMs: 60_000 }, async () => {
          calls += 1;
          throw new Error('later');
        });
        await bus.publish('t', envelopes(1));
        await waitFor(() => calls === 1);
        // The bus's deadline timers are the long ones (the test's own polling uses a few ms).
        const timers = setSpy.mock.calls
          .map(([, delay], i) => ({ delay, timer: setSpy.mock.results[i]?.value as NodeJS.Timeout }))
          .filter(({ delay }) => typeof delay === 'number' && delay >= 1_000)
          .map(({ timer }) => timer);
        expect(timers.length).toBeGreaterThan(0);
        expect(timers.map((t) => t.hasRef())).toEqual(timers.map(() => false));

        await bus.close();
        expect(clearSpy).toHaveBeenCalledWith(timers.at(-1));
      } finally {
        setSpy.mockRestore();
        clearSpy.mockRestore();
      }
    });
  });

  describe('load', () => {
    it('delivers 20 000 messages across two consumers with random failures, each acked exactly once', async () => {
      const total = 20_000;
      const acked = new Map<string, number>();
      let seed = 42;
      const random = (): number => {
        // A fixed LCG: the failure pattern is the same on every run.
        seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
        return seed / 2_147_483_648;
      };
      for (const consumer of ['c1', 'c2']) {
        await bus.subscribe('t', { group: 'g', consumer, retryDelayMs: 0, maxDeliveries: 100 }, async (d) => {
          if (random() < 0.1) throw new Error('flaky');
          acked.set(d.envelope.id, (acked.get(d.envelope.id) ?? 0) + 1);
        });
      }
      const sent = envelopes(total);
      for (let i = 0; i < total; i += 1000) await bus.publish('t', sent.slice(i, i + 1000));
      await waitFor(() => acked.size === total, { timeoutMs: 10_000 });
      await waitFor(async () => (await bus.pendingCount('t', 'g')) === 0);

      expect([...acked.values()].every((n) => n === 1)).toBe(true);
      expect(await bus.listDeadLetters('t')).toEqual([]);
      expect(bus.retainedCount('t')).toBe(0);
    });
  });
});
