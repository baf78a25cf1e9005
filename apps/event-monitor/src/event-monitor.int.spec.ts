/**
 * The event-monitor as it runs in production: two replicas (each its own process) next to an
 * orchestrator and a worker-manager process over a private redis-server, then a private
 * nats-server, called over real gRPC
 * sockets. Checks the timeline of a compensated order run, the stuck-run watchdog with a worker
 * that hangs past its workflow's threshold (stuck once, across both replicas, listed until it
 * moves), NOT_FOUND for unknown ids, a forged event dead-lettered with its reason and replayable,
 * dead letters discarded (through the client and the `multiagents dlq discard` command), the live
 * and gone worker-managers, and the event stream.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openBackend, type Backend } from '@multiagents/backends';
import {
  connect,
  connectMonitor,
  type EventMonitorClient,
  type MultiAgentsClient,
} from '@multiagents/client';
import { EventType, RunState, Topics, type Envelope, type WorkflowDefinition } from '@multiagents/contracts';
import { parseDefinition } from '@multiagents/core';
import {
  freePort,
  ServiceProcess,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { defineWorker, WorkerManager } from '@multiagents/worker-sdk';

const REPO_ROOT = join(__dirname, '..', '..', '..');
const WORKFLOW_FILE = join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml');
const WAIT_MS = 60_000;
/** The hang workflow's threshold: short, so the test does not wait long; the default stays 5 min. */
const HANG_THRESHOLD_MS = 1_500;

const HANG_FLOW: WorkflowDefinition = {
  id: 'hang_flow',
  version: 1,
  steps: [{ name: 'wait_forever', kind: 'task', worker: 'test.hang', timeoutMs: 600_000 }],
};

interface Stats {
  readonly eventsHandled: number;
  readonly eventsRejected: number;
  readonly rejected_bad_transition: number;
  readonly stuckEventsPublished: number;
  readonly watchdogScans: number;
}

