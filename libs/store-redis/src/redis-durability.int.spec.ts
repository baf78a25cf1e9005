import { RunState, type Run } from '@multiagents/contracts';
import type { Effect, Timer } from '@multiagents/core';
import {
  makeEnvelope,
  makeRun,
  sleep,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { RedisDefinitionStore } from './redis-definition-store';
import { RedisStateStore } from './redis-state-store';
import { RedisTimerStore } from './redis-timer-store';

// Crash durability with the production setting: append-only file, fsync every second.
let server: ServerProcess;

beforeAll(async () => {
  server = await startRedisServer({ appendOnly: true });
});

afterAll(async () => {
  await server.stop();
});

function publish(n: number): Effect {
  return { type: 'publish', topic: 'commands.charge', envelope: makeEnvelope({ payload: { n } }) };
}

it('keeps every run, outbox, timer and definition written before Redis was killed with -9', async () => {
  const options = { url: server.url, prefix: 'durable' };
  const store = new RedisStateStore(options);
  const timers = new RedisTimerStore(options);
  const definitions = new RedisDefinitionStore(options);
  try {
    const runs: Run[] = [];
    for (let i = 0; i < 20; i += 1) {
      const run = makeRun({ workflowId: 'orders' });
      await store.create(run, [publish(i)], `key-${i}`);
      const next = {
        ...run,
        state: i % 2 === 0 ? RunState.Completed : RunState.Waiting,
        updatedAt: run.updatedAt + 1,
      };
      await store.compareAndSet(run.txId, 1, next, [publish(100 + i)]);
      runs.push(next);
    }
    const scheduled: Timer[] = Array.from({ length: 10 }, (_, i) => ({
      id: `timer-${i}`,
      txId: runs[i]?.txId ?? '',
      dueAt: 1_800_000_000_000 + i,
      payload: { kind: 'sleep', step: 'nap', attempt: 1 },
    }));
    await timers.schedule(scheduled);
    const definition = {
      id: 'orders',
      version: 3,
      steps: [{ kind: 'task' as const, name: 's', worker: 'w' }],
    };
    await definitions.put(definition);

    await sleep(1_200); // appendfsync everysec: let the last second reach the disk
    server.kill('SIGKILL');
    await server.restart();

    // The same store objects reconnect by themselves (scripts reload on the new connection).
    await waitFor(async () => (await store.get(runs[0]?.txId ?? '')) !== undefined, {
      timeoutMs: 8_000,
      intervalMs: 100,
      description: 'the store reconnected',
    });
    for (const [i, run] of runs.entries()) {
      const stored = await store.get(run.txId);
      expect(stored?.version).toBe(2);
      expect(stored?.run).toEqual(run);
      expect(stored?.outbox.map((e) => e.version)).toEqual([1, 2]);
      expect(await store.create(makeRun(), [], `key-${i}`)).toEqual({ created: false, txId: run.txId });
    }
    expect((await store.list({ workflowId: 'orders' }, 100)).runs).toHaveLength(20);
    expect((await store.list({ state: RunState.Completed }, 100)).runs).toHaveLength(10);
    expect(await store.listPendingOutbox(Number.MAX_SAFE_INTEGER, 100)).toHaveLength(20);
    expect(await timers.claimDue(1_900_000_000_000, 100, 1_000)).toEqual(scheduled);
    expect(await definitions.get('orders')).toEqual(definition);
  } finally {
    await Promise.all([store.close(), timers.close(), definitions.close()]);
  }
}, 20_000);
