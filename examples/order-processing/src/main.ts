/**
 * `pnpm start`: the embedded mode end to end. Registers the order saga (from workflow.yaml), runs
 * 1,000 orders with 10% failing at ship_order, shows progress, then prints the outcome and the
 * timeline of one compensated run. No servers needed. The gRPC API is served on 127.0.0.1:50051
 * (GRPC_PORT) while it runs; `pnpm start -- --serve` keeps everything running until Ctrl-C, so
 * `pnpm multiagents …` can inspect, start and watch runs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RunState } from '@multiagents/contracts';
import { parseDefinition } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
import { ControlPlaneServer } from '@multiagents/grpc-server';
import { createOrderWorkers, EffectsLedger, makeOrders } from './order-workers';
import { observeOrchestrator, runOrders } from './run-orders';
import { formatTimeline } from './timeline';
import { verifyOrderRun } from './verify-orders';

const ORDERS = 1_000;
const FAIL_RATE = 0.1;

function progress(done: number, total: number): void {
  const width = 40;
  const filled = Math.round((done / total) * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
  if (process.stdout.isTTY) process.stdout.write(`\r${bar}`);
  else if (done === total || done % Math.ceil(total / 10) === 0) process.stdout.write(`${bar}\n`);
}

async function main(): Promise<void> {
  const ledger = new EffectsLedger();
  const definition = parseDefinition(readFileSync(join(__dirname, '..', 'src', 'workflow.yaml'), 'utf8'));
  const stack = await startEmbedded({ workers: createOrderWorkers(ledger), definitions: [definition] });
  const serve = process.argv.includes('--serve');
  const grpc = new ControlPlaneServer({
    orchestrator: stack.orchestrator,
    workerManager: stack.workerManager,
    host: '127.0.0.1',
    port: Number(process.env['GRPC_PORT'] ?? 50051),
  });
  let address: string | undefined;
  try {
    address = (await grpc.start()).address;
  } catch (err) {
    if (serve) throw err;
    console.log(`(gRPC API not served: ${(err as Error).message.split('\n')[0]})`);
  }
  const orders = makeOrders(ORDERS, FAIL_RATE);
  console.log(
    `MultiAgents embedded mode: ${ORDERS} orders of "${definition.id}", ${FAIL_RATE * 100}% failing at ship_order`,
  );
  const started = performance.now();
  const { outcomes } = await runOrders(stack.orchestrator, observeOrchestrator(stack.orchestrator), {
    orders,
    concurrency: 50,
    onFinished: (done) => progress(done, ORDERS),
  });
  const wallMs = performance.now() - started;
  if (process.stdout.isTTY) process.stdout.write('\n');

  const counts = new Map<string, number>();
  const problems: string[] = [];
  let compensated: string | undefined;
  for (const { order, txId } of outcomes) {
    const run = await stack.orchestrator.getRun(txId);
    counts.set(run.state, (counts.get(run.state) ?? 0) + 1);
    problems.push(...verifyOrderRun(run, order, ledger));
    if (run.state === RunState.Compensated) compensated ??= txId;
  }
  console.log(
    `\n${counts.get(RunState.Completed) ?? 0} completed, ${counts.get(RunState.Compensated) ?? 0} compensated, ` +
      `${ORDERS - (counts.get(RunState.Completed) ?? 0) - (counts.get(RunState.Compensated) ?? 0)} other ` +
      `in ${Math.round(wallMs)} ms (${Math.round((ORDERS / wallMs) * 1000)} workflows/s); ` +
      `every run checked: ${problems.length === 0 ? 'all correct' : `${problems.length} problems`}`,
  );
  for (const problem of problems.slice(0, 10)) console.log(`  ! ${problem}`);
  if (compensated) {
    console.log('\nTimeline of one compensated run:');
    for (const line of formatTimeline(await stack.orchestrator.getRun(compensated))) console.log(line);
  }
  if (serve && address) {
    console.log(`\nServing the gRPC API on ${address} until Ctrl-C. Try:`);
    console.log(`  pnpm multiagents list --address ${address}`);
    console.log(
      `  pnpm multiagents start order_processing --input '{"orderId":"o-x","total":7}' --watch --address ${address}`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  }
  if (address) await grpc.close();
  await stack.close();
  if (problems.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
