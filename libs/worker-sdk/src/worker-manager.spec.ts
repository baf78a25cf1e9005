import { setImmediate as nextTurn } from 'node:timers/promises';
import { MemoryEventBus, MemoryWorkerRegistry } from '@multiagents/memory';
import {
  ErrorCode,
  EventType,
  Groups,
  MAX_TIMER_MS,
  MultiAgentsError,
  NonRetryableError,
  ResourceExhaustedError,
  Topics,
  ValidationError,
  type Envelope,
  type StepCommandPayload,
  type StepHeartbeatPayload,
  type StepProgressPayload,
  type StepResultPayload,
  type WorkerHeartbeatPayload,
} from '@multiagents/contracts';
import type { Delivery, EventBus, Subscription } from '@multiagents/core';
import { defineWorker, type WorkerDefinition, type WorkerHandler } from './define-worker';
import { commandEnvelope, deferred, recordingLogger, sleep, waitFor } from './test-support';
import type { WorkerContext } from './worker-context';
import type { WorkerOptions } from './worker-options';
import { WorkerManager, type WorkerManagerOptions } from './worker-manager';

const WORKER = 'inventory.reserve';
const COMMANDS = Topics.command(WORKER);

/** `bus` with some of its methods replaced. */
function delegating(
  bus: EventBus,
  overrides: Partial<Pick<EventBus, 'publish' | 'subscribe' | 'listen'>>,
): EventBus {
  return {
    publish: (topic, envelopes) => bus.publish(topic, envelopes),
    subscribe: (topic, options, handler) => bus.subscribe(topic, options, handler),
    tail: (topic, handler) => bus.tail(topic, handler),
    broadcast: (channel, envelopes) => bus.broadcast(channel, envelopes),
    listen: (channel, handler) => bus.listen(channel, handler),
    pendingCount: (topic, group) => bus.pendingCount(topic, group),
    listDeadLetters: (topic, limit) => bus.listDeadLetters(topic, limit),
    replayDeadLetter: (topic, id) => bus.replayDeadLetter(topic, id),
    discardDeadLetter: (topic, id) => bus.discardDeadLetter(topic, id),
    close: () => bus.close(),
    ...overrides,
  };
}

/** Delegates to a real bus and records every `delivery.extend()` a handler makes. */
function spyOnExtends(bus: EventBus): { bus: EventBus; extended: string[] } {
  const extended: string[] = [];
  const spy = delegating(bus, {
    subscribe: (topic, options, handler) =>
      bus.subscribe(topic, options, (delivery: Delivery) =>
        handler({
          id: delivery.id,
          topic: delivery.topic,
          envelope: delivery.envelope,
          deliveryCount: delivery.deliveryCount,
          extend: () => {
            extended.push(delivery.id);
            return delivery.extend();
          },
        }),
      ),
  });
  return { bus: spy, extended };
}

let bus: MemoryEventBus;
let managers: WorkerManager[];
let observers: Subscription[];

beforeEach(() => {
  bus = new MemoryEventBus();
  managers = [];
  observers = [];
});

afterEach(async () => {
  await Promise.all(managers.map((m) => m.close({ drainTimeoutMs: 0 })));
  await Promise.all(observers.map((s) => s.close()));
  await bus.close();
});

/** What an orchestrator would read from a topic (its own group, so nothing is taken from anyone). */
async function observe<P = unknown>(topic: string): Promise<Envelope<P>[]> {
  const seen: Envelope<P>[] = [];
  observers.push(
    await bus.subscribe(topic, { group: `observer-${topic}`, consumer: 'test' }, (delivery) => {
      seen.push(delivery.envelope as Envelope<P>);
      return Promise.resolve();
    }),
  );
  return seen;
}

async function startManager(
  workers: readonly WorkerDefinition<never, unknown>[],
  options: Partial<WorkerManagerOptions> = {},
): Promise<WorkerManager> {
  const manager = new WorkerManager({
    bus,
    workers,
    // Short redelivery delays keep the tests fast; none of them relies on a visibility timeout.
    subscribe: { retryDelayMs: 10, visibilityTimeoutMs: 5_000 },
    ...options,
  });
  managers.push(manager);
  await manager.start();
  return manager;
}

function worker(
  handler: WorkerHandler<never, unknown>,
  options?: WorkerOptions,
): WorkerDefinition<never, unknown> {
  return defineWorker(WORKER, handler, options);
}

function sendCommand(
  overrides: Partial<Envelope<unknown>> = {},
  payload: Partial<StepCommandPayload> = {},
): Promise<void> {
  return bus.publish(COMMANDS, [commandEnvelope(overrides, payload)]);
}

