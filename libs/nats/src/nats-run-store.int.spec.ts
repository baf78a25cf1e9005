import {
  ErrorCode,
  EventType,
  RunState,
  StepStatus,
  Topics,
  encodeEnvelope,
  rebuildContext,
  type Envelope,
  type Run,
  type StepCommandPayload,
  type TransitionEventPayload,
} from '@multiagents/contracts';
import {
  timerIdFor,
  type RunRevision,
  type Subscription,
  type Timer,
  type Transition,
} from '@multiagents/core';
import { ManualClock, makeRun, waitFor } from '@multiagents/testing';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsBackend } from './nats-backend';
import type { NatsBackendOptions } from './nats-backend-options';
import { windowStart } from './nats-names';
import { encodeRecord } from './run-record-codec';
import { NatsTestServer, isOnDisk, TEST_REQUEST_TIMEOUT_MS } from './testing/nats-test-backend';

// Slowness on a loaded machine is not a failure: each test may take a few slow requests.
jest.setTimeout(6 * TEST_REQUEST_TIMEOUT_MS);

let nats: NatsTestServer;
let jsm: JetStreamManager;

beforeAll(async () => {
  nats = await NatsTestServer.start();
  jsm = await nats.jsm();
}, 20_000);

afterAll(async () => {
  await nats?.stop();
});

const WORKER = 'specifics.charge';

function newRun(overrides: Partial<Run> = {}): Run {
  const steps: Run['steps'] = {
    a: { name: 'a', status: StepStatus.Running, attempt: 1, attempts: [] },
    b: { name: 'b', status: StepStatus.Pending, attempt: 0, attempts: [] },
  };
  const run = makeRun({ steps, createdAt: Date.now(), ...overrides });
  return { ...run, context: rebuildContext(run.input, run.steps) };
}

function moved(run: Run, changes: Partial<Run>): Run {
  const next = { ...run, updatedAt: run.updatedAt + 1, ...changes };
  return { ...next, context: rebuildContext(next.input, next.steps) };
}

