import { ErrorCode, RunState, type WorkflowDefinition } from '@multiagents/contracts';
import type { Effect } from '@multiagents/core';
import { freePort, makeEnvelope, makeRun, startServerProcess, waitFor } from '@multiagents/testing';
import { NatsDefinitionStore } from './nats-definition-store';
import { NatsStateStore } from './nats-state-store';
import { NatsTimerStore } from './nats-timer-store';
import { freshPrefix, startNatsTestServer, type NatsTestServer } from './test-nats';

// One private nats-server for this file; these tests kill it and start it again (same store dir).
let nats: NatsTestServer;
beforeAll(async () => {
  nats = await startNatsTestServer();
});
afterAll(async () => {
  await nats.stop();
});

const publish = (n: number): Effect => ({
  type: 'publish',
  topic: 'events',
  envelope: makeEnvelope({ payload: { n } }),
});
const definition: WorkflowDefinition = {
  id: 'orders',
  version: 1,
  steps: [{ kind: 'sleep', name: 's', durationMs: 5 }],
};
const T0 = 1_800_000_000_000;

describe('NATS stores under faults', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  }, 30_000);

  function stores(requestTimeoutMs = 1_000): {
    state: NatsStateStore;
    timers: NatsTimerStore;
    definitions: NatsDefinitionStore;
  } {
    const prefix = freshPrefix('f');
    const options = { servers: nats.url, prefix, requestTimeoutMs };
    const state = new NatsStateStore(options);
    const timers = new NatsTimerStore(options);
    const definitions = new NatsDefinitionStore(options);
    closers.push(async () => {
      await Promise.all([state.close(), timers.close(), definitions.close()]);
      await nats.destroyPrefix(prefix);
    });
    return { state, timers, definitions };
  }

  it('keeps everything written before a kill -9 of nats-server, and works again once it is back', async () => {
    const { state, timers, definitions } = stores();
    const run = makeRun({ state: RunState.Running });
    await state.create(run, [publish(1)], 'order-1');
    await state.compareAndSet(run.txId, 1, { ...run, state: RunState.Waiting }, [publish(2)]);
    await timers.schedule([
      { id: 'tm', txId: run.txId, dueAt: T0, payload: { kind: 'sleep', step: 's', attempt: 1 } },
    ]);
    await definitions.put(definition);

    nats.server.kill('SIGKILL');
    await nats.server.restart();
    const restartedAt = Date.now();
    // The clients reconnect by themselves; the first read that answers marks the recovery.
    await waitFor(async () => (await state.get(run.txId).catch(() => undefined)) !== undefined, {
      timeoutMs: 10_000,
      description: 'the state store answering after the restart',
    });
    const recoveryMs = Date.now() - restartedAt;

    const stored = await state.get(run.txId);
    expect(stored?.version).toBe(2);
    expect(stored?.run.state).toBe(RunState.Waiting);
    expect(stored?.outbox.map((e) => e.version)).toEqual([1, 2]);
    expect((await state.list({ state: RunState.Waiting }, 10)).runs.map((r) => r.txId)).toEqual([run.txId]);
    expect((await state.listPendingOutbox(Date.now() + 60_000, 10)).map((p) => p.txId)).toEqual([run.txId]);
    expect(await state.create(makeRun(), [], 'order-1')).toEqual({ created: false, txId: run.txId });
    expect(await definitions.get('orders')).toEqual(definition);
    expect((await timers.claimDue(T0, 10, 1_000)).map((t) => t.id)).toEqual(['tm']);
    expect(await state.compareAndSet(run.txId, 2, { ...run, state: RunState.Completed }, [])).toBe(3);
    expect(recoveryMs).toBeLessThan(10_000);
  }, 30_000);

  it('rejects operations during an outage within a bounded time, with a clear error', async () => {
    const { state, timers } = stores(300);
    const run = makeRun();
    await state.create(run, []);
    await timers.start();

    nats.server.kill('SIGKILL');
    try {
      for (const op of [
        () => state.get(run.txId),
        () => state.compareAndSet(run.txId, 1, run, []),
        () => state.list({}, 10),
        () => timers.claimDue(T0, 10, 1_000),
      ]) {
        const started = Date.now();
        await expect(op()).rejects.toMatchObject({
          code: ErrorCode.Timeout,
          retryable: true,
          message: expect.stringMatching(/did not answer within 300 ms/),
        });
        // Bounded, not hanging (generous: a loaded 2-core CI machine is slow).
        expect(Date.now() - started).toBeLessThan(5_000);
      }
    } finally {
      await nats.server.restart();
    }
    await waitFor(async () => (await state.get(run.txId).catch(() => undefined)) !== undefined, {
      timeoutMs: 10_000,
      description: 'the store answering again',
    });
  }, 30_000);

  it('refuses to start against a server without JetStream, saying so', async () => {
    const plain = await startServerProcess(
      'nats-nojs',
      'nats-server',
      (port) => ['-a', '127.0.0.1', '-p', String(port)],
      (port) => `nats://127.0.0.1:${port}`,
    );
    try {
      const store = new NatsStateStore({ servers: plain.url, requestTimeoutMs: 1_000 });
      await expect(store.start()).rejects.toMatchObject({
        code: ErrorCode.FailedPrecondition,
        message: expect.stringMatching(/has no JetStream \(start nats-server with -js/),
      });
      await store.close();
    } finally {
      await plain.stop();
    }
  });

  it('refuses to start, within its timeout, when no server listens', async () => {
    const store = new NatsTimerStore({
      servers: `nats://127.0.0.1:${await freePort()}`,
      requestTimeoutMs: 500,
    });
    const started = Date.now();
    await expect(store.start()).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+/),
    });
    expect(Date.now() - started).toBeLessThan(4_000);
    await store.close();
  });

  it('refuses to start with more bucket replicas than the servers can hold, naming the bucket', async () => {
    const prefix = freshPrefix('r3');
    const store = new NatsStateStore({ servers: nats.url, prefix, replicas: 3, requestTimeoutMs: 2_000 });
    await expect(store.start()).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(
        new RegExp(`cannot open or create bucket ${prefix}-runs with 3 replica`),
      ),
    });
    await store.close();
    await nats.destroyPrefix(prefix);
  });

  it('works on a connection the application owns, and leaves it open on close', async () => {
    const { connect } = await import('@nats-io/transport-node');
    const connection = await connect({ servers: nats.url });
    const prefix = freshPrefix('own');
    try {
      const store = new NatsDefinitionStore({ connection, prefix });
      expect(await store.put(definition)).toBe(true);
      await store.close();
      expect(connection.isClosed()).toBe(false);
      await expect(store.get('orders')).rejects.toThrow('closed');
    } finally {
      await connection.close();
      await nats.destroyPrefix(prefix);
    }
  });
});
