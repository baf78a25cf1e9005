/**
 * `pnpm bench [--backend memory] [--n N] [--fail-rate F] [--concurrency C] [--closed] [--json]`:
 * the SPEC §8 benchmark. Runs N order sagas, verifies every final state and context, and prints
 * one JSON line. In the same run it measures the floor: the same worker functions called directly
 * in a loop with no framework, and prints the ratio.
 */
import { parseArgs } from 'node:util';
import { RunState } from '@multiagents/contracts';
import { startEmbedded } from '@multiagents/embedded';
import type { WorkerContext } from '@multiagents/worker-sdk';
import { silentLogger } from '@multiagents/core';
import { createOrderWorkers, EffectsLedger, makeOrders, type OrderInput } from './order-workers';
import { runOrders } from './run-orders';
import { orderWorkflow } from './workflow';
import { ledgerPositions, verifyOrderRun } from './verify-orders';

const BACKENDS = ['memory'] as const;

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
    problems.push(
      `--backend ${args.backend}: this build benchmarks ${BACKENDS.join(', ')} (redis and nats come with their backends)`,
    );
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

async function main(): Promise<void> {
  const args = parse();
  const orders = makeOrders(args.n, args.failRate, args.seed);
  const ledger = new EffectsLedger();
  let maxRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, process.memoryUsage().rss)), 100);
  const stack = await startEmbedded({ workers: createOrderWorkers(ledger), definitions: [orderWorkflow] });

  const started = performance.now();
  const outcomes = await runOrders(stack.orchestrator, {
    orders,
    concurrency: args.concurrency,
    closed: args.closed,
    timeoutMs: 30 * 60_000,
  });
  const wallMs = performance.now() - started;
  clearInterval(sampler);
  maxRss = Math.max(maxRss, process.memoryUsage().rss);

  // Verify every run's final state, context and effects before reporting anything.
  const positions = ledgerPositions(ledger);
  const problems: string[] = [];
  let completed = 0;
  let compensated = 0;
  let steps = 0;
  for (const { order, txId } of outcomes) {
    const run = await stack.orchestrator.getRun(txId);
    if (run.state === RunState.Completed) completed++;
    if (run.state === RunState.Compensated) compensated++;
    for (const step of Object.values(run.steps))
      steps += step.attempts.length + (step.compensation?.attempts.length ?? 0);
    problems.push(...verifyOrderRun(run, order, ledger, positions));
  }
  await stack.close();
  const floorMs = await measureFloor(orders);

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
    maxRssMb: Math.round(maxRss / 1024 / 1024),
    floorWorkflowsPerSec,
    ratioToFloor: Number((workflowsPerSec / floorWorkflowsPerSec).toFixed(5)),
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
        `floor (plain function calls) ${floorWorkflowsPerSec} workflows/s, ratio ${line.ratioToFloor}`,
    );
  }
  console.log(JSON.stringify(line));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