/** Runs the built `multiagents` command with `args`; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO_ROOT, 'apps/cli/dist/main.js'), ...args],
      { cwd: REPO_ROOT, timeout: WAIT_MS },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function stats(service: ServiceProcess): Promise<Stats> {
  const res = await fetch(`http://127.0.0.1:${service.httpPort}/stats`);
  return (await res.json()) as Stats;
}

// Real processes on a shared, loaded machine: every wait inside is bounded by WAIT_MS instead.
jest.setTimeout(120_000);

beforeAll(() => {
  execFileSync(
    'bash',
    [
      'scripts/build-quiet.sh',
      '@multiagents/orchestrator',
      '@multiagents/worker-manager',
      '@multiagents/event-monitor',
      '@multiagents/cli',
      '@multiagents/example-order-processing',
    ],
    { cwd: REPO_ROOT, stdio: 'inherit', timeout: 600_000 },
  );
}, 660_000);

describe.each(['redis', 'nats'] as const)('event-monitor service (real processes, %s, gRPC)', (backend) => {
  let broker: ServerProcess;
  let adapters: Backend;
  let services: ServiceProcess[] = [];
  let monitors: ServiceProcess[] = [];
  let monitorPorts: number[] = [];
  let orchestrator: MultiAgentsClient;
  let clients: EventMonitorClient[] = [];
  let hangManager: WorkerManager | undefined;
  let releaseHang: () => void = () => undefined;
  const observed: Envelope[] = [];

  beforeAll(async () => {
    broker = backend === 'redis' ? await startRedisServer() : await startNatsServer();
    const prefix = `em-int-${backend}-${process.pid}`;
    const env = {
      MULTIAGENTS_BACKEND: backend,
      ...(backend === 'redis'
        ? { REDIS_URL: broker.url, MULTIAGENTS_REDIS_PARTITIONS: '2' }
        : { NATS_URL: broker.url }),
      MULTIAGENTS_PREFIX: prefix,
      LOG_LEVEL: 'warn',
    };
    const logDir = join(REPO_ROOT, 'tmp', 'event-monitor-int', prefix);
    const orchestratorPort = await freePort();
    const orchestratorProcess = new ServiceProcess(
      'orchestrator',
      join(REPO_ROOT, 'apps/orchestrator/dist/main.js'),
      { ...env, MULTIAGENTS_DEFINITIONS: WORKFLOW_FILE, GRPC_PORT: String(orchestratorPort) },
      logDir,
      await freePort(),
    );
    const manager = new ServiceProcess(
      'worker-manager',
      join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
      {
        ...env,
        MULTIAGENTS_WORKER_MODULES: join(REPO_ROOT, 'examples/order-processing/dist/service-workers.js'),
      },
      logDir,
      await freePort(),
    );
    monitorPorts = [await freePort(), await freePort()];
    monitors = await Promise.all(
      monitorPorts.map(
        async (grpcPort, i) =>
          new ServiceProcess(
            `event-monitor-${i}`,
            join(REPO_ROOT, 'apps/event-monitor/dist/main.js'),
            {
              ...env,
              GRPC_PORT: String(grpcPort),
              MULTIAGENTS_STUCK_THRESHOLDS: `${HANG_FLOW.id}=${HANG_THRESHOLD_MS}`,
              MULTIAGENTS_STUCK_SCAN_INTERVAL_MS: '200',
              MULTIAGENTS_WORKERS_POLL_INTERVAL_MS: '200',
            },
            logDir,
            await freePort(),
          ),
      ),
    );
    services = [orchestratorProcess, manager, ...monitors];
    await Promise.all(services.map((s) => s.start()));
    adapters = await openBackend(
      backend === 'redis'
        ? { backend, redisUrl: broker.url, redisPartitions: 2, prefix }
        : { backend, natsUrl: broker.url, prefix },
    );
    // Everything published on the events topic, in a group of the test's own.
    await adapters.bus.subscribe(Topics.events, { group: 'test-observer', consumer: 'test' }, async (d) => {
      observed.push(d.envelope);
    });
    orchestrator = connect(`127.0.0.1:${orchestratorPort}`);
    clients = monitorPorts.map((port) => connectMonitor(`127.0.0.1:${port}`));
    await orchestrator.registerWorkflow(parseDefinition(readFileSync(WORKFLOW_FILE, 'utf8')));
    await orchestrator.registerWorkflow(HANG_FLOW);
  }, 120_000);

  afterAll(async () => {
    releaseHang();
    await hangManager?.close();
    orchestrator?.close();
    for (const client of clients) client.close();
    await Promise.all(services.map((s) => s.stop()));
    await adapters?.close().catch(() => undefined);
    await broker?.stop();
  }, 120_000);

  it('keeps the timeline of a compensated order run, the same on every replica; unknown runs are NOT_FOUND', async () => {
    const { txId } = await orchestrator.startWorkflow('order_processing', {
      orderId: 'o-1',
      total: 12,
      failShipping: true,
    });
    await waitFor(async () => (await orchestrator.getWorkflow(txId)).state === RunState.Compensated, {
      timeoutMs: WAIT_MS,
      intervalMs: 50,
      description: 'run compensated',
    });
    const version = observed.filter(
      (e) => e.txId === txId && e.type === EventType.WorkflowTransitioned,
    ).length;
    for (const client of clients) {
      await waitFor(
        async () => (await client.getTimeline(txId)).entries.at(-1)?.state === RunState.Compensated,
        {
          timeoutMs: WAIT_MS,
          intervalMs: 50,
          description: 'timeline complete',
        },
      );
      const timeline = await client.getTimeline(txId);
      expect(timeline.workflowId).toBe('order_processing');
      expect(timeline.entries.map((e) => e.version)).toEqual(
        Array.from({ length: timeline.entries.length }, (_, i) => i + 1),
      );
      expect(timeline.entries.length).toBeGreaterThanOrEqual(version);
      const times = timeline.entries.map((e) => e.time);
      expect([...times].sort((a, b) => a - b)).toEqual(times);
      const events = timeline.entries.flatMap((e) => e.events);
      const kinds = events.map((e) => `${e.type}${e.step ? ` ${e.step}` : ''}`);
      expect(kinds[0]).toBe(EventType.WorkflowStarted);
      expect(kinds.at(-1)).toBe(EventType.WorkflowCompensated);
      const at = (kind: string): number => kinds.indexOf(kind);
      expect(at('step.completed reserve_inventory')).toBeGreaterThan(at('step.started reserve_inventory'));
      expect(at('step.failed ship_order')).toBeGreaterThan(at('step.completed charge_payment'));
      expect(at(EventType.WorkflowCompensating)).toBeGreaterThan(at('step.failed ship_order'));
      // Undone newest first: the refund before the release.
      expect(at('compensation.completed charge_payment')).toBeGreaterThan(at(EventType.WorkflowCompensating));
      expect(at('compensation.completed reserve_inventory')).toBeGreaterThan(
        at('compensation.completed charge_payment'),
      );
      const failed = events.find((e) => e.type === EventType.StepFailed);
      expect(failed?.error).toMatchObject({ code: 'CARRIER_REFUSED' });
    }
    await expect(clients[0]?.getTimeline('no-such-run')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('finds a run whose worker hangs past the threshold stuck, once across both replicas, until it moves', async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    releaseHang = release;
    let started = false;
    hangManager = new WorkerManager({
      bus: adapters.bus,
      registry: adapters.registry,
      managerId: 'test-hang-manager',
      workers: [
        defineWorker('test.hang', async () => {
          started = true;
          await released;
          return { done: true };
        }),
      ],
    });
    await hangManager.start();
    const { txId } = await orchestrator.startWorkflow(HANG_FLOW.id, {});
    await waitFor(() => started, { timeoutMs: WAIT_MS, description: 'the hanging worker took the command' });

    for (const client of clients) {
      await waitFor(async () => (await client.listStuckRuns()).runs.some((r) => r.txId === txId), {
        timeoutMs: WAIT_MS,
        intervalMs: 50,
        description: 'run listed stuck',
      });
      const { runs } = await client.listStuckRuns({ workflowId: HANG_FLOW.id });
      expect(runs).toEqual([
        expect.objectContaining({
          txId,
          workflowId: HANG_FLOW.id,
          state: RunState.Running,
          thresholdMs: HANG_THRESHOLD_MS,
          steps: ['wait_forever'],
        }),
      ]);
      // The order runs are not stuck (the default threshold is minutes).
      expect((await client.listStuckRuns()).runs.map((r) => r.txId)).toEqual([txId]);
    }
    // Both replicas go on scanning: still one workflow.stuck, and one replica published it.
    const scansAt = await Promise.all(monitors.map(async (m) => (await stats(m)).watchdogScans));
    await waitFor(
      async () =>
        (await Promise.all(monitors.map(stats))).every((s, i) => s.watchdogScans >= (scansAt[i] ?? 0) + 5),
      { timeoutMs: WAIT_MS, intervalMs: 100, description: 'five more scans on both replicas' },
    );
    await waitFor(() => observed.some((e) => e.type === EventType.WorkflowStuck), { timeoutMs: WAIT_MS });
    const stuckEvents = observed.filter((e) => e.type === EventType.WorkflowStuck);
    expect(stuckEvents).toHaveLength(1);
    expect(stuckEvents[0]).toMatchObject({
      txId,
      workflowId: HANG_FLOW.id,
      payload: { reason: 'no_progress' },
    });
    const published = await Promise.all(monitors.map(async (m) => (await stats(m)).stuckEventsPublished));
    expect(published.reduce((a, b) => a + b, 0)).toBe(1);

    // It moves: off both lists.
    release();
    await waitFor(async () => (await orchestrator.getWorkflow(txId)).state === RunState.Completed, {
      timeoutMs: WAIT_MS,
      description: 'hung run completed once released',
    });
    for (const client of clients) {
      await waitFor(async () => (await client.listStuckRuns()).runs.length === 0, {
        timeoutMs: WAIT_MS,
        intervalMs: 50,
        description: 'stuck list empty',
      });
    }
  });

  it('lists live worker-managers from every process, and a stopped one as gone', async () => {
    await waitFor(
      async () =>
        (await clients[1]!.listWorkers())
          .filter((m) => m.live)
          .map((m) => m.managerId)
          .includes('test-hang-manager'),
      { timeoutMs: WAIT_MS, description: 'in-process manager listed' },
    );
    const live = await clients[1]!.listWorkers();
    expect(live.filter((m) => m.live)).toHaveLength(2);
    expect(live.find((m) => m.managerId !== 'test-hang-manager')?.workers).toEqual(
      expect.arrayContaining(['inventory.reserve', 'shipping.ship']),
    );
    await hangManager?.close();
    hangManager = undefined;
    await waitFor(
      async () =>
        (await clients[1]!.listWorkers()).some((m) => m.managerId === 'test-hang-manager' && !m.live),
      { timeoutMs: WAIT_MS, description: 'stopped manager listed as gone' },
    );
  });

  it('dead-letters a forged event with its reason, counts it, goes on, and replays it on request', async () => {
    const forged: Envelope = {
      id: 'forged-1',
      type: EventType.WorkflowTransitioned,
      txId: 'tx-forged',
      workflowId: 'order_processing',
      time: Date.now(),
      headers: {},
      payload: { version: -1, state: 'exploded', events: 'none' },
    };
    await adapters.bus.publish(Topics.events, [forged]);
    const client = clients[0]!;
    await waitFor(async () => (await client.listDeadLetters({ topic: Topics.events })).length === 1, {
      timeoutMs: WAIT_MS,
      description: 'forged event dead-lettered',
    });
    const [letter] = await client.listDeadLetters();
    expect(letter).toMatchObject({
      topic: Topics.events,
      group: 'event-monitor',
      envelope: { id: 'forged-1' },
    });
    expect(letter?.error).toContain('bad_transition');
    const rejected = await Promise.all(monitors.map(async (m) => (await stats(m)).rejected_bad_transition));
    expect(rejected.reduce((a, b) => a + b, 0)).toBe(1);
    await expect(client.getTimeline('tx-forged')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.replayDeadLetter(Topics.events, 'no-such-letter')).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    // Replayed, it fails again (it is still forged) and is dead-lettered again; the service goes on.
    await client.replayDeadLetter(Topics.events, letter!.id);
    await waitFor(
      async () =>
        (await Promise.all(monitors.map(stats))).reduce((sum, s) => sum + s.rejected_bad_transition, 0) === 2,
      { timeoutMs: WAIT_MS, description: 'replayed letter handled again' },
    );
    const { txId } = await orchestrator.startWorkflow('order_processing', { orderId: 'o-2', total: 3 });
    await waitFor(
      async () =>
        (await client.getTimeline(txId).catch(() => undefined))?.entries.at(-1)?.state === RunState.Completed,
      {
        timeoutMs: WAIT_MS,
        description: 'later events still recorded',
      },
    );
  });

  it('discards dead letters for good, through the client and the CLI; NOT_FOUND once gone', async () => {
    const forged = (id: string): Envelope => ({
      id,
      type: EventType.WorkflowTransitioned,
      txId: `tx-${id}`,
      workflowId: 'order_processing',
      time: Date.now(),
      headers: {},
      payload: { version: -1, state: 'exploded', events: 'none' },
    });
    const ids = ['garbage-1', 'garbage-2', 'garbage-3'];
    await adapters.bus.publish(Topics.events, ids.map(forged));
    const client = clients[1]!;
    const lettersOf = async (): Promise<Map<string, string>> => {
      const letters = await client.listDeadLetters({ topic: Topics.events });
      return new Map(letters.flatMap((l) => (l.envelope ? [[l.envelope.id, l.id] as const] : [])));
    };
    await waitFor(
      async () => {
        const letters = await lettersOf();
        return ids.every((id) => letters.has(id));
      },
      { timeoutMs: WAIT_MS, description: 'forged events dead-lettered' },
    );
    const before = await lettersOf();
    const [first, second, third] = ids.map((id) => before.get(id)!) as [string, string, string];

    await client.discardDeadLetter(Topics.events, first);
    await expect(client.discardDeadLetter(Topics.events, first)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.replayDeadLetter(Topics.events, first)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(clients[0]!.discardDeadLetter(Topics.events, 'no-such-letter')).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await expect(client.discardDeadLetter('', '')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });

    const address = ['--monitor-address', `127.0.0.1:${monitorPorts[0]}`];
    const discarded = await cli([...address, 'dlq', 'discard', Topics.events, second]);
    expect(discarded).toMatchObject({
      code: 0,
      stdout: `dead letter ${second} of ${Topics.events} discarded\n`,
    });
    const asJson = await cli([...address, '--json', 'dlq', 'discard', Topics.events, third]);
    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.stdout)).toEqual({ discarded: true, topic: Topics.events, id: third });
    const again = await cli([...address, 'dlq', 'discard', Topics.events, second]);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('NOT_FOUND');

    const after = await lettersOf();
    expect(ids.filter((id) => after.has(id))).toEqual([]);
    // The letters listed before (the replay test's) are all still there.
    expect([...after.keys()].sort()).toEqual([...before.keys()].filter((id) => !ids.includes(id)).sort());
  });

  it('streams the events of a run to a watcher on either replica, with no consumer group for it', async () => {
    const abort = new AbortController();
    const seen: Envelope[] = [];
    let isOpen = false;
    const watching = (async () => {
      for await (const envelope of clients[1]!.watchEvents(
        { workflowId: 'order_processing' },
        { signal: abort.signal, onOpen: () => (isOpen = true) },
      )) {
        seen.push(envelope);
      }
    })();
    await waitFor(() => isOpen, { timeoutMs: WAIT_MS, description: 'watch open' });
    // A tail, not a group of the replica's own: nothing on the broker for a killed replica to leave.
    const groups = (await adapters.bus.topicStats?.(Topics.events))?.groups.map((g) => g.group) ?? [];
    expect(groups).toContain('test-observer');
    expect(groups.filter((group) => group.includes('watch'))).toEqual([]);
    const { txId } = await orchestrator.startWorkflow('order_processing', { orderId: 'o-3', total: 5 });
    await waitFor(
      () =>
        seen.some(
          (e) =>
            e.txId === txId &&
            e.type === EventType.WorkflowTransitioned &&
            (e.payload as { state?: string }).state === RunState.Completed,
        ),
      { timeoutMs: WAIT_MS, description: 'the run completed, as streamed' },
    );
    abort.abort();
    await watching;
    const versions = seen
      .filter((e) => e.txId === txId)
      .map((e) => (e.payload as { version: number }).version);
    expect(versions.length).toBeGreaterThan(3);
    expect(new Set(versions).size).toBe(versions.length);
  });
});
