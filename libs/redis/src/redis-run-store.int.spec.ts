import {
  ErrorCode,
  EventType,
  RunState,
  StepStatus,
  Topics,
  decodeEnvelope,
  type Envelope,
  type Run,
} from '@multiagents/contracts';
import type { Delivery, RunRevision, StoredRun, Timer, Transition } from '@multiagents/core';
import { makeEnvelope, makeRun, startRedisServer, waitFor, type ServerProcess } from '@multiagents/testing';
import { Cluster, Redis } from 'ioredis';
import { createRedisBackend, type RedisBackend } from './redis-backend';
import type { RedisDelivery } from './redis-delivery';
import { RedisKeys } from './redis-keys';
import { counterDelta, serverCounters } from './test/command-stats';
import { freshPrefix, useRedisServer } from './test/redis-test-server';
import { TEST_WORKER, numberedRun, numberedTransition, readEffects } from './test/transitions';

const WAIT = { timeoutMs: 5_000 } as const;

/** A txId that lands in partition `p` of `backend`. */
function txIdIn(backend: RedisBackend, p: number, tag: string): string {
  for (let i = 0; ; i += 1) {
    const txId = `tx-${tag}-${i}`;
    if (backend.connection.keys.partitionOf(txId) === p) return txId;
  }
}

/** Registers the one-step `orders` workflow the index tests list runs of. */
async function registerOrders(backend: RedisBackend): Promise<void> {
  await backend.definitions.put({
    id: 'orders',
    version: 1,
    steps: [{ kind: 'task', name: 's', worker: 'w' }],
  });
}

/** A transition that writes `run` and nothing else. */
function writeOf(run: Run): Transition {
  return { run, changedSteps: [], commands: [], schedule: [], cancel: [] };
}

