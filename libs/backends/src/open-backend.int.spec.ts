import { Topics, type Envelope } from '@multiagents/contracts';
import {
  makeEnvelope,
  makeRun,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { openBackend, type Backend } from './open-backend';

/** Every backend, opened from a service configuration, carries a message and stores a run. */
async function exercise(backend: Backend): Promise<void> {
  const got: Envelope[] = [];
  const subscription = await backend.bus.subscribe(
    Topics.results,
    { group: 'g', consumer: 'c', visibilityTimeoutMs: 5_000 },
    async (delivery) => void got.push(delivery.envelope),
  );
  const envelope = makeEnvelope();
  await backend.bus.publish(Topics.results, [envelope]);
  await waitFor(() => got.length === 1, { timeoutMs: 8_000 });
  expect(got[0]?.id).toBe(envelope.id);
  await subscription.close();

  const run = makeRun();
  expect(await backend.store.create(run, [])).toEqual({ created: true, txId: run.txId });
  expect((await backend.store.get(run.txId))?.run.txId).toBe(run.txId);
  await backend.timers.schedule([
    { id: 't-1', txId: run.txId, dueAt: 1, payload: { kind: 'sleep', step: 's', attempt: 1 } },
  ]);
  expect((await backend.timers.claimDue(2, 10, 1_000)).map((t) => t.id)).toEqual(['t-1']);
  expect(await backend.definitions.list()).toEqual([]);
}

describe('openBackend', () => {
  it('opens the memory backend', async () => {
    const backend = await openBackend({ backend: 'memory', prefix: 'p' });
    try {
      await exercise(backend);
    } finally {
      await backend.close();
    }
  });

  describe.each([
    ['redis', () => startRedisServer(), (s: ServerProcess) => ({ redisUrl: s.url })],
    ['nats', () => startNatsServer(), (s: ServerProcess) => ({ natsUrl: s.url })],
  ] as const)('%s', (name, start, urls) => {
    let server: ServerProcess;
    beforeAll(async () => {
      server = await start();
    });
    afterAll(async () => {
      await server.stop();
    });

    it(`opens the ${name} backend with maintenance on, and closes it`, async () => {
      const backend = await openBackend(
        { backend: name, prefix: `ob-${name}`, ...urls(server) },
        { maintenance: true },
      );
      try {
        await exercise(backend);
      } finally {
        await backend.close();
      }
    }, 30_000);
  });

  it('says which URL a backend needs', async () => {
    await expect(openBackend({ backend: 'redis', prefix: 'p' })).rejects.toThrow(/REDIS_URL is required/);
    await expect(openBackend({ backend: 'nats', prefix: 'p' })).rejects.toThrow(/NATS_URL is required/);
  });
});
