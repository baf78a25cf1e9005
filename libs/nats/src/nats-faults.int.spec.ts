import { RunNotFoundError, RunState, StepStatus, isTerminalRunState, type Run } from '@multiagents/contracts';
import { Orchestrator, WorkflowBuilder } from '@multiagents/core';
import { waitFor } from '@multiagents/testing';
import { WorkerManager, defineWorker } from '@multiagents/worker-sdk';
import type { NatsBackend } from './nats-backend';
import { isOnDisk, NatsTestServer } from './testing/nats-test-backend';

/**
 * The NATS backend under a broker crash, end to end: an orchestrator and a worker-manager (each on
 * its own connection) drive sagas with retries (backoff timers) and sleeps (durable timers) while
 * nats-server is killed with -9 and restarted on the same store mid-run.
 */
const RUNS = 120;

/**
 * Side effects by idempotency key, kept the way an idempotent worker keeps them (SPEC §4): a
 * command delivered again for a key already applied returns the recorded output and applies
 * nothing. `repeats` counts those deliveries.
 */
class Effects {
  readonly applied = new Map<string, unknown>();
  repeats = 0;

  apply<T>(key: string, output: T): T {
    if (this.applied.has(key)) {
      this.repeats += 1;
      return this.applied.get(key) as T;
    }
    this.applied.set(key, output);
    return output;
  }
}

const workflow = new WorkflowBuilder('crash_saga')
  .step('reserve', 'crash.reserve', { compensation: 'crash.release' })
  // The first attempt fails for odd orders: a retry timer (kept in memory: it is due soon).
  .step('charge', 'crash.charge', { retry: { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 100 } })
  .sleep('cool_down', 150)
  .step('ship', 'crash.ship')
  .build();

/** Holds the `ship` commands until opened: the runs are mid-flight, deterministically, when the broker dies. */
class Gate {
  entered = 0;
  private open!: () => void;
  private readonly opened = new Promise<void>((resolve) => (this.open = resolve));

  async pass(): Promise<void> {
    this.entered += 1;
    await this.opened;
  }

  release(): void {
    this.open();
  }
}

function workers(effects: Effects, gate: Gate): ReturnType<typeof defineWorker>[] {
  return [
    defineWorker<{ n: number }, { reserved: number }>('crash.reserve', (input, ctx) =>
      effects.apply(ctx.idempotencyKey, { reserved: input.n }),
    ),
    defineWorker<{ n: number }, { released: boolean }>('crash.release', (_input, ctx) =>
      effects.apply(ctx.idempotencyKey, { released: true }),
    ),
    defineWorker<{ n: number }, { charged: number }>('crash.charge', (input, ctx) => {
      if (input.n % 2 === 1 && ctx.attempt === 1) throw new Error('card declined, try again');
      return effects.apply(ctx.idempotencyKey, { charged: input.n * 10 });
    }),
    defineWorker<{ n: number }, { shipped: string }>('crash.ship', async (input, ctx) => {
      await gate.pass();
      return effects.apply(ctx.idempotencyKey, { shipped: `parcel-${input.n}` });
    }),
  ] as ReturnType<typeof defineWorker>[];
}

