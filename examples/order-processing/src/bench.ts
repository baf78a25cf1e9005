/**
 * `pnpm bench [--backend memory|redis|nats] [--n N] [--fail-rate F] [--concurrency C] [--closed] [--json]`:
 * the SPEC §8 benchmark. Runs N order sagas, verifies every final state and context, and prints
 * one JSON line. In the same run it measures the floor and prints the ratio: for memory, the same
 * worker functions called directly in a loop; for redis, the same steps done by hand on Redis
 * Streams; for nats, by hand on JetStream. With redis or nats the orchestrator and 2 worker-managers run as separate processes
 * against a private server (Redis with AOF on, appendfsync everysec).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openBackend } from '@multiagents/backends';
import { EventType, RunState, Topics, type Run } from '@multiagents/contracts';
import { Orchestrator } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
import { freePort, ServiceProcess, startNatsServer, startRedisServer } from '@multiagents/testing';
import type { WorkerContext } from '@multiagents/worker-sdk';
import { silentLogger } from '@multiagents/core';
import { createOrderWorkers, EffectsLedger, makeOrders, type OrderInput } from './order-workers';
import { observeOrchestrator, runOrders, type OrderOutcome } from './run-orders';
import { measureRedisFloor } from './redis-floor';
import { measureNatsFloor } from './nats-floor';
import { orderWorkflow } from './workflow';
import { ledgerPositions, verifyOrderRun } from './verify-orders';

const BACKENDS = ['memory', 'redis', 'nats'] as const;

interface BenchArgs {
  backend: string;
  n: number;
  failRate: number;
  concurrency: number;
  closed: boolean;
  json: boolean;
  seed: number;
}

function parse(): BenchArgs {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'memory' },
      n: { type: 'string', default: '10000' },
      'fail-rate': { type: 'string', default: '0.1' },
      concurrency: { type: 'string', default: '200' },
      closed: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      seed: { type: 'string', default: '42' },
    },
    allowPositionals: false,
  });
  const args: BenchArgs = {
    backend: values.backend,
    n: Number(values.n),
    failRate: Number(values['fail-rate']),
    concurrency: Number(values.concurrency),
    closed: values.closed,
    json: values.json,
    seed: Number(values.seed),
  };
  const problems: string[] = [];
  if (!(BACKENDS as readonly string[]).includes(args.backend)) {
    problems.push(`--backend ${args.backend}: must be one of ${BACKENDS.join(', ')}`);
  }
  if (!Number.isInteger(args.n) || args.n < 1) problems.push('--n must be a positive integer');
  if (!(args.failRate >= 0 && args.failRate <= 1)) problems.push('--fail-rate must be between 0 and 1');
  if (!Number.isInteger(args.concurrency) || args.concurrency < 1)
    problems.push('--concurrency must be a positive integer');
  if (!Number.isInteger(args.seed)) problems.push('--seed must be an integer');
  if (problems.length > 0) {
    console.error(`bench: ${problems.join('; ')}`);
    process.exit(2);
  }
  return args;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] as number) * 100) / 100;
}

/** The same worker functions, called directly: no bus, no state, no engine. */
async function measureFloor(orders: readonly OrderInput[]): Promise<number> {
  const byName = new Map(createOrderWorkers(new EffectsLedger()).map((w) => [w.name, w.handler]));
  const call = async (name: string, input: OrderInput, key: string): Promise<unknown> => {
    const ctx = {
      idempotencyKey: key,
      signal: new AbortController().signal,
      logger: silentLogger,
    } as unknown as WorkerContext;
    return (byName.get(name) as (i: never, c: WorkerContext) => unknown)(input as never, ctx);
  };
  const started = performance.now();
  for (let i = 0; i < orders.length; i++) {
    const order = orders[i] as OrderInput;
    const tx = `floor-${i}`;
    let context: Record<string, unknown> = { ...order };
    context = { ...context, ...((await call('inventory.reserve', order, `${tx}:r`)) as object) };
    context = { ...context, ...((await call('payment.charge', order, `${tx}:c`)) as object) };
    try {
      context = { ...context, ...((await call('shipping.ship', order, `${tx}:s`)) as object) };
    } catch {
      await call('payment.refund', order, `${tx}:c:undo`);
      await call('inventory.release', order, `${tx}:r:undo`);
    }
  }
  return performance.now() - started;
}

