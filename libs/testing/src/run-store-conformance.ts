/// <reference types="jest" />
// Jest's globals are typed for this file only: the suite is library code that adapters' specs call.
import {
  ErrorCode,
  EventType,
  RunState,
  StepStatus,
  Topics,
  rebuildContext,
  type Envelope,
  type Run,
  type StepCommandPayload,
  type StepRecord,
  type TransitionEventPayload,
} from '@multiagents/contracts';
import type {
  Delivery,
  EventBus,
  RunFilter,
  RunRevision,
  RunStore,
  StoredRun,
  Subscription,
  Timer,
  Transition,
} from '@multiagents/core';
import { makeRun } from './make-run';
import { waitFor } from './wait-for';

/** What an adapter's factory hands to {@link runStoreConformance}: a fresh, empty backend per test. */
export interface RunStoreFixture {
  readonly runs: RunStore;
  /** The bus of the same backend: where the store's transitions publish. */
  readonly bus: EventBus;
  /**
   * True when the store acknowledges `transition.ack` in the same atomic write (memory, Redis):
   * a handler that commits and then throws does not see its message again.
   */
  readonly atomicAck: boolean;
  /** Runs after `runs.close()` and `bus.close()`. */
  readonly cleanup?: () => Promise<void>;
}

const T0 = 1_800_000_000_000;
const WORKER = 'conformance.charge';
const WAIT = { timeoutMs: 20_000 } as const;

function step(name: string, changes: Partial<StepRecord> = {}): StepRecord {
  return { name, status: StepStatus.Pending, attempt: 0, attempts: [], ...changes };
}

/** A run with two steps, as the engine makes them (context = what the records imply). */
function newRun(overrides: Partial<Run> = {}): Run {
  const steps = { a: step('a'), b: step('b') };
  const run = makeRun({ steps, ...overrides });
  return { ...run, context: rebuildContext(run.input, run.steps) };
}

/** The run after a step completed with `output` (a new object: stores may keep what they are given). */
function completeStep(run: Run, name: string, output: Record<string, unknown>, at = run.updatedAt + 1): Run {
  const outputCount = run.outputCount + 1;
  const steps = {
    ...run.steps,
    [name]: step(name, {
      status: StepStatus.Completed,
      attempt: 1,
      attempts: [{ attempt: 1, startedAt: at - 1, endedAt: at, outcome: 'completed' }],
      startedAt: at - 1,
      endedAt: at,
      output,
      outputSeq: outputCount,
      completedSeq: run.completedCount + 1,
    }),
  };
  return {
    ...run,
    steps,
    outputCount,
    completedCount: run.completedCount + 1,
    updatedAt: at,
    context: rebuildContext(run.input, steps),
  };
}

function command(run: Run, stepName: string, attempt = 1): Envelope<StepCommandPayload> {
  const commandId = `${run.txId}:${stepName}:${attempt}`;
  return {
    id: commandId,
    type: EventType.StepCommand,
    txId: run.txId,
    workflowId: run.workflowId,
    step: stepName,
    attempt,
    time: run.updatedAt,
    headers: {},
    payload: {
      commandId,
      worker: WORKER,
      input: run.context,
      idempotencyKey: `${run.txId}:${stepName}`,
      compensation: false,
    },
  };
}

function event(run: Run, version: number): Envelope<TransitionEventPayload> {
  return {
    id: `${run.txId}:v${version}`,
    type: EventType.WorkflowTransitioned,
    txId: run.txId,
    workflowId: run.workflowId,
    time: run.updatedAt,
    headers: {},
    payload: { version, state: run.state, events: [{ type: EventType.StepStarted, state: run.state }] },
  };
}

function timer(run: Run, stepName: string, dueAt: number, attempt = 1): Timer {
  const id = `${run.txId}:retry:${stepName}:${attempt}`;
  return { id, txId: run.txId, dueAt, payload: { kind: 'retry', step: stepName, attempt } };
}

function transition(run: Run, parts: Partial<Omit<Transition, 'run'>> = {}): Transition {
  return {
    run,
    changedSteps: parts.changedSteps ?? Object.keys(run.steps),
    commands: parts.commands ?? [],
    schedule: parts.schedule ?? [],
    cancel: parts.cancel ?? [],
    ...(parts.event ? { event: parts.event } : {}),
    ...(parts.ack ? { ack: parts.ack } : {}),
  };
}

/** Sorted keys, so runs compare by value whatever order a store reads fields back in. */
function canonical(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_key, v: unknown) =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
          )
        : v,
    ),
  );
}

