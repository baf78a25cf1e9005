import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { EventType, Topics } from '@multiagents/contracts';
import type { EventBus, DefinitionStore, StateStore, TimerStore } from '@multiagents/core';
import { Orchestrator, parseDefinition } from '@multiagents/core';
import {
  freePort,
  ServiceProcess,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import Redis from 'ioredis';
import { checkInvariants, waitForTerminalRuns, type InvariantReport, type StartedOrder } from './invariants';
import { LedgerKeys } from './ledger-workers-keys';

/** Repository root, from this file's folder (src or dist). */
export const REPO_ROOT = join(__dirname, '..', '..', '..');

/** The faults of issue 3 item 6 (and issue 5 item 3). */
export type Fault = 'kill-worker-manager' | 'kill-orchestrator' | 'kill-broker' | 'pause-worker-manager';

/** A backend under test: how to start its server and open its adapters from the test process. */
export interface BackendUnderTest {
  readonly name: 'redis' | 'nats';
  startServer(): Promise<ServerProcess>;
  /** Environment that points a service at the server. */
  env(server: ServerProcess): Record<string, string>;
  open(
    server: ServerProcess,
    prefix: string,
  ): Promise<{
    bus: EventBus;
    store: StateStore;
    timers: TimerStore;
    definitions: DefinitionStore;
    close(): Promise<void>;
  }>;
}

/** What a scenario measured. */
export interface ScenarioResult extends InvariantReport {
  readonly backend: string;
  readonly fault: Fault;
  readonly n: number;
  /** From the fault to the first run that finished after the fault was over (-1: none). */
  readonly recoveryMs: number;
  /** From the fault until every run was terminal. */
  readonly drainMs: number;
  readonly ignoredResults: number;
  readonly casConflicts: number;
  /** Commands the surviving worker-managers received again (another replica held them first). */
  readonly redeliveries: number;
  /** Publishes the broker refused as duplicates (NATS de-duplication of a stale replica's results). */
  readonly duplicatePublishes: number;
  /** Commands the victim held (effect applied, no result) when the fault hit it. */
  readonly heldAtFault: number;
  /** Of those, how many another replica executed again afterwards. */
  readonly heldRedoneElsewhere: number;
  readonly faultEvidence: string;
}

/** Builds every package once (an Nx cache hit when nothing changed), so the services run from dist. */
export function buildServices(): void {
  execFileSync(
    'bash',
    [
      'scripts/build-quiet.sh',
      '@multiagents/orchestrator',
      '@multiagents/worker-manager',
      '@multiagents/fault-tests',
    ],
    { cwd: REPO_ROOT, stdio: 'inherit', timeout: 300_000 },
  );
}

const VISIBILITY_TIMEOUT_MS = 2_000;
/** Commands a worker-manager victim holds until its fault (see ledger-workers.ts). */
const VICTIM_HOLDS = 2;
/** Bound of every wait on a condition below. */
const CONDITION_TIMEOUT_MS = 60_000;

const TERMINAL_EVENTS = new Set<string>([
  EventType.WorkflowCompleted,
  EventType.WorkflowCompensated,
  EventType.WorkflowFailed,
  EventType.WorkflowCancelled,
  EventType.WorkflowStuck,
]);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function makeOrders(n: number, failRate: number): Omit<StartedOrder, 'txId'>[] {
  // Deterministic: every 10th order fails at shipping for failRate 0.1.
  const every = failRate > 0 ? Math.round(1 / failRate) : Infinity;
  return Array.from({ length: n }, (_, i) => ({
    orderId: `o-${i + 1}`,
    total: 10 + (i % 50),
    failShipping: (i + 1) % every === 0,
  }));
}

/**
 * Runs `n` order sagas across 1 orchestrator and 3 worker-managers (separate processes) over a
 * real broker, injects `fault` once a quarter of the runs finished, waits for every run, and
 * checks SPEC §9 invariants 1–4 and that the fault really happened.
 */
export async function runFaultScenario(
  backend: BackendUnderTest,
  fault: Fault,
  n = 2_000,
): Promise<ScenarioResult> {
  const server = await backend.startServer();
  const ledgerServer = await startRedisServer();
  const ledger = new Redis(ledgerServer.url);
  const prefix = `fault-${fault}`;
  const logDir = join(REPO_ROOT, 'tmp', 'fault-logs', `${backend.name}-${fault}`);
  const services: ServiceProcess[] = [];
  const adapters = await backend.open(server, prefix);
  try {
    const common = { ...backend.env(server), MULTIAGENTS_PREFIX: prefix, LOG_LEVEL: 'warn' };
    const orchestrator = new ServiceProcess(
      'orchestrator',
      join(REPO_ROOT, 'apps/orchestrator/dist/main.js'),
      {
        ...common,
        MULTIAGENTS_DEFINITIONS: join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml'),
        MULTIAGENTS_VISIBILITY_TIMEOUT_MS: String(VISIBILITY_TIMEOUT_MS),
        GRPC_PORT: String(await freePort()),
      },
      logDir,
      await freePort(),
    );
    services.push(orchestrator);
    const managers: ServiceProcess[] = [];
    const victimHolds = fault === 'kill-worker-manager' || fault === 'pause-worker-manager';
    for (let i = 0; i < 3; i++) {
      const manager = new ServiceProcess(
        `worker-manager-${i}`,
        join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
        {
          ...common,
          MULTIAGENTS_WORKER_MODULES: join(REPO_ROOT, 'tests/fault/dist/ledger-workers.js'),
          MULTIAGENTS_VISIBILITY_TIMEOUT_MS: String(VISIBILITY_TIMEOUT_MS),
          LEDGER_REDIS_URL: ledgerServer.url,
          FAULT_WORK_MS: '4',
          FAULT_REPLICA: `worker-manager-${i}`,
          FAULT_HOLD_COMMANDS: i === 0 && victimHolds ? String(VICTIM_HOLDS) : '0',
        },
        logDir,
        await freePort(),
      );
      managers.push(manager);
      services.push(manager);
    }
    await Promise.all(services.map((s) => s.start()));

    // Starting is the API's job: an Orchestrator that is never started only writes runs and commands.
    const starter = new Orchestrator({ ...adapters, timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 });
    await starter.registerWorkflow(
      parseDefinition(readFileSync(join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml'), 'utf8')),
    );
    const orders: StartedOrder[] = [];
    const inputs = makeOrders(n, 0.1);
    const startedAt = Date.now();
    // Terminal runs as they happen, from the lifecycle events (a consumer group of the checker's own).
    const terminalAt: number[] = [];
    const watcher = await adapters.bus.subscribe(
      Topics.events,
      { group: 'fault-checker', consumer: 'checker', startFrom: 'earliest', concurrency: 64 },
      async (delivery) => {
        if (TERMINAL_EVENTS.has(delivery.envelope.type)) terminalAt.push(Date.now());
      },
    );
    // Starts keep going through the fault (retried with the same idempotency key while the broker
    // or the store is unreachable), so the fault always lands with runs in flight.
    const startDeadline = Date.now() + 120_000;
    const startOne = async (input: Omit<StartedOrder, 'txId'>): Promise<string> => {
      for (;;) {
        try {
          const { txId } = await starter.startWorkflow(
            'order_processing',
            { ...input },
            { idempotencyKey: input.orderId },
          );
          return txId;
        } catch (err) {
          if (Date.now() > startDeadline) throw err;
          await sleep(200);
        }
      }
    };
    let next = 0;
    const starting = Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < inputs.length) {
          const input = inputs[next++]!;
          orders.push({ ...input, txId: await startOne(input) });
        }
      }),
    );
    while (orders.length < n / 4 && Date.now() < startDeadline) await sleep(5);
    // The fault must land on a victim that holds commands, whatever the machine's speed: wait for it.
    if (victimHolds) {
      await waitFor(async () => (await ledger.scard(LedgerKeys.held)) >= VICTIM_HOLDS, {
        timeoutMs: CONDITION_TIMEOUT_MS,
        intervalMs: 20,
        description: `worker-manager-0 holding ${VICTIM_HOLDS} commands`,
      });
    }
    const held = victimHolds ? await ledger.smembers(LedgerKeys.held) : [];
    const faultAt = Date.now();
    const unfinishedAtFault = orders.length - terminalAt.length;
    let faultEvidence = '';
    switch (fault) {
      case 'kill-worker-manager': {
        const victim = managers[0]!;
        victim.signal('SIGKILL');
        const exit = await victim.exited();
        faultEvidence = `worker-manager-0 ended by ${exit.signal} holding ${held.length} commands, with ${unfinishedAtFault} started runs unfinished`;
        break;
      }
      case 'kill-orchestrator': {
        orchestrator.signal('SIGKILL');
        const exit = await orchestrator.exited();
        await new Promise((r) => setTimeout(r, 500));
        await orchestrator.start();
        faultEvidence = `orchestrator ended by ${exit.signal}, restarted as pid ${orchestrator.pid}`;
        break;
      }
      case 'kill-broker': {
        const pid = server.pid();
        server.kill('SIGKILL');
        await new Promise((r) => setTimeout(r, 500));
        await server.restart();
        faultEvidence = `${backend.name} server pid ${pid} killed -9, restarted as pid ${server.pid()}`;
        break;
      }
      case 'pause-worker-manager': {
        const victim = managers[0]!;
        victim.signal('SIGSTOP');
        // Paused past the visibility timeout: another replica takes the held commands and their runs
        // go on. Only once those runs ended does the victim wake, so its results are surely late.
        const heldRuns = [...new Set(held.map((key) => key.split(':')[0]!))];
        const ended = await waitForTerminalRuns(adapters.store, heldRuns, CONDITION_TIMEOUT_MS);
        if (ended.size !== heldRuns.length) throw new Error(`runs held by the paused replica never ended`);
        const pausedMs = Date.now() - faultAt;
        await ledger.set(LedgerKeys.release, '1');
        victim.signal('SIGCONT');
        faultEvidence = `worker-manager-0 paused for ${pausedMs} ms holding ${held.length} commands (visibility timeout ${VISIBILITY_TIMEOUT_MS} ms)`;
        break;
      }
    }
    const recoveredAt = Date.now();
    await starting;
    const runs = await waitForTerminalRuns(
      adapters.store,
      orders.map((o) => o.txId),
      180_000,
    );
    const drainMs = Date.now() - faultAt;
    // Recovery: from the fault to the first run that finished after the fault was over.
    const firstAfter = terminalAt.find((t) => t >= recoveredAt);
    const survivors = fault === 'kill-worker-manager' ? managers.slice(1) : managers;
    const lateRefused = async (): Promise<number> => {
      const [orchestratorStats, ...replicaStats] = await Promise.all([
        orchestrator.stats(),
        ...survivors.map((m) => m.stats()),
      ]);
      const duplicates = replicaStats.reduce((total, r) => total + (r['duplicatePublishes'] ?? 0), 0);
      return (orchestratorStats['ignoredResults'] ?? 0) + duplicates;
    };
    if (fault === 'pause-worker-manager') {
      // The woken victim's results for the held commands: refused and counted, once they arrive.
      await waitFor(async () => (await lateRefused()) > 0, {
        timeoutMs: CONDITION_TIMEOUT_MS,
        intervalMs: 50,
        description: "the paused replica's late results refused",
      }).catch(() => undefined); // the assertion on the counters reports it
    }
    // Quiet time: trailing acks settle before the bus is checked.
    await sleep(500);
    await watcher.close();
    const stats = await orchestrator.stats();
    const replicaStats = await Promise.all(survivors.map((m) => m.stats()));
    const sum = (key: string): number => replicaStats.reduce((total, r) => total + (r[key] ?? 0), 0);
    const victim = 'worker-manager-0';
    let heldRedoneElsewhere = 0;
    for (const key of held) {
      const callers = await ledger.lrange(LedgerKeys.callers(key), 0, -1);
      if (callers.some((c) => c !== victim)) heldRedoneElsewhere++;
    }
    const report = await checkInvariants({ orders, runs, store: adapters.store, bus: adapters.bus, ledger });
    return {
      ...report,
      backend: backend.name,
      fault,
      n,
      recoveryMs: firstAfter === undefined ? -1 : firstAfter - faultAt,
      drainMs,
      ignoredResults: stats['ignoredResults'] ?? 0,
      casConflicts: stats['casConflicts'] ?? 0,
      redeliveries: sum('redelivered'),
      duplicatePublishes: sum('duplicatePublishes'),
      heldAtFault: held.length,
      heldRedoneElsewhere,
      faultEvidence: `${faultEvidence}; ${unfinishedAtFault} runs in flight at the fault; total ${Date.now() - startedAt} ms`,
    };
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await adapters.close().catch(() => undefined);
    ledger.disconnect();
    await ledgerServer.stop();
    await server.stop();
  }
}
