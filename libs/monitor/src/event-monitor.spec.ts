import {
  ErrorCode,
  EventType,
  MultiAgentsError,
  RunState,
  StepStatus,
  Topics,
  type Envelope,
  type Run,
  type TransitionEventPayload,
  EventRejectReason,
  PayloadRejectedError,
} from '@multiagents/contracts';
import type {
  Delivery,
  EventBus,
  RunStore,
  TimelineEntry,
  TimelineStore,
  Transition,
} from '@multiagents/core';
import { createMemoryBackend, type MemoryBackend } from '@multiagents/memory';
import { ManualClock, makeRun, waitFor } from '@multiagents/testing';
import {
  EventMonitor,
  EVENT_MONITOR_GROUP,
  MIN_STUCK_MARK_LEASE_MS,
  STUCK_MARK_LEASE_SCANS,
  type EventMonitorOptions,
} from './event-monitor';

const THRESHOLD_MS = 60_000;
/** The tests scan by hand (scanNow): the timer never fires within a test. */
const SCAN_INTERVAL_MS = 3_600_000;
/** How long a replica's lease on a stuck point lasts before it confirms the announcement. */
const LEASE_MS = Math.max(MIN_STUCK_MARK_LEASE_MS, STUCK_MARK_LEASE_SCANS * SCAN_INTERVAL_MS);

function transitionEvent(
  txId: string,
  version: number,
  payload: Partial<TransitionEventPayload>,
  time: number,
): Envelope<TransitionEventPayload> {
  return {
    id: `${txId}:v${version}`,
    type: EventType.WorkflowTransitioned,
    txId,
    workflowId: 'order_processing',
    time,
    headers: {},
    payload: { version, state: RunState.Running, events: [], ...payload },
  };
}

function create(run: Run): Transition {
  return { run, changedSteps: Object.keys(run.steps), commands: [], schedule: [], cancel: [] };
}

function runningStep(name: string, startedAt: number): Run['steps'][string] {
  return {
    name,
    status: StepStatus.Running,
    attempt: 1,
    attempts: [{ attempt: 1, startedAt }],
    startedAt,
  };
}