/**
 * The RunStore contract (SPEC §4, issue 8: one transition, one atomic write) as Jest tests, run by
 * every backend: create-if-absent; compare-and-set on the revision; the run, its commands, its
 * lifecycle event, its timer changes and the acknowledgement of its cause committed together or
 * not at all; a run that reads back as written (its context rebuilt from its step records);
 * newest-first listing by state, workflow and time with cursors; timers claimed under a lease.
 *
 * @example
 * runStoreConformance('memory', async () => {
 *   const backend = createMemoryBackend();
 *   return { runs: backend.runs, bus: backend.bus, atomicAck: true };
 * });
 */
export function runStoreConformance(name: string, factory: () => Promise<RunStoreFixture>): void {
  describe(`RunStore conformance: ${name}`, () => {
    let fixture: RunStoreFixture;
    let runs: RunStore;
    let bus: EventBus;
    const subscriptions: Subscription[] = [];

    beforeEach(async () => {
      fixture = await factory();
      runs = fixture.runs;
      bus = fixture.bus;
    });

    afterEach(async () => {
      await Promise.all(subscriptions.splice(0).map((s) => s.close()));
      await bus.close();
      await runs.close();
      await fixture.cleanup?.();
    });

    /** Everything published on `topic` from now on, as it arrives. */
    async function collect(topic: string, group = 'conformance'): Promise<Envelope[]> {
      const seen: Envelope[] = [];
      subscriptions.push(
        await bus.subscribe(topic, { group, consumer: 'c1', startFrom: 'earliest' }, async (delivery) => {
          seen.push(delivery.envelope);
        }),
      );
      return seen;
    }

    async function created(run: Run, parts: Partial<Omit<Transition, 'run'>> = {}): Promise<StoredRun> {
      const result = await runs.create(transition(run, parts));
      expect(result.created).toBe(true);
      return result.stored;
    }

    describe('create and get', () => {
      it('stores a new run at version 1 that reads back as written, context included', async () => {
        const run = completeStep(newRun(), 'a', { reservationId: 'r-1' });
        const stored = await created(run);
        expect(stored.version).toBe(1);
        expect(typeof stored.revision).toBe('string');
        const read = await runs.get(run.txId);
        expect(read?.version).toBe(1);
        expect(read?.revision).toBe(stored.revision);
        expect(canonical(read?.run)).toEqual(canonical(run));
        expect(read?.run.context).toEqual({ ...run.input, reservationId: 'r-1' });
      });

      it('publishes the first transition’s commands and event with the run', async () => {
        const commands = await collect(Topics.command(WORKER));
        const events = await collect(Topics.events);
        const run = newRun();
        await created(run, { commands: [command(run, 'a')], event: event(run, 1) });
        await waitFor(() => commands.length === 1 && events.length === 1, WAIT);
        expect(commands[0]).toMatchObject({ id: `${run.txId}:a:1`, payload: { worker: WORKER } });
        expect(events[0]).toMatchObject({ id: `${run.txId}:v1`, payload: { version: 1 } });
      });

      it('returns undefined for an unknown run', async () => {
        expect(await runs.get('no-such-run')).toBeUndefined();
      });

      it('creates nothing when the txId exists (an idempotent start) and returns the existing run', async () => {
        const commands = await collect(Topics.command(WORKER));
        const run = newRun();
        await created(run, { commands: [command(run, 'a')] });
        const again = await runs.create(
          transition({ ...run, input: { other: true } }, { commands: [command(run, 'a', 2)] }),
        );
        expect(again.created).toBe(false);
        expect(again.stored.run.input).toEqual(run.input);
        expect(again.stored.version).toBe(1);
        await waitFor(() => commands.length >= 1, WAIT);
        expect(commands.map((c) => c.id)).toEqual([`${run.txId}:a:1`]);
      });

      it('lets exactly one of concurrent creates of one txId win', async () => {
        const run = newRun();
        const results = await Promise.all([1, 2, 3].map(() => runs.create(transition(run))));
        expect(results.filter((r) => r.created)).toHaveLength(1);
      });
    });

    describe('commit', () => {
      it('writes the transition, bumps the version and returns a new revision', async () => {
        const run = newRun();
        const first = await created(run);
        const next = completeStep(run, 'a', { paid: 10 });
        const revision = await runs.commit(first, transition(next, { changedSteps: ['a'] }));
        expect(revision?.version).toBe(2);
        expect(revision?.revision).not.toBe(first.revision);
        const read = await runs.get(run.txId);
        expect(read?.version).toBe(2);
        expect(read?.revision).toBe(revision?.revision);
        expect(canonical(read?.run)).toEqual(canonical(next));
      });

      it('keeps the records of steps a transition did not change', async () => {
        let run = completeStep(newRun(), 'a', { x: 1 });
        let current: RunRevision = await created(run);
        run = completeStep(run, 'b', { y: 2 });
        current = (await runs.commit(current, transition(run, { changedSteps: ['b'] }))) as RunRevision;
        run = { ...run, state: RunState.Completed, endedAt: run.updatedAt + 1, updatedAt: run.updatedAt + 1 };
        await runs.commit(current, transition(run, { changedSteps: [] }));
        const read = await runs.get(run.txId);
        expect(canonical(read?.run)).toEqual(canonical(run));
        expect(read?.run.context).toEqual({ ...run.input, x: 1, y: 2 });
      });

      it('publishes the commands and the event of a committed transition', async () => {
        const commands = await collect(Topics.command(WORKER));
        const events = await collect(Topics.events);
        const run = newRun();
        const first = await created(run);
        const next = completeStep(run, 'a', {});
        await runs.commit(first, transition(next, { commands: [command(next, 'b')], event: event(next, 2) }));
        await waitFor(() => commands.length === 1 && events.length === 1, WAIT);
        expect(commands[0]?.payload).toMatchObject({ commandId: `${run.txId}:b:1`, input: next.context });
        expect(events[0]?.id).toBe(`${run.txId}:v2`);
      });

      it('refuses a stale revision and writes, publishes and schedules nothing', async () => {
        const commands = await collect(Topics.command(WORKER));
        const run = newRun();
        const first = await created(run);
        const winner = completeStep(run, 'a', { winner: true });
        expect(
          await runs.commit(first, transition(winner, { commands: [command(winner, 'b')] })),
        ).toBeDefined();
        const loser = completeStep(run, 'a', { winner: false });
        const refused = await runs.commit(
          first,
          transition(loser, {
            commands: [command(loser, 'b', 2)],
            schedule: [timer(loser, 'b', T0)],
          }),
        );
        expect(refused).toBeUndefined();
        expect((await runs.get(run.txId))?.run.context['winner']).toBe(true);
        await waitFor(() => commands.length >= 1, WAIT);
        expect(commands.map((c) => c.id)).toEqual([`${run.txId}:b:1`]);
        expect(await runs.claimDueTimers(T0 + 1, 10, 1_000)).toEqual([]);
      });

      it('lets exactly one of two concurrent writers of the same revision win', async () => {
        const run = newRun();
        const first = await created(run);
        const results = await Promise.all(
          [1, 2].map((n) => runs.commit(first, transition(completeStep(run, 'a', { n })))),
        );
        expect(results.filter((r) => r !== undefined)).toHaveLength(1);
        const winner = results[0] ? 1 : 2;
        expect((await runs.get(run.txId))?.run.context['n']).toBe(winner);
      });

      it('rejects a commit to an unknown run with NOT_FOUND', async () => {
        const run = newRun();
        await expect(runs.commit({ version: 1, revision: '1' }, transition(run))).rejects.toMatchObject({
          code: ErrorCode.NotFound,
        });
      });

      it('hands out snapshots: a StoredRun read earlier does not change with later writes', async () => {
        const run = newRun();
        const first = await created(run);
        const before = await runs.get(run.txId);
        await runs.commit(first, transition(completeStep(run, 'a', { later: 1 })));
        expect(before?.version).toBe(1);
        expect(before?.run.context['later']).toBeUndefined();
      });

      it('acknowledges the delivery that caused the transition', async () => {
        const topic = Topics.results;
        const run = newRun();
        let current: RunRevision = await created(run);
        let attempts = 0;
        subscriptions.push(
          await bus.subscribe(
            topic,
            { group: 'conformance-ack', consumer: 'c1', retryDelayMs: 10, visibilityTimeoutMs: 10_000 },
            async (delivery: Delivery) => {
              attempts += 1;
              if (attempts > 1) return; // a redelivery: acknowledge it and stop
              const next = completeStep(run, 'a', { acked: true });
              current = (await runs.commit(current, transition(next, { ack: delivery }))) as RunRevision;
              // With the acknowledgement inside the commit, failing now cannot bring the message back.
              if (fixture.atomicAck) throw new Error('after the commit');
            },
          ),
        );
        await bus.publish(topic, [event(run, 99)]);
        await waitFor(
          async () => current.version === 2 && (await bus.pendingCount(topic, 'conformance-ack')) === 0,
          WAIT,
        );
        if (fixture.atomicAck) {
          // Long enough for a 10 ms retry delay to have redelivered it several times over.
          await new Promise((resolve) => setTimeout(resolve, 200));
          expect(attempts).toBe(1);
        }
      });
    });

    describe('timers', () => {
      const idsOf = (timers: readonly Timer[]): string[] => timers.map((t) => t.id);

      it('schedules with a transition and claims only due timers, earliest first, intact', async () => {
        const run = newRun();
        const a = timer(run, 'a', T0 + 100);
        const b = timer(run, 'b', T0 + 50, 3);
        const later = timer(run, 'later', T0 + 10_000);
        await created(run, { schedule: [a, later, b] });
        expect(await runs.claimDueTimers(T0 + 100, 10, 1_000)).toEqual([b, a]);
        expect(await runs.claimDueTimers(T0 + 100, 10, 1_000)).toEqual([]);
      });

      it('claims at most `limit` timers', async () => {
        const run = newRun();
        await created(run, {
          schedule: [timer(run, 'a', T0 + 1), timer(run, 'b', T0 + 2), timer(run, 'c', T0 + 3)],
        });
        expect(idsOf(await runs.claimDueTimers(T0 + 10, 2, 1_000))).toHaveLength(2);
        expect(idsOf(await runs.claimDueTimers(T0 + 10, 2, 1_000))).toHaveLength(1);
      });

      it('hides a claimed timer until its lease ends, then offers it again; completeTimers forgets it', async () => {
        const run = newRun();
        const a = timer(run, 'a', T0);
        await created(run, { schedule: [a] });
        expect(idsOf(await runs.claimDueTimers(T0, 10, 1_000))).toEqual([a.id]);
        expect(await runs.claimDueTimers(T0 + 999, 10, 1_000)).toEqual([]);
        expect(idsOf(await runs.claimDueTimers(T0 + 1_000, 10, 1_000))).toEqual([a.id]);
        await runs.completeTimers([a.id, 'unknown:retry:x:1']);
        expect(await runs.claimDueTimers(T0 + 10_000, 10, 1_000)).toEqual([]);
      });

      it('completeTimers leaves a timer a commit scheduled again after it was claimed', async () => {
        const run = newRun();
        const deadline = timer(run, 'deadline', T0);
        const first = await created(run, { schedule: [deadline] });
        expect(idsOf(await runs.claimDueTimers(T0, 10, 1_000))).toEqual([deadline.id]);
        // A heartbeat moves the deadline while the claimed copy fires (and changes nothing).
        const moved = { ...deadline, dueAt: T0 + 10_000 };
        await runs.commit(first, transition(completeStep(run, 'a', {}), { schedule: [moved] }));
        await runs.completeTimers([deadline.id]);
        expect(await runs.claimDueTimers(T0 + 10_000, 10, 1_000)).toEqual([moved]);
      });

      it('cancels and replaces timers with a transition', async () => {
        const run = newRun();
        const a = timer(run, 'a', T0);
        const b = timer(run, 'b', T0);
        const first = await created(run, { schedule: [a, b] });
        const moved = { ...b, dueAt: T0 + 5_000 };
        await runs.commit(
          first,
          transition(completeStep(run, 'a', {}), { cancel: [a.id], schedule: [moved] }),
        );
        expect(await runs.claimDueTimers(T0 + 10, 10, 1_000)).toEqual([]);
        expect(await runs.claimDueTimers(T0 + 5_000, 10, 1_000)).toEqual([moved]);
      });

      it('never hands one timer to two concurrent claimers within a lease', async () => {
        const run = newRun();
        const all = Array.from({ length: 20 }, (_, i) => timer(run, `s${i}`, T0 + i));
        await created(run, { schedule: all });
        const claims = await Promise.all([1, 2, 3, 4].map(() => runs.claimDueTimers(T0 + 100, 20, 10_000)));
        const claimed = claims.flatMap(idsOf);
        expect(claimed).toHaveLength(20);
        expect(new Set(claimed).size).toBe(20);
      });
    });

    describe('list', () => {
      async function seed(): Promise<Run[]> {
        const base = T0;
        const made = [
          newRun({ createdAt: base + 1, workflowId: 'orders', state: RunState.Running }),
          newRun({ createdAt: base + 2, workflowId: 'refunds', state: RunState.Completed }),
          newRun({ createdAt: base + 3, workflowId: 'orders', state: RunState.Completed }),
          newRun({ createdAt: base + 4, workflowId: 'orders', state: RunState.Failed }),
          newRun({ createdAt: base + 5, workflowId: 'refunds', state: RunState.Running }),
          newRun({ createdAt: base + 6, workflowId: 'orders', state: RunState.Completed }),
        ];
        for (const run of made) await created(run);
        return made;
      }
      const ids = (list: readonly Run[]): string[] => list.map((r) => r.txId);
      const newestFirst = (list: readonly Run[]): string[] => ids([...list].reverse());

      it('lists every run newest first', async () => {
        const made = await seed();
        const page = await runs.list({}, 100);
        expect(ids(page.runs)).toEqual(newestFirst(made));
        expect(page.nextCursor).toBeUndefined();
      });

      it('filters by state, workflowId and inclusive createdAfter/createdBefore, combined with AND', async () => {
        const made = await seed();
        const at = (i: number): Run => made[i] as Run;
        const list = async (filter: RunFilter): Promise<string[]> => ids((await runs.list(filter, 100)).runs);
        expect(await list({ state: RunState.Completed })).toEqual(ids([at(5), at(2), at(1)]));
        expect(await list({ workflowId: 'refunds' })).toEqual(ids([at(4), at(1)]));
        expect(await list({ createdAfter: at(2).createdAt })).toEqual(ids([at(5), at(4), at(3), at(2)]));
        expect(await list({ createdBefore: at(2).createdAt })).toEqual(ids([at(2), at(1), at(0)]));
        expect(
          await list({
            state: RunState.Completed,
            workflowId: 'orders',
            createdAfter: at(1).createdAt,
            createdBefore: at(4).createdAt,
          }),
        ).toEqual(ids([at(2)]));
        expect(await list({ state: RunState.Cancelled })).toEqual([]);
      });

      it('follows state changes made by commits', async () => {
        const run = newRun({ state: RunState.Running });
        const first = await created(run);
        await runs.commit(first, transition({ ...run, state: RunState.Completed }, { changedSteps: [] }));
        expect((await runs.list({ state: RunState.Running }, 10)).runs).toEqual([]);
        const completed = await runs.list({ state: RunState.Completed }, 10);
        expect(ids(completed.runs)).toEqual([run.txId]);
        expect(completed.runs[0]?.state).toBe(RunState.Completed);
      });

      it('pages with a cursor without duplicates or gaps, ties on createdAt included', async () => {
        const made: Run[] = [];
        for (let i = 0; i < 23; i += 1) {
          // Groups of three share a createdAt: the order must still be total and stable.
          const run = newRun({
            createdAt: T0 + Math.floor(i / 3),
            state: i % 2 === 0 ? RunState.Running : RunState.Completed,
          });
          made.push(run);
          await created(run);
        }
        const readAll = async (filter: RunFilter): Promise<string[]> => {
          const seen: string[] = [];
          let cursor: string | undefined;
          for (let pages = 0; pages < 50; pages += 1) {
            const page = await runs.list(filter, 4, cursor);
            expect(page.runs.length).toBeLessThanOrEqual(4);
            seen.push(...ids(page.runs));
            cursor = page.nextCursor;
            if (cursor === undefined) return seen;
          }
          throw new Error('pagination did not end');
        };
        const all = await readAll({});
        expect(all).toEqual(ids((await runs.list({}, 100)).runs));
        expect(new Set(all).size).toBe(23);
        expect([...all].sort()).toEqual(ids(made).sort());
        const createdAts = all.map((id) => made.find((r) => r.txId === id)?.createdAt ?? 0);
        expect(createdAts).toEqual([...createdAts].sort((a, b) => b - a));
        const running = await readAll({ state: RunState.Running });
        expect(running).toEqual(ids((await runs.list({ state: RunState.Running }, 100)).runs));
        expect(running).toHaveLength(12);
      });

      it('counts runs per state, following commits', async () => {
        const made = await seed();
        const first = (await runs.get((made[0] as Run).txId)) as StoredRun;
        await runs.commit(
          first,
          transition({ ...(made[0] as Run), state: RunState.Compensated }, { changedSteps: [] }),
        );
        expect(await runs.countByState()).toEqual({
          [RunState.Running]: 1,
          [RunState.Completed]: 3,
          [RunState.Failed]: 1,
          [RunState.Compensated]: 1,
        });
      });

      it('gives no cursor when a page holds the last run', async () => {
        const made = await seed();
        const page = await runs.list({}, made.length);
        expect(page.runs).toHaveLength(made.length);
        expect(page.nextCursor).toBeUndefined();
      });

      it('rejects a malformed cursor with INVALID_ARGUMENT', async () => {
        await seed();
        await expect(runs.list({}, 10, '%%not-a-cursor%%')).rejects.toMatchObject({
          code: ErrorCode.InvalidArgument,
        });
      });
    });
  });
}