function results(seen: Envelope[]): Envelope<StepResultPayload>[] {
  return seen.filter((e) => e.type === EventType.StepResult) as Envelope<StepResultPayload>[];
}

/**
 * A worker whose handler hands its context to `started`, waits for its signal, then rejects with
 * `stopped` (by default, the signal's reason).
 */
function stopsAtSignal(
  started: (ctx: WorkerContext) => void,
  stopped: (ctx: WorkerContext) => Error = (ctx) => ctx.signal.reason as Error,
): WorkerDefinition<never, unknown> {
  return worker(
    (_input, ctx) =>
      new Promise((_resolve, reject) => {
        started(ctx);
        ctx.signal.addEventListener('abort', () => reject(stopped(ctx)));
      }),
  );
}

/** A `step.cancel` notice of run `txId`, its payload as given. */
function cancelNotice(txId: string, payload: unknown): Envelope<unknown> {
  return {
    id: `${txId}:v9:cancel`,
    type: EventType.StepCancel,
    txId,
    workflowId: 'order_processing',
    time: 1,
    headers: {},
    payload,
  };
}

describe('WorkerManager', () => {
  describe('options', () => {
    it('lists every problem at once', () => {
      const w = worker(() => 1);
      let error: unknown;
      try {
        new WorkerManager({
          bus,
          workers: [w, w],
          managerId: 'has space',
          heartbeatIntervalMs: 0,
          drainTimeoutMs: -1,
          heartbeatThrottleMs: 2 ** 31,
          subscribe: { maxDeliveries: 1.5 },
        });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).problems).toEqual([
        `worker "${WORKER}" is listed twice`,
        expect.stringContaining('managerId'),
        'heartbeatIntervalMs must be a positive integer (got 0)',
        'drainTimeoutMs must be a non-negative integer (got -1)',
        // Longer than a timer can wait: it would fire after 1 ms.
        `heartbeatThrottleMs must be at most ${MAX_TIMER_MS} ms, what a timer can wait (got ${2 ** 31})`,
        'subscribe.maxDeliveries must be a positive integer (got 1.5)',
      ]);
      expect(() => new WorkerManager({ bus, workers: [] })).toThrow('workers must list at least one worker');
    });

    it('refuses to start twice', async () => {
      const manager = await startManager([worker(() => 1)]);
      await expect(manager.start()).rejects.toThrow('cannot start');
    });
  });

  it('runs a command and publishes its result with the command id, attempt and headers, then acks', async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    let input: unknown;
    await startManager([worker((i: unknown) => ((input = i), { reservationId: 'r-1' }))]);
    await sendCommand({ attempt: 2 }, { commandId: 'tx-1:reserve:2' });

    await waitFor(() => seen.length === 1, 2_000, 'a result');
    const [result] = seen;
    expect(result).toMatchObject({
      id: 'tx-1:reserve:2:result',
      type: EventType.StepResult,
      txId: 'tx-1',
      workflowId: 'order_processing',
      step: 'reserve',
      attempt: 2,
      headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      payload: { commandId: 'tx-1:reserve:2', worker: WORKER, ok: true, output: { reservationId: 'r-1' } },
    });
    expect(input).toEqual({ sku: 'A-1', quantity: 2 });
    await waitFor(async () => (await bus.pendingCount(COMMANDS, Groups.workers)) === 0, 2_000, 'the ack');
  });

  it("hands the observer each attempt with its delivery, and logs with the scope's fields", async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    const logger = recordingLogger();
    const infos: unknown[] = [];
    const ended: unknown[] = [];
    await startManager(
      [
        worker((_input, ctx) => {
          ctx.logger.info({}, 'inside');
          return 'ok';
        }),
      ],
      {
        logger,
        observer: {
          attemptStarted: (command, info) => {
            infos.push({ step: command.step, ...info });
            return {
              run: (work) => work(),
              logFields: { trace_id: 't'.repeat(32), span_id: 's'.repeat(16) },
              end: (result) => void ended.push(result),
            };
          },
        },
      },
    );
    await sendCommand({}, { commandId: 'c-obs' });

    await waitFor(() => seen.length === 1, 2_000, 'the result');
    expect(infos).toEqual([
      expect.objectContaining({ step: 'reserve', deliveryCount: 1, topic: COMMANDS, group: Groups.workers }),
    ]);
    expect(ended).toEqual([{ kind: 'completed' }]);
    expect(logger.lines.find((l) => l.message === 'inside')?.fields).toMatchObject({
      trace_id: 't'.repeat(32),
      span_id: 's'.repeat(16),
      step: 'reserve',
    });
  });

  it('publishes ok:false for a failing handler, retryable or not', async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    await startManager([
      worker((input: { fail: string }) => {
        if (input.fail === 'final') throw new NonRetryableError('out of stock', { code: 'OUT_OF_STOCK' });
        throw new Error('warehouse API down');
      }),
    ]);
    await sendCommand({}, { commandId: 'c-1', input: { fail: 'transient' } });
    await sendCommand({}, { commandId: 'c-2', input: { fail: 'final' } });

    await waitFor(() => seen.length === 2, 2_000, 'two results');
    const byId = new Map(seen.map((e) => [e.payload.commandId, e.payload]));
    expect(byId.get('c-1')).toEqual({
      commandId: 'c-1',
      worker: WORKER,
      ok: false,
      error: { code: ErrorCode.WorkerError, message: 'warehouse API down', retryable: true },
    });
    expect(byId.get('c-2')).toEqual({
      commandId: 'c-2',
      worker: WORKER,
      ok: false,
      error: { code: 'OUT_OF_STOCK', message: 'out of stock', retryable: false },
    });
    // A failed attempt is still a handled command: its result is the answer, not a redelivery.
    await waitFor(async () => (await bus.pendingCount(COMMANDS, Groups.workers)) === 0, 2_000, 'the acks');
  });

  it('publishes step.heartbeat for ctx.heartbeat() and extends the delivery', async () => {
    const spy = spyOnExtends(bus);
    const seen = await observe(Topics.results);
    const manager = new WorkerManager({
      bus: spy.bus,
      workers: [
        worker(async (_input, ctx) => {
          await ctx.heartbeat({ progress: 0.5 });
          return 'done';
        }),
      ],
    });
    managers.push(manager);
    await manager.start();
    await sendCommand({}, { commandId: 'c-hb' });

    await waitFor(() => results(seen).length === 1, 2_000, 'the result');
    const heartbeat = seen.find((e) => e.type === EventType.StepHeartbeat) as Envelope<StepHeartbeatPayload>;
    expect(heartbeat).toMatchObject({
      type: EventType.StepHeartbeat,
      txId: 'tx-1',
      workflowId: 'order_processing',
      step: 'reserve',
      attempt: 1,
      headers: { traceparent: expect.any(String) },
      payload: { commandId: 'c-hb', details: { progress: 0.5 } },
    });
    expect(heartbeat.id).toMatch(/^c-hb:heartbeat:/);
    expect(seen.indexOf(heartbeat)).toBeLessThan(seen.indexOf(results(seen)[0]!));
    expect(spy.extended).toHaveLength(1);
  });

  it('says at once that it took a command with a schedule-to-start timeout (and only then)', async () => {
    const seen = await observe(Topics.results);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const manager = new WorkerManager({ bus, workers: [worker(async () => (await gate, 'done'))] });
    managers.push(manager);
    await manager.start();
    await sendCommand({}, { commandId: 'c-s2s', scheduleToStartTimeoutMs: 5_000 });
    await sendCommand({}, { commandId: 'c-plain' });
    await waitFor(() => seen.some((e) => e.type === EventType.StepHeartbeat), 2_000, 'the started heartbeat');
    release();
    await waitFor(() => results(seen).length === 2, 2_000, 'both results');
    const heartbeats = seen.filter(
      (e) => e.type === EventType.StepHeartbeat,
    ) as Envelope<StepHeartbeatPayload>[];
    expect(heartbeats.map((h) => h.payload)).toEqual([{ commandId: 'c-s2s', details: { started: true } }]);
  });

  it('a close waits for the started heartbeat still being published', async () => {
    let entered = false;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slowBus = Object.create(bus) as EventBus;
    slowBus.publish = async (topic, envelopes) => {
      if (envelopes[0]?.type === EventType.StepHeartbeat) {
        entered = true;
        await gate;
      }
      return bus.publish(topic, envelopes);
    };
    const seen = await observe(Topics.results);
    const manager = new WorkerManager({ bus: slowBus, workers: [worker(() => 'done')] });
    await manager.start();
    await sendCommand({}, { commandId: 'c-s2s-close', scheduleToStartTimeoutMs: 5_000 });
    await waitFor(() => entered && results(seen).length === 1, 2_000, 'the result, the heartbeat held');
    let closed = false;
    const closing = manager.close().then(() => (closed = true));
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    release();
    await closing;
    await waitFor(() => seen.some((e) => e.type === EventType.StepHeartbeat), 2_000, 'the heartbeat');
  });

  it('publishes ctx.progress() reports as step.progress on the events topic, coalesced and in order', async () => {
    const events = await observe<StepProgressPayload>(Topics.events);
    const resultsSeen = await observe(Topics.results);
    const tokens = Array.from({ length: 50 }, (_, i) => `tok${i} `);
    await startManager(
      [
        worker(async (_input, ctx) => {
          for (const token of tokens) {
            ctx.progress?.({ deltas: { answer: token } });
            await sleep(2);
          }
          return 'done';
        }),
      ],
      { progressMaxPerSecond: 20 },
    );
    await sendCommand({ attempt: 2 }, { commandId: 'c-progress' });

    await waitFor(() => results(resultsSeen).length === 1, 4_000, 'the result');
    const progress = () => events.filter((e) => e.type === EventType.StepProgress);
    await waitFor(
      () =>
        progress().reduce((n, e) => n + (e.payload.deltas?.['answer'] ?? '').length, 0) ===
        tokens.join('').length,
      2_000,
      'every token in step.progress events',
    );
    const published = progress();
    expect(published[0]).toMatchObject({
      type: EventType.StepProgress,
      txId: 'tx-1',
      workflowId: 'order_processing',
      step: 'reserve',
      attempt: 2,
      headers: { traceparent: expect.any(String) },
      payload: { commandId: 'c-progress', seq: 1 },
    });
    expect(published[0]!.id).toMatch(/^c-progress:progress:/);
    expect(published.map((e) => e.payload.seq)).toEqual(published.map((_, i) => i + 1));
    expect(published.map((e) => e.payload.deltas?.['answer']).join('')).toBe(tokens.join(''));
    // 50 reports at 20/s: coalesced into fewer events (the exact rate bound is unit-tested with a
    // manual clock in progress-throttle.spec.ts).
    expect(published.length).toBeLessThan(tokens.length);
    // Progress is for watchers: nothing of it goes to the orchestrators' results topic.
    expect(resultsSeen.filter((e) => e.type === EventType.StepProgress)).toEqual([]);
  });

  it('publishes no step.progress with progressMaxPerSecond 0, and validates the option', async () => {
    const publish = jest.spyOn(bus, 'publish');
    const resultsSeen = await observe(Topics.results);
    await startManager([worker((_input, ctx) => (ctx.progress?.({ deltas: { answer: 'x' } }), 'done'))], {
      progressMaxPerSecond: 0,
    });
    await sendCommand({}, { commandId: 'c-quiet' });
    await waitFor(() => results(resultsSeen).length === 1, 2_000, 'the result');
    // With progress on, the first report is handed to the bus before the handler even returns.
    const published = publish.mock.calls.flatMap(([, envelopes]) => envelopes.map((e) => e.type));
    expect(published).toContain(EventType.StepResult);
    expect(published).not.toContain(EventType.StepProgress);
    expect(() => new WorkerManager({ bus, workers: [worker(() => 1)], progressMaxPerSecond: -2 })).toThrow(
      'progressMaxPerSecond must be a non-negative integer (got -2)',
    );
  });

  describe('a result the bus refuses', () => {
    /** The memory bus, but the first `failures` publishes of results throw `error`. */
    function refusingResults(failures: number, error: () => Error): { bus: EventBus; refused: () => number } {
      let refused = 0;
      const real = bus;
      const wrapped = delegating(real, {
        publish: (topic, envelopes) => {
          if (topic === Topics.results && refused < failures) {
            refused++;
            return Promise.reject(error());
          }
          return real.publish(topic, envelopes);
        },
      });
      return { bus: wrapped, refused: () => refused };
    }
    const unavailable = (): Error =>
      new MultiAgentsError(ErrorCode.Unavailable, 'publish to results failed: no responders', {
        retryable: true,
      });

    it('is published again while the refusal is retryable: the command is not redelivered', async () => {
      const seen = await observe<StepResultPayload>(Topics.results);
      const { bus: flaky, refused } = refusingResults(4, unavailable);
      const manager = await startManager([worker(() => 'done')], {
        bus: flaky,
        // Fewer redeliveries than refusals: only the retries of the publish can get it through.
        subscribe: { retryDelayMs: 10, visibilityTimeoutMs: 5_000, maxDeliveries: 2 },
      });
      await sendCommand({}, { commandId: 'c-failover' });
      await waitFor(() => results(seen).length === 1, 10_000, 'the result');
      expect(refused()).toBe(4);
      expect(manager.counters).toMatchObject({ delivered: 1, redelivered: 0, resultPublishRetries: 4 });
      expect(results(seen)[0]!.payload).toMatchObject({ commandId: 'c-failover', ok: true, output: 'done' });
      await waitFor(async () => (await bus.pendingCount(COMMANDS, Groups.workers)) === 0, 2_000, 'the ack');
      expect(await bus.listDeadLetters(COMMANDS)).toEqual([]);
    });

    it('fails the delivery at once when the refusal is not retryable, or retries are off', async () => {
      const seen = await observe<StepResultPayload>(Topics.results);
      const { bus: full } = refusingResults(1, () => new ResourceExhaustedError('stream results is full'));
      const first = await startManager([worker(() => 'done')], { bus: full });
      await sendCommand({}, { commandId: 'c-full' });
      await waitFor(() => results(seen).length === 1, 5_000, 'the result, on the redelivery');
      expect(first.counters).toMatchObject({ delivered: 2, redelivered: 1, resultPublishRetries: 0 });
      await first.close();

      const { bus: down } = refusingResults(1, unavailable);
      const second = await startManager([worker(() => 'done')], { bus: down, resultPublishRetryMs: 0 });
      await sendCommand({}, { commandId: 'c-no-retry' });
      await waitFor(() => results(seen).length === 2, 5_000, 'the second result, on the redelivery');
      expect(second.counters).toMatchObject({ delivered: 2, redelivered: 1, resultPublishRetries: 0 });
      expect(() => new WorkerManager({ bus, workers: [worker(() => 1)], resultPublishRetryMs: -1 })).toThrow(
        'resultPublishRetryMs must be a non-negative integer (got -1)',
      );
    });
  });

  it('dead-letters a malformed command and goes on with the next one', async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    await startManager([worker(() => 'ok')]);
    await sendCommand({ id: 'bad-1' }, { commandId: undefined as never, compensation: 'no' as never });
    await sendCommand({}, { commandId: 'good-1' });

    await waitFor(() => seen.length === 1, 2_000, 'the good result');
    expect(seen[0]!.payload.commandId).toBe('good-1');
    await waitFor(async () => (await bus.listDeadLetters(COMMANDS)).length === 1, 2_000, 'the dead letter');
    const [dead] = await bus.listDeadLetters(COMMANDS);
    expect(dead!.envelope?.id).toBe('bad-1');
    expect(dead!.error).toContain('payload.commandId');
    expect(dead!.error).toContain('payload.compensation');
    // Poison is dead-lettered at once, not after maxDeliveries attempts.
    expect(dead!.deliveryCount).toBe(1);
  });

  it('answers UNKNOWN_WORKER for a command that names another worker', async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    const handler = jest.fn(() => 'ran');
    await startManager([worker(handler)], { logger: recordingLogger() });
    await sendCommand({}, { commandId: 'c-x', worker: 'payment.charge' });

    await waitFor(() => seen.length === 1, 2_000, 'the result');
    expect(seen[0]!.payload).toMatchObject({
      commandId: 'c-x',
      ok: false,
      error: { code: ErrorCode.UnknownWorker, retryable: false },
    });
    expect(handler).not.toHaveBeenCalled();
  });

  it('runs at most `concurrency` handlers of a worker at once', async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    let running = 0;
    let maxRunning = 0;
    await startManager([
      worker(
        async () => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          await sleep(20);
          running--;
          return 'ok';
        },
        { concurrency: 2 },
      ),
    ]);
    for (let i = 0; i < 6; i++) await sendCommand({}, { commandId: `c-${i}` });

    await waitFor(() => seen.length === 6, 3_000, 'six results');
    expect(maxRunning).toBe(2);
  });

  it('reports its workers, their load and circuit state, and announces itself with worker.heartbeat', async () => {
    const events = await observe<WorkerHeartbeatPayload>(Topics.events);
    const gate = deferred<string>();
    const other = defineWorker('inventory.release', () => 'ok', { circuitBreaker: false, concurrency: 3 });
    const manager = await startManager([worker(() => gate.promise, { concurrency: 4 }), other], {
      managerId: 'wm-1',
      heartbeatIntervalMs: 20,
    });
    await sendCommand();

    await waitFor(() => manager.inFlight()[WORKER] === 1, 2_000, 'the handler to start');
    expect(manager.inFlight()).toEqual({ [WORKER]: 1, 'inventory.release': 0 });
    expect(manager.workers()).toEqual([
      { name: WORKER, inFlight: 1, capacity: 4, circuit: 'closed', lingering: 0 },
      { name: 'inventory.release', inFlight: 0, capacity: 3, circuit: 'disabled', lingering: 0 },
    ]);
    await waitFor(() => events.some((e) => e.payload.inFlight === 1), 2_000, 'a worker.heartbeat');
    const announcement = events.find((e) => e.payload.inFlight === 1)!;
    expect(announcement).toMatchObject({
      type: EventType.WorkerHeartbeat,
      txId: '-',
      workflowId: '-',
      payload: { managerId: 'wm-1', workers: [WORKER, 'inventory.release'], inFlight: 1, lingering: 0 },
    });
    const before = events.length;
    gate.resolve('done');
    await manager.close();
    await sleep(60);
    // Closed: no more announcements.
    expect(events.length).toBe(before);
  });

  it('cancel() fires the signal; a handler that stops then ends its attempt with a non-retryable CANCELLED', async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    let ctx: WorkerContext | undefined;
    const manager = await startManager([
      stopsAtSignal(
        (c) => (ctx = c),
        () => new NonRetryableError('stopped', { code: 'STOPPED', partialEffects: true }),
      ),
    ]);
    await sendCommand({}, { commandId: 'tx-1:reserve:1' });
    await waitFor(() => ctx !== undefined, 2_000, 'the handler to start');
    expect(manager.cancel('unknown')).toBe(false);
    expect(manager.cancel('tx-1:reserve:1', 'run cancelled')).toBe(true);

    await waitFor(() => seen.length === 1, 2_000, 'the result');
    expect(ctx!.signal.aborted).toBe(true);
    expect(seen[0]!.payload).toMatchObject({
      commandId: 'tx-1:reserve:1',
      ok: false,
      error: {
        code: ErrorCode.Cancelled,
        retryable: false,
        message: 'attempt tx-1:reserve:1 cancelled: run cancelled',
        // What it declared stays: its compensation must undo it.
        partialEffects: true,
        details: { commandId: 'tx-1:reserve:1', handlerError: { code: 'STOPPED', message: 'stopped' } },
      },
    });
    expect(manager.counters.cancelled).toBe(1);
  });

  it('cancel() of a handler that completes anyway reports its output: the work was done', async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    const gate = deferred<string>();
    let ctx: WorkerContext | undefined;
    const manager = await startManager([
      worker((_input, c) => {
        ctx = c;
        return gate.promise;
      }),
    ]);
    await sendCommand({}, { commandId: 'tx-1:reserve:1' });
    await waitFor(() => ctx !== undefined, 2_000, 'the handler to start');
    expect(manager.cancel('tx-1:reserve:1')).toBe(true);
    expect(ctx!.signal.aborted).toBe(true);
    // Still its attempt: nothing is reported until the handler ends.
    for (let turn = 0; turn < 3; turn++) await nextTurn();
    expect(seen).toEqual([]);
    expect(manager.inFlight()[WORKER]).toBe(1);
    gate.resolve('charged');
    await waitFor(() => seen.length === 1, 2_000, 'the result');
    expect(seen[0]!.payload).toMatchObject({ commandId: 'tx-1:reserve:1', ok: true, output: 'charged' });
  });

  it("hears step.cancel notices on Topics.control: only its run's command ids, bounded, anything else refused", async () => {
    const seen = await observe<StepResultPayload>(Topics.results);
    let ctx: WorkerContext | undefined;
    const manager = await startManager([stopsAtSignal((c) => (ctx = c))]);
    await sendCommand({}, { commandId: 'tx-1:reserve:1' });
    await waitFor(() => ctx !== undefined, 2_000, 'the handler to start');
    // Another run naming this run's command, a malformed payload, too many ids, another type.
    await bus.broadcast(Topics.control, [
      cancelNotice('tx-2', { commandIds: ['tx-1:reserve:1'], reason: 'forged' }),
      cancelNotice('tx-1', { commandIds: 'tx-1:reserve:1', reason: 'not a list' }),
      cancelNotice('tx-1', {
        commandIds: Array.from({ length: 1_001 }, () => 'tx-1:reserve:1'),
        reason: 'too many',
      }),
      { ...cancelNotice('tx-1', { commandIds: ['tx-1:reserve:1'] }), type: EventType.StepHeartbeat },
    ]);
    await waitFor(() => manager.counters.refusedCancelNotices === 3, 2_000, 'the bad notices refused');
    expect(ctx!.signal.aborted).toBe(false);

    await bus.broadcast(Topics.control, [
      cancelNotice('tx-1', { commandIds: ['tx-1:reserve:1', 'tx-1:other:1'], reason: 'run cancelled' }),
    ]);
    await waitFor(() => seen.length === 1, 2_000, 'the result');
    expect(seen[0]!.payload).toMatchObject({
      ok: false,
      error: { code: ErrorCode.Cancelled, message: 'attempt tx-1:reserve:1 cancelled: run cancelled' },
    });
    expect(manager.counters).toMatchObject({ cancelled: 1, refusedCancelNotices: 3 });
  });

  it('listens for cancel notices again when the bus refused its listener, and hears them then', async () => {
    const logger = recordingLogger();
    let refusals = 0;
    let ctx: WorkerContext | undefined;
    const manager = await startManager([stopsAtSignal((c) => (ctx = c))], {
      logger,
      bus: delegating(bus, {
        listen: (channel, handler) =>
          refusals++ === 0 ? Promise.reject(new Error('NOPERM')) : bus.listen(channel, handler),
      }),
    });
    expect(logger.lines.some((l) => l.message.startsWith('cannot hear cancel notices yet'))).toBe(true);
    await waitFor(
      () => logger.lines.some((l) => l.message === 'hearing cancel notices again'),
      5_000,
      'a second listener',
    );
    await sendCommand({}, { commandId: 'tx-1:reserve:1' });
    await waitFor(() => ctx !== undefined, 2_000, 'the handler to start');
    await bus.broadcast(Topics.control, [
      cancelNotice('tx-1', { commandIds: ['tx-1:reserve:1'], reason: 'run cancelled' }),
    ]);
    await waitFor(() => ctx!.signal.aborted, 2_000, 'the signal');
    expect(manager.counters.cancelled).toBe(1);
    expect(refusals).toBe(2);
  });

  describe('a handler that outlives its attempt (it ignores its signal)', () => {
    /** A worker of one slot whose first handler ignores its signal and waits for `gate`. */
    function hangingFirst(gate: Promise<string>, later: { started: number }) {
      let calls = 0;
      return worker(() => (++calls === 1 ? gate : (later.started++, 'later done')), {
        concurrency: 1,
        timeoutMs: 30,
      });
    }

    it('publishes its TIMEOUT at once but keeps its slot, for bus deliveries and local dispatch, until it settles', async () => {
      const seen = await observe<StepResultPayload>(Topics.results);
      const logger = recordingLogger();
      const gate = deferred<string>();
      const later = { started: 0 };
      const manager = await startManager([hangingFirst(gate.promise, later)], { logger });
      await sendCommand({}, { commandId: 'c-hang' });
      await waitFor(() => seen.length === 1, 2_000, 'the timeout result');
      expect(seen[0]!.payload).toMatchObject({
        commandId: 'c-hang',
        ok: false,
        error: { code: ErrorCode.Timeout },
      });
      expect(manager.reserve(WORKER)).toBeUndefined();

      await sendCommand({}, { commandId: 'c-next' });
      await waitFor(() => manager.inFlight()[WORKER] === 1, 2_000, 'the next command to wait for the slot');
      for (let i = 0; i < 5; i++) await nextTurn();
      expect(later.started).toBe(0);
      expect(manager.lingering()).toEqual({ [WORKER]: 1 });
      expect(
        logger.lines.filter((l) => l.level === 'warn' && l.message.startsWith('handler still running')),
      ).toEqual([
        expect.objectContaining({
          fields: expect.objectContaining({ worker: WORKER, txId: 'tx-1', step: 'reserve', attempt: 1 }),
        }),
      ]);

      gate.resolve('too late');
      await waitFor(() => seen.length === 2, 2_000, 'the next result');
      expect(seen[1]!.payload).toMatchObject({ commandId: 'c-next', ok: true, output: 'later done' });
      expect(later.started).toBe(1);
      expect(manager.lingering()).toEqual({ [WORKER]: 0 });
      const slot = manager.reserve(WORKER);
      expect(slot).toBeDefined();
      slot!.release();
    });

    it('is counted as lingering in workers(), in worker.heartbeat and in the registry while it runs, and no longer once it settles', async () => {
      const events = await observe<WorkerHeartbeatPayload>(Topics.events);
      const seen = await observe<StepResultPayload>(Topics.results);
      const gate = deferred<string>();
      const registry = new MemoryWorkerRegistry();
      const manager = await startManager([hangingFirst(gate.promise, { started: 0 })], {
        managerId: 'wm-hung',
        heartbeatIntervalMs: 20,
        registry,
      });
      const registered = async (): Promise<number | undefined> => (await registry.list())[0]?.lingering;
      const heartbeats = (): WorkerHeartbeatPayload[] =>
        events.filter((e) => e.type === EventType.WorkerHeartbeat).map((e) => e.payload);
      await sendCommand({}, { commandId: 'c-hang' });
      await waitFor(() => seen.length === 1, 2_000, 'the timeout result');

      // Its attempt is over (not in flight), yet it holds the worker's only slot.
      expect(manager.workers()).toEqual([
        { name: WORKER, inFlight: 0, capacity: 1, circuit: 'closed', lingering: 1 },
      ]);
      await waitFor(() => heartbeats().some((h) => h.lingering === 1), 2_000, 'a heartbeat counting it');
      expect(heartbeats().find((h) => h.lingering === 1)).toEqual({
        managerId: 'wm-hung',
        workers: [WORKER],
        inFlight: 0,
        lingering: 1,
      });
      await waitFor(async () => (await registered()) === 1, 2_000, 'the registry counting it');

      gate.resolve('too late');
      await waitFor(() => manager.workers()[0]!.lingering === 0, 2_000, 'the handler to settle');
      expect(manager.workers()).toEqual([
        { name: WORKER, inFlight: 0, capacity: 1, circuit: 'closed', lingering: 0 },
      ]);
      // Heartbeats are published (and delivered) in order: one after the last that counted it.
      const afterSettled = (): WorkerHeartbeatPayload | undefined => {
        const all = heartbeats();
        const last = all.map((h) => h.lingering).lastIndexOf(1);
        return all.slice(last + 1).find((h) => h.lingering === 0);
      };
      await waitFor(() => afterSettled() !== undefined, 2_000, 'a heartbeat after it settled');
      expect(afterSettled()).toMatchObject({ managerId: 'wm-hung', inFlight: 0, lingering: 0 });
      await waitFor(async () => (await registered()) === 0, 2_000, 'the registry no longer counting it');
    });

    it('close() does not wait for it, and says so', async () => {
      const seen = await observe<StepResultPayload>(Topics.results);
      const logger = recordingLogger();
      const gate = deferred<string>();
      const manager = await startManager([hangingFirst(gate.promise, { started: 0 })], { logger });
      await sendCommand({}, { commandId: 'c-hang' });
      await waitFor(() => seen.length === 1, 2_000, 'the timeout result');

      let closed = false;
      void manager.close({ drainTimeoutMs: 60_000 }).then(() => (closed = true));
      await waitFor(() => closed, 2_000, 'close() to return');
      expect(logger.lines).toContainEqual(
        expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ lingering: 1 }) }),
      );
      gate.resolve('too late');
      await waitFor(() => manager.lingering()[WORKER] === 0, 2_000, 'the handler to settle');
    });
  });

  describe('close()', () => {
    it('stops taking commands, lets a handler in flight finish and publishes its result', async () => {
      const seen = await observe<StepResultPayload>(Topics.results);
      const gate = deferred<string>();
      let started = 0;
      const manager = await startManager([worker(() => (started++, gate.promise))]);
      await sendCommand({}, { commandId: 'c-drain' });
      await waitFor(() => started === 1, 2_000, 'the handler to start');

      const closed = manager.close();
      await sendCommand({}, { commandId: 'c-after-close' });
      await sleep(30);
      let done = false;
      void closed.then(() => (done = true));
      expect(done).toBe(false);

      gate.resolve('finished while draining');
      await closed;
      await waitFor(() => seen.length > 0, 2_000, 'the drained result');
      await sleep(30);
      expect(seen.map((e) => e.payload)).toEqual([
        { commandId: 'c-drain', worker: WORKER, ok: true, output: 'finished while draining' },
      ]);
      expect(started).toBe(1);
      expect(manager.inFlight()[WORKER]).toBe(0);
    });

    it('aborts a handler that outlives the drain timeout: no result, no ack, redelivered to another replica', async () => {
      const seen = await observe<StepResultPayload>(Topics.results);
      let signal: AbortSignal | undefined;
      const first = await startManager(
        [
          worker((_input, ctx) => {
            signal = ctx.signal;
            // Ignores its signal and never settles.
            return new Promise(() => undefined);
          }),
        ],
        { managerId: 'wm-first' },
      );
      await sendCommand({}, { commandId: 'c-hang' });
      await waitFor(() => signal !== undefined, 2_000, 'the handler to start');

      await first.close({ drainTimeoutMs: 20 });
      expect(signal!.aborted).toBe(true);
      expect(seen).toEqual([]);
      expect(await bus.pendingCount(COMMANDS, Groups.workers)).toBeGreaterThan(0);

      await startManager([worker(() => 'second replica')], { managerId: 'wm-second' });
      await waitFor(() => seen.length === 1, 3_000, 'the redelivered command');
      expect(seen[0]!.payload).toMatchObject({ commandId: 'c-hang', ok: true, output: 'second replica' });
    });

    it('is idempotent', async () => {
      const manager = await startManager([worker(() => 1)]);
      const a = manager.close();
      expect(manager.close()).toBe(a);
      await a;
    });
  });
});