describe('EventMonitor', () => {
  let clock: ManualClock;
  let backend: MemoryBackend;
  const monitors: EventMonitor[] = [];
  /** Settles what a test left hanging (a failed one too), so its monitors can close. */
  const releases: (() => void)[] = [];

  function monitor(overrides: Partial<EventMonitorOptions> = {}): EventMonitor {
    const created = new EventMonitor({
      ...backend,
      consumer: `em-${monitors.length + 1}`,
      clock,
      stuckThresholdMs: THRESHOLD_MS,
      stuckScanIntervalMs: SCAN_INTERVAL_MS,
      workersPollIntervalMs: 3_600_000,
      ...overrides,
    });
    monitors.push(created);
    return created;
  }

  /** The timeline entry of a run's start, as the monitor records it. */
  const firstEntry = (time: number): TimelineEntry => ({
    version: 1,
    state: RunState.Running,
    events: [],
    time,
    workflowId: 'order_processing',
  });

  /** Moves `run` on to completed in the store only (no event says so). */
  async function completeInStore(run: Run, at: number): Promise<void> {
    const stored = await backend.runs.get(run.txId);
    await backend.runs.commit(stored!, {
      ...create({ ...run, updatedAt: at, state: RunState.Completed }),
      changedSteps: [],
    });
  }

  beforeEach(() => {
    clock = new ManualClock();
    backend = createMemoryBackend({ clock });
  });

  afterEach(async () => {
    for (const release of releases.splice(0)) release();
    await Promise.all(monitors.splice(0).map((m) => m.close()));
    await backend.close();
  });

  it('keeps a run timeline in version order, once per version, and says NOT_FOUND for unknown runs', async () => {
    const em = monitor();
    await em.start();
    const t0 = clock.now();
    await backend.bus.publish(Topics.events, [
      transitionEvent(
        'tx-1',
        2,
        {
          events: [
            { type: EventType.StepStarted, state: RunState.Running, step: 'reserve_inventory', attempt: 1 },
          ],
        },
        t0 + 1,
      ),
      transitionEvent(
        'tx-1',
        1,
        { events: [{ type: EventType.WorkflowStarted, state: RunState.Running }] },
        t0,
      ),
      // Published twice (a lost ack): recorded once.
      transitionEvent('tx-1', 2, {}, t0 + 1),
      transitionEvent(
        'tx-1',
        3,
        {
          state: RunState.Completed,
          events: [{ type: EventType.WorkflowCompleted, state: RunState.Completed, durationMs: 5 }],
        },
        t0 + 5,
      ),
    ]);
    await waitFor(() => em.stats.eventsHandled === 4);
    const timeline = await em.getTimeline('tx-1');
    expect(timeline.workflowId).toBe('order_processing');
    expect(timeline.entries.map((e) => [e.version, e.state, e.time, e.events.map((x) => x.type)])).toEqual([
      [1, RunState.Running, t0, [EventType.WorkflowStarted]],
      [2, RunState.Running, t0 + 1, [EventType.StepStarted]],
      [3, RunState.Completed, t0 + 5, [EventType.WorkflowCompleted]],
    ]);
    await expect(em.getTimeline('tx-unknown')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('tells the timeline store the run’s version, so a live timeline with gaps is read up to it', async () => {
    const em = monitor();
    const t0 = clock.now();
    const run = makeRun({ workflowId: 'order_processing', updatedAt: t0 });
    await backend.runs.create(create(run));
    await completeInStore(run, t0 + 5);
    await backend.timelines.append(run.txId, [firstEntry(t0)], 60_000);
    const get = jest.spyOn(backend.timelines as TimelineStore, 'get');
    try {
      await em.getTimeline(run.txId);
      const asked = await Promise.all(get.mock.calls.map(async ([, options]) => options?.runVersion?.()));
      expect(asked.length).toBeGreaterThan(0);
      expect(asked).toEqual(asked.map(() => 2));
      get.mockClear();
      await expect(em.getTimeline('tx-unknown')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect(await get.mock.calls[0]?.[1]?.runVersion?.()).toBeUndefined();
    } finally {
      get.mockRestore();
    }
  });

  it('answers a timeline the events stopped reaching with the run store’s last state, and says so', async () => {
    const em = monitor();
    await em.start();
    const t0 = clock.now();
    const run = makeRun({ workflowId: 'order_processing', updatedAt: t0 });
    await backend.runs.create(create(run));
    // The run's first event reached the monitor; the ones after it never did (a broker lost them).
    const first = firstEntry(t0);
    await backend.timelines.append(run.txId, [first], 60_000);
    await completeInStore(run, t0 + 5);

    const timeline = await em.getTimeline(run.txId);
    expect(timeline.entries).toEqual([
      first,
      {
        version: 2,
        state: RunState.Completed,
        events: [],
        time: t0 + 5,
        workflowId: 'order_processing',
        reconciled: true,
      },
    ]);
    expect(em.stats.reconciledTimelineReads).toBe(1);
    // Not stored: the event, if it does come, still lands with its lifecycle events.
    expect(await backend.timelines.get(run.txId)).toEqual([first]);
  });

  it('does not answer from the run store while events are still to be handled', async () => {
    const { em, release } = slowWriter((delivery) => delivery.extend());
    await em.start();
    const t0 = clock.now();
    const run = makeRun({ updatedAt: t0 });
    await backend.runs.create(create(run));
    await backend.timelines.append(
      run.txId,
      [{ version: 1, state: RunState.Running, events: [], time: t0 }],
      60_000,
    );
    await completeInStore(run, t0 + 5);
    // Its event is in flight (the timeline write is slow): late, not lost.
    await backend.bus.publish(Topics.events, [
      transitionEvent(run.txId, 2, { state: RunState.Completed }, t0 + 5),
    ]);
    await waitFor(
      async () => ((await backend.bus.topicStats?.(Topics.events))?.groups[0]?.pending ?? 0) === 1,
    );
    expect((await em.getTimeline(run.txId)).entries.map((e) => e.version)).toEqual([1]);
    expect(em.stats.reconciledTimelineReads).toBe(0);
    release();
    await waitFor(async () => (await em.getTimeline(run.txId)).entries.length === 2);
    expect((await em.getTimeline(run.txId)).entries[1]).toMatchObject({ state: RunState.Completed });
    expect(em.stats.reconciledTimelineReads).toBe(0);
  });

  it('does not answer from the run store when the missing events landed while it looked', async () => {
    const t0 = clock.now();
    const run = makeRun({ workflowId: 'order_processing', updatedAt: t0 });
    const first = firstEntry(t0);
    const last = { ...first, version: 2, state: RunState.Completed, time: t0 + 5 };
    // The run's last event is handled between the monitor's read of the timeline and its read of
    // the run (then every event is handled, so the group alone cannot tell it was only late).
    const runs = Object.create(backend.runs) as RunStore;
    runs.get = async (txId) => {
      await backend.timelines.append(txId, [last], 60_000);
      return backend.runs.get(txId);
    };
    const em = monitor({ runs });
    await em.start();
    await backend.runs.create(create(run));
    await backend.timelines.append(run.txId, [first], 60_000);
    await completeInStore(run, t0 + 5);

    expect((await em.getTimeline(run.txId)).entries).toEqual([first, last]);
    expect(em.stats.reconciledTimelineReads).toBe(0);
  });

  it('leaves a timeline as it is when the run is no further on', async () => {
    const em = monitor();
    const run = makeRun({ updatedAt: clock.now() });
    await backend.runs.create(create(run));
    const entry = { version: 1, state: RunState.Running, events: [], time: clock.now() };
    await backend.timelines.append(run.txId, [entry], 60_000);
    expect((await em.getTimeline(run.txId)).entries).toEqual([entry]);
    expect(em.stats.reconciledTimelineReads).toBe(0);
  });

  /**
   * A monitor whose timeline writes wait for `release()` (a broker electing a leader answers that
   * late) and whose deliveries' extend() is `extend` instead of the bus's.
   */
  function slowWriter(extend: (delivery: Delivery) => Promise<void>): {
    em: EventMonitor;
    release: () => void;
  } {
    const bus: EventBus = Object.create(backend.bus) as EventBus;
    bus.subscribe = (topic, options, handler) =>
      backend.bus.subscribe(topic, options, (delivery) =>
        handler({ ...delivery, extend: () => extend(delivery) }),
      );
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const timelines = Object.create(backend.timelines) as typeof backend.timelines;
    timelines.append = async (...args) => {
      await released;
      return backend.timelines.append(...args);
    };
    return { em: monitor({ bus, timelines, subscribe: { visibilityTimeoutMs: 300 } }), release };
  }

  it('keeps a delivery while its timeline write is slow, so the bus neither hands it out again nor dead-letters it', async () => {
    let extended = 0;
    const { em, release } = slowWriter((delivery) => {
      extended += 1;
      return delivery.extend();
    });
    await em.start();
    await backend.bus.publish(Topics.events, [transitionEvent('tx-slow', 1, {}, clock.now())]);
    await waitFor(() => extended >= 3, { description: 'the slow write extended three times' });
    release();
    await waitFor(async () => (await backend.timelines.get('tx-slow'))?.length === 1);
    expect(await em.listDeadLetters(Topics.events)).toEqual([]);
  });

  it('goes on writing when extending the delivery fails, and leaves no rejection unhandled (that would end the process)', async () => {
    // The broker that makes the write slow refuses the extends too (a cluster node just killed).
    let refused = 0;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const { em, release } = slowWriter(() => {
        refused += 1;
        return Promise.reject(new Error('connection is closed'));
      });
      await em.start();
      await backend.bus.publish(Topics.events, [transitionEvent('tx-refused', 1, {}, clock.now())]);
      await waitFor(() => refused >= 3, { description: 'three extends refused' });
      release();
      await waitFor(async () => (await backend.timelines.get('tx-refused'))?.length === 1);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('waits out a timeline store that fails for longer than the default five deliveries', async () => {
    // A leader election of a few seconds: every write fails fast, then the store answers again.
    let failures = 0;
    const timelines = Object.create(backend.timelines) as typeof backend.timelines;
    timelines.append = async (...args) => {
      if (failures < 8) {
        failures += 1;
        throw new MultiAgentsError(ErrorCode.Timeout, 'NATS did not answer (no responders)');
      }
      return backend.timelines.append(...args);
    };
    const em = monitor({ timelines, outageRetryBaseDelayMs: 1 });
    await em.start();
    await backend.bus.publish(Topics.events, [transitionEvent('tx-outage', 1, {}, clock.now())]);
    await waitFor(async () => (await backend.timelines.get('tx-outage'))?.length === 1, {
      description: 'the timeline written once the store answers',
    });
    expect(failures).toBe(8);
    expect(await em.listDeadLetters(Topics.events)).toEqual([]);
  });

  it('dead-letters an event it cannot decode with the reason, counts it, and goes on', async () => {
    const em = monitor();
    await em.start();
    const forged: Envelope = {
      ...transitionEvent('tx-forged', 1, {}, clock.now()),
      payload: { version: 'one', state: 'exploded', events: 'none' },
    };
    await backend.bus.publish(Topics.events, [forged, transitionEvent('tx-ok', 1, {}, clock.now())]);
    await waitFor(() => em.stats.eventsHandled === 2);
    expect((await em.getTimeline('tx-ok')).entries).toHaveLength(1);
    expect(em.stats.eventsRejected).toBe(1);
    expect(em.stats.rejectedByReason[EventRejectReason.BadTransition]).toBe(1);
    const letters = await em.listDeadLetters(Topics.events);
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ group: EVENT_MONITOR_GROUP, envelope: { id: forged.id } });
    expect(letters[0]?.error).toContain(EventRejectReason.BadTransition);
    await expect(em.getTimeline('tx-forged')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // Every known topic when none is named; replay takes it off the list; an unknown id is NOT_FOUND.
    expect((await em.listDeadLetters()).map((l) => l.id)).toEqual([letters[0]?.id]);
    await expect(em.replayDeadLetter(Topics.events, 'no-such-letter')).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await em.replayDeadLetter(Topics.events, letters[0]?.id as string);
    await waitFor(() => em.stats.eventsRejected === 2);
  });

  it('discards a dead letter for good: off the list, never handled again, NOT_FOUND the second time', async () => {
    const em = monitor();
    await em.start();
    const forged = (txId: string): Envelope => ({
      ...transitionEvent(txId, 1, {}, clock.now()),
      payload: { version: 'one', state: 'exploded', events: 'none' },
    });
    await backend.bus.publish(Topics.events, [forged('tx-garbage'), forged('tx-kept')]);
    await waitFor(async () => (await em.listDeadLetters(Topics.events)).length === 2);
    const [garbage, kept] = await em.listDeadLetters(Topics.events);

    await em.discardDeadLetter(Topics.events, garbage?.id as string);
    expect((await em.listDeadLetters(Topics.events)).map((l) => l.id)).toEqual([kept?.id]);
    await expect(em.discardDeadLetter(Topics.events, garbage?.id as string)).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await expect(em.replayDeadLetter(Topics.events, garbage?.id as string)).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await expect(em.discardDeadLetter('', '')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(em.stats.eventsRejected).toBe(2);
  });

  it('finds a run that stopped moving, publishes workflow.stuck once across replicas, and lists it until it moves', async () => {
    const a = monitor();
    const b = monitor();
    await a.start();
    await b.start();
    const stuckEvents: Envelope[] = [];
    await backend.bus.subscribe(Topics.events, { group: 'test-observer', consumer: 't' }, async (d) => {
      if (d.envelope.type === EventType.WorkflowStuck) stuckEvents.push(d.envelope);
    });
    const t0 = clock.now();
    const hung = makeRun({
      createdAt: t0,
      workflowId: 'order_processing',
      updatedAt: t0,
      steps: { charge_payment: runningStep('charge_payment', t0) },
    });
    const waiting = makeRun({
      createdAt: t0,
      updatedAt: t0,
      steps: { approve: { name: 'approve', status: StepStatus.Waiting, attempt: 0, attempts: [] } },
    });
    const retrying = makeRun({
      createdAt: t0,
      updatedAt: t0,
      steps: { ship: { ...runningStep('ship', t0), status: StepStatus.Retrying } },
    });
    const ended = makeRun({ state: RunState.Completed, createdAt: t0, updatedAt: t0 });
    for (const run of [hung, waiting, retrying, ended]) await backend.runs.create(create(run));
    // The retry's backoff is an hour: waiting on a timer until it is due.
    await backend.bus.publish(Topics.events, [
      transitionEvent(
        retrying.txId,
        2,
        {
          events: [
            {
              type: EventType.StepRetrying,
              state: RunState.Running,
              step: 'ship',
              attempt: 1,
              delayMs: 3_600_000,
            },
          ],
        },
        t0,
      ),
    ]);
    await waitFor(() => a.stats.transitionsRecorded + b.stats.transitionsRecorded === 1);

    clock.advance(THRESHOLD_MS); // exactly the threshold: not yet
    await Promise.all([a.scanNow(), b.scanNow()]);
    expect(await a.listStuckRuns()).toEqual([]);

    clock.advance(1);
    await Promise.all([a.scanNow(), b.scanNow()]);
    await a.scanNow();
    for (const em of [a, b]) {
      expect(await em.listStuckRuns()).toEqual([
        expect.objectContaining({
          txId: hung.txId,
          workflowId: 'order_processing',
          state: RunState.Running,
          lastProgressAt: t0,
          thresholdMs: THRESHOLD_MS,
          steps: ['charge_payment'],
        }),
      ]);
    }
    await waitFor(() => stuckEvents.length === 1);
    expect(stuckEvents[0]).toMatchObject({
      txId: hung.txId,
      payload: { reason: 'no_progress', lastProgressAt: t0 },
    });
    expect(a.stats.stuckEventsPublished + b.stats.stuckEventsPublished).toBe(1);

    // The retry timer was due an hour after t0: stuck a threshold later.
    clock.set(t0 + 3_600_000 + THRESHOLD_MS + 1);
    await a.scanNow();
    expect((await a.listStuckRuns()).map((r) => r.txId).sort()).toEqual([hung.txId, retrying.txId].sort());

    // The hung run moves: off the list at the next scan.
    const stored = await backend.runs.get(hung.txId);
    await backend.runs.commit(stored!, {
      ...create({ ...hung, updatedAt: clock.now(), state: RunState.Completed }),
      changedSteps: [],
    });
    await a.scanNow();
    expect((await a.listStuckRuns()).map((r) => r.txId)).toEqual([retrying.txId]);
    expect(a.stats.stuckEventsPublished + b.stats.stuckEventsPublished).toBe(2);
  });

  /** A run whose step has been running since `t0`, created then (a worker that hangs). */
  async function hungRun(t0: number, createdAt = t0): Promise<Run> {
    const run = makeRun({
      createdAt,
      updatedAt: t0,
      steps: { charge_payment: runningStep('charge_payment', t0) },
    });
    await backend.runs.create(create(run));
    return run;
  }

  it('publishes workflow.stuck once across replicas when the first publish of it fails', async () => {
    // The broker refuses the first workflow.stuck (a blip); the published ones are recorded once held.
    const published: Envelope[] = [];
    let refusals = 1;
    const bus = Object.create(backend.bus) as EventBus;
    bus.publish = async (topic, envelopes) => {
      const stuck = envelopes.filter((envelope) => envelope.type === EventType.WorkflowStuck);
      if (stuck.length > 0 && refusals > 0) {
        refusals -= 1;
        throw new MultiAgentsError(ErrorCode.Unavailable, 'broker unreachable', { retryable: true });
      }
      await backend.bus.publish(topic, envelopes);
      published.push(...stuck);
    };
    const a = monitor({ bus });
    const b = monitor({ bus });
    const t0 = clock.now();
    const hung = await hungRun(t0);
    clock.advance(THRESHOLD_MS + 1);

    await a.scanNow();
    await b.scanNow();
    expect(published).toEqual([]);
    // Listed all the same: the run is stuck whether or not the event went out.
    expect((await a.listStuckRuns()).map((r) => r.txId)).toEqual([hung.txId]);
    for (const em of [a, b, a, b]) await em.scanNow();
    expect(published.map((envelope) => envelope.id)).toEqual([`${hung.txId}:stuck:${t0}`]);
    expect(a.stats.stuckEventsPublished + b.stats.stuckEventsPublished).toBe(1);
    expect(a.stats.watchdogFailures + b.stats.watchdogFailures).toBe(1);
  });

  /**
   * Buses over the backend's that record the workflow.stuck they published (once the broker holds
   * it); `stalling` holds each such publish until the test settles it: a replica stopped (or
   * killed) between taking the lease on a stuck point and publishing it.
   */
  function stuckPublishes(): {
    published: Envelope[];
    recording: EventBus;
    stalling: EventBus;
    stalled: { resolve: () => void; reject: (err: Error) => void }[];
  } {
    const published: Envelope[] = [];
    const stalled: { resolve: () => void; reject: (err: Error) => void }[] = [];
    const bus = (stall: boolean): EventBus => {
      const wrapped = Object.create(backend.bus) as EventBus;
      wrapped.publish = async (topic, envelopes) => {
        const stuck = envelopes.filter((envelope) => envelope.type === EventType.WorkflowStuck);
        if (stall && stuck.length > 0) {
          await new Promise<void>((resolve, reject) => stalled.push({ resolve, reject }));
        }
        await backend.bus.publish(topic, envelopes);
        published.push(...stuck);
      };
      return wrapped;
    };
    releases.push(() => {
      for (const { reject } of stalled) reject(new Error('the test ended'));
    });
    return { published, recording: bus(false), stalling: bus(true), stalled };
  }

  it('announces a stuck point once its lease runs out when the replica that took it died before publishing', async () => {
    const { published, recording, stalling, stalled } = stuckPublishes();
    const a = monitor({ bus: stalling });
    const b = monitor({ bus: recording });
    const t0 = clock.now();
    const hung = await hungRun(t0);
    clock.advance(THRESHOLD_MS + 1);

    // a takes the lease on the point and never gets its event out (killed mid-publish).
    const aScan = a.scanNow();
    await waitFor(() => stalled.length === 1, { description: 'a publishing workflow.stuck' });
    // While the lease is on, the other replica keeps off the point (it lists the run all the same).
    await b.scanNow();
    clock.advance(LEASE_MS - 1);
    await b.scanNow();
    expect(published).toEqual([]);
    expect((await b.listStuckRuns()).map((r) => r.txId)).toEqual([hung.txId]);

    // The lease ran out: the next scan of the other replica announces the point.
    clock.advance(1);
    await b.scanNow();
    expect(published.map((envelope) => envelope.id)).toEqual([`${hung.txId}:stuck:${t0}`]);
    expect(published[0]).toMatchObject({ payload: { reason: 'no_progress', lastProgressAt: t0 } });
    expect(b.stats.stuckEventsPublished).toBe(1);
    // Its mark now lasts: later scans, past many leases, announce nothing more.
    clock.advance(10 * LEASE_MS);
    await b.scanNow();
    expect(b.stats.stuckEventsPublished).toBe(1);

    // The dead replica's connection drops (lets its scan end, so the test can close it).
    stalled[0]?.reject(new MultiAgentsError(ErrorCode.Unavailable, 'connection lost', { retryable: true }));
    await aScan;
    expect(a.stats.stuckEventsPublished).toBe(0);
  });

  it('keeps one announcement when its publish outlasted the lease and no replica took the point meanwhile', async () => {
    const { published, recording, stalling, stalled } = stuckPublishes();
    const a = monitor({ bus: stalling });
    const b = monitor({ bus: recording });
    const t0 = clock.now();
    const hung = await hungRun(t0);
    clock.advance(THRESHOLD_MS + 1);

    const aScan = a.scanNow();
    await waitFor(() => stalled.length === 1, { description: 'a publishing workflow.stuck' });
    clock.advance(LEASE_MS + 1);
    stalled[0]?.resolve();
    await aScan;
    expect(published.map((envelope) => envelope.id)).toEqual([`${hung.txId}:stuck:${t0}`]);
    // Its lease had run out, free: a took the point again for the mark's full life.
    clock.advance(10 * LEASE_MS);
    for (const em of [b, a, b]) await em.scanNow();
    expect(published).toHaveLength(1);
    expect(a.stats.stuckEventsPublished + b.stats.stuckEventsPublished).toBe(1);
  });

  it('announces a point twice, under one envelope id, only when its publisher lost the lease before confirming it', async () => {
    const { published, recording, stalling, stalled } = stuckPublishes();
    const a = monitor({ bus: stalling });
    const b = monitor({ bus: recording });
    const t0 = clock.now();
    const hung = await hungRun(t0);
    clock.advance(THRESHOLD_MS + 1);

    const aScan = a.scanNow();
    await waitFor(() => stalled.length === 1, { description: 'a publishing workflow.stuck' });
    // a's publish outlasts its lease: b takes the point, announces it and confirms its mark.
    clock.advance(LEASE_MS);
    await b.scanNow();
    expect(b.stats.stuckEventsPublished).toBe(1);
    // a's publish lands late: a copy, which a consumer drops by its id. a cannot extend (nor
    // shorten) b's mark, and neither announces the point again.
    stalled[0]?.resolve();
    await aScan;
    const id = `${hung.txId}:stuck:${t0}`;
    expect(published.map((envelope) => envelope.id)).toEqual([id, id]);
    clock.advance(10 * LEASE_MS);
    for (const em of [a, b, a]) await em.scanNow();
    expect(published).toHaveLength(2);
    expect(a.stats.watchdogFailures + b.stats.watchdogFailures).toBe(0);
  });

  it('leaves a point to the replica that took it when its own publish failed and its lease ran out before it tried again', async () => {
    const { published, recording } = stuckPublishes();
    let refusals = 1;
    const refusing = Object.create(recording) as EventBus;
    refusing.publish = async (topic, envelopes) => {
      if (envelopes.some((envelope) => envelope.type === EventType.WorkflowStuck) && refusals > 0) {
        refusals -= 1;
        throw new MultiAgentsError(ErrorCode.Unavailable, 'broker unreachable', { retryable: true });
      }
      await recording.publish(topic, envelopes);
    };
    const a = monitor({ bus: refusing });
    const b = monitor({ bus: recording });
    const t0 = clock.now();
    const hung = await hungRun(t0);
    clock.advance(THRESHOLD_MS + 1);

    await a.scanNow(); // takes the lease; its publish is refused: owed
    clock.advance(LEASE_MS); // a's scans stall (its store unreachable, say) past its lease
    await b.scanNow();
    expect(published.map((envelope) => envelope.id)).toEqual([`${hung.txId}:stuck:${t0}`]);
    // a's lease is gone (b took the point and confirmed it): a does not publish what it owed.
    for (const em of [a, b, a]) await em.scanNow();
    expect(published).toHaveLength(1);
    expect([a.stats.stuckEventsPublished, b.stats.stuckEventsPublished]).toEqual([0, 1]);
  });

  it('does not publish workflow.stuck again when a run stays stuck at one point for longer than its mark lasts', async () => {
    const retention = { timelineRetentionMs: 10 * THRESHOLD_MS };
    const a = monitor(retention);
    const b = monitor(retention);
    const t0 = clock.now();
    const hung = await hungRun(t0);
    clock.advance(THRESHOLD_MS + 1);
    await a.scanNow();
    expect(a.stats.stuckEventsPublished).toBe(1);

    // Far past when the mark set then has expired: still stuck, still listed, not announced again.
    clock.advance(10 * retention.timelineRetentionMs);
    await b.scanNow();
    await a.scanNow();
    expect(a.stats.stuckEventsPublished + b.stats.stuckEventsPublished).toBe(1);
    expect((await b.listStuckRuns()).map((r) => r.txId)).toEqual([hung.txId]);
  });

  it('goes on past a run it cannot check: the runs after it are found, the ones that moved leave the list', async () => {
    const t0 = clock.now();
    // The newer run is read first; its timeline cannot be opened (sealed under a key since removed).
    const hung = await hungRun(t0, t0 - 1);
    const unreadable = await hungRun(t0, t0);
    const timelines = Object.create(backend.timelines) as TimelineStore;
    timelines.get = async (txId, options) => {
      if (txId === unreadable.txId) throw new PayloadRejectedError('key_unknown', 'no key to open it');
      return (backend.timelines as TimelineStore).get(txId, options);
    };
    const em = monitor({ timelines });
    clock.advance(THRESHOLD_MS + 1);

    await em.scanNow();
    expect((await em.listStuckRuns()).map((r) => r.txId)).toEqual([hung.txId]);
    expect(em.stats).toMatchObject({ watchdogScans: 1, watchdogFailures: 1, stuckEventsPublished: 1 });

    await completeInStore(hung, clock.now());
    await em.scanNow();
    expect(await em.listStuckRuns()).toEqual([]);
    expect(em.stats).toMatchObject({ watchdogScans: 2, watchdogFailures: 2 });
  });

  it('keeps a stuck run listed, as found, through a scan that cannot read its timeline', async () => {
    let unreadable = false;
    const timelines = Object.create(backend.timelines) as TimelineStore;
    timelines.get = async (txId, options) => {
      if (unreadable) throw new MultiAgentsError(ErrorCode.Unavailable, 'timeline store unreachable');
      return (backend.timelines as TimelineStore).get(txId, options);
    };
    const em = monitor({ timelines });
    const t0 = clock.now();
    await hungRun(t0);
    clock.advance(THRESHOLD_MS + 1);
    await em.scanNow();
    const found = await em.listStuckRuns();
    expect(found).toHaveLength(1);

    unreadable = true;
    clock.advance(1_000);
    await em.scanNow();
    expect(await em.listStuckRuns()).toEqual(found);
    expect(em.stats).toMatchObject({ watchdogScans: 2, watchdogFailures: 1, stuckEventsPublished: 1 });
  });

  it('finds a run stuck on a retry whose timer was due although a parallel branch moved after it was set', async () => {
    const em = monitor();
    const t0 = clock.now();
    // Branch a failed and waits 1 s to be tried again; branch b completed 10 ms later.
    const run = makeRun({
      createdAt: t0,
      updatedAt: t0 + 10,
      steps: {
        a: { ...runningStep('a', t0), status: StepStatus.Retrying },
        b: { ...runningStep('b', t0), status: StepStatus.Completed },
      },
    });
    await backend.runs.create(create(run));
    await backend.timelines.append(
      run.txId,
      [
        firstEntry(t0),
        {
          version: 2,
          state: RunState.Running,
          events: [
            { type: EventType.StepRetrying, state: RunState.Running, step: 'a', attempt: 1, delayMs: 1_000 },
          ],
          time: t0,
        },
        {
          version: 3,
          state: RunState.Running,
          events: [{ type: EventType.StepCompleted, state: RunState.Running, step: 'b', attempt: 1 }],
          time: t0 + 10,
        },
      ],
      3_600_000,
    );

    clock.set(t0 + 1_000 + THRESHOLD_MS); // a threshold after the retry was due: not yet
    await em.scanNow();
    expect(await em.listStuckRuns()).toEqual([]);
    clock.advance(1);
    await em.scanNow();
    expect(await em.listStuckRuns()).toEqual([
      expect.objectContaining({ txId: run.txId, lastProgressAt: t0 + 1_000, steps: ['a'], version: 3 }),
    ]);
  });

  it('lists the live runs waiting for a retry when asked, by workflow', async () => {
    const listed: string[] = [];
    let reads = 0;
    let failing = false;
    const runs = Object.create(backend.runs) as RunStore;
    runs.list = async (filter, limit, cursor) => {
      reads += 1;
      if (failing) throw new Error('store unreachable');
      const page = await backend.runs.list(filter, limit, cursor);
      listed.push(...page.runs.map((run) => run.txId));
      return page;
    };
    const em = monitor({ runs });
    await em.start();
    const t0 = clock.now();
    // Created a millisecond less than a threshold ago: too young to be stuck.
    const createdAt = t0 - THRESHOLD_MS + 1;
    const retrying = makeRun({
      workflowId: 'order_processing',
      createdAt,
      updatedAt: t0,
      steps: { ship: { ...runningStep('ship', t0), status: StepStatus.Retrying } },
    });
    const undoing = makeRun({
      workflowId: 'other_flow',
      state: RunState.Compensating,
      createdAt,
      updatedAt: t0 + 1,
      steps: {
        charge: {
          ...runningStep('charge', t0),
          status: StepStatus.Compensating,
          compensation: { status: 'retrying', attempt: 1, attempts: [], startedAt: t0 },
        },
      },
    });
    const moving = makeRun({ createdAt, updatedAt: t0, steps: { pay: runningStep('pay', t0) } });
    for (const run of [retrying, undoing, moving]) await backend.runs.create(create(run));
    // The watchdog leaves them out (the store is asked, nothing comes back); asking reads them.
    await em.scanNow();
    expect(reads).toBeGreaterThan(0);
    expect(listed).toEqual([]);
    const both = [
      {
        txId: undoing.txId,
        workflowId: 'other_flow',
        state: RunState.Compensating,
        steps: ['charge'],
        updatedAt: t0 + 1,
      },
      {
        txId: retrying.txId,
        workflowId: 'order_processing',
        state: RunState.Running,
        steps: ['ship'],
        updatedAt: t0,
      },
    ];
    expect(await em.listRetryingRuns()).toEqual(both);
    expect(listed.sort()).toEqual([retrying.txId, undoing.txId, moving.txId].sort());
    // Asked again within the interval: the same list, not read again.
    const readsAfterFirst = reads;
    expect((await em.listRetryingRuns({ workflowId: 'order_processing' })).map((r) => r.txId)).toEqual([
      retrying.txId,
    ]);
    expect(reads).toBe(readsAfterFirst);

    // The retry ran and the run completed: off the list at the next ask after a scan.
    const stored = await backend.runs.get(retrying.txId);
    await backend.runs.commit(stored!, {
      ...create({ ...retrying, updatedAt: clock.now(), state: RunState.Completed }),
      changedSteps: [],
    });
    await em.scanNow();
    expect((await em.listRetryingRuns()).map((r) => r.txId)).toEqual([undoing.txId]);

    // A read that fails keeps the last list, and is not tried again on every ask.
    failing = true;
    await em.scanNow();
    expect((await em.listRetryingRuns()).map((r) => r.txId)).toEqual([undoing.txId]);
    const readsWhileFailing = reads;
    expect((await em.listRetryingRuns()).map((r) => r.txId)).toEqual([undoing.txId]);
    expect(reads).toBe(readsWhileFailing);
    failing = false;

    // A read under way when scanNow() asks for a fresh one is not kept: the next ask reads again.
    const stale = em.listRetryingRuns();
    await em.scanNow();
    await stale;
    const readsBefore = reads;
    await em.listRetryingRuns();
    expect(reads).toBeGreaterThan(readsBefore);
  });

  it('uses a workflow’s own threshold over the default', async () => {
    const em = monitor({ stuckThresholdsMs: { slow: 10 * THRESHOLD_MS } });
    await em.start();
    const t0 = clock.now();
    const slow = makeRun({ workflowId: 'slow', updatedAt: t0, steps: { s: runningStep('s', t0) } });
    const fast = makeRun({ workflowId: 'fast', updatedAt: t0, steps: { s: runningStep('s', t0) } });
    for (const run of [slow, fast]) await backend.runs.create(create(run));
    clock.advance(2 * THRESHOLD_MS);
    await em.scanNow();
    expect((await em.listStuckRuns()).map((r) => r.txId)).toEqual([fast.txId]);
    expect(await em.listStuckRuns({ workflowId: 'slow' })).toEqual([]);
  });

  it('lists live worker-managers and keeps the ones that went silent as gone', async () => {
    const em = monitor();
    await em.start();
    const record = { workers: ['payment.charge'], capacity: 8, inFlight: 1, seenAt: clock.now() };
    await backend.registry.announce({ managerId: 'wm-a', ...record }, 10_000);
    await backend.registry.announce({ managerId: 'wm-b', ...record }, 60_000);
    expect((await em.listWorkers()).map((w) => [w.managerId, w.live])).toEqual([
      ['wm-a', true],
      ['wm-b', true],
    ]);
    clock.advance(20_000);
    expect((await em.listWorkers()).map((w) => [w.managerId, w.live])).toEqual([
      ['wm-a', false],
      ['wm-b', true],
    ]);
  });

  it('keeps a worker-manager gone when a heartbeat it sent before it fell silent arrives late', async () => {
    const goneWorkersRetentionMs = 60_000;
    const em = monitor({ goneWorkersRetentionMs });
    await em.start();
    const t0 = clock.now();
    await backend.registry.announce(
      { managerId: 'wm-a', workers: ['payment.charge'], capacity: 8, inFlight: 1, seenAt: t0 },
      10_000,
    );
    expect((await em.listWorkers()).map((w) => [w.managerId, w.live])).toEqual([['wm-a', true]]);
    clock.advance(20_000);
    expect((await em.listWorkers()).map((w) => [w.managerId, w.live])).toEqual([['wm-a', false]]);
    const goneAt = clock.now();

    // Sent at t0 + 5 s, before it was found gone, delivered only now.
    const late: Envelope = {
      id: 'wm-a:hb:late',
      type: EventType.WorkerHeartbeat,
      txId: '',
      workflowId: '',
      time: t0 + 5_000,
      headers: {},
      payload: { managerId: 'wm-a', workers: ['payment.charge'], inFlight: 3 },
    };
    await backend.bus.publish(Topics.events, [late]);
    await waitFor(() => em.stats.eventsHandled === 1);
    clock.advance(30_000);
    expect((await em.listWorkers()).map((w) => [w.managerId, w.live])).toEqual([['wm-a', false]]);
    // Listed as gone for the retention counted from when it was found gone, not from the late heartbeat.
    clock.set(goneAt + goneWorkersRetentionMs + 1);
    expect(await em.listWorkers()).toEqual([]);
  });

  describe('lingering handlers of a worker-manager', () => {
    function heartbeatEvent(id: string, time: number, payload: Record<string, unknown>): Envelope {
      return {
        id,
        type: EventType.WorkerHeartbeat,
        txId: '-',
        workflowId: '-',
        time,
        headers: {},
        payload: { managerId: 'wm-a', workers: ['payment.charge'], inFlight: 0, ...payload },
      };
    }

    async function announced(): Promise<EventMonitor> {
      const em = monitor();
      await em.start();
      await backend.registry.announce(
        { managerId: 'wm-a', workers: ['payment.charge'], capacity: 1, inFlight: 0, seenAt: clock.now() },
        60_000,
      );
      // Known to the monitor from here on (a heartbeat of a replica it never read is not news).
      await em.listWorkers();
      return em;
    }

    it('are listed as its last heartbeat counted them, through registry reads, and 0 from an older worker-manager', async () => {
      const em = await announced();
      // No heartbeat yet: the registry's record does not say.
      expect((await em.listWorkers())[0]).not.toHaveProperty('lingering');

      await backend.bus.publish(Topics.events, [heartbeatEvent('hb-1', clock.now(), { lingering: 1 })]);
      await waitFor(() => em.stats.eventsHandled === 1);
      // listWorkers() reads the registry again first: the count survives it.
      expect(await em.listWorkers()).toEqual([
        expect.objectContaining({ managerId: 'wm-a', live: true, inFlight: 0, capacity: 1, lingering: 1 }),
      ]);

      clock.advance(1_000);
      await backend.bus.publish(Topics.events, [heartbeatEvent('hb-2', clock.now(), { lingering: 0 })]);
      await waitFor(() => em.stats.eventsHandled === 2);
      expect((await em.listWorkers())[0]?.lingering).toBe(0);

      clock.advance(1_000);
      await backend.bus.publish(Topics.events, [
        heartbeatEvent('hb-3', clock.now(), { lingering: 2 }),
        // A worker-manager older than the field (or rolled back to one): it counts none.
        heartbeatEvent('hb-4', clock.now() + 1, {}),
      ]);
      await waitFor(() => em.stats.eventsHandled === 4);
      expect((await em.listWorkers())[0]?.lingering).toBe(0);
    });

    it("are listed as the registry's record counts them when it has the count, whatever heartbeat this replica got", async () => {
      const em = await announced();
      await backend.bus.publish(Topics.events, [heartbeatEvent('hb-1', clock.now(), { lingering: 1 })]);
      await waitFor(() => em.stats.eventsHandled === 1);
      // A newer worker-manager's record carries the count (read now, whichever replica got its heartbeats).
      await backend.registry.announce(
        {
          managerId: 'wm-a',
          workers: ['payment.charge'],
          capacity: 1,
          inFlight: 0,
          lingering: 3,
          seenAt: clock.now(),
        },
        60_000,
      );
      expect((await em.listWorkers())[0]?.lingering).toBe(3);
    });

    it('dead-letters a heartbeat with a lingering count that is not a count, and keeps the last one', async () => {
      const em = await announced();
      await backend.bus.publish(Topics.events, [heartbeatEvent('hb-ok', clock.now(), { lingering: 1 })]);
      await waitFor(() => em.stats.eventsHandled === 1);
      const forged = [-1, 1.5, '3', null].map((lingering, i) =>
        heartbeatEvent(`hb-forged-${i}`, clock.now() + 1, { lingering }),
      );
      await backend.bus.publish(Topics.events, forged);
      await waitFor(() => em.stats.eventsRejected === forged.length);
      expect(em.stats.rejectedByReason[EventRejectReason.BadHeartbeat]).toBe(forged.length);
      expect((await em.listDeadLetters(Topics.events)).map((l) => l.envelope?.id).sort()).toEqual(
        forged.map((e) => e.id).sort(),
      );
      expect((await em.listWorkers())[0]?.lingering).toBe(1);
    });
  });

  it('streams every event to watchers, filtered, from any replica, with no group of their own', async () => {
    const a = monitor();
    const b = monitor();
    await a.start();
    await b.start();
    const seen: string[] = [];
    const stop = await a.watchEvents({ txId: 'tx-w' }, (envelope) => seen.push(envelope.id));
    await backend.bus.publish(Topics.events, [
      transitionEvent('tx-other', 1, {}, clock.now()),
      ...[1, 2, 3, 4].map((v) => transitionEvent('tx-w', v, {}, clock.now())),
    ]);
    await waitFor(() => seen.length === 4);
    expect(seen).toEqual(['tx-w:v1', 'tx-w:v2', 'tx-w:v3', 'tx-w:v4']);
    stop();
    expect(a.stats.watchers).toBe(0);
    // A tail, not a group: watching leaves nothing on the bus for a replica killed outright.
    const groups = async (): Promise<string[]> =>
      ((await backend.bus.topicStats?.(Topics.events))?.groups ?? []).map((g) => g.group);
    expect(await groups()).toEqual([EVENT_MONITOR_GROUP]);
    await a.close();
    expect(await groups()).toEqual([EVENT_MONITOR_GROUP]);
  });
});