/** What one backend's run produced, for the common report. */
interface Measured {
  readonly outcomes: OrderOutcome[];
  readonly runs: Map<string, Run>;
  readonly wallMs: number;
  readonly maxRssMb: number;
  readonly floorMs: number;
  readonly floor: string;
  readonly problems: string[];
}

/** Peak resident memory of a process (VmHWM), in MB; 0 when unknown. */
function peakRssMb(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid ?? 'self'}/status`, 'utf8');
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return Math.round(kb / 1024);
  } catch {
    return 0;
  }
}

async function runEmbeddedBench(args: BenchArgs, orders: OrderInput[]): Promise<Measured> {
  const ledger = new EffectsLedger();
  const stack = await startEmbedded({ workers: createOrderWorkers(ledger), definitions: [orderWorkflow] });
  const started = performance.now();
  const outcomes = await runOrders(stack.orchestrator, observeOrchestrator(stack.orchestrator), {
    orders,
    concurrency: args.concurrency,
    closed: args.closed,
    timeoutMs: 30 * 60_000,
  });
  const wallMs = performance.now() - started;
  const maxRssMb = peakRssMb(undefined);
  // Verify every run's final state, context and effects before reporting anything.
  const position = ledgerPositions(ledger);
  const runs = new Map<string, Run>();
  const problems: string[] = [];
  for (const { order, txId } of outcomes) {
    const run = await stack.orchestrator.getRun(txId);
    runs.set(txId, run);
    problems.push(...verifyOrderRun(run, order, { ledger, position }));
  }
  await stack.close();
  return {
    outcomes,
    runs,
    wallMs,
    maxRssMb,
    floorMs: await measureFloor(orders),
    floor: 'plain function calls',
    problems,
  };
}

const REPO_ROOT = join(__dirname, '..', '..', '..');

async function runDistributedBench(args: BenchArgs, orders: OrderInput[]): Promise<Measured> {
  const backend = args.backend as 'redis' | 'nats';
  // A production-like private server: Redis with the AOF on and fsync every second.
  const server = backend === 'redis' ? await startRedisServer({ appendOnly: true }) : await startNatsServer();
  const prefix = `bench-${Date.now()}`;
  const env = {
    MULTIAGENTS_BACKEND: backend,
    ...(backend === 'redis' ? { REDIS_URL: server.url } : { NATS_URL: server.url }),
    MULTIAGENTS_PREFIX: prefix,
    LOG_LEVEL: 'warn',
  };
  const logDir = join(REPO_ROOT, 'tmp', 'bench-logs');
  const services = [
    new ServiceProcess(
      'orchestrator',
      join(REPO_ROOT, 'apps/orchestrator/dist/main.js'),
      {
        ...env,
        MULTIAGENTS_DEFINITIONS: join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml'),
        GRPC_PORT: String(await freePort()),
      },
      logDir,
      await freePort(),
    ),
  ];
  for (let i = 0; i < 2; i++) {
    services.push(
      new ServiceProcess(
        `worker-manager-${i}`,
        join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
        { ...env, MULTIAGENTS_WORKER_MODULES: join(__dirname, 'service-workers.js') },
        logDir,
        await freePort(),
      ),
    );
  }
  const adapters = await openBackend({
    backend,
    prefix,
    ...(backend === 'redis' ? { redisUrl: server.url } : { natsUrl: server.url }),
  });
  try {
    await Promise.all(services.map((s) => s.start()));
    // Runs are started here (as an API client would) and watched through their lifecycle events.
    const starter = new Orchestrator({ ...adapters, timerPollIntervalMs: 0, outboxSweepIntervalMs: 0 });
    await starter.registerWorkflow(orderWorkflow);
    const listeners = new Set<(txId: string) => void>();
    const watcher = await adapters.bus.subscribe(
      Topics.events,
      { group: `bench-${prefix}`, consumer: 'bench', startFrom: 'latest', concurrency: 256 },
      async (delivery) => {
        if (TERMINAL_EVENTS.has(delivery.envelope.type)) for (const l of listeners) l(delivery.envelope.txId);
      },
    );
    const started = performance.now();
    const outcomes = await runOrders(
      starter,
      (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      { orders, concurrency: args.concurrency, closed: args.closed, timeoutMs: 30 * 60_000 },
    );
    const wallMs = performance.now() - started;
    await watcher.close();
    const maxRssMb = Math.max(...services.map((s) => peakRssMb(s.pid)));
    const runs = new Map<string, Run>();
    const problems: string[] = [];
    for (const { order, txId } of outcomes) {
      const stored = await adapters.store.get(txId);
      if (!stored) {
        problems.push(`${txId}: missing`);
        continue;
      }
      runs.set(txId, stored.run);
      problems.push(...verifyOrderRun(stored.run, order));
    }
    await Promise.all(services.map((s) => s.stop()));
    const floorMs =
      backend === 'redis'
        ? await measureRedisFloor(server.url, orders, args.concurrency)
        : await measureNatsFloor(server.url, orders, args.concurrency);
    return {
      outcomes,
      runs,
      wallMs,
      maxRssMb,
      floorMs,
      floor: backend === 'redis' ? 'hand-written Redis Streams saga' : 'hand-written JetStream saga',
      problems,
    };
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await adapters.close();
    await server.stop();
  }
}

const TERMINAL_EVENTS = new Set<string>([
  EventType.WorkflowCompleted,
  EventType.WorkflowCompensated,
  EventType.WorkflowFailed,
  EventType.WorkflowCancelled,
  EventType.WorkflowStuck,
]);

async function main(): Promise<void> {
  const args = parse();
  const orders = makeOrders(args.n, args.failRate, args.seed);
  const { outcomes, runs, wallMs, maxRssMb, floorMs, floor, problems } =
    args.backend === 'memory'
      ? await runEmbeddedBench(args, orders)
      : await runDistributedBench(args, orders);
  let completed = 0;
  let compensated = 0;
  let steps = 0;
  for (const run of runs.values()) {
    if (run.state === RunState.Completed) completed++;
    if (run.state === RunState.Compensated) compensated++;
    for (const step of Object.values(run.steps))
      steps += step.attempts.length + (step.compensation?.attempts.length ?? 0);
  }

  const latencies = outcomes.map((o) => o.latencyMs).sort((a, b) => a - b);
  const workflowsPerSec = Math.round((args.n / wallMs) * 1000);
  const floorWorkflowsPerSec = Math.round((args.n / floorMs) * 1000);
  const line = {
    backend: args.backend,
    mode: args.closed ? 'closed' : 'open',
    n: args.n,
    failRate: args.failRate,
    concurrency: args.concurrency,
    completed,
    compensated,
    other: args.n - completed - compensated,
    wallMs: Math.round(wallMs),
    workflowsPerSec,
    stepsPerSec: Math.round((steps / wallMs) * 1000),
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    maxRssMb,
    floor,
    floorWorkflowsPerSec: Number.isFinite(floorWorkflowsPerSec) ? floorWorkflowsPerSec : null,
    ratioToFloor: Number.isFinite(floorWorkflowsPerSec)
      ? Number((workflowsPerSec / floorWorkflowsPerSec).toFixed(4))
      : null,
    verified: problems.length === 0,
  };
  if (problems.length > 0) {
    console.error(`bench: ${problems.length} runs failed verification:`);
    for (const problem of problems.slice(0, 20)) console.error(`  ${problem}`);
    process.exitCode = 1;
  }
  if (!args.json) {
    console.log(
      `${line.n} workflows on ${line.backend} (${line.mode} loop, C=${line.concurrency}): ${workflowsPerSec} workflows/s, ` +
        `p50 ${line.p50Ms} ms, p99 ${line.p99Ms} ms, max RSS ${line.maxRssMb} MB; ` +
        `floor (${floor}) ${line.floorWorkflowsPerSec ?? '-'} workflows/s, ratio ${line.ratioToFloor ?? '-'}`,
    );
  }
  console.log(JSON.stringify(line));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
