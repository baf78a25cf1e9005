import { readFileSync } from 'node:fs';
import { RunState } from '@multiagents/contracts';
import { Orchestrator } from '@multiagents/core';
import { createMemoryBackend } from '@multiagents/memory';
import { createNatsBackend, type NatsBackend } from '@multiagents/nats';
import { startNatsServer, type NatsServerProcess } from '@multiagents/testing';
import { WorkerManager } from '@multiagents/worker-sdk';
import { measureNatsFloor } from './nats-floor';
import { createOrderWorkers, EffectsLedger, makeOrders, type OrderInput } from './order-workers';
import { observeOrchestrator, runOrders } from './run-orders';
import { verifyOrderRun } from './verify-orders';
import { orderWorkflow } from './workflow';

/**
 * The per-step cost of the NATS backend against the hand-written floor (nats-floor.ts), measured
 * with the server's /varz in one run on one private server: messages and bytes the server
 * received per step, and wall time. `STEP_COST_N` (default 1000) orders, 10% failing at shipping
 * (a compensated run counts its 2 compensations as steps). Prints one JSON line per side.
 */
const N = Number(process.env['STEP_COST_N'] ?? 1_000);
const CONCURRENCY = Number(process.env['STEP_COST_CONCURRENCY'] ?? 200);

interface Varz {
  readonly in_msgs: number;
  readonly in_bytes: number;
  readonly out_msgs: number;
  readonly out_bytes: number;
}

let nats: NatsServerProcess;

beforeAll(async () => {
  nats = await startNatsServer({ monitor: true });
}, 20_000);

afterAll(async () => {
  await nats?.stop();
});

/** The server's counters, with the CPU time (ms) of this process and of the server so far. */
interface Sample extends Varz {
  readonly nodeCpuMs: number;
  readonly serverCpuMs: number;
}

async function varz(): Promise<Sample> {
  const counters = (await (await fetch(`${nats.monitorUrl ?? ''}/varz`)).json()) as Varz;
  const usage = process.cpuUsage();
  // utime + stime of the server, in clock ticks (100 per second on Linux).
  const stat =
    readFileSync(`/proc/${nats.pid() ?? 0}/stat`, 'utf8')
      .split(') ')[1]
      ?.split(' ') ?? [];
  const ticks = Number(stat[11]) + Number(stat[12]);
  return { ...counters, nodeCpuMs: (usage.user + usage.system) / 1000, serverCpuMs: ticks * 10 };
}

function stepsOf(orders: readonly OrderInput[]): number {
  return orders.reduce((sum, order) => sum + (order.failShipping ? 5 : 3), 0);
}

function report(
  label: string,
  before: Sample,
  after: Sample,
  steps: number,
  wallMs: number,
): Record<string, number | string> {
  const line = {
    side: label,
    n: N,
    steps,
    msgsInPerStep: Math.round(((after.in_msgs - before.in_msgs) / steps) * 100) / 100,
    kbInPerStep: Math.round(((after.in_bytes - before.in_bytes) / steps / 1024) * 1000) / 1000,
    msgsOutPerStep: Math.round(((after.out_msgs - before.out_msgs) / steps) * 100) / 100,
    wallMs: Math.round(wallMs),
    workflowsPerSec: Math.round((N / wallMs) * 1000),
    // CPU per workflow: less sensitive than wall time to other load on the machine.
    nodeCpuMsPerWorkflow: Math.round(((after.nodeCpuMs - before.nodeCpuMs) / N) * 1000) / 1000,
    serverCpuMsPerWorkflow: Math.round(((after.serverCpuMs - before.serverCpuMs) / N) * 1000) / 1000,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  return line;
}

it(
  'runs the order saga on NATS within a bounded number of messages per step, next to the floor',
  async () => {
    const orders = makeOrders(N, 0.1);
    const steps = stepsOf(orders);

    const floorBefore = await varz();
    const floorMs =
      process.env['STEP_COST_FLOOR'] === 'off' ? 1 : await measureNatsFloor(nats.url, orders, CONCURRENCY);
    const floor = report('floor', floorBefore, await varz(), steps, floorMs);

    const prefix = `cost${process.pid}`;
    // The orchestrator and the workers on separate connections, as separate processes would be.
    const backends: NatsBackend[] = [
      await createNatsBackend({ servers: nats.url, prefix, connectionName: 'orchestrator' }),
      await createNatsBackend({ servers: nats.url, prefix, connectionName: 'workers' }),
    ];
    const [main, workerSide] = backends as [NatsBackend, NatsBackend];
    const ledger = new EffectsLedger();
    const orchestrator = new Orchestrator({
      ...main,
      redispatchAfterMs: 60_000,
      recoverySweepIntervalMs: 0,
      lifecycleEvents: process.env['STEP_COST_EVENTS'] !== 'off',
    });
    const workers = new WorkerManager({
      bus: workerSide.bus,
      workers: createOrderWorkers(ledger),
      heartbeatIntervalMs: 60_000,
    });
    try {
      await orchestrator.start();
      await workers.start();
      await orchestrator.registerWorkflow(orderWorkflow);
      const before = await varz();
      const started = performance.now();
      const { outcomes } = await runOrders(orchestrator, observeOrchestrator(orchestrator), {
        orders,
        concurrency: CONCURRENCY,
        timeoutMs: 10 * 60_000,
      });
      const ours = report('ours', before, await varz(), steps, performance.now() - started);

      const problems: string[] = [];
      let completed = 0;
      for (const { order, txId } of outcomes) {
        const run = await orchestrator.getRun(txId);
        if (run.state === RunState.Completed) completed++;
        problems.push(...verifyOrderRun(run, order, ledger));
      }
      expect(problems).toEqual([]);
      expect(completed).toBeGreaterThan(N * 0.8);
      // The engine and the SDK alone (no broker), for the breakdown: the memory backend, same work.
      const memory = createMemoryBackend();
      const memoryLedger = new EffectsLedger();
      const memoryOrchestrator = new Orchestrator({ ...memory, timerPollIntervalMs: 50 });
      const memoryWorkers = new WorkerManager({
        bus: memory.bus,
        workers: createOrderWorkers(memoryLedger),
        heartbeatIntervalMs: 60_000,
      });
      await memoryOrchestrator.start();
      await memoryWorkers.start();
      await memoryOrchestrator.registerWorkflow(orderWorkflow);
      const memoryBefore = await varz();
      const memoryStarted = performance.now();
      await runOrders(memoryOrchestrator, observeOrchestrator(memoryOrchestrator), {
        orders,
        concurrency: CONCURRENCY,
        timeoutMs: 10 * 60_000,
      });
      report('memory', memoryBefore, await varz(), steps, performance.now() - memoryStarted);
      await memoryOrchestrator.close();
      await memoryWorkers.close();
      await memory.close();
      process.stdout.write(
        `${JSON.stringify({ ratio: Math.round((Number(ours['workflowsPerSec']) / Number(floor['workflowsPerSec'])) * 100) / 100, counters: main.counters })}\n`,
      );
      // A regression guard on what the design sends per step (see docs/nats-backend.md).
      expect(Number(ours['msgsInPerStep'])).toBeLessThan(Number(floor['msgsInPerStep']) * 2);
    } finally {
      await orchestrator.close();
      await workers.close();
      for (const backend of backends) await backend.close();
    }
  },
  15 * 60_000,
);