describe('RedisRunStore (adapter-specific)', () => {
  const clients: Redis[] = [];
  afterEach(() => {
    for (const client of clients.splice(0)) client.disconnect();
  });
  const redis = useRedisServer();
  const raw = (): Redis => {
    const client = new Redis(redis.server().url);
    clients.push(client);
    return client;
  };

  it("keeps a run's commands, results, events, timers and indexes in its partition; a worker reads every partition", async () => {
    const backend = redis.backend({ partitions: 3 });
    const { keys } = backend.connection;
    const runs = [0, 1, 2, 0, 1, 2]
      .map(() => numberedRun())
      .map((run, i) => ({
        ...run,
        txId: txIdIn(backend, i % 3, `route${i}-é✓{x}`),
      }));
    for (const run of runs)
      expect((await backend.runs.create(numberedTransition(run, 1))).created).toBe(true);

    // Every key of a run is in its partition, and nothing of it anywhere else.
    const client = raw();
    for (const run of runs) {
      const p = keys.partitionOf(run.txId);
      const found = await client.keys(`${keys.prefix}:*`);
      const mentioning = found.filter((key) => key.endsWith(run.txId));
      expect(mentioning).toEqual([keys.run(p, run.txId)]);
      expect(await client.zscore(keys.indexAll(p), run.txId)).not.toBeNull();
      expect(await client.zscore(keys.indexState(p, run.state), run.txId)).not.toBeNull();
      expect(await client.zscore(keys.timers(p), `${run.txId}:retry:s:1`)).not.toBeNull();
      for (let q = 0; q < 3; q += 1) {
        const commands = (await client.xrangeBuffer(
          keys.stream(q, Topics.command(TEST_WORKER)),
          '-',
          '+',
        )) as unknown as Array<[Buffer, Buffer[]]>;
        const here = commands
          .map(([, f]) => decodeEnvelope(f[1] as Buffer).txId)
          .filter((id) => id === run.txId);
        expect(here).toHaveLength(q === p ? 1 : 0);
      }
    }

    // One worker consumer gets the commands of every partition and answers each on the run's own
    // results stream; one orchestrator consumer gets every result.
    const handledBy = new Map<string, number>();
    await backend.bus.subscribe(
      Topics.command(TEST_WORKER),
      { group: 'workers', consumer: 'w1' },
      async (d) => {
        handledBy.set(d.envelope.txId, (d as RedisDelivery).source.partition ?? -1);
        await backend.bus.publish(Topics.results, [
          makeEnvelope({
            txId: d.envelope.txId,
            type: EventType.StepResult,
            payload: { commandId: d.envelope.id, worker: TEST_WORKER, ok: true, output: {} },
          }),
        ]);
      },
    );
    const results = new Map<string, number>();
    await backend.bus.subscribe(Topics.results, { group: 'orchestrators', consumer: 'o1' }, async (d) => {
      results.set(d.envelope.txId, (d as RedisDelivery).source.partition ?? -1);
    });
    await waitFor(() => results.size === runs.length, WAIT);
    for (const run of runs) {
      expect(handledBy.get(run.txId)).toBe(keys.partitionOf(run.txId));
      expect(results.get(run.txId)).toBe(keys.partitionOf(run.txId));
    }
    expect(new Set(results.values())).toEqual(new Set([0, 1, 2]));
  });

  it('refuses a decision made on a write the broker lost (ABA on the version number)', async () => {
    const backend = redis.backend();
    const client = raw();
    const run = numberedRun();
    const first = (await backend.runs.create(numberedTransition(run, 1))).stored;
    const key = backend.connection.keys.run(0, run.txId);
    const before = await client.dumpBuffer(key);

    // Writer Y commits version 2 and remembers its revision…
    const y = (await backend.runs.commit(first, numberedTransition(run, 2))) as RunRevision;
    // …then the broker loses that write (restored from before it, as after a crash)…
    await client.restore(key, 0, before, 'REPLACE');
    // …and writer Z commits another version 2 on top of version 1.
    const z = (await backend.runs.commit(first, numberedTransition(run, 2, { commands: [] }))) as RunRevision;
    expect(z.version).toBe(y.version);
    expect(z.revision).not.toBe(y.revision);

    // Y's next decision was made on its lost version 2: same number, refused all the same.
    expect(await backend.runs.commit(y, numberedTransition(run, 3))).toBeUndefined();
    expect((await backend.runs.get(run.txId))?.revision).toBe(z.revision);
    expect(await backend.runs.commit(z, numberedTransition(run, 3))).toMatchObject({ version: 3 });
    expect(backend.bus.counters()['staleCommits']).toBe(1);
  });

  it('refuses malformed script arguments before writing anything, in any transition of a call', async () => {
    const backend = redis.backend();
    const client = raw();
    const run = numberedRun();
    const other = numberedRun();
    const first = (await backend.runs.create(numberedTransition(run, 1))).stored;
    const second = (await backend.runs.create(numberedTransition(other, 1))).stored;
    const { keys, scripts } = backend.connection;
    const snapshot = async (): Promise<unknown> => [
      await client.hgetall(keys.run(0, run.txId)),
      await client.hgetall(keys.run(0, other.txId)),
      await client.xlen(keys.stream(0, Topics.command(TEST_WORKER))),
      await client.xlen(keys.stream(0, Topics.events)),
      await client.zrange(keys.timers(0), '0', '-1', 'WITHSCORES'),
    ];
    const before = await snapshot();
    const shared = [
      keys.base(0),
      keys.timers(0),
      keys.stream(0, Topics.events),
      keys.stream(0, Topics.results),
    ];
    const scriptKeys = [
      ...shared,
      keys.run(0, run.txId),
      keys.stream(0, Topics.command(TEST_WORKER)),
      keys.run(0, other.txId),
    ];
    // Valid blocks (one step record, one command, an event, one timer) with a broken tail.
    const head = (txId: string, revision: string, runKey: number): unknown[] => [
      'commit',
      txId,
      revision,
      `next-${txId}`,
      'running',
      '{}',
      '',
      '',
      '',
      '',
      '',
      '',
      runKey,
    ];
    const body = (txId: string): unknown[] => [1, 's9', '{}', 1, 6, 'cmd', 'evt', 1, `${txId}:retry:s:9`, 5];
    const good = [...head(other.txId, second.revision, 7), ...body(other.txId), 0];
    const call = (keyList: string[], ...blocks: unknown[][]): Promise<unknown> =>
      scripts.commit(keyList, [1, 100, blocks.length, ...blocks.flat()] as never);
    const runBlock = [...head(run.txId, first.revision, 5), ...body(run.txId)];
    for (const tail of [[2, 'only-one-cancel'], [1], [0, 'extra']]) {
      await expect(call(scriptKeys, good, [...runBlock, ...tail])).rejects.toThrow(/multiagents commit: bad/);
    }
    await expect(
      call(scriptKeys, good, [
        ...head(run.txId, first.revision, 5),
        1,
        's9',
        '{}',
        1,
        99,
        'cmd',
        'evt',
        0,
        0,
      ]),
    ).rejects.toThrow(/bad command stream/);
    await expect(
      call(scriptKeys, good, [
        ...head(run.txId, first.revision, 5),
        0,
        0,
        '',
        1,
        `${run.txId}:retry:s:9`,
        'soon',
        0,
      ]),
    ).rejects.toThrow(/bad timer/);
    // A block naming another run's key as its own, a run key of another partition than the rest
    // of the keys, keys of a partition the txId does not hash to, and a foreign command stream are
    // refused.
    await expect(
      call(scriptKeys, good, [...head(run.txId, first.revision, 7), ...body(run.txId), 0]),
    ).rejects.toThrow(/bad keys/);
    const elsewhere = [...scriptKeys.slice(0, 4), keys.run(1, run.txId), ...scriptKeys.slice(5)];
    await expect(call(elsewhere, [...runBlock, 0])).rejects.toThrow(/bad keys/);
    const two = new RedisKeys(keys.prefix, 2);
    const wrongPartition = 1 - two.partitionOf(run.txId);
    const moved = [
      two.base(wrongPartition),
      two.timers(wrongPartition),
      two.stream(wrongPartition, Topics.events),
      two.stream(wrongPartition, Topics.results),
      two.run(wrongPartition, run.txId),
      two.stream(wrongPartition, Topics.command(TEST_WORKER)),
    ];
    await expect(scripts.commit(moved, [2, 100, 1, ...runBlock, 0] as never)).rejects.toThrow(
      /bad partition/,
    );
    await expect(
      call(
        [...scriptKeys.slice(0, 5), two.stream(1, Topics.command(TEST_WORKER)), ...scriptKeys.slice(6)],
        [...runBlock, 0],
      ),
    ).rejects.toThrow(/bad keys/);
    await expect(
      call(scriptKeys, [...runBlock, 0], [...head(other.txId, second.revision, 6), ...body(other.txId), 0]),
    ).rejects.toThrow(/bad keys/);
    await expect(scripts.commit(scriptKeys, [1, 100, 0] as never)).rejects.toThrow(/bad transition count/);
    expect(await snapshot()).toEqual(before);
    // The same blocks with well-formed tails are accepted: the refusals were about the tails alone.
    expect(await call(scriptKeys, good, [...runBlock, 0])).toEqual([
      [1, 2],
      [1, 2],
    ]);
  });

  it("sends one turn's transitions of a partition in one script call, each with its own outcome", async () => {
    const backend = redis.backend();
    const client = raw();
    const created: StoredRun[] = [];
    for (let i = 0; i < 5; i += 1)
      created.push((await backend.runs.create(numberedTransition(numberedRun(), 1))).stored);
    const [a, b, c, d, e] = created as [StoredRun, StoredRun, StoredRun, StoredRun, StoredRun];
    // A run whose step has an empty name: commit.lua refuses its block (bad step name).
    const unnamed: Run = {
      ...d.run,
      steps: { '': { name: '', status: StepStatus.Completed, attempt: 1, attempts: [] } },
    };
    const before = await serverCounters(client);
    const outcomes = await Promise.allSettled([
      backend.runs.commit(a, numberedTransition(a.run, 2)),
      backend.runs.commit({ ...b, revision: 'stale' }, numberedTransition(b.run, 2)),
      backend.runs.commit(c, numberedTransition(c.run, 2)),
      backend.runs.commit(d, { ...numberedTransition(unnamed, 2), changedSteps: [''] }),
      backend.runs.commit({ ...e, revision: 'stale' }, numberedTransition(e.run, 2)),
    ]);
    const delta = counterDelta(before, await serverCounters(client));
    expect(outcomes.map((o) => o.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    expect((outcomes[0] as PromiseFulfilledResult<RunRevision>).value).toMatchObject({ version: 2 });
    expect((outcomes[1] as PromiseFulfilledResult<RunRevision | undefined>).value).toBeUndefined();
    expect((outcomes[2] as PromiseFulfilledResult<RunRevision>).value).toMatchObject({ version: 2 });
    expect((outcomes[4] as PromiseFulfilledResult<RunRevision | undefined>).value).toBeUndefined();
    expect(String((outcomes[3] as PromiseRejectedResult).reason)).toMatch(/bad step name/);
    // One call for the five, refused for the bad block, then each of the five alone.
    expect(delta.calls['evalsha']).toBe(6);
    for (const [run, version] of [
      [a.run, 2],
      [b.run, 1],
      [c.run, 2],
      [d.run, 1],
      [e.run, 1],
    ] as const) {
      expect((await backend.runs.get(run.txId))?.version).toBe(version);
    }

    // Without a bad block, one call carries them all.
    const again = await serverCounters(client);
    const stored = await Promise.all([a, c].map((x) => backend.runs.get(x.run.txId)));
    await Promise.all(
      stored.map((x) =>
        backend.runs.commit(x as RunRevision, numberedTransition((x as { run: Run }).run, 3)),
      ),
    );
    expect(counterDelta(again, await serverCounters(client)).calls['evalsha']).toBe(1);
  });

  it("reads one turn's runs of a partition in one pipeline, a lone read without one", async () => {
    const backend = redis.backend({ partitions: 2 });
    const runs = [0, 1, 0, 1, 0, 1, 0, 1].map((p, i) => ({
      ...numberedRun(),
      txId: txIdIn(backend, p, `read${i}`),
    }));
    for (const run of runs) await backend.runs.create(numberedTransition(run, 1));
    const { client } = backend.connection;
    const pipelines = jest.spyOn(client, 'pipeline');
    const lone = jest.spyOn(client, 'hgetall');
    try {
      const missing = txIdIn(backend, 0, 'never-created');
      const read = await Promise.all(
        [...runs.map((run) => run.txId), missing].map((txId) => backend.runs.get(txId)),
      );
      expect(read.map((stored) => stored?.run.txId)).toEqual([...runs.map((run) => run.txId), undefined]);
      expect(read.slice(0, -1).every((stored) => stored?.version === 1)).toBe(true);
      // Two partitions: two pipelines (each in its own Cluster slot), no read on its own.
      expect(pipelines).toHaveBeenCalledTimes(2);
      expect(lone).not.toHaveBeenCalled();

      pipelines.mockClear();
      expect((await backend.runs.get(runs[0]!.txId))?.run.txId).toBe(runs[0]!.txId);
      expect(pipelines).not.toHaveBeenCalled();
      expect(lone).toHaveBeenCalledTimes(1);

      // A key of another type where a run should be fails its own read, not the batch's others.
      const forged = txIdIn(backend, 0, 'forged');
      await raw().set(backend.connection.keys.run(0, forged), 'not a hash');
      pipelines.mockClear();
      const outcomes = await Promise.allSettled(
        [runs[0]!.txId, forged, runs[2]!.txId].map((txId) => backend.runs.get(txId)),
      );
      expect(pipelines).toHaveBeenCalledTimes(1);
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({
        code: ErrorCode.Internal,
        message: expect.stringMatching(/^read run: Redis failed: WRONGTYPE/),
      });
      expect((outcomes[2] as PromiseFulfilledResult<StoredRun | undefined>).value?.run.txId).toBe(
        runs[2]!.txId,
      );
    } finally {
      pipelines.mockRestore();
      lone.mockRestore();
    }
  });

  it('refuses a result read from another partition than its run: poison, nothing written', async () => {
    const backend = redis.backend({ partitions: 3 });
    const run: Run = { ...numberedRun(), txId: txIdIn(backend, 1, 'home') };
    const first = (await backend.runs.create(numberedTransition(run, 1))).stored;
    // A result about `run` published raw on partition 2's stream (forged or misrouted), delivered
    // as if it were valid: the store must not commit it with the run.
    const forged = makeEnvelope({ txId: run.txId, type: EventType.StepResult });
    let refusal: unknown;
    await backend.bus.subscribe(Topics.results, { group: 'o', consumer: 'o1' }, async (d) => {
      const delivery = Object.assign(Object.create(Object.getPrototypeOf(d) as object) as RedisDelivery, d, {
        source: backend.connection.keys.topicStreams(Topics.results)[2],
      }) as Delivery;
      refusal = await backend.runs
        .commit(first, numberedTransition(run, 2, { ack: delivery }))
        .catch((err: unknown) => err);
    });
    await backend.bus.publish(Topics.results, [forged]);
    await waitFor(() => refusal !== undefined, WAIT);
    expect(refusal).toMatchObject({ code: ErrorCode.PoisonMessage });
    expect((await backend.runs.get(run.txId))?.version).toBe(1);
  });

  it('sets a TTL when a run becomes terminal, removes it when an operator reopens it, and lists past expired runs', async () => {
    const backend = redis.backend({ terminalRunTtlMs: 60_000 });
    const client = raw();
    const { keys } = backend.connection;
    const run = makeRun({ state: RunState.Running });
    let current: RunRevision = (
      await backend.runs.create({ run, changedSteps: [], commands: [], schedule: [], cancel: [] })
    ).stored;
    const key = keys.run(0, run.txId);
    expect(await client.pttl(key)).toBe(-1);
    const write = async (state: RunState): Promise<void> => {
      current = (await backend.runs.commit(current, {
        run: { ...run, state },
        changedSteps: [],
        commands: [],
        schedule: [],
        cancel: [],
      })) as RunRevision;
    };
    await write(RunState.Failed);
    expect(await client.pttl(key)).toBeGreaterThan(59_000);
    await write(RunState.Running); // an operator's retry_step
    expect(await client.pttl(key)).toBe(-1);
    expect(await client.zscore(keys.indexState(0, RunState.Failed), run.txId)).toBeNull();
    await write(RunState.Completed);
    expect(await client.pttl(key)).toBeGreaterThan(59_000);

    // Expired: gone from get, and list() drops its index entry when it meets it.
    const live = makeRun({ state: RunState.Completed });
    await backend.runs.create({ run: live, changedSteps: [], commands: [], schedule: [], cancel: [] });
    await client.del(key);
    expect(await backend.runs.get(run.txId)).toBeUndefined();
    expect((await backend.runs.list({ state: RunState.Completed }, 10)).runs.map((r) => r.txId)).toEqual([
      live.txId,
    ]);
    expect(await client.zscore(keys.indexState(0, RunState.Completed), run.txId)).toBeNull();
    expect(backend.bus.counters()['expiredIndexEntries']).toBe(1);
  });

  it('prunes the index entries of expired runs from every index, and keeps the live ones', async () => {
    const backend = redis.backend({ partitions: 2 });
    const client = raw();
    const { keys } = backend.connection;
    await registerOrders(backend);
    const made = Array.from({ length: 12 }, (_, i) =>
      makeRun({ workflowId: 'orders', state: i % 3 === 0 ? RunState.Running : RunState.Completed }),
    );
    for (const run of made) await backend.runs.create(writeOf(run));
    const expired = made.filter((run) => run.state === RunState.Completed).slice(0, 5);
    for (const run of expired) await client.del(keys.run(keys.partitionOf(run.txId), run.txId));

    expect(await backend.runs.pruneIndexes()).toBe(5);
    for (const run of made) {
      const p = keys.partitionOf(run.txId);
      const gone = expired.includes(run);
      for (const index of [
        keys.indexAll(p),
        keys.indexState(p, run.state),
        keys.indexWorkflow(p, 'orders'),
      ]) {
        expect(await client.zscore(index, run.txId)).toBe(gone ? null : String(run.createdAt));
      }
    }
    expect(await backend.runs.pruneIndexes()).toBe(0);
    expect((await backend.runs.list({ workflowId: 'orders' }, 100)).runs).toHaveLength(made.length - 5);
  });

  it('completes a fired timer only while it is the claim that fired it, not one a commit moved since', async () => {
    const backend = redis.backend();
    const run = numberedRun();
    const create = numberedTransition(run, 1);
    const [timer] = create.schedule as [Timer];
    const first = (await backend.runs.create(create)).stored;
    const firedAt = timer.dueAt + 1_000;
    expect(await backend.runs.claimDueTimers(firedAt, 10, 1_000)).toEqual([timer]);
    // While its (stale) firing is handled, a commit schedules the same timer again, later: a
    // heartbeat that moved its deadline.
    const moved: Timer = { ...timer, dueAt: firedAt + 10_000 };
    await backend.runs.commit(first, numberedTransition(run, 2, { schedule: [moved], cancel: [] }));
    // The firing changed nothing: its completion must leave the moved timer alone.
    await backend.runs.completeTimers([timer.id]);
    expect(await backend.runs.claimDueTimers(moved.dueAt - 1, 10, 1_000)).toEqual([]);
    expect(await backend.runs.claimDueTimers(moved.dueAt + 1_000, 10, 1_000)).toEqual([moved]);
    // Completing that claim removes it.
    await backend.runs.completeTimers([timer.id]);
    expect(await backend.runs.claimDueTimers(moved.dueAt + 100_000, 10, 1_000)).toEqual([]);
  });

  it('prunes every expired run in one pass, however many, and countByState is exact after it', async () => {
    const backend = redis.backend({ partitions: 2, terminalRunTtlMs: 1, indexPruneIntervalMs: 0 });
    const client = raw();
    const { keys } = backend.connection;
    await registerOrders(backend);
    // 2,000 finished runs (each expires 1 ms after its write) among 20 live ones.
    const made = Array.from({ length: 2_020 }, (_, i) =>
      makeRun({ workflowId: 'orders', state: i % 101 === 0 ? RunState.Running : RunState.Completed }),
    );
    const live = made.filter((run) => run.state === RunState.Running);
    expect(made.length - live.length).toBe(2_000);
    for (let i = 0; i < made.length; i += 200) {
      await Promise.all(made.slice(i, i + 200).map((run) => backend.runs.create(writeOf(run))));
    }
    await waitFor(
      async () => {
        const pipeline = client.pipeline();
        for (const run of made) pipeline.exists(keys.run(keys.partitionOf(run.txId), run.txId));
        const found = (await pipeline.exec()) ?? [];
        return found.filter(([, n]) => n === 1).length === live.length;
      },
      { ...WAIT, description: 'the finished runs expired' },
    );
    expect(await backend.runs.countByState()).toEqual({ running: 20, completed: 2_000 });

    expect(await backend.runs.pruneIndexes()).toBe(2_000);
    expect(await backend.runs.countByState()).toEqual({ running: 20 });
    for (let p = 0; p < 2; p += 1) {
      const here = live.filter((run) => keys.partitionOf(run.txId) === p).map((run) => run.txId);
      expect((await client.zrange(keys.indexAll(p), '0', '-1')).sort()).toEqual(here.sort());
      expect((await client.zrange(keys.indexWorkflow(p, 'orders'), '0', '-1')).sort()).toEqual(here.sort());
      expect(await client.zcard(keys.indexState(p, RunState.Completed))).toBe(0);
    }
  });

  it('drops an expired run that list() meets from every index, not only the one it read', async () => {
    const backend = redis.backend({ indexPruneIntervalMs: 0 });
    const client = raw();
    const { keys } = backend.connection;
    await registerOrders(backend);
    const gone = makeRun({ workflowId: 'orders', state: RunState.Completed });
    const kept = makeRun({ workflowId: 'orders', state: RunState.Completed });
    for (const run of [gone, kept]) await backend.runs.create(writeOf(run));
    await client.del(keys.run(0, gone.txId)); // it expired

    expect((await backend.runs.list({}, 10)).runs.map((run) => run.txId)).toEqual([kept.txId]);
    expect(await backend.runs.countByState()).toEqual({ completed: 1 });
    for (const index of [
      keys.indexAll(0),
      keys.indexState(0, RunState.Completed),
      keys.indexWorkflow(0, 'orders'),
    ]) {
      expect(await client.zscore(index, gone.txId)).toBeNull();
      expect(await client.zscore(index, kept.txId)).not.toBeNull();
    }
    expect(backend.bus.counters()['expiredIndexEntries']).toBe(1);
  });

  it('writes one transition in one script call: the header and changed steps only, indexes only on a state change', async () => {
    const backend = redis.backend();
    const client = raw();
    const run = numberedRun();
    let current: RunRevision = (await backend.runs.create(numberedTransition(run, 1))).stored;
    const before = await serverCounters(client);
    current = (await backend.runs.commit(current, numberedTransition(run, 2))) as RunRevision;
    const delta = counterDelta(before, await serverCounters(client));
    // EVALSHA + HMGET + HSET + XADD (command) + XADD (event) + ZREM + ZADD (timers); no index write.
    expect(delta.calls).toEqual({ evalsha: 1, hmget: 1, hset: 1, xadd: 2, zrem: 1, zadd: 1 });
    // A state change moves the run between two state indexes, and nothing else changes.
    const finished = {
      ...numberedTransition(run, 3),
      run: { ...numberedTransition(run, 3).run, state: RunState.Waiting },
    };
    const beforeState = await serverCounters(client);
    await backend.runs.commit(current, finished);
    expect(counterDelta(beforeState, await serverCounters(client)).calls).toEqual({
      evalsha: 1,
      hmget: 1,
      hset: 1,
      xadd: 2,
      zrem: 2,
      zadd: 2,
    });
    const fields = await client.hkeys(backend.connection.keys.run(0, run.txId));
    expect(fields.sort()).toEqual(['c', 'h', 'm', 'r', 's:s1', 's:s2', 's:s3', 'st', 'v']);
  });

  it('sends a script Redis has forgotten (SCRIPT FLUSH, a restart) again as EVAL, once', async () => {
    const backend = redis.backend();
    const client = raw();
    const run = numberedRun();
    let current: RunRevision = (await backend.runs.create(numberedTransition(run, 1))).stored;
    await client.script('FLUSH');
    const before = await serverCounters(client);
    current = (await backend.runs.commit(current, numberedTransition(run, 2))) as RunRevision;
    current = (await backend.runs.commit(current, numberedTransition(run, 3))) as RunRevision;
    const delta = counterDelta(before, await serverCounters(client));
    // The first EVALSHA is refused (NOSCRIPT), its EVAL loads the script, the next EVALSHA finds it.
    expect(delta.calls).toMatchObject({ evalsha: 2, eval: 1 });
    expect(current.version).toBe(3);
    expect((await backend.runs.get(run.txId))?.run.state).toBe(run.state);
  });

  it('refuses a client whose ioredis keyPrefix would move keys its scripts do not name', () => {
    const prefixed = new Redis(redis.server().url, { lazyConnect: true, keyPrefix: 'x:' });
    clients.push(prefixed);
    expect(() => createRedisBackend({ connect: () => prefixed, prefix: freshPrefix() })).toThrow(
      /keyPrefix is not supported/,
    );
    for (const options of [{ keyPrefix: 'x:' }, { redisOptions: { keyPrefix: 'x:' } }]) {
      const cluster = new Cluster([{ host: '127.0.0.1', port: 1 }], { lazyConnect: true, ...options });
      expect(() => createRedisBackend({ connect: () => cluster, prefix: freshPrefix() })).toThrow(
        /keyPrefix is not supported/,
      );
      cluster.disconnect();
    }
  });
});

describe('RedisRunStore crash safety (AOF, appendfsync always)', () => {
  let server: ServerProcess;
  const clients: Redis[] = [];
  beforeAll(async () => {
    server = await startRedisServer({ appendOnly: true, appendFsync: 'always' });
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.disconnect();
  });
  afterAll(async () => {
    await server.stop();
  });
  const raw = (): Redis => {
    const client = new Redis(server.url);
    clients.push(client);
    return client;
  };

  it('leaves each transition whole or absent when redis-server is killed -9 mid-transition', async () => {
    const prefix = freshPrefix();
    const options = {
      url: server.url,
      prefix,
      partitions: 3,
      commandTimeoutMs: 1_000,
      maxRetriesPerRequest: 0,
    };
    const writer = createRedisBackend(options);
    const runs = Array.from({ length: 30 }, () => numberedRun());
    const acknowledged = new Map<string, number>();
    for (const run of runs) {
      await writer.runs.create(numberedTransition(run, 1));
      acknowledged.set(run.txId, 1);
    }
    let committed = 0;
    let failures = 0;
    let killed = false;
    // Every run moves on as fast as it can, 30 transitions in flight at any time.
    const drive = runs.map(async (run) => {
      let current: RunRevision = { version: 1, revision: (await writer.runs.get(run.txId))?.revision ?? '' };
      for (let k = 2; k < 10_000; k += 1) {
        try {
          current = (await writer.runs.commit(current, numberedTransition(run, k))) as RunRevision;
          acknowledged.set(run.txId, k);
          committed += 1;
          if (committed === 600 && !killed) {
            killed = true;
            server.kill('SIGKILL');
          }
        } catch {
          failures += 1;
          return;
        }
      }
    });
    await Promise.all(drive);
    await writer.close();
    // The fault happened mid-stream: transitions were in flight when the server died.
    expect(killed).toBe(true);
    expect(failures).toBeGreaterThan(0);
    await server.restart();

    const reader = createRedisBackend({ url: server.url, prefix, partitions: 3 });
    try {
      const effects = await readEffects(raw(), reader.connection);
      let extra = 0;
      for (const run of runs) {
        const stored = await reader.runs.get(run.txId);
        const version = stored?.version ?? 0;
        // Nothing acknowledged is lost (fsync always); at most the in-flight one landed unanswered.
        const acked = acknowledged.get(run.txId) ?? 0;
        expect(version).toBeGreaterThanOrEqual(acked);
        expect(version).toBeLessThanOrEqual(acked + 1);
        extra += version - acked;
        // Whole or absent: the header, the records, the commands, the events and the timers of
        // exactly transitions 1..version, and nothing of a later one.
        expect(stored?.run.updatedAt).toBe(run.createdAt + version);
        expect(Object.keys(stored?.run.steps ?? {}).length).toBe(version);
        const upTo = Array.from({ length: version }, (_, i) => i + 1);
        expect(effects.commands.get(run.txId)).toEqual(upTo.map((k) => `${run.txId}:c${k}`));
        expect(effects.events.get(run.txId)).toEqual(upTo.map((k) => `${run.txId}:v${k}`));
        expect(effects.timers.get(run.txId)).toEqual([`${run.txId}:retry:s:${version}`]);
      }
      expect(extra).toBeLessThanOrEqual(runs.length);
    } finally {
      await reader.close();
    }
  }, 30_000);

  it('loses nothing when the process crashes right after the atomic write, or the broker right after that', async () => {
    const prefix = freshPrefix();
    const options = { url: server.url, prefix, partitions: 3, claimIntervalMs: 100 };
    const orchestrator = createRedisBackend(options);
    const run = numberedRun();
    const first = (await orchestrator.runs.create(numberedTransition(run, 1, { commands: [] }))).stored;
    await orchestrator.definitions.put({
      id: 'orders',
      version: 1,
      steps: [{ kind: 'task', name: 's', worker: 'w' }],
    });

    // The orchestrator takes a result, commits the transition it causes (with the result's ack)…
    let committed = false;
    let revive!: () => void;
    const dead = new Promise<void>((resolve) => {
      revive = resolve;
    });
    await orchestrator.bus.subscribe(
      Topics.results,
      { group: 'orchestrators', consumer: 'o1' },
      async (delivery) => {
        await orchestrator.runs.commit(first, numberedTransition(run, 2, { ack: delivery }));
        committed = true;
        await dead; // …and dies before doing anything else
      },
    );
    await orchestrator.bus.publish(Topics.results, [
      makeEnvelope({ txId: run.txId, type: EventType.StepResult, payload: { commandId: `${run.txId}:c1` } }),
    ]);
    await waitFor(() => committed, WAIT);
    // kill -9 of the process: its connections drop (readers and commands), with no ack, no
    // handler finishing, nothing flushed.
    await orchestrator.connection.close();
    // …and the broker dies right after, before anyone read what was written.
    server.kill('SIGKILL');
    await server.restart();

    const next = createRedisBackend(options);
    try {
      // The command committed with the transition is there for a worker.
      const commands: Envelope[] = [];
      await next.bus.subscribe(
        Topics.command(TEST_WORKER),
        { group: 'workers', consumer: 'w1' },
        async (d) => {
          commands.push(d.envelope);
        },
      );
      await waitFor(() => commands.length === 1, WAIT);
      expect(commands[0]?.id).toBe(`${run.txId}:c2`);
      // The result that caused it was acknowledged by the same write: nobody takes it again.
      expect(await next.bus.pendingCount(Topics.results, 'orchestrators')).toBe(0);
      const stored = await next.runs.get(run.txId);
      expect(stored?.version).toBe(2);
      expect(await next.definitions.get('orders')).toMatchObject({ id: 'orders', version: 1 });
      const effects = await readEffects(raw(), next.connection);
      expect(effects.events.get(run.txId)).toEqual([`${run.txId}:v1`, `${run.txId}:v2`]);
      expect(effects.timers.get(run.txId)).toEqual([`${run.txId}:retry:s:2`]);
    } finally {
      revive(); // only so that the dead process's objects can be closed
      await next.close();
      await orchestrator.close().catch(() => undefined);
    }
  }, 20_000);
});
