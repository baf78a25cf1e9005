import { ErrorCode, RunState, type Run } from '@multiagents/contracts';
import type { Effect } from '@multiagents/core';
import {
  makeEnvelope,
  makeRun,
  startRedisServer,
  stateStoreConformance,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { Redis } from 'ioredis';
import { RedisKeys } from './redis-keys';
import { RedisStateStore, type RedisStateStoreOptions } from './redis-state-store';

let server: ServerProcess;
let admin: Redis;
let prefixes = 0;
const freshPrefix = (): string => `t${process.pid}-${++prefixes}`;

beforeAll(async () => {
  server = await startRedisServer();
  admin = new Redis(server.url);
});

afterAll(async () => {
  await admin.quit();
  await server.stop();
});

stateStoreConformance('redis', async () => ({
  store: new RedisStateStore({ url: server.url, prefix: freshPrefix() }),
}));

function publish(n: number): Effect {
  return { type: 'publish', topic: 'commands.charge', envelope: makeEnvelope({ payload: { n } }) };
}

function next(run: Run, changes: Partial<Run>): Run {
  return { ...run, updatedAt: run.updatedAt + 1, ...changes };
}

describe('RedisStateStore (adapter-specific)', () => {
  const open: RedisStateStore[] = [];
  let prefix: string;
  let keys: RedisKeys;
  const storeWith = (options: Partial<RedisStateStoreOptions> = {}): RedisStateStore => {
    const store = new RedisStateStore({ url: server.url, prefix, ...options });
    open.push(store);
    return store;
  };

  beforeEach(() => {
    prefix = freshPrefix();
    keys = new RedisKeys(prefix);
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((store) => store.close()));
  });

  it('lets exactly one of 20 concurrent CAS on one version win, from 5 connections', async () => {
    const stores = Array.from({ length: 5 }, () => storeWith());
    const run = makeRun();
    await stores[0]?.create(run, []);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (stores[i % 5] as RedisStateStore).compareAndSet(run.txId, 1, next(run, { context: { writer: i } }), [
          publish(i),
        ]),
      ),
    );
    const winners = results.flatMap((version, i) => (version === 2 ? [i] : []));
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => r === undefined)).toHaveLength(19);
    const stored = await stores[0]?.get(run.txId);
    expect(stored?.run.context).toEqual({ writer: winners[0] });
    expect(stored?.outbox).toHaveLength(1);
  });

  it('creates exactly one run for 10 concurrent creates with one idempotency key, from 5 connections', async () => {
    const stores = Array.from({ length: 5 }, () => storeWith());
    const runs = Array.from({ length: 10 }, () => makeRun());
    const results = await Promise.all(
      runs.map((run, i) => (stores[i % 5] as RedisStateStore).create(run, [publish(i)], 'order-7')),
    );
    const created = results.filter((r) => r.created);
    expect(created).toHaveLength(1);
    expect(new Set(results.map((r) => r.txId))).toEqual(new Set([created[0]?.txId]));
    expect((await stores[0]?.list({}, 100))?.runs.map((r) => r.txId)).toEqual([created[0]?.txId]);
    const losers = runs.filter((run) => run.txId !== created[0]?.txId);
    for (const run of losers) expect(await stores[0]?.get(run.txId)).toBeUndefined();
  });

  it('takes over an idempotency key whose creator crashed before creating its run, and fences it off', async () => {
    const store = storeWith({ idempotencyWaitMs: 50 });
    // A creator took the key, then died before its create script ran.
    const ghost = makeRun();
    await admin.set(keys.idempotency('order-9'), ghost.txId);

    const run = makeRun();
    expect(await store.create(run, [], 'order-9')).toEqual({ created: true, txId: run.txId });
    expect(await admin.get(keys.idempotency('order-9'))).toBe(run.txId);
    expect(await store.create(makeRun(), [], 'order-9')).toEqual({ created: false, txId: run.txId });
    // Had the ghost only been slow, its create now fails: one key, one run.
    await expect(store.create(ghost, [])).rejects.toMatchObject({ code: ErrorCode.AlreadyExists });
    expect(await store.get(ghost.txId)).toBeUndefined();
    expect((await store.list({}, 10)).runs.map((r) => r.txId)).toEqual([run.txId]);
  });

  it('sets the retention TTL on a run (and its idempotency key) when a write makes it terminal', async () => {
    const store = storeWith({ terminalRunTtlMs: 60_000 });
    const run = makeRun({ state: RunState.Running, idempotencyKey: 'order-11' });
    await store.create(run, [publish(1)], 'order-11');
    await store.compareAndSet(run.txId, 1, next(run, { state: RunState.Waiting }), [publish(2)]);
    expect(await admin.pttl(keys.run(run.txId))).toBe(-1);

    await store.compareAndSet(run.txId, 2, next(run, { state: RunState.Completed }), [publish(3)]);
    for (const key of [keys.run(run.txId), keys.outbox(run.txId)]) {
      const ttl = await admin.pttl(key);
      expect(ttl).toBeGreaterThan(50_000);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
    await waitFor(async () => (await admin.pttl(keys.idempotency('order-11'))) > 50_000, {
      timeoutMs: 2_000,
    });
  });

  it('drops the retention TTL again when an operator reopens a terminal run', async () => {
    const store = storeWith({ terminalRunTtlMs: 60_000 });
    const run = makeRun({ state: RunState.Running, idempotencyKey: 'order-12' });
    await store.create(run, [], 'order-12');
    await store.compareAndSet(run.txId, 1, next(run, { state: RunState.Failed }), [publish(2)]);
    expect(await admin.pttl(keys.run(run.txId))).toBeGreaterThan(0);
    await waitFor(async () => (await admin.pttl(keys.idempotency('order-12'))) > 0, { timeoutMs: 2_000 });
    // RetryStep: failed -> running. The run must not expire while it runs again.
    await store.compareAndSet(run.txId, 2, next(run, { state: RunState.Running }), [publish(3)]);
    expect(await admin.pttl(keys.run(run.txId))).toBe(-1);
    expect(await admin.pttl(keys.outbox(run.txId))).toBe(-1);
    await waitFor(async () => (await admin.pttl(keys.idempotency('order-12'))) === -1, { timeoutMs: 2_000 });
  });

  it('keeps terminal runs forever with terminalRunTtlMs 0', async () => {
    const store = storeWith({ terminalRunTtlMs: 0 });
    const run = makeRun();
    await store.create(run, []);
    await store.compareAndSet(run.txId, 1, next(run, { state: RunState.Failed }), []);
    expect(await admin.pttl(keys.run(run.txId))).toBe(-1);
  });

  it('forgets expired runs in list() and drops their index entries', async () => {
    const store = storeWith({ terminalRunTtlMs: 150 });
    const live = makeRun({ workflowId: 'orders' });
    const done = makeRun({ workflowId: 'orders' });
    await store.create(live, []);
    await store.create(done, []);
    await store.compareAndSet(done.txId, 1, next(done, { state: RunState.Completed }), []);
    expect((await store.list({ state: RunState.Completed }, 10)).runs.map((r) => r.txId)).toEqual([
      done.txId,
    ]);

    await waitFor(async () => (await admin.exists(keys.run(done.txId))) === 0, { timeoutMs: 2_000 });
    expect((await store.list({}, 10)).runs.map((r) => r.txId)).toEqual([live.txId]);
    expect(await admin.zscore(keys.runsAll(), done.txId)).toBeNull();
    expect(await admin.zscore(keys.runsByState(RunState.Completed), done.txId)).toBeNull();
    expect(await admin.zscore(keys.runsByWorkflow('orders'), done.txId)).toBeNull();
    expect(await admin.hget(keys.runsMeta(), done.txId)).toBeNull();
    expect(await admin.zscore(keys.runsByWorkflow('orders'), live.txId)).not.toBeNull();
  });

  it('filters a stale state index entry (a writer crashed before moving it) and repairs it', async () => {
    const store = storeWith();
    const run = makeRun({ state: RunState.Running });
    await store.create(run, []);
    await store.compareAndSet(run.txId, 1, next(run, { state: RunState.Completed }), []);
    // What a crash between the CAS and the index move leaves behind, and a failed CAS's superset.
    await admin.zadd(keys.runsByState(RunState.Running), run.createdAt, run.txId);
    await admin.zadd(keys.runsByState(RunState.Cancelled), run.createdAt, run.txId);

    expect((await store.list({ state: RunState.Running }, 10)).runs).toEqual([]);
    expect((await store.list({ state: RunState.Cancelled }, 10)).runs).toEqual([]);
    expect((await store.list({ state: RunState.Completed }, 10)).runs.map((r) => r.txId)).toEqual([run.txId]);
    expect(await admin.zscore(keys.runsByState(RunState.Running), run.txId)).toBeNull();
    expect(await admin.zscore(keys.runsByState(RunState.Cancelled), run.txId)).toBeNull();
    expect(await admin.zscore(keys.runsByState(RunState.Completed), run.txId)).not.toBeNull();
  });

  it('pages correctly across batches of stale entries, and repairs them all', async () => {
    const store = storeWith();
    const running = Array.from({ length: 5 }, (_, i) =>
      makeRun({ state: RunState.Running, createdAt: 1_900_000_000_000 + i * 100 }),
    );
    for (const run of running) await store.create(run, []);
    // 60 finished runs left behind in the running index, between and around the live ones.
    for (let i = 0; i < 60; i += 1) {
      const done = makeRun({ state: RunState.Running, createdAt: 1_900_000_000_000 + i * 10 + 5 });
      await store.create(done, []);
      await store.compareAndSet(done.txId, 1, next(done, { state: RunState.Completed }), []);
      await admin.zadd(keys.runsByState(RunState.Running), done.createdAt, done.txId);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 10; pages += 1) {
      const page = await store.list({ state: RunState.Running }, 2, cursor);
      seen.push(...page.runs.map((r) => r.txId));
      cursor = page.nextCursor;
      if (cursor === undefined) break;
    }
    expect(seen).toEqual([...running].reverse().map((r) => r.txId));
    expect(await admin.zcard(keys.runsByState(RunState.Running))).toBe(5);
  });

  it('does not let a late index move from an older version undo a newer one', async () => {
    const store = storeWith();
    const run = makeRun({ state: RunState.Running });
    await store.create(run, []);
    await store.compareAndSet(run.txId, 1, next(run, { state: RunState.Waiting }), []);
    await store.compareAndSet(run.txId, 2, next(run, { state: RunState.Running }), []);
    await store.compareAndSet(run.txId, 3, next(run, { state: RunState.Completed }), []);
    // A paused writer of version 2 wakes up and replays its index move (running -> waiting).
    await waitFor(
      async () => (await admin.hget(keys.runsMeta(), run.txId))?.startsWith('4|completed|') === true,
    );
    const sameStore = store as unknown as {
      reindexCall(run: Run, version: number, listed: string): Promise<unknown>;
    };
    expect(await sameStore.reindexCall(next(run, { state: RunState.Waiting }), 2, '')).toBe(0);
    expect(await admin.zscore(keys.runsByState(RunState.Completed), run.txId)).not.toBeNull();
    expect(await admin.zscore(keys.runsByState(RunState.Waiting), run.txId)).toBeNull();
  });

  it('keeps the pending-outbox marker of a write in flight when an older version is cleared', async () => {
    const store = storeWith();
    const run = makeRun();
    await store.create(run, [publish(1)]);
    // A second writer marked version 2 but its CAS has not landed yet.
    const marker = store as unknown as { mark(txId: string, version: number): Promise<unknown> };
    await marker.mark(run.txId, 2);
    await store.clearOutbox(run.txId, 1);
    expect(await admin.zscore(keys.outboxPending(), run.txId)).not.toBeNull();

    await store.compareAndSet(run.txId, 1, next(run, {}), [publish(2)]);
    expect((await store.listPendingOutbox(Date.now() + 60_000, 10)).map((p) => p.txId)).toEqual([run.txId]);
    await store.clearOutbox(run.txId, 2);
    expect(await admin.zscore(keys.outboxPending(), run.txId)).toBeNull();
    expect(await admin.hget(keys.outboxMarks(), run.txId)).toBeNull();
  });

  it('drops markers whose writes never landed once they are older than the in-flight grace', async () => {
    const store = storeWith({ inFlightGraceMs: 100 });
    const run = makeRun();
    await store.create(run, []);
    const marker = store as unknown as { mark(txId: string, version: number): Promise<unknown> };
    await marker.mark(run.txId, 2); // the writer crashed after marking
    await marker.mark('tx-never-created', 1);

    expect(await store.listPendingOutbox(Date.now() + 60_000, 10)).toEqual([]);
    expect(await admin.zcard(keys.outboxPending())).toBe(2); // still possibly in flight
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(await store.listPendingOutbox(Date.now() + 60_000, 10)).toEqual([]);
    expect(await admin.zcard(keys.outboxPending())).toBe(0);
  });

  it('rejects calls with TIMEOUT while Redis is down at start, and works once it is back', async () => {
    const down = await startRedisServer();
    try {
      down.kill('SIGKILL');
      const store = new RedisStateStore({ url: down.url, prefix, commandTimeoutMs: 300 });
      open.push(store);
      const startedAt = Date.now();
      await expect(store.get('tx-1')).rejects.toMatchObject({ code: ErrorCode.Timeout, retryable: true });
      expect(Date.now() - startedAt).toBeLessThan(4_000);

      await down.restart();
      const run = makeRun();
      await waitFor(
        async () => {
          await store.create(run, []);
          return true;
        },
        { timeoutMs: 8_000, intervalMs: 100, description: 'a create after Redis came back' },
      );
      expect((await store.get(run.txId))?.version).toBe(1);
    } finally {
      await down.stop();
    }
  }, 15_000);

  it('refuses a txId with braces (it would break the run hash tag)', async () => {
    const store = storeWith();
    await expect(store.create(makeRun({ txId: 'a{b}' }), [])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });
});
