import { ErrorCode, RunState, type Run } from '@multiagents/contracts';
import type { Effect, RunFilter } from '@multiagents/core';
import { makeEnvelope, makeRun, stateStoreConformance } from '@multiagents/testing';
import { NatsKeys } from './nats-keys';
import {
  DEFAULT_NATS_STATE_STORE_OPTIONS,
  NatsStateStore,
  type NatsStateStoreOptions,
} from './nats-state-store';
import { freshPrefix, startNatsTestServer, type NatsTestServer } from './test-nats';

let nats: NatsTestServer;
beforeAll(async () => {
  nats = await startNatsTestServer();
});
afterAll(async () => {
  await nats.stop();
});

stateStoreConformance('NatsStateStore', async () => {
  const prefix = freshPrefix();
  const store = new NatsStateStore({ servers: nats.url, prefix });
  await store.start();
  return { store, cleanup: () => nats.destroyPrefix(prefix) };
});

describe('NatsStateStore specifics', () => {
  const stores: NatsStateStore[] = [];
  const prefixes: string[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const prefix of prefixes.splice(0)) await nats.destroyPrefix(prefix);
  });

  /** A store on a fresh prefix, or another store (own connection, like another process) on one. */
  async function open(
    prefix?: string,
    options: Partial<NatsStateStoreOptions> = {},
  ): Promise<NatsStateStore> {
    const p = prefix ?? freshPrefix();
    if (prefix === undefined) prefixes.push(p);
    const store = new NatsStateStore({ servers: nats.url, prefix: p, ...options });
    stores.push(store);
    await store.start();
    return store;
  }
  const publish = (n: number): Effect => ({
    type: 'publish',
    topic: 'events',
    envelope: makeEnvelope({ payload: { n } }),
  });

  it('lets exactly one of 20 concurrent writers (20 connections) of one version win', async () => {
    const prefix = freshPrefix();
    prefixes.push(prefix);
    const writers = await Promise.all(Array.from({ length: 20 }, () => open(prefix)));
    const run = makeRun();
    await writers[0]?.create(run, []);
    const results = await Promise.all(
      writers.map((w, i) => w.compareAndSet(run.txId, 1, { ...run, context: { writer: i } }, [publish(i)])),
    );
    const winners = results.flatMap((r, i) => (r === 2 ? [i] : []));
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => r === undefined)).toHaveLength(19);
    const stored = await writers[0]?.get(run.txId);
    expect(stored?.version).toBe(2);
    expect(stored?.run.context).toEqual({ writer: winners[0] });
    expect(stored?.outbox.map((e) => e.version)).toEqual([2]);
  });

  it('starts one run for concurrent creates with one idempotency key from 10 connections', async () => {
    const prefix = freshPrefix();
    prefixes.push(prefix);
    const creators = await Promise.all(Array.from({ length: 10 }, () => open(prefix)));
    const runs = creators.map(() => makeRun());
    const results = await Promise.all(
      creators.map((c, i) => c.create(runs[i] as Run, [publish(i)], 'order-7')),
    );
    const created = results.filter((r) => r.created);
    expect(created).toHaveLength(1);
    expect(new Set(results.map((r) => r.txId))).toEqual(new Set([created[0]?.txId]));
    const page = await creators[0]?.list({}, 10);
    expect(page?.runs.map((r) => r.txId)).toEqual([created[0]?.txId]);
  });

  it('finishes the job of a creator that died between reserving the key and writing its run', async () => {
    const store = await open();
    const orphan = makeRun();
    // What a creator writes first; it "died" before the index entry and the run.
    const idempotency = await nats.bucket(`${prefixes[0]}-runs`);
    await idempotency.create(
      'k.order-9',
      JSON.stringify({
        key: 'order-9',
        txId: orphan.txId,
        initial: {
          version: 1,
          run: orphan,
          outbox: [{ version: 1, effect: publish(1) }],
          writtenAt: [Date.now()],
          marked: true,
          createdAt: orphan.createdAt,
          workflowId: orphan.workflowId,
          idempotencyKey: 'order-9',
        },
      }),
    );
    expect(await store.create(makeRun(), [], 'order-9')).toEqual({ created: false, txId: orphan.txId });
    expect((await store.get(orphan.txId))?.run).toEqual(orphan);
    expect((await store.list({}, 10)).runs.map((r) => r.txId)).toEqual([orphan.txId]);
    expect((await store.listPendingOutbox(Date.now() + 60_000, 10)).map((p) => p.txId)).toEqual([
      orphan.txId,
    ]);
  });

  it('never drops outbox entries appended while clearOutbox runs', async () => {
    const writer = await open();
    const clearer = await open(prefixes[0]);
    const run = makeRun();
    await writer.create(run, [publish(1)]);
    let version = 1;
    let cleared = 0;
    const writing = (async () => {
      for (let n = 2; n <= 40; n += 1) {
        const next = await writer.compareAndSet(run.txId, version, { ...run, updatedAt: n }, [publish(n)]);
        expect(next).toBe(version + 1);
        version = next as number;
      }
    })();
    const clearing = (async () => {
      while (version < 40) {
        const upTo = version - 1;
        await clearer.clearOutbox(run.txId, upTo);
        cleared = Math.max(cleared, upTo);
      }
    })();
    await Promise.all([writing, clearing]);
    const outbox = (await writer.get(run.txId))?.outbox ?? [];
    const expected = Array.from({ length: 40 - cleared }, (_, i) => cleared + 1 + i);
    expect(cleared).toBeGreaterThan(0);
    expect(outbox.map((e) => e.version)).toEqual(expected);
    expect(outbox.map((e) => (e.effect.type === 'publish' ? e.effect.envelope.payload : null))).toEqual(
      expected.map((n) => ({ n })),
    );
  });

  it('pages many runs across many time windows without duplicates or gaps, for several filters', async () => {
    const store = await open(undefined, { listWindowMs: 10 });
    const states = [RunState.Running, RunState.Completed, RunState.Waiting] as const;
    const runs: Run[] = [];
    await Promise.all(
      Array.from({ length: 150 }, async (_, i) => {
        const run = makeRun({
          txId: `tx-${String(i).padStart(3, '0')}`,
          createdAt: 1_800_000_000_000 + ((i * 37) % 400),
          state: states[i % 3] as RunState,
          workflowId: i % 4 === 0 ? 'refunds' : 'orders',
        });
        await store.create(run, []);
        if (i % 5 === 0) {
          const moved = { ...run, state: RunState.Completed };
          await store.compareAndSet(run.txId, 1, moved, []);
          runs.push(moved);
        } else {
          runs.push(run);
        }
      }),
    );
    const filters: RunFilter[] = [
      {},
      { state: RunState.Completed },
      { workflowId: 'refunds' },
      {
        state: RunState.Running,
        workflowId: 'orders',
        createdAfter: 1_800_000_000_050,
        createdBefore: 1_800_000_000_300,
      },
    ];
    for (const filter of filters) {
      const expected = runs
        .filter(
          (r) =>
            (filter.state === undefined || r.state === filter.state) &&
            (filter.workflowId === undefined || r.workflowId === filter.workflowId) &&
            (filter.createdAfter === undefined || r.createdAt >= filter.createdAfter) &&
            (filter.createdBefore === undefined || r.createdAt <= filter.createdBefore),
        )
        .sort((a, b) => b.createdAt - a.createdAt || (a.txId < b.txId ? 1 : -1))
        .map((r) => r.txId);
      for (const pageSize of [1, 7, 200]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        for (let pages = 0; pages < 200; pages += 1) {
          const page = await store.list(filter, pageSize, cursor);
          expect(page.runs.length).toBeLessThanOrEqual(pageSize);
          if (cursor !== undefined) expect(page.runs.length).toBeGreaterThan(0);
          seen.push(...page.runs.map((r) => r.txId));
          cursor = page.nextCursor;
          if (cursor === undefined) break;
        }
        expect(seen).toEqual(expected);
      }
    }
  }, 60_000);

  it('skips and removes index entries left by crashed writers once past the grace', async () => {
    const store = await open(undefined, { repairGraceMs: 1 });
    const index = await nats.bucket(`${prefixes[0]}-run-index`);
    const run = makeRun({ state: RunState.Running, createdAt: 1_800_000_000_000 });
    await store.create(run, []);
    await store.compareAndSet(run.txId, 1, { ...run, state: RunState.Completed }, []);
    // A writer died after its index entry and before its run; another before removing an old state.
    const keys = new NatsKeys(prefixes[0] as string);
    const hour = DEFAULT_NATS_STATE_STORE_OPTIONS.listWindowMs;
    const ghost = keys.runIndex(RunState.Running, 'wf-test', run.createdAt, 'ghost', hour);
    const left = keys.runIndex(RunState.Running, 'wf-test', run.createdAt, run.txId, hour);
    await index.put(ghost, JSON.stringify({ version: 1 }));
    await index.put(left, JSON.stringify({ version: 1 }));
    await new Promise((r) => setTimeout(r, 20));

    expect((await store.list({ state: RunState.Running }, 10)).runs).toEqual([]);
    expect((await store.list({}, 10)).runs.map((r) => r.txId)).toEqual([run.txId]);
    expect(await nats.keys(`${prefixes[0]}-run-index`)).toEqual([
      keys.runIndex(RunState.Completed, 'wf-test', run.createdAt, run.txId, hour),
    ]);
  });

  it('removes outbox markers of emptied outboxes, and marks a run again when it gets entries', async () => {
    const store = await open();
    const markers = (): Promise<string[]> => nats.keys(`${prefixes[0]}-outbox`);
    const run = makeRun();
    await store.create(run, [publish(1)]);
    expect(await markers()).toHaveLength(1);
    await store.clearOutbox(run.txId, 1);
    expect(await store.listPendingOutbox(Date.now() + 60_000, 10)).toEqual([]);
    expect(await markers()).toEqual([]);
    // The version is untouched by the repair: a writer holding version 1 still wins.
    expect(await store.compareAndSet(run.txId, 1, { ...run, updatedAt: 9 }, [publish(2)])).toBe(2);
    expect(await markers()).toHaveLength(1);
    expect((await store.listPendingOutbox(Date.now() + 60_000, 10)).map((p) => p.txId)).toEqual([run.txId]);
  });

  it('purges terminal runs past their TTL with their keys, and keeps everything else', async () => {
    const store = await open(undefined, { terminalRunTtlMs: 60_000 });
    const now = Date.now();
    const old = makeRun({ createdAt: now - 300_000, state: RunState.Completed, endedAt: now - 200_000 });
    const recent = makeRun({ createdAt: now - 300_000, state: RunState.Completed, endedAt: now - 1_000 });
    const live = makeRun({ createdAt: now - 300_000, state: RunState.Waiting });
    const pending = makeRun({ createdAt: now - 300_000, state: RunState.Failed, endedAt: now - 200_000 });
    await store.create(old, [], 'key-old');
    await store.create(recent, []);
    await store.create(live, []);
    await store.create(pending, [publish(1)]);

    expect(await store.purgeExpired(now)).toBe(1);
    expect(await store.get(old.txId)).toBeUndefined();
    for (const kept of [recent, live, pending]) expect(await store.get(kept.txId)).toBeDefined();
    expect((await store.list({}, 10)).runs.map((r) => r.txId).sort()).toEqual(
      [recent.txId, live.txId, pending.txId].sort(),
    );
    // Its idempotency key went with it.
    const again = makeRun();
    expect(await store.create(again, [], 'key-old')).toEqual({ created: true, txId: again.txId });
    // Once its effects are done, the failed run goes too.
    await store.clearOutbox(pending.txId, 1);
    expect(await store.purgeExpired(now)).toBe(1);
    expect(await store.purgeExpired(now)).toBe(0);
    expect((await nats.keys(`${prefixes[0]}-run-index`)).some((k) => k.endsWith(old.txId))).toBe(false);
  });

  it('does not purge without a TTL, and reports bad input with every problem', async () => {
    const store = await open();
    expect(await store.purgeExpired(Date.now() + 1e12)).toBe(0);
    await expect(store.create({ ...makeRun(), txId: '', createdAt: -5 }, [])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      problems: ['txId must be a non-empty string', 'createdAt must be a non-negative integer (got -5)'],
    });
    await expect(store.list({}, 0)).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(store.listPendingOutbox(0, 1.5)).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    const run = makeRun();
    await store.create(run, []);
    await expect(store.compareAndSet(run.txId, 1, makeRun(), [])).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });

  it('stores runs under any txId, idempotency key and workflow id, however hostile', async () => {
    const store = await open();
    const run = makeRun({ txId: 'tx.with *wild> chars', workflowId: 'orders.v2 ünïcode' });
    const key = `a key with dots. and ${'x'.repeat(500)}`;
    expect(await store.create(run, [], key)).toEqual({ created: true, txId: run.txId });
    expect(await store.create(makeRun(), [], key)).toEqual({ created: false, txId: run.txId });
    expect((await store.get(run.txId))?.run).toEqual(run);
    expect((await store.list({ workflowId: run.workflowId }, 10)).runs).toEqual([run]);
  });

  it('refuses calls after close', async () => {
    const store = await open();
    await store.close();
    await expect(store.get('x')).rejects.toThrow('closed');
  });
});