function command(run: Run, step: string, attempt = 1): Envelope<StepCommandPayload> {
  const commandId = `${run.txId}:${step}:${attempt}`;
  return {
    id: commandId,
    type: EventType.StepCommand,
    txId: run.txId,
    workflowId: run.workflowId,
    step,
    attempt,
    time: run.updatedAt,
    headers: {},
    payload: {
      commandId,
      worker: WORKER,
      input: run.context,
      idempotencyKey: `${run.txId}:${step}`,
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

function timer(run: Run, step: string, dueAt: number, attempt = 1): Timer {
  const payload = { kind: 'retry' as const, step, attempt };
  return { id: timerIdFor(run.txId, payload), txId: run.txId, dueAt, payload };
}

function transition(run: Run, parts: Partial<Omit<Transition, 'run'>> = {}): Transition {
  return {
    run,
    changedSteps: parts.changedSteps ?? Object.keys(run.steps),
    commands: parts.commands ?? [],
    schedule: parts.schedule ?? [],
    cancel: parts.cancel ?? [],
    ...(parts.event ? { event: parts.event } : {}),
  };
}

/**
 * Messages the server took since `before`, once at least `expected` have been counted: the server
 * adds a connection's messages to its totals when it has parsed the connection's whole read, which
 * can be after it acknowledged them, so a count read at once may lag. Waiting for the count names
 * it if it never comes; a count above `expected` is still seen.
 */
async function inMsgsSince(before: { in_msgs: number }, expected: number): Promise<number> {
  const since = async (): Promise<number> => (await nats.varz()).in_msgs - before.in_msgs;
  await waitFor(async () => (await since()) >= expected, {
    timeoutMs: 10_000,
    description: `${expected} messages counted by the server`,
  });
  return since();
}

describe('NatsRunStore specifics', () => {
  let backends: NatsBackend[] = [];
  let subscriptions: Subscription[] = [];
  const prefixes = new Set<string>();

  async function backend(options: Partial<NatsBackendOptions> = {}): Promise<NatsBackend> {
    const made = await nats.backend(options);
    backends.push(made);
    prefixes.add(made.names.prefix);
    return made;
  }

  /** Everything published on `topic` of `on` from now on. */
  async function collect(on: NatsBackend, topic: string): Promise<Envelope[]> {
    const seen: Envelope[] = [];
    subscriptions.push(
      await on.bus.subscribe(topic, { group: 'spec', consumer: 'c1' }, async (d) => {
        seen.push(d.envelope);
      }),
    );
    return seen;
  }

  afterEach(async () => {
    await Promise.all(subscriptions.map((s) => s.close()));
    for (const made of backends.reverse()) await made.close();
    for (const prefix of prefixes) await nats.destroy(prefix);
    backends = [];
    subscriptions = [];
    prefixes.clear();
  });

  it('commits with one KV write on the cached revision: no read, no JetStream API call, messages pipelined', async () => {
    const { runs, bus } = await backend();
    let run = newRun();
    let current: RunRevision = (await runs.create(transition(run))).stored;
    const before = await nats.varz();
    const apiBefore = await nats.apiCalls();
    for (let i = 2; i <= 11; i += 1) {
      run = moved(run, {});
      current = (await runs.commit(
        current,
        transition(run, { commands: [command(run, 'a', i)], event: event(run, i) }),
      )) as RunRevision;
    }
    expect(current.version).toBe(11);
    // Per commit: the record write, the command and the event. Nothing else reaches the server.
    expect(await inMsgsSince(before, 10 * 3)).toBe(10 * 3);
    // Claiming timers is a pull request each, not a JetStream API call either.
    for (let i = 0; i < 5; i += 1) await runs.claimDueTimers(Date.now(), 10, 30_000);
    expect((await nats.apiCalls()) - apiBefore).toBe(0);
    // The counter does count API calls (a consumer-info request here).
    await bus.pendingCount(Topics.results, 'nobody');
    expect(await nats.apiCalls()).toBeGreaterThan(apiBefore);
  });

  it('writes the index only when a run moves between live and finished', async () => {
    const { runs, names } = await backend();
    let run = newRun();
    let current: RunRevision = (await runs.create(transition(run))).stored;
    const subjects = async (): Promise<string[]> =>
      Object.keys(
        (await jsm.streams.info(names.runsStream, { subjects_filter: `$KV.${names.runsBucket}.>` })).state
          .subjects ?? {},
      )
        .map((s) => s.slice(`$KV.${names.runsBucket}.`.length).split('.')[0] as string)
        .sort();
    expect(await subjects()).toEqual(['l', 'm', 'r']);
    const before = await nats.varz();
    run = moved(run, { state: RunState.Waiting });
    current = (await runs.commit(current, transition(run))) as RunRevision;
    run = moved(run, { state: RunState.Running });
    current = (await runs.commit(current, transition(run))) as RunRevision;
    // Live to live: one record write each, no index write.
    expect(await inMsgsSince(before, 2)).toBe(2);
    run = moved(run, { state: RunState.Completed, endedAt: run.updatedAt + 1 });
    await runs.commit(current, transition(run));
    // Live to finished: the record, the window's directory entry, the done entry, the live entry's removal.
    expect(await inMsgsSince(before, 2 + 4)).toBe(2 + 4);
    expect(await subjects()).toEqual(['d', 'l', 'm', 'r', 'w']); // `l`: the removal's marker, until maintenance
    expect((await runs.list({ state: RunState.Running }, 10)).runs).toEqual([]);
    expect((await runs.list({ state: RunState.Completed }, 10)).runs.map((r) => r.txId)).toEqual([run.txId]);
  });

  it('refuses a stale revision held by another process, and counts it', async () => {
    const one = await backend();
    const two = await backend({ prefix: one.names.prefix });
    const run = newRun();
    await one.runs.create(transition(run));
    const stale = (await two.runs.get(run.txId)) as RunRevision;
    const fresh = (await one.runs.get(run.txId)) as RunRevision;
    expect(await one.runs.commit(fresh, transition(moved(run, { state: RunState.Waiting })))).toBeDefined();
    expect(await two.runs.commit(stale, transition(moved(run, { state: RunState.Failed })))).toBeUndefined();
    expect(two.counters.casConflicts).toBe(1);
    expect((await two.runs.get(run.txId))?.run.state).toBe(RunState.Waiting);
  });

  describe('a writer that died between its write and its publishes', () => {
    /** Writes a record (and its index entry) the way a writer does, without its publishes. */
    async function writeOnly(
      target: NatsBackend,
      run: Run,
      version: number,
      timers: [string, number][],
    ): Promise<void> {
      const kv = await nats.kv(target.names.runsBucket);
      const terminal = run.state === RunState.Completed;
      const data = encodeRecord(run, {
        version,
        event: { id: `${run.txId}:v${version}`, data: encodeEnvelope(event(run, version)) },
        timers: timers.map(([id, dueAt]) => [id, dueAt, version] as const),
        withMeta: true,
      });
      await kv.put(target.names.liveEntry(run.workflowId, run.createdAt, run.txId), new Uint8Array(0));
      await kv.put(target.names.runRecord(run.txId), data);
      if (!terminal) return;
    }

    it('publishes the event of an idle record again when read past the grace, and an overdue timer', async () => {
      const clock = new ManualClock(Date.now());
      const reader = await backend({ clock, outboxGraceMs: 5_000 });
      const events = await collect(reader, Topics.events);
      const run = newRun();
      const overdue = timer(run, 'a', clock.now() - 60_000);
      const later = timer(run, 'b', clock.now() + 3_600_000);
      await writeOnly(reader, run, 1, [
        [overdue.id, overdue.dueAt],
        [later.id, later.dueAt],
      ]);

      // Younger than the grace: its writer may still be publishing.
      await reader.runs.get(run.txId);
      expect(reader.counters.outboxesRepublished).toBe(0);

      clock.advance(6_000);
      expect((await reader.runs.get(run.txId))?.run.txId).toBe(run.txId);
      await waitFor(() => events.length === 1, {
        timeoutMs: 3_000,
        description: 'the event published again',
      });
      expect(events[0]?.id).toBe(`${run.txId}:v1`);
      // The overdue timer fires; the one due in an hour is not touched.
      const claimed = await waitForClaim(reader, clock.now(), 1);
      expect(claimed.map((t) => t.id)).toEqual([overdue.id]);
      // Once per revision per process: reading again publishes nothing more.
      await reader.runs.get(run.txId);
      expect(reader.counters.outboxesRepublished).toBe(1);
    });

    it('keeps the meta of a run whose creator died before writing its meta key, for every reader', async () => {
      const reader = await backend();
      const run = newRun();
      // The creator's record (it carries the meta) and index entry, and no `m.<txId>`.
      await writeOnly(reader, run, 1, []);
      const kv = await nats.kv(reader.names.runsBucket);
      expect(await kv.get(reader.names.runMeta(run.txId))).toBeNull();
      // Read twice (the recovery sweep, then the run's recovery): the second read finds the meta
      // in this process's cache, which says nothing about the key.
      await reader.runs.get(run.txId);
      const current = (await reader.runs.get(run.txId)) as RunRevision;
      const next = moved(run, { state: RunState.Waiting });
      expect(await reader.runs.commit(current, transition(next))).toMatchObject({ version: 2 });
      // Another process (or this one after a restart) still reads the run whole.
      const other = await backend({ prefix: reader.names.prefix });
      const read = await other.runs.get(run.txId);
      expect(read?.run).toMatchObject({ txId: run.txId, input: run.input, state: RunState.Waiting });
      expect(read?.version).toBe(2);
    });

    it('finishes the move of a finished run still listed as live, publishing its event again', async () => {
      const clock = new ManualClock(Date.now());
      const reader = await backend({ clock, outboxGraceMs: 5_000 });
      const events = await collect(reader, Topics.events);
      const run = newRun({ state: RunState.Completed });
      await writeOnly(reader, run, 4, []);
      clock.advance(6_000);
      // Listed (it exists), and repaired on the way: the done entry written, the live one removed.
      expect((await reader.runs.list({}, 10)).runs.map((r) => r.txId)).toEqual([run.txId]);
      await waitFor(() => events.length === 1, { timeoutMs: 3_000 });
      expect(events[0]?.id).toBe(`${run.txId}:v4`);
      expect((await reader.runs.list({ state: RunState.Completed }, 10)).runs.map((r) => r.txId)).toEqual([
        run.txId,
      ]);
      expect(reader.counters.indexRepairs).toBe(1);
    });
  });

  describe('a finishing commit whose last event the bus refused', () => {
    it('keeps the run listed as live until its event is stored, so another process publishes it later', async () => {
      // The topic stream takes one message: the run's first event fills it, and the bus refuses
      // the last one while the runs bucket (another stream) takes the record and the index.
      const writer = await backend({ maxMsgs: 1 });
      const { names } = writer;
      const run = newRun();
      const created = await writer.runs.create(transition(run, { event: event(run, 1) }));
      const done = moved(run, { state: RunState.Completed, endedAt: run.updatedAt + 1 });
      const committed = await writer.runs.commit(created.stored, transition(done, { event: event(done, 2) }));
      expect(committed).toMatchObject({ version: 2 });
      // The fault happened: the last event was refused, and is not in the stream.
      expect(writer.counters.outboxPublishFailures).toBe(1);
      const busState = (await jsm.streams.info(names.stream)).state;
      expect([busState.messages, busState.last_seq]).toEqual([1, 1]);
      // The writer stops (a crash or a close: its background republish goes with it), and the
      // stream has room again.
      await writer.close();
      await jsm.streams.purge(names.stream);

      // Another process, past the grace: its recovery sweep lists live runs.
      const clock = new ManualClock(Date.now());
      const reader = await backend({ clock, prefix: names.prefix, outboxGraceMs: 5_000 });
      const events = await collect(reader, Topics.events);
      clock.advance(6_000);
      await reader.runs.list({ state: RunState.Running }, 10);
      await waitFor(() => events.length === 1, {
        timeoutMs: 3_000,
        description: 'the last event published again',
      });
      expect(events[0]?.id).toBe(`${run.txId}:v2`);
      // And the move is finished: listed as completed, no longer as live.
      expect((await reader.runs.list({ state: RunState.Completed }, 10)).runs.map((r) => r.txId)).toEqual([
        run.txId,
      ]);
      expect((await reader.runs.list({ state: RunState.Running }, 10)).runs).toEqual([]);
    });
  });

  it("refuses a record above the server's max_payload as RESOURCE_EXHAUSTED, not to be retried, and keeps the run", async () => {
    await NatsTestServer.withBackend({ config: 'max_payload: 16384' }, async (made, small) => {
      const run = newRun();
      const created = await made.runs.create(transition(run));
      // A step's output large enough that the record holding it cannot be sent.
      const a = { ...run.steps['a'], status: StepStatus.Completed, output: { blob: 'x'.repeat(20_000) } };
      const next = moved(run, { steps: { ...run.steps, a } as Run['steps'] });
      const record = encodeRecord(next, { version: 2, event: undefined, timers: [], withMeta: false });
      expect(record.length).toBeGreaterThan((await small.varz()).max_payload);
      await expect(made.runs.commit(created.stored, transition(next))).rejects.toMatchObject({
        code: ErrorCode.ResourceExhausted,
        retryable: false,
      });
      // Nothing written: the run is still at its first version, and takes a commit that fits.
      const stored = (await made.runs.get(run.txId)) as RunRevision;
      expect(stored.version).toBe(1);
      expect(await made.runs.commit(stored, transition(moved(run, {})))).toMatchObject({ version: 2 });
    });
  });

  describe('timers', () => {
    it('keeps a timer due soon in memory (no wake-up published) and fires it at its due time', async () => {
      const clock = new ManualClock(Date.now());
      const { runs, names } = await backend({ clock, timerDeferMs: 60_000 });
      const run = newRun();
      const soon = timer(run, 'a', clock.now() + 1_000);
      await runs.create(transition(run, { schedule: [soon] }));
      expect((await jsm.streams.info(names.timerStream)).state.messages).toBe(0);
      expect(await runs.claimDueTimers(clock.now(), 10, 30_000)).toEqual([]);
      clock.advance(1_000);
      expect(await runs.claimDueTimers(clock.now(), 10, 30_000)).toEqual([soon]);
    });

    it('keeps a later scheduling of a timer when the copy that fired is completed', async () => {
      const clock = new ManualClock(Date.now());
      const { runs } = await backend({ clock, timerDeferMs: 60_000 });
      const run = newRun();
      const first = timer(run, 'a', clock.now());
      const created = await runs.create(transition(run, { schedule: [first] }));
      expect(await runs.claimDueTimers(clock.now(), 10, 30_000)).toEqual([first]);
      // While the claimed copy fires, a transition moves the timer (a heartbeat): same id, later.
      const later = { ...first, dueAt: clock.now() + 1_000 };
      await runs.commit(created.stored, transition(moved(run, {}), { schedule: [later] }));
      // The firing changed nothing (the timer moved): the orchestrator completes what it claimed.
      await runs.completeTimers([first.id]);
      clock.advance(1_000);
      expect(await runs.claimDueTimers(clock.now(), 10, 30_000)).toEqual([later]);
    });

    it('lets another process fire a deferred timer whose owner died, once overdue by the grace', async () => {
      const clock = new ManualClock(Date.now());
      const owner = await backend({ clock, timerDeferMs: 60_000, outboxGraceMs: 5_000 });
      const other = await backend({ clock, prefix: owner.names.prefix, outboxGraceMs: 5_000 });
      const run = newRun();
      const soon = timer(run, 'a', clock.now() + 1_000);
      await owner.runs.create(transition(run, { schedule: [soon] }));
      // The owner stops claiming (it died with the timer in memory; a close would hand it over).
      clock.advance(1_000 + 5_000);
      // Any read of the run (the orchestrator's recovery sweep lists every live run) recovers it.
      await other.runs.list({ state: RunState.Running }, 10);
      expect((await waitForClaim(other, clock.now(), 1)).map((t) => t.id)).toEqual([soon.id]);
    });

    it('fires each timer once with two claimers on separate connections', async () => {
      // Small pulls, so that neither claimer takes every wake-up in its first pull.
      const one = await backend({ timerDeferMs: 0, timerPullBatch: 3 });
      const two = await backend({ timerDeferMs: 0, timerPullBatch: 3, prefix: one.names.prefix });
      const run = newRun();
      const now = Date.now();
      const all = Array.from({ length: 40 }, (_, i) => timer(run, `s${i}`, now - i));
      await one.runs.create(transition(run, { schedule: all }));
      const claimedBy = new Map<string, string[]>();
      await waitFor(
        async () => {
          for (const [name, made] of [
            ['one', one],
            ['two', two],
          ] as const) {
            for (const t of await made.runs.claimDueTimers(Date.now(), 7, 60_000)) {
              claimedBy.set(t.id, [...(claimedBy.get(t.id) ?? []), name]);
            }
          }
          return claimedBy.size === all.length;
        },
        { timeoutMs: 5_000, description: 'every timer claimed' },
      );
      expect([...claimedBy.values()].every((who) => who.length === 1)).toBe(true);
      expect(new Set([...claimedBy.values()].flat())).toEqual(new Set(['one', 'two']));
    });

    it('lets any number of future timers wait without delaying a due one (no ack-pending cap)', async () => {
      const { runs } = await backend({ timerDeferMs: 0 });
      const now = Date.now();
      // More than JetStream's default max_ack_pending (1000): each waits ack-pending after its nak.
      for (let r = 0; r < 3; r += 1) {
        const run = newRun();
        const later = Array.from({ length: 500 }, (_, i) => timer(run, `later${i}`, now + 3_600_000 + i));
        await runs.create(transition(run, { schedule: later }));
      }
      const pending = async (): Promise<number> =>
        (await jsm.consumers.info(backends[0]?.names.timerStream ?? '', 'timers')).num_ack_pending;
      // Claims pull them in (each claim pulls a bounded batch) and hand each back with a delay.
      await waitFor(
        async () => {
          expect(await runs.claimDueTimers(Date.now(), 10, 30_000)).toEqual([]);
          return (await pending()) === 1_500;
        },
        { timeoutMs: 5_000, description: 'every future timer pulled and handed back' },
      );
      const run = newRun();
      const due = timer(run, 'now', Date.now());
      await runs.create(transition(run, { schedule: [due] }));
      expect((await waitForClaim(backends[0] as NatsBackend, Date.now(), 1)).map((t) => t.id)).toEqual([
        due.id,
      ]);
    });

    it('fires timers after a kill -9 and restart of the server, each once', async () => {
      const crashing = await NatsTestServer.start();
      try {
        const made = await crashing.backend({ timerDeferMs: 0, reconnectTimeWaitMs: 100 });
        const run = newRun();
        const dueAt = Date.now() + 500;
        const all = Array.from({ length: 10 }, (_, i) => timer(run, `s${i}`, dueAt));
        await made.runs.create(transition(run, { schedule: all }));
        await waitFor(() => all.every((t) => isOnDisk(crashing.server.dir, t.id)), { timeoutMs: 3_000 });
        crashing.server.kill('SIGKILL');
        await crashing.server.restart();
        const fired: string[] = [];
        await waitFor(
          async () => {
            const due = await made.runs.claimDueTimers(Date.now(), 100, 60_000);
            await made.runs.completeTimers(due.map((t) => t.id));
            fired.push(...due.map((t) => t.id));
            return fired.length >= all.length;
          },
          { timeoutMs: 15_000, intervalMs: 50, description: 'every timer fired after the restart' },
        );
        expect([...fired].sort()).toEqual(all.map((t) => t.id).sort());
        await made.close();
      } finally {
        await crashing.stop();
      }
    }, 30_000);
  });

  describe('maintenance', () => {
    it("lists a run finishing in a window whose directory entry another process's retention purged", async () => {
      // Runs created now (real time: their window comes from it); the shared manual clock then
      // moves past the retention and two windows, so the window is old enough to be purged.
      const clock = new ManualClock(Date.now());
      const options = { clock, listWindowMs: 60_000 } as const;
      const writer = await backend(options);
      const maintainer = await backend({
        ...options,
        prefix: writer.names.prefix,
        maintenance: { intervalMs: 3_600_000, terminalRunTtlMs: 60_000 },
      });
      // Both in one window.
      const short = newRun({ createdAt: clock.now() });
      const long = newRun({ createdAt: clock.now() });
      const shortCreated = await writer.runs.create(transition(short));
      const longCreated = await writer.runs.create(transition(long));
      // The writer finishes one run of the window: it writes the window's directory entry.
      await writer.runs.commit(
        shortCreated.stored,
        transition(moved(short, { state: RunState.Completed, endedAt: clock.now() })),
      );
      clock.advance(181_000);
      expect(await maintainer.runs.maintain()).toEqual({ repaired: 0, purged: 1 });
      // The fault happened: the window left the directory (no finished run was left in it).
      const kv = await nats.kv(writer.names.runsBucket);
      expect(await kv.get(writer.names.windowEntry(windowStart(long.createdAt, 60_000)))).toBeNull();
      // The long run finishes, by the writer that once wrote that window's entry.
      await writer.runs.commit(
        longCreated.stored,
        transition(moved(long, { state: RunState.Completed, endedAt: clock.now() })),
      );
      expect((await writer.runs.list({ state: RunState.Completed }, 10)).runs.map((r) => r.txId)).toEqual([
        long.txId,
      ]);
    });

    it("drops the live index's delete markers and keeps every live run listed", async () => {
      const made = await backend();
      const { runs, names } = made;
      const live: Run[] = [];
      for (let i = 0; i < 12; i += 1) {
        const run = newRun({ createdAt: Date.now() + i });
        const created = await runs.create(transition(run));
        if (i % 3 === 0) live.push(run);
        else await runs.commit(created.stored, transition(moved(run, { state: RunState.Completed })));
      }
      const liveSubjects = async (): Promise<number> =>
        Object.keys(
          (await jsm.streams.info(names.runsStream, { subjects_filter: `$KV.${names.runsBucket}.l.>` })).state
            .subjects ?? {},
        ).length;
      expect(await liveSubjects()).toBe(12); // 4 entries and 8 markers
      await runs.maintain();
      expect(await liveSubjects()).toBe(4);
      const listed = (await runs.list({ state: RunState.Running }, 100)).runs.map((r) => r.txId);
      expect(listed.sort()).toEqual(live.map((r) => r.txId).sort());
      expect((await runs.list({ state: RunState.Completed }, 100)).runs).toHaveLength(8);
    });

    it('purges finished runs past the retention, and keeps live runs and recent ones', async () => {
      // The runs are created now (real time: their index window comes from it); the manual clock
      // then moves past the retention and a whole index window, so the cutoff is past their
      // window wherever in it the test happens to start. (Ending a run before its creation, with
      // 30 s of clock, failed in the first 30 s of every 10-minute window: the window started
      // after the cutoff, and no run created after the cutoff can have ended before it.)
      const clock = new ManualClock(Date.now());
      const { runs } = await backend({
        clock,
        listWindowMs: 60_000,
        maintenance: { intervalMs: 3_600_000, terminalRunTtlMs: 60_000 },
      });
      const old = newRun();
      const recent = newRun();
      const live = newRun();
      for (const run of [old, recent, live]) await runs.create(transition(run));
      await runs.commit(
        (await runs.get(old.txId)) as RunRevision,
        transition(moved(old, { state: RunState.Completed, endedAt: clock.now() })),
      );
      clock.advance(180_000);
      await runs.commit(
        (await runs.get(recent.txId)) as RunRevision,
        transition(moved(recent, { state: RunState.Completed, endedAt: clock.now() })),
      );
      expect(await runs.maintain()).toEqual({ repaired: 0, purged: 1 });
      expect(await runs.get(old.txId)).toBeUndefined();
      expect((await runs.get(recent.txId))?.run.state).toBe(RunState.Completed);
      expect((await runs.get(live.txId))?.run.state).toBe(RunState.Running);
      expect((await runs.list({}, 10)).runs.map((r) => r.txId).sort()).toEqual(
        [recent.txId, live.txId].sort(),
      );
    });
  });
});

/** Claims until `count` timers came back (wake-ups are pulled as they arrive). */
async function waitForClaim(made: NatsBackend, now: number, count: number): Promise<Timer[]> {
  const claimed: Timer[] = [];
  await waitFor(
    async () => {
      claimed.push(...(await made.runs.claimDueTimers(now, 10, 30_000)));
      return claimed.length >= count;
    },
    { timeoutMs: 3_000, description: `${count} timer(s) claimed` },
  );
  return claimed;
}