describe('the NATS backend across a kill -9 of nats-server mid-run', () => {
  let nats: NatsTestServer;
  const closers: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    nats = await NatsTestServer.start();
  }, 20_000);

  afterAll(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await nats?.stop();
  }, 30_000);

  it('finishes every run it acknowledged, each step applied once; what the broker forgot is redone, never stuck', async () => {
    const options = { reconnectTimeWaitMs: 100, requestTimeoutMs: 1_000, outboxGraceMs: 1_000 } as const;
    const main: NatsBackend = await nats.backend({ ...options, connectionName: 'orchestrator' });
    const side: NatsBackend = await nats.backend({
      ...options,
      prefix: main.names.prefix,
      connectionName: 'workers',
    });
    const effects = new Effects();
    const gate = new Gate();
    const orchestrator = new Orchestrator({
      ...main,
      // What the orchestrator does on NATS: a command whose result does not come is sent again,
      // and a sweep looks for live runs left idle (their writer's publishes or the broker's memory lost).
      redispatchAfterMs: 2_000,
      recoverySweepIntervalMs: 2_000,
      resultRetryBaseDelayMs: 50,
      timerLeaseMs: 5_000,
    });
    const manager = new WorkerManager({
      bus: side.bus,
      workers: workers(effects, gate),
      heartbeatIntervalMs: 60_000,
    });
    closers.push(
      async () => gate.release(),
      () => main.close(),
      () => side.close(),
      () => manager.close({ drainTimeoutMs: 0 }),
      () => orchestrator.close(),
    );
    let restored = 0;
    main.bus.onRestored(() => (restored += 1));
    const done = new Set<string>();
    orchestrator.onRunChanged((run) => {
      if (isTerminalRunState(run.state)) done.add(run.txId);
    });
    await orchestrator.start();
    await manager.start();
    await orchestrator.registerWorkflow(workflow);

    const started: string[] = [];
    for (let n = 0; n < RUNS; n += 1) {
      started.push(
        (await orchestrator.startWorkflow('crash_saga', { n }, { idempotencyKey: `order-${n}` })).txId,
      );
    }
    const state = async (txId: string): Promise<Run | 'lost'> => {
      try {
        return await orchestrator.getRun(txId);
      } catch (err) {
        if (err instanceof RunNotFoundError) return 'lost';
        throw err;
      }
    };
    const finished = async (): Promise<number> => {
      let count = 0;
      for (const txId of started) {
        const run = await state(txId).catch(() => undefined);
        if (run === 'lost' || (run !== undefined && isTerminalRunState(run.state))) count += 1;
      }
      return count;
    };
    // Mid-run: runs reserved, charged (some after a retry), slept, and shipping held by the workers.
    await waitFor(() => gate.entered >= 10, { timeoutMs: 20_000 });
    const finishedBefore = done.size;
    expect(finishedBefore).toBe(0);
    // The starts were acknowledged long ago, but nats-server writes its files behind: the kill
    // lands once the last run created is on disk, so what it may forget is only the last moments'.
    const lastStarted = started[started.length - 1] as string;
    await waitFor(() => isOnDisk(nats.server.dir, lastStarted), {
      timeoutMs: 20_000,
      description: 'the last run created on disk',
    });
    nats.server.kill('SIGKILL');
    await nats.server.restart();
    // The workers finish what they hold after the restart (their results reach the new server).
    gate.release();

    // Nothing left waiting: every run is finished (or reported lost), with no help from outside.
    await waitFor(async () => (await finished()) === RUNS, {
      timeoutMs: 60_000,
      intervalMs: 250,
      description: 'every acknowledged run finished after the broker restart',
    });
    let lost = 0;
    for (const [n, txId] of started.entries()) {
      const run = await state(txId);
      if (run === 'lost') {
        lost += 1;
        continue;
      }
      // Every committed transition is readable: the run decodes whole, in its final state.
      expect(run.state).toBe(RunState.Completed);
      expect(Object.values(run.steps).every((s) => s.status === StepStatus.Completed)).toBe(true);
      expect(run.context).toMatchObject({ n, reserved: n, charged: n * 10, shipped: `parcel-${n}` });
      // Every step's effect was applied under the run's own idempotency key (once, by the worker).
      for (const step of ['reserve', 'charge', 'ship'])
        expect(effects.applied.has(`${txId}:${step}`)).toBe(true);
      // And nothing was undone in a completed run.
      expect(effects.applied.has(`${txId}:reserve:undo`)).toBe(false);
    }
    // The broker may forget what it acknowledged in its last milliseconds (2.9 writes to disk
    // asynchronously): such a run is reported (not found), never left half-done.
    expect(lost).toBeLessThan(RUNS / 10);
    process.stdout.write(
      `${JSON.stringify({ finishedBefore, lost, repeats: effects.repeats, stats: orchestrator.stats, counters: main.counters })}\n`,
    );
    // The fault did happen: runs were in flight when the broker died, the clients saw it come
    // back, and timers (retries, sleeps) fired.
    expect(restored).toBeGreaterThanOrEqual(1);
    expect(orchestrator.stats.timersFired).toBeGreaterThan(0);
  }, 90_000);
});
